"""Scripted-expert demo generation on real robosuite + Ray, the clip stage on its output, and the job.

One session store is shared by these tests: the first builds it (and exercises resume), later ones
read it, and the job test re-submits over it to show nothing is regenerated.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videopolicy.config import config_from_dict
from videopolicy.sim.robosuite.demos import demo_stage, episode_seed, generate_demos, generate_shard, plan_shards
from videopolicy.data.hdf5 import DemoFile, validate_file

ROOT = Path(__file__).resolve().parents[1]
CAMS = ["agentview", "frontview", "robot0_eye_in_hand"]
TASKS = ["Lift", "Stack"]


def demo_cfg(store):
    return config_from_dict({
        "store": str(store),
        "demos": {"tasks": TASKS, "demos_per_task": 2, "shard_size": 1, "image_size": 64, "cameras": CAMS,
                  "max_steps": 300},
        "clips": {"image_size": 32, "video_horizon": 16, "frame_stride": 4, "val_fraction": 0.0},
    })


@pytest.fixture(scope="module")
def generated(ray_cluster, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    cfg = demo_cfg(store)
    # An earlier run that died after finishing Lift's shard 0: its shard file is on disk, nothing else.
    stage = demo_stage(str(store), cfg.demos, "Lift")
    stage.prepare()
    first = plan_shards(stage, cfg.demos, "Lift")[0]
    pre = generate_shard(cfg.demos, first)
    pre_mtime = os.stat(first.path).st_mtime_ns
    paths = generate_demos(cfg, str(store))
    return {"store": store, "cfg": cfg, "paths": paths, "pre": pre, "pre_mtime": pre_mtime}


def test_only_successful_demos_with_metadata(generated):
    cfg = generated["cfg"]
    for task in TASKS:
        path = generated["paths"][task]
        assert validate_file(path, CAMS, image_size=64) == []
        m = demo_stage(str(generated["store"]), cfg.demos, task).manifest()
        assert m["demos"] == 2 and m["attempts"] >= 2 and 0 < m["expert_success_rate"] <= 1
        with DemoFile(path) as f:
            assert f.demo_names() == ["demo_0", "demo_1"]
            assert f.meta["render"]["preset"] == "fast" and f.meta["cameras"] == CAMS
            assert f.env_args["env_name"] == task
            d = f.read("demo_0", CAMS)
            assert d.language and all(v.shape == (len(d), 64, 64, 3) for v in d.frames.values())
            assert np.abs(d.actions).max() <= 1.0 and len(d.states) == len(d)
        assert not (path.parent / "shards").exists()  # merged, scratch removed


def test_interrupted_generation_resumes_finished_shards(generated):
    m = demo_stage(str(generated["store"]), generated["cfg"].demos, "Lift").manifest()
    s0, s1 = m["shards"]
    assert s0.get("resumed") and s0["seeds"] == generated["pre"]["seeds"]  # kept, not regenerated
    assert not s1.get("resumed")
    # a second call finds the finished stages and does no work at all
    marker = generated["paths"]["Lift"].parent / "_COMPLETE"
    before = marker.stat().st_mtime_ns
    assert generate_demos(generated["cfg"], str(generated["store"])) == generated["paths"]
    assert marker.stat().st_mtime_ns == before


def test_demos_replay_to_success_and_episode_is_a_function_of_its_seed(generated):
    from videopolicy.sim.robosuite import env as rse

    for task in TASKS:
        env = rse.make_env(task, cameras=(), seed=0)
        with DemoFile(generated["paths"][task]) as f:
            seed = json.loads(f.data["demo_0"].attrs["ep_meta"])["seed"]
            d = f.read("demo_0", [])
            # the same seed reproduces the recorded initial scene, whatever ran before in this env
            rse.reseed(env, 12345)
            env.reset()
            rse.reseed(env, seed)
            env.reset()
            np.testing.assert_allclose(rse.env_state(env)[1:], d.states[0][1:], atol=1e-6)
            # replaying the recorded actions from the recorded start succeeds again
            rse.reset_to(env, d.model_file, d.states[0])
            ok = False
            for a in d.actions:
                env.step(a)
                ok = ok or rse.success(env)
            assert ok, f"{task}: replay of demo_0 did not succeed"
        env.close()
    assert episode_seed(generated["cfg"].demos, "Lift", 0, 0) != episode_seed(generated["cfg"].demos, "Stack", 0, 0)


def test_clips_from_generated_demos(generated):
    from videopolicy.data.clips import ClipCollate, build_clips

    cfg = generated["cfg"]
    cfg.clips.task_subset = "half"
    ds = build_clips(cfg, str(generated["store"]))
    assert len(ds.manifest["tasks"]["train"]) == 1 and len(ds.manifest["tasks"]["heldout"]) == 1
    batch = next(iter(ds.ray_dataset("train").iter_torch_batches(batch_size=4, collate_fn=ClipCollate(ds))))
    assert tuple(batch["frames"].shape) == (4, 3, 4, 32, 32, 3)  # 16-step horizon at stride 4: frames t, t+4, t+8, t+12
    assert tuple(batch["actions"].shape) == (4, 32, 7)
    assert batch["frames"].float().std() > 5  # real rendered pixels, not blank frames


def test_bad_sweep_file_fails_before_ray(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: {demos: {tasks: [Lfit], cameras: [sideview]}, clips: {video_horizon: -4}}\n")
    r = subprocess.run([sys.executable, "jobs/sweep_ablations.py", "--sweep", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "base.demos.tasks[0]: unknown task 'Lfit' (did you mean 'Lift'?)" in r.stderr
    assert "base.clips.video_horizon: must be >= 0" in r.stderr
    assert "Started a local Ray instance" not in r.stdout + r.stderr


@pytest.mark.slow
def test_sweep_job_through_ray_job_submit(generated, tmp_path):
    """The README's main command path: a local head started by PID, `ray job submit` of the sweep driver
    (here its sanity rows only: evaluation, MLflow, table and report without training), head stopped."""
    from videopolicy.local_cluster import LocalHead
    from videopolicy.tracking import stop_tracking

    sweep = tmp_path / "sweep.yaml"
    base = {"demos": {"tasks": TASKS, "image_size": 64, "cameras": CAMS}, "clips": {"image_size": 64},
            "eval": {"tasks": ["Lift"], "episodes_per_task": 1, "workers": 1}}
    sweep.write_text(json.dumps({"name": "t", "base": base, "rows": [
        {"name": "scripted_expert", "overrides": {"train": {"method": "scripted_expert"}}},
        {"name": "random", "overrides": {"train": {"method": "random"}}}]}))
    cmd = [sys.executable, "jobs/local_cluster.py", "--num-cpus", "4", "--store", str(tmp_path / "store"), "submit", "--",
           "python", "jobs/sweep_ablations.py", "--sweep", str(sweep), "--store", str(tmp_path / "store")]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        stop_tracking(tmp_path / "store")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "succeeded" in out
    assert "| scripted_expert | 1.00" in out and "| random | 0.00" in out  # the printed ablation table
    assert list((tmp_path / "store").glob("reports/t-*/report.html"))
    assert LocalHead.for_checkout(ROOT).pids() == []  # the head it started is gone
