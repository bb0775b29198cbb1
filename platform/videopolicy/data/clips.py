"""Stage `clips`: demonstrations -> training clips, as in the paper, served by Ray Data.

A clip starting at step t of a demo holds::

    frames       (V, T', H, W, 3) uint8     per camera, steps t, t+s, ..., t+(T'-1)*s: the authors' window,
                                            whose first frame is the current one (the condition frame and
                                            the first target); steps past the episode end repeat the last frame
    actions      (A_h, A) float32           steps t .. t+A_h-1, zero-padded past the end (before
                                            normalisation, as the authors do), min-max normalised to [-1, 1]
    action_mask  (A_h,) bool                False on padded steps
    language     str                        the task sentence

with V cameras, T' = max(T, 1) for T = video_horizon / frame_stride (8 = 32 / 4 in the paper: frames t .. t+28;
T = 0, the horizon-0 row, keeps only the current frame), A_h = action_horizon (32), A = action_dim (7).
Every step of every demo is a clip start.

Storage stores each frame once: stage `frames` (`<store>/frames/<key>/`, one per demo file) holds
per-demo Arrow IPC shards (one row per step: a fixed-size binary column per camera with the resized
frame, and the raw action; memory-mapped when read); stage `clips` (`<store>/clips/<key>/`) holds an
`index.parquet` of clips (demo shard, start, split) and the normaliser statistics (computed on the
training demos only) in its manifest. Rows that differ only in how clips are cut (video horizon, task
subset, split) share the frame shards. Windows are cut in the streaming pipeline, never materialised: 3 cameras x 9 frames x
128^2 is ~1.3 MB a clip, and every frame belongs to ~9 clips.

The Ray Dataset holds clip *references* (index rows), shuffled per epoch and split across trainers;
`ClipCutter` turns a batch of references into clips, in the trainer's collate (default) or in Ray Data
tasks, copying only the window frames out of the memory-mapped shards.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from videopolicy.config import ClipConfig, PlatformConfig
from videopolicy.normalize import ActionNormalizer
from videopolicy.store import StageDir, file_digest, stable_hash

log = logging.getLogger(__name__)

CLIP_VERSION = 2  # bump when the stored layout or the window semantics change (2: window t .. t+(T-1)s)
DEMO_CHUNK = 8  # demos per shard-writing Ray task


@dataclass(frozen=True)
class DemoSource:
    task: str
    path: str
    digest: str  # content identity: the demo stage key, or the file's sha256 prefix
    language: str = ""  # override for files without a sentence


# ---------------------------------------------------------------------------------------------
# Sources, task subsets and splits
# ---------------------------------------------------------------------------------------------


def demo_sources(cfg: PlatformConfig, store: str | None = None) -> list[DemoSource]:
    """The demo files this config trains on; generates missing scripted demos first (on Ray)."""
    d = cfg.demos
    if d.source == "files":
        return [
            DemoSource(task=f.task or Path(f.path).stem, path=str(Path(f.path).expanduser().resolve()),
                       digest=file_digest(Path(f.path).expanduser()), language=f.language)
            for f in d.files
        ]
    from videopolicy.data.generate import demo_key, generate_demos

    paths = generate_demos(cfg, store)
    return [DemoSource(task=t, path=str(paths[t]), digest=demo_key(d, t)) for t in d.tasks]


def half_split(tasks: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Deterministic half_tasks split: (seen, unseen), ceil(n/2) seen. Independent of input order."""
    ordered = sorted(set(tasks))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    k = math.ceil(len(ordered) / 2)
    seen = sorted(ordered[i] for i in perm[:k])
    return seen, sorted(set(ordered) - set(seen))


def select_tasks(tasks: list[str], clips: ClipConfig) -> tuple[list[str], list[str]]:
    """(tasks to train on, held-out tasks) for the configured subset."""
    if clips.task_subset == "half":
        return half_split(tasks, clips.half_seed)
    if clips.task_subset == "list":
        missing = [t for t in clips.task_list if t not in tasks]
        if missing:
            raise ValueError(f"clips.task_list: {missing} not among the demo tasks {sorted(tasks)}")
        return sorted(clips.task_list), sorted(set(tasks) - set(clips.task_list))
    return sorted(tasks), []


