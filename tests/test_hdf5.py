"""Demo files: the reader reads every published layout as it is; every bad input gets a precise error."""

import json

import h5py
import numpy as np
import pytest

from videopolicy.data.hdf5 import DemoFile, DemoWriter, validate_file

N, H = 12, 16


def _frames(n=N, h=H, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, h, h, 3), dtype=np.uint8)


def write_ours(path, n_demos=2, **kw):
    with DemoWriter(str(path), {"env_name": "Lift", "type": 1, "env_kwargs": {}}, {"render": {"preset": "fast"}}) as w:
        for i in range(n_demos):
            w.add(actions=np.random.default_rng(i).uniform(-1, 1, (N, 7)),
                  frames={"agentview": _frames(seed=i), "robot0_eye_in_hand": _frames(seed=i + 9)},
                  language="lift the red cube", states=np.zeros((N, 5)), model_file="<mujoco/>")
    return path


def write_libero(path):
    """LIBERO: obs/agentview_rgb + eye_in_hand_rgb, language in data.attrs['problem_info']."""
    with h5py.File(path, "w") as f:
        d = f.create_group("data")
        d.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Tabletop_Manipulation", "env_kwargs": {}})
        d.attrs["problem_info"] = json.dumps({"problem_name": "libero_tabletop_manipulation",
                                              "domain_name": "robosuite",
                                              "language_instruction": "put both the alphabet soup and the tomato sauce in the basket"})
        d.attrs["bddl_file_name"] = "x.bddl"
        for i in range(2):
            g = d.create_group(f"demo_{i}")
            g.create_dataset("actions", data=np.zeros((N, 7)))
            g.create_dataset("states", data=np.zeros((N, 9)))
            g.create_dataset("obs/agentview_rgb", data=_frames())
            g.create_dataset("obs/eye_in_hand_rgb", data=_frames())
            g.create_dataset("obs/joint_states", data=np.zeros((N, 7)))
            g.attrs["init_state"] = np.zeros(9)
    return path


def write_robocasa(path):
    """RoboCasa: 12-D actions, robot0_agentview_left/right + eye_in_hand, lang in ep_meta; demos out of order."""
    with h5py.File(path, "w") as f:
        d = f.create_group("data")
        d.attrs["env_args"] = json.dumps({"env_name": "PnPCounterToCab", "type": 1, "env_kwargs": {}})
        for i in (10, 2, 1):
            g = d.create_group(f"demo_{i}")
            g.create_dataset("actions", data=np.ones((N, 12)))
            for cam in ("robot0_agentview_left", "robot0_agentview_right", "robot0_eye_in_hand"):
                g.create_dataset(f"obs/{cam}_image", data=_frames())
            g.attrs["ep_meta"] = json.dumps({"lang": "pick the apple from the counter and place it in the cabinet",
                                             "layout_id": 1, "style_id": 1})
            g.attrs["model_file"] = "<mujoco/>"
        f.create_group("mask").create_dataset("train", data=np.array([b"demo_1"]))
    return path


def write_mimicgen(path):
    """MimicGen: robomimic names, no language in the file."""
    with h5py.File(path, "w") as f:
        d = f.create_group("data")
        d.attrs["env_args"] = json.dumps({"env_name": "Stack_D0", "type": 1, "env_kwargs": {}})
        g = d.create_group("demo_0")
        g.create_dataset("actions", data=np.zeros((N, 7)))
        g.create_dataset("obs/agentview_image", data=_frames())
        g.create_dataset("obs/robot0_eye_in_hand_image", data=_frames())
    return path


def test_round_trip_ours(tmp_path):
    p = write_ours(tmp_path / "ours.hdf5")
    with DemoFile(p) as f:
        assert f.demo_names() == ["demo_0", "demo_1"]
        assert f.cameras() == ["agentview", "robot0_eye_in_hand"]
        assert f.env_name == "Lift" and f.meta["render"]["preset"] == "fast"
        d = f.read("demo_1", ["agentview"])
        assert d.language == "lift the red cube" and d.model_file == "<mujoco/>"
        np.testing.assert_array_equal(d.frames["agentview"], _frames(seed=1))
        np.testing.assert_allclose(d.actions, np.random.default_rng(1).uniform(-1, 1, (N, 7)), rtol=1e-6)
    assert validate_file(p, ["agentview", "robot0_eye_in_hand"]) == []
    assert not list(tmp_path.glob("*.tmp*"))  # written under a temp name, renamed at close


