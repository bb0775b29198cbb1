"""Demonstrations in robomimic HDF5, the format RoboCasa, LIBERO and MimicGen publish.

Layout read and written::

    data.attrs["env_args"]              JSON: env_name, type, env_kwargs (robomimic)
    data.attrs["problem_info"]          JSON with "language_instruction" (LIBERO files)
    data/demo_<i>.attrs["ep_meta"]      JSON with "lang" (RoboCasa files, and ours)
    data/demo_<i>.attrs["model_file"]   MJCF xml of the episode (for replay)
    data/demo_<i>/actions               (N, A) float   A >= 7 (RoboCasa: 12; the paper uses the first 7)
    data/demo_<i>/states                (N, S) float   flattened MuJoCo state before each action
    data/demo_<i>/obs/<camera>_image    (N, H, W, 3) uint8   robomimic / RoboCasa / MimicGen naming
    data/demo_<i>/obs/<camera>_rgb      (N, H, W, 3) uint8   LIBERO naming (agentview_rgb, eye_in_hand_rgb)

Every problem found by `validate_file` names the file, the demo and the key, and says how to fix it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import h5py
import numpy as np

IMAGE_SUFFIXES = ("_image", "_rgb")  # robomimic/RoboCasa/MimicGen, then LIBERO
VP_META_ATTR = "videopolicy"  # our own metadata (render settings, generator, seeds) on the `data` group


@dataclass
class DemoProblem:
    file: str
    demo: str  # "" for file-level problems
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.demo + '/' if self.demo else ''}{self.key}"
        return f"{where}: {self.message}"


class DemoValidationError(ValueError):
    def __init__(self, problems: list[DemoProblem]):
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"{len(problems)} problem(s) in the demonstration files:\n{shown}{more}\n"
            "Fix the files, or pass --skip-bad (demos.skip_bad: true) to skip bad demos and report them."
        )


@dataclass
class Demo:
    """One demonstration: arrays aligned on the step axis (index t = state/frames before action t)."""

    name: str
    actions: np.ndarray  # (N, A) float32
    frames: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8
    language: str
    states: np.ndarray | None = None  # (N, S) float64
    model_file: str | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def _json_attr(attrs: Mapping, key: str) -> dict | None:
    if key not in attrs:
        return None
    raw = attrs[key]
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def demo_sort_key(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else 1 << 30, name)


class DemoFile:
    """Read access to one robomimic-format HDF5 file (ours, RoboCasa, LIBERO or MimicGen)."""

    def __init__(self, path: str | Path, language: str = ""):
        self.path = str(path)
        self._language_override = language
        self._h5 = h5py.File(self.path, "r")
        if "data" not in self._h5:
            self._h5.close()
            raise DemoValidationError(
                [DemoProblem(self.path, "", "data", "no 'data' group: not a robomimic-format HDF5 file")]
            )
        self.data = self._h5["data"]

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "DemoFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def env_args(self) -> dict:
        return _json_attr(self.data.attrs, "env_args") or {}

    @property
    def meta(self) -> dict:
        """Our metadata (render settings, generator, seeds); {} for published files."""
        return _json_attr(self.data.attrs, VP_META_ATTR) or {}

    @property
    def env_name(self) -> str:
        return str(self.env_args.get("env_name", ""))

    def demo_names(self) -> list[str]:
        return sorted((k for k in self.data.keys() if k.startswith("demo")), key=demo_sort_key)

    def cameras(self, demo: str | None = None) -> list[str]:
        names = self.demo_names()
        if not names:
            return []
        obs = self.data[demo or names[0]].get("obs")
        if obs is None:
            return []
        cams = []
        for key in obs.keys():
            for suffix in IMAGE_SUFFIXES:
                if key.endswith(suffix):
                    cams.append(key[: -len(suffix)])
        return sorted(cams)

    def image_key(self, demo: str, camera: str) -> str | None:
        obs = self.data[demo].get("obs")
        if obs is None:
            return None
        for suffix in IMAGE_SUFFIXES:
            if camera + suffix in obs:
                return f"obs/{camera}{suffix}"
        return None

    def language(self, demo: str) -> str:
        """The task sentence: RoboCasa ep_meta.lang, LIBERO problem_info, ours, or the override."""
        if self._language_override:
            return self._language_override
        ep_meta = _json_attr(self.data[demo].attrs, "ep_meta")
        if ep_meta and ep_meta.get("lang"):
            return str(ep_meta["lang"])
        problem = _json_attr(self.data.attrs, "problem_info")
        if problem and problem.get("language_instruction"):
            text = problem["language_instruction"]
            return " ".join(text) if isinstance(text, list) else str(text)
        return ""

    def ep_meta(self, demo: str) -> dict:
        """The demo's episode metadata (ours: scene seed, task; RoboCasa: layout, style, lang); {} if none."""
        return _json_attr(self.data[demo].attrs, "ep_meta") or {}

    def length(self, demo: str) -> int:
        return int(self.data[demo]["actions"].shape[0])

    def read(self, demo: str, cameras: Iterable[str], action_dim: int | None = None) -> Demo:
        g = self.data[demo]
        actions = np.asarray(g["actions"][()], dtype=np.float32)
        if action_dim is not None:
            actions = actions[:, :action_dim]
        frames = {}
        for cam in cameras:
            key = self.image_key(demo, cam)
            if key is None:
                raise DemoValidationError([DemoProblem(self.path, demo, f"obs/{cam}_image", "camera not present")])
            frames[cam] = np.asarray(g[key][()])
        model_file = g.attrs.get("model_file")
        return Demo(
            name=demo,
            actions=actions,
            frames=frames,
            language=self.language(demo),
            states=np.asarray(g["states"][()]) if "states" in g else None,
            model_file=model_file.decode() if isinstance(model_file, bytes) else model_file,
        )


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def validate_file(
    path: str | Path,
    cameras: Iterable[str],
    action_dim: int = 7,
    image_size: int | None = None,
    language: str = "",
    check_values: bool = True,
) -> list[DemoProblem]:
    """Every problem in one file. File-level problems have demo == ''.

    Checks: readable HDF5 with a `data` group and at least one demo; per demo: `actions` present, 2-D,
    float, at least `action_dim` columns, non-empty, finite; each camera present as uint8 (N, H, W, 3)
    with N equal to the number of actions (and H == W == image_size when given); `states` (if present)
    as long as the actions; a task sentence present.
    """
    path = str(path)
    cameras = list(cameras)
    problems: list[DemoProblem] = []
    if not os.path.exists(path):
        return [DemoProblem(path, "", "", "file does not exist")]
    try:
        f = DemoFile(path, language=language)
    except DemoValidationError as e:
        return e.problems
    except OSError as e:
        return [DemoProblem(path, "", "", f"cannot open as HDF5 ({e}); the file is truncated or not HDF5")]
    with f:
        names = f.demo_names()
        if not names:
            problems.append(DemoProblem(path, "", "data", "no demo_<i> groups: the file holds no demonstrations"))
        for demo in names:
            problems.extend(_validate_demo(f, demo, cameras, action_dim, image_size, check_values))
    return problems