def split_demos(names: list[str], val_fraction: float, seed: int, task: str) -> dict[str, str]:
    """demo name -> 'train' | 'val'; split by demo, never by clip. Keeps at least one train demo."""
    if not names:
        return {}
    rng = np.random.default_rng([seed, int(stable_hash(task, length=8), 16)])
    order = [names[i] for i in rng.permutation(len(names))]
    n_val = min(len(names) - 1, round(val_fraction * len(names)))
    if val_fraction > 0 and n_val == 0 and len(names) >= 4:
        n_val = 1
    return {n: ("val" if i < n_val else "train") for i, n in enumerate(order)}


# ---------------------------------------------------------------------------------------------
# Window cutting (shared by the Ray pipeline, the plain-loop benchmark and the tests)
# ---------------------------------------------------------------------------------------------


def frame_indices(start: int, length: int, frames_per_clip: int, stride: int) -> np.ndarray:
    """Steps start, start+s, ... (`frames_per_clip` of them; the first is the condition frame, as in the
    authors' loader); past the episode end, the last frame repeats."""
    idx = start + stride * np.arange(frames_per_clip)
    return np.minimum(idx, length - 1)


def cut_windows(
    frames: Sequence[np.ndarray],
    actions: np.ndarray,
    starts: np.ndarray,
    clips: ClipConfig,
    normalizer: ActionNormalizer,
) -> dict[str, np.ndarray]:
    """Per-camera frames [(N, H, W, 3) uint8] x V, actions (N, A) -> the clips starting at `starts`.

    Only the window frames are copied, so `frames` may be memory-mapped views of a whole demo.
    Returns frames (B, V, T', H, W, 3) uint8, actions (B, A_h, A) float32 in [-1, 1] on valid steps,
    action_mask (B, A_h) bool, start (B,) int.
    """
    n = len(actions)
    starts = np.asarray(starts, dtype=np.int64)
    return {"frames": window_frames(frames, starts, n, clips), **window_actions(actions, starts, clips, normalizer)}


def window_frames(per_frame: Sequence, starts: np.ndarray, length: int, clips: ClipConfig):
    """Per-camera arrays [(N, ...)] x V (frames, or their cached latents) -> windows (B, V, T', ...)."""
    fidx = np.stack([frame_indices(s, length, clips.frames_per_clip, clips.frame_stride) for s in starts])
    win = np.empty((len(starts), len(per_frame), fidx.shape[1], *per_frame[0].shape[1:]), dtype=per_frame[0].dtype)
    for v, cam in enumerate(per_frame):
        win[:, v] = cam[fidx]
    return win