def test_published_layouts_read_as_they_are(tmp_path):
    with DemoFile(write_libero(tmp_path / "libero.hdf5")) as f:
        assert f.cameras() == ["agentview", "eye_in_hand"]
        assert f.language("demo_0").startswith("put both the alphabet soup")
        assert f.read("demo_0", ["agentview", "eye_in_hand"]).frames["eye_in_hand"].shape == (N, H, H, 3)
    with DemoFile(write_robocasa(tmp_path / "robocasa.hdf5")) as f:
        assert f.demo_names() == ["demo_1", "demo_2", "demo_10"]  # numeric, not lexicographic
        d = f.read("demo_10", ["robot0_agentview_left"], action_dim=7)
        assert d.actions.shape == (N, 7)  # the paper uses the first 7 of RoboCasa's 12 dims
        assert d.language.startswith("pick the apple")
    assert validate_file(tmp_path / "robocasa.hdf5", ["robot0_agentview_left", "robot0_eye_in_hand"]) == []
    p = write_mimicgen(tmp_path / "mimicgen.hdf5")
    problems = validate_file(p, ["agentview"])
    assert [(x.demo, x.key) for x in problems] == [("demo_0", "ep_meta")]
    assert "set demos.files[].language" in str(problems[0])
    assert validate_file(p, ["agentview"], language="stack the red cube on the green cube") == []


def _corrupt(path, fn):
    with h5py.File(path, "a") as f:
        fn(f["data"])
    return path


@pytest.mark.parametrize("name, corrupt, key, fragment", [
    ("missing actions", lambda d: d["demo_1"].__delitem__("actions"), "actions", "missing"),
    ("nan actions", lambda d: d["demo_1/actions"].__setitem__((3, 2), np.nan), "actions", "NaN/inf value(s), first at step 3"),
    ("inf actions", lambda d: d["demo_1/actions"].__setitem__((0, 0), np.inf), "actions", "NaN/inf"),
    ("unequal lengths", lambda d: (d["demo_1/obs"].__delitem__("agentview_image"),
                                   d["demo_1/obs"].create_dataset("agentview_image", data=_frames(n=N - 2))),
     "obs/agentview_image", f"{N - 2} frames but {N} actions"),
    ("wrong image dtype", lambda d: (d["demo_1/obs"].__delitem__("agentview_image"),
                                     d["demo_1/obs"].create_dataset("agentview_image", data=np.zeros((N, H, H, 3), np.float32))),
     "obs/agentview_image", "expected uint8"),
    ("wrong image shape", lambda d: (d["demo_1/obs"].__delitem__("agentview_image"),
                                     d["demo_1/obs"].create_dataset("agentview_image", data=np.zeros((N, H, H), np.uint8))),
     "obs/agentview_image", "expected (N, H, W, 3)"),
    ("camera not present", lambda d: d["demo_1/obs"].__delitem__("robot0_eye_in_hand_image"),
     "obs/robot0_eye_in_hand_image", "camera 'robot0_eye_in_hand' not present (the demo has ['agentview'])"),
    ("empty demo", lambda d: (d["demo_1"].__delitem__("actions"), d["demo_1"].create_dataset("actions", data=np.zeros((0, 7)))),
     "actions", "empty demo"),
    ("too few action dims", lambda d: (d["demo_1"].__delitem__("actions"), d["demo_1"].create_dataset("actions", data=np.zeros((N, 4)))),
     "actions", "has 4 dims, need at least 7"),
    ("integer actions", lambda d: (d["demo_1"].__delitem__("actions"), d["demo_1"].create_dataset("actions", data=np.zeros((N, 7), np.int64))),
     "actions", "expected float"),
])
def test_each_bad_input_names_file_demo_and_key(tmp_path, name, corrupt, key, fragment):
    p = _corrupt(write_ours(tmp_path / "f.hdf5"), corrupt)
    problems = validate_file(p, ["agentview", "robot0_eye_in_hand"])
    assert problems, name
    assert all(x.file == str(p) and x.demo == "demo_1" for x in problems), problems
    hit = [x for x in problems if x.key == key and fragment in x.message]
    assert hit, f"{name}: {[str(x) for x in problems]}"
    assert str(hit[0]).startswith(f"{p}:demo_1/{key}: ")


def test_file_level_problems(tmp_path):
    assert "does not exist" in str(validate_file(tmp_path / "none.hdf5", ["agentview"])[0])
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not an hdf5 file at all")
    assert "cannot open as HDF5" in validate_file(junk, ["agentview"])[0].message
    with h5py.File(tmp_path / "nodata.hdf5", "w") as f:
        f.create_group("other")
    assert "no 'data' group" in validate_file(tmp_path / "nodata.hdf5", ["agentview"])[0].message
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("data")
    assert "no demo_<i> groups" in validate_file(tmp_path / "empty.hdf5", ["agentview"])[0].message
    # truncated: a valid file cut in half
    full = write_ours(tmp_path / "full.hdf5")
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    probs = validate_file(cut, ["agentview"])
    assert probs and all(p.file == str(cut) for p in probs)


def test_writer_aborts_cleanly_on_error(tmp_path):
    target = tmp_path / "x.hdf5"
    with pytest.raises(RuntimeError):
        with DemoWriter(str(target), {}) as w:
            w.add(actions=np.zeros((N, 7)), frames={"agentview": _frames()}, language="x")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and not list(tmp_path.iterdir())