def _validate_demo(f: DemoFile, demo: str, cameras, action_dim, image_size, check_values) -> list[DemoProblem]:
    P = lambda key, msg: DemoProblem(f.path, demo, key, msg)  # noqa: E731
    out: list[DemoProblem] = []
    g = f.data[demo]
    if "actions" not in g:
        return [P("actions", "missing (every demo needs an (N, A) action array)")]
    try:
        acts = g["actions"]
        shape, dtype = acts.shape, acts.dtype
    except Exception as e:  # noqa: BLE001 - a corrupt dataset header raises many kinds of errors
        return [P("actions", f"unreadable ({e})")]
    n = shape[0] if len(shape) >= 1 else 0
    if len(shape) != 2:
        out.append(P("actions", f"expected 2-D (N, A), got shape {shape}"))
    elif shape[0] == 0:
        out.append(P("actions", "empty demo (0 steps)"))
    elif shape[1] < action_dim:
        out.append(P("actions", f"has {shape[1]} dims, need at least {action_dim} (clips.action_dim)"))
    if not np.issubdtype(dtype, np.floating):
        out.append(P("actions", f"dtype {dtype}, expected float"))
    elif check_values and len(shape) == 2 and n > 0:
        try:
            a = acts[()]
        except Exception as e:  # noqa: BLE001
            return out + [P("actions", f"unreadable data ({e}); the file is probably truncated")]
        bad = ~np.isfinite(a)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            out.append(P("actions", f"{int(bad.sum())} NaN/inf value(s), first at step {int(rows[0])}"))
    for cam in cameras:
        key = f.image_key(demo, cam)
        if key is None:
            have = f.cameras(demo)
            out.append(P(f"obs/{cam}_image", f"camera {cam!r} not present (the demo has {have})"))
            continue
        ds = g[key]
        if ds.dtype != np.uint8:
            out.append(P(key, f"dtype {ds.dtype}, expected uint8 images"))
        if len(ds.shape) != 4 or ds.shape[-1] != 3:
            out.append(P(key, f"shape {ds.shape}, expected (N, H, W, 3)"))
            continue
        if ds.shape[0] != n:
            out.append(P(key, f"{ds.shape[0]} frames but {n} actions; they must be equal"))
        if image_size is not None and (ds.shape[1] < image_size or ds.shape[2] < image_size):
            out.append(P(key, f"images are {ds.shape[1]}x{ds.shape[2]}, smaller than image_size {image_size}"))
    if "states" in g and g["states"].shape[0] != n:
        out.append(P("states", f"{g['states'].shape[0]} states but {n} actions; they must be equal"))
    if not f.language(demo):
        out.append(
            P("ep_meta", "no task sentence (ep_meta.lang or problem_info.language_instruction); "
              "set demos.files[].language")
        )
    return out


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