def window_actions(actions: np.ndarray, starts: np.ndarray, clips: ClipConfig,
                   normalizer: ActionNormalizer) -> dict[str, np.ndarray]:
    """Raw actions (N, A) -> the chunks starting at `starts`: actions (B, A_h, A), action_mask, start."""
    n = len(actions)
    starts = np.asarray(starts, dtype=np.int64)
    steps = starts[:, None] + np.arange(clips.action_horizon)[None, :]
    mask = steps < n
    raw = np.zeros((len(starts), clips.action_horizon, actions.shape[1]), dtype=np.float64)
    raw[mask] = actions[steps[mask]]
    return {
        "actions": normalizer.normalize(raw),
        "action_mask": mask,
        "start": starts,
    }


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8 (area filter when shrinking)."""
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    import cv2

    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


# ---------------------------------------------------------------------------------------------
# Per-demo shards (Arrow IPC, one row per step, memory-mapped when read)
# ---------------------------------------------------------------------------------------------
# Arrow IPC rather than Parquet for the frames: an uncompressed IPC file memory-maps zero-copy, so
# cutting a clip reads exactly its window's frames. With Parquet every read decodes the whole demo
# (22 MB at 3 x 128^2 x 150 steps) for a handful of clips, which made the cutter 3x slower than a
# plain h5py loop (bench/data_pipeline.py). The clip index stays Parquet.


def write_demo_shards(
    source: DemoSource, demos: list[str], cameras: list[str], clips: ClipConfig, out_dir: str
) -> list[dict]:
    """Decode, resize and store each demo once. Returns per-demo records (length, action min/max)."""
    import pyarrow as pa

    from videopolicy.data.hdf5 import DemoFile

    records = []
    size = clips.image_size
    with DemoFile(source.path, language=source.language) as f:
        for demo in demos:
            d = f.read(demo, cameras, action_dim=clips.action_dim)
            n = len(d)
            cols = {
                "t": pa.array(np.arange(n, dtype=np.int32)),
                "action": pa.FixedSizeListArray.from_arrays(
                    pa.array(d.actions.astype(np.float32).ravel()), clips.action_dim),
            }
            for cam in cameras:
                imgs = np.ascontiguousarray(resize_frames(d.frames[cam], size))
                cols[cam] = pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(size * size * 3), n, [None, pa.py_buffer(imgs.tobytes())])
            uid = f"{source.task}__{demo}"
            path = Path(out_dir) / f"{uid}.arrow"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".arrow.tmp")
            table = pa.table(cols)
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=max(n, 1))  # one batch: contiguous columns
            tmp.replace(path)
            records.append({
                "demo_uid": uid, "task": source.task, "demo": demo, "language": d.language, "length": n,
                "shard": path.name,
                "action_min": d.actions.min(axis=0).tolist(), "action_max": d.actions.max(axis=0).tolist(),
            })
    return records


def read_demo_shard(path: str, cameras: list[str], size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """-> per-camera frames [(N, H, W, 3) uint8 views of the memory map], actions (N, A) float32."""
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(path)).read_all()
    n = table.num_rows
    actions = table.column("action").chunk(0).flatten().to_numpy(zero_copy_only=False).reshape(n, -1)
    frames = []
    for cam in cameras:
        buf = table.column(cam).chunk(0).buffers()[1]
        frames.append(np.frombuffer(buf, dtype=np.uint8, count=n * size * size * 3).reshape(n, size, size, 3))
    return frames, actions


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


@dataclass
class ClipDataset:
    """A finished clip stage: where it is and what it holds."""

    path: Path
    manifest: dict

    @classmethod
    def open(cls, path: str | Path) -> "ClipDataset":
        stage_path = Path(path)
        if not (stage_path / "_COMPLETE").exists():
            raise FileNotFoundError(f"{stage_path}: not a finished clip dataset (no _COMPLETE marker)")
        return cls(stage_path, json.loads((stage_path / "manifest.json").read_text()))

    @property
    def clips(self) -> ClipConfig:
        return ClipConfig(**{k: v for k, v in self.manifest["clips"].items()})

    @property
    def cameras(self) -> list[str]:
        return list(self.manifest["cameras"])

    @property
    def normalizer(self) -> ActionNormalizer:
        return ActionNormalizer.from_dict(self.manifest["normalizer"])

    def index(self, split: str | None = None):
        import pandas as pd

        df = pd.read_parquet(self.path / "index.parquet")
        return df if split is None else df[df["split"] == split].reset_index(drop=True)

    def ray_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                    cut: str = "trainer", repeat: int = 1):
        """The clips of `split` as a Ray Dataset, for `TorchTrainer(datasets=...)` / `streaming_split`.

        Rows are clip references (index rows: demo shard, start, task, language), shuffled anew on
        every execution (epoch) unless `seed` is given. Windows are cut from the memory-mapped shards:
        - cut="trainer" (default): by `ClipCollate(ds)` in the consumer's collate, the cheapest path
          (one copy of each window); needs the store on a filesystem the trainers can read;
        - cut="workers": by Ray Data tasks (`map_batches`), so rows arrive decoded; for clusters whose
          trainers cannot see the store, at the cost of moving ~1.3 MB a clip through the object store.
        `repeat` > 1 holds every reference that many times (each execution then serves `repeat` epochs,
        shuffled together): a new execution costs seconds of Ray Data start-up, which dominated small
        datasets trained for many epochs (289 clips at batch 16: one execution every 18 steps).
        """
        import pyarrow as pa
        import ray

        index = self.index(split)
        if index.empty:
            raise ValueError(f"{self.path}: split {split!r} has no clips")
        table = pa.Table.from_pandas(index[["demo_uid", "task", "language", "shard", "start"]], preserve_index=False)
        if repeat > 1:
            table = pa.concat_tables([table] * int(repeat))
            index = index.iloc[np.tile(np.arange(len(index)), int(repeat))]
        bounds = np.linspace(0, len(index), min(len(index) // 64 + 1, 64) + 1).astype(int)
        ds = ray.data.from_arrow([table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])])
        if shuffle:
            ds = ds.random_shuffle(seed=seed)  # clip references are ~100 bytes: this shuffle is cheap
        if cut == "workers":
            return ds.map_batches(ClipCutter(self), batch_size=32, batch_format="numpy")
        if cut != "trainer":
            raise ValueError(f"cut must be 'trainer' or 'workers', got {cut!r}")
        return ds


class ClipCutter:
    """Index rows -> clips (module docstring). Holds the stage path and opens shards lazily; picklable."""

    def __init__(self, ds: "ClipDataset"):
        self.root = str(ds.path.parents[1])  # shard paths are relative to the store root
        self.cameras = ds.cameras
        self.clips = ds.clips
        self.normalizer = ds.normalizer
        self._open: dict[str, tuple] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # memory maps stay in their process

    def _shard(self, rel: str) -> tuple[list[np.ndarray], np.ndarray]:
        if rel not in self._open:
            if len(self._open) >= 512:  # bound the open maps; re-opening one costs ~0.1 ms
                self._open.pop(next(iter(self._open)))
            self._open[rel] = read_demo_shard(f"{self.root}/{rel}", self.cameras, self.clips.image_size)
        return self._open[rel]

    def __call__(self, batch: dict) -> dict:
        shards, starts = np.asarray(batch["shard"]), np.asarray(batch["start"], dtype=np.int64)
        n, v, t1, size = len(starts), len(self.cameras), self.clips.frames_per_clip, self.clips.image_size
        out = {
            "frames": np.empty((n, v, t1, size, size, 3), dtype=np.uint8),
            "actions": np.empty((n, self.clips.action_horizon, self.clips.action_dim), dtype=np.float32),
            "action_mask": np.empty((n, self.clips.action_horizon), dtype=bool),
        }
        for rel in np.unique(shards):  # one cut per demo shard in the batch
            rows = np.nonzero(shards == rel)[0]
            frames, actions = self._shard(str(rel))
            clips = cut_windows(frames, actions, starts[rows], self.clips, self.normalizer)
            for k in out:
                out[k][rows] = clips[k]
        out["start"] = starts
        for k in ("language", "task", "demo_uid"):
            out[k] = np.asarray(batch[k], dtype=object)
        return out


class ClipCollate(NumpyBatchCollateFn):
    """`iter_torch_batches(collate_fn=ClipCollate(ds))`: cut windows (unless the rows are already cut),
    then numeric columns to tensors and strings to lists."""

    def __init__(self, ds: "ClipDataset"):
        self.cutter = ClipCutter(ds)

    def __call__(self, batch: dict) -> dict:
        import torch

        if "frames" not in batch:
            batch = self.cutter(batch)

        def tensor(v: np.ndarray):
            v = np.ascontiguousarray(v)
            return torch.from_numpy(v if v.flags.writeable else v.copy())  # Arrow buffers are read-only

        return {k: (v.tolist() if v.dtype == object else tensor(v)) for k, v in batch.items()}


def frames_key(source: DemoSource, demos: list[str], cameras: list[str], clips: ClipConfig) -> str:
    """Key of a source's frame shards: what they hold, not how clips are cut from them (so the
    horizon rows and the half_tasks row of a sweep share one copy of every frame)."""
    return stable_hash("frames", CLIP_VERSION, source.task, source.digest, source.language, demos, cameras,
                       clips.image_size, clips.action_dim)


def ensure_frames(store: str, plan: list[tuple[DemoSource, list[str]]], cameras: list[str], clips: ClipConfig,
                  env_vars: dict) -> list[dict]:
    """Stage `frames`: per-demo shards of each source (only the listed, validated demos), built as
    parallel Ray tasks of DEMO_CHUNK demos, reused when complete. Returns every demo's record."""
    import ray

    records: list[dict] = []
    todo = []
    for source, names in plan:
        stage = StageDir.of(store, "frames", frames_key(source, names, cameras, clips))
        if stage.is_complete():
            records += stage.manifest()["demos"]
        else:
            todo.append((stage, source, names))
    remote = ray.remote(num_cpus=1)(write_demo_shards).options(runtime_env={"env_vars": env_vars})
    refs = {stage: [remote.remote(source, names[i:i + DEMO_CHUNK], cameras, clips, str(stage.prepare()))
                    for i in range(0, len(names), DEMO_CHUNK)]
            for stage, source, names in todo}
    for stage, chunk_refs in refs.items():
        recs = [r for rs in ray.get(chunk_refs) for r in rs]
        for r in recs:  # shard paths relative to the store root, so any clip stage can point at them
            r["shard"] = f"frames/{stage.key}/{r['shard']}"
        stage.complete({"demos": recs, "cameras": cameras, "image_size": clips.image_size})
        records += recs
    return records


def clip_key(clips: ClipConfig, frames: list[str], all_tasks: list[str]) -> str:
    return stable_hash("clips", CLIP_VERSION, asdict(clips), sorted(frames), all_tasks)


def build_clips(cfg: PlatformConfig, store: str | None = None) -> ClipDataset:
    """Make sure the clip dataset for `cfg` exists (building demos and frame shards as needed); open it."""
    import pandas as pd

    from videopolicy.data.hdf5 import DemoFile, DemoValidationError, validate_file
    from videopolicy.runtime import worker_env
    from videopolicy.store import write_json_atomic

    store = str(Path(store or cfg.store).expanduser().resolve())
    c = cfg.clips
    sources = demo_sources(cfg, store)

    # 1. Validate every demo before any work; bad demos stop the stage unless skip_bad.
    cameras = list(c.cameras or cfg.demos.cameras)
    if cfg.demos.source == "files" and not c.cameras:
        with DemoFile(sources[0].path) as f:
            cameras = f.cameras()
    problems = []
    for s in sources:
        problems += validate_file(s.path, cameras, c.action_dim, c.image_size, language=s.language)
    if problems and not cfg.demos.skip_bad:
        raise DemoValidationError(problems)
    bad_files = {p.file for p in problems if not p.demo}
    bad = {(p.file, p.demo) for p in problems}
    for p in problems:
        log.warning("skipping bad demo: %s", p)

    # 2. Task subset; the demos each training source contributes.
    all_tasks = sorted({s.task for s in sources})
    train_tasks, heldout = select_tasks(all_tasks, c)
    plan: list[tuple[DemoSource, list[str]]] = []
    for s in sources:
        if s.task in train_tasks and s.path not in bad_files:
            with DemoFile(s.path, language=s.language) as f:
                names = [n for n in f.demo_names() if (s.path, n) not in bad]
            if names:
                plan.append((s, names))
    if not plan:
        raise ValueError(f"clips: no usable demos for tasks {train_tasks}")
    stage = StageDir.of(store, "clips", clip_key(c, [frames_key(s, n, cameras, c) for s, n in plan], all_tasks))
    if stage.is_complete():
        log.info("clips: reusing %s", stage.path)
        return ClipDataset.open(stage.path)

    # 3. Frame shards (shared with every other clip stage over the same demos), in parallel on Ray.
    records = ensure_frames(store, plan, cameras, c, worker_env(cfg))

    # 4. Split by demo, normaliser from training demos, clip index, manifest, marker.
    split_of: dict[str, str] = {}
    for s, names in plan:
        for name, split in split_demos(names, c.val_fraction, c.split_seed, s.task).items():
            split_of[f"{s.task}__{name}"] = split
    stage.prepare()
    train = [r for r in records if split_of[r["demo_uid"]] == "train"]
    normalizer = ActionNormalizer(
        np.min([r["action_min"] for r in train], axis=0), np.max([r["action_max"] for r in train], axis=0))
    rows = [
        {"demo_uid": r["demo_uid"], "task": r["task"], "language": r["language"], "shard": r["shard"],
         "start": t, "length": r["length"], "split": split_of[r["demo_uid"]]}
        for r in records for t in range(r["length"])
    ]
    index = pd.DataFrame(rows)
    index.to_parquet(stage.path / "index.parquet", index=False)
    write_json_atomic(stage.path / "normalizer.json", normalizer.to_dict())
    counts = index.groupby("split").size().to_dict()
    manifest = {
        "clips": asdict(c),
        "cameras": cameras,
        "frame_shape": [c.image_size, c.image_size, 3],
        "sources": [asdict(s) for s in sources],
        "frames": sorted({r["shard"].split("/")[1] for r in records}),
        "tasks": {"train": train_tasks, "heldout": heldout, "all": all_tasks,
                  "subset": c.task_subset, "half_seed": c.half_seed},
        "languages": sorted({r["language"] for r in records}),
        "normalizer": normalizer.to_dict(),
        "demos": {"train": sum(1 for r in records if split_of[r["demo_uid"]] == "train"),
                  "val": sum(1 for r in records if split_of[r["demo_uid"]] == "val")},
        "clip_counts": {k: int(v) for k, v in counts.items()},
        "skipped": [str(p) for p in problems],
    }
    stage.complete(manifest)
    log.info("clips: built %s (%s clips)", stage.path, manifest["clip_counts"])
    return ClipDataset.open(stage.path)