@dataclass
class DemoWriter:
    """Writes our demos in the robomimic/RoboCasa layout (language in ep_meta.lang).

    Write to a temporary name and rename when closed, so a crash never leaves a half file under
    the final name.
    """

    path: str
    env_args: dict
    meta: dict = field(default_factory=dict)
    compression: str | None = None  # frames are random-accessed during clip building; keep them raw

    def __post_init__(self) -> None:
        self._tmp = f"{self.path}.tmp{os.getpid()}"
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._h5 = h5py.File(self._tmp, "w")
        self._data = self._h5.create_group("data")
        self._data.attrs["env_args"] = json.dumps(self.env_args)
        self._data.attrs[VP_META_ATTR] = json.dumps(self.meta)
        self._count = 0
        self._total = 0

    def add(
        self,
        actions: np.ndarray,
        frames: Mapping[str, np.ndarray],
        language: str,
        states: np.ndarray | None = None,
        obs: Mapping[str, np.ndarray] | None = None,
        model_file: str | None = None,
        ep_meta: dict | None = None,
    ) -> str:
        name = f"demo_{self._count}"
        g = self._data.create_group(name)
        g.create_dataset("actions", data=np.asarray(actions, dtype=np.float64))
        if states is not None:
            g.create_dataset("states", data=np.asarray(states, dtype=np.float64))
        og = g.create_group("obs")
        for cam, imgs in frames.items():
            og.create_dataset(f"{cam}_image", data=np.asarray(imgs, dtype=np.uint8), compression=self.compression)
        for key, arr in (obs or {}).items():
            og.create_dataset(key, data=np.asarray(arr))
        g.attrs["num_samples"] = int(len(actions))
        g.attrs["ep_meta"] = json.dumps({**(ep_meta or {}), "lang": language})
        if model_file is not None:
            g.attrs["model_file"] = model_file
        self._count += 1
        self._total += int(len(actions))
        return name

    def close(self) -> str:
        self._data.attrs["total"] = self._total
        self._data.attrs[VP_META_ATTR] = json.dumps(self.meta)  # meta may have grown while writing
        self._h5.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._h5.close()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def __enter__(self) -> "DemoWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def copy_demos(sources: Iterable[tuple[str, str]], writer: DemoWriter) -> int:
    """Append demos (file, demo name) from other files to `writer`, keeping every array and attr."""
    n = 0
    for src_path, demo in sources:
        with h5py.File(src_path, "r") as src:
            name = f"demo_{writer._count}"
            src.copy(src["data"][demo], writer._data, name=name)
            writer._count += 1
            writer._total += int(src["data"][demo]["actions"].shape[0])
            n += 1
    return n
