"""Evaluation end to end: real Ray actors (2 simulator workers + 1 policy server), real robosuite + EGL.

Cheap episodes: 64 px, two cameras, the fast render preset. One uninterrupted scripted-expert run is
the reference table; the other runs (fewer workers, a worker killed mid-episode, a driver killed
mid-evaluation and resumed) must reproduce it episode by episode, with nothing lost or counted twice.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from videopolicy.config import config_from_dict
from videopolicy.evaluate import RESULT_COLUMNS, EvaluationError, Ledger, PolicySpec, evaluate, plan_evaluation

TASKS = ["Lift", "Stack"]
ROOT = Path(__file__).resolve().parents[2]


def eval_cfg(tasks=TASKS, **ev):
    return config_from_dict({
        "demos": {"tasks": tasks, "cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 64,
                  "render": {"preset": "fast", "gl": "egl"}},
        "clips": {"image_size": 64},
        "eval": {"workers": 2, "episodes_per_task": 3, "video_episodes": 1, "max_retries": 2, **ev},
    })


def outcomes(df, task=None):
    d = df if task is None else df[df.task == task]
    return {r.episode_key: (bool(r.success), int(r.steps), r.failure_reason) for r in d.itertuples()}


@pytest.fixture(scope="module")
def expert_run(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("expert")
    df = evaluate(eval_cfg(), PolicySpec.parse("expert"), out)
    return df, out


def test_expert_through_the_server_succeeds(expert_run):
    df, out = expert_run
    assert list(df.columns) == RESULT_COLUMNS
    assert len(df) == 6 and df.episode_key.is_unique and (df.status == "done").all()
    for task in TASKS:
        rate = df[df.task == task].success.mean()
        assert rate >= 0.9, f"scripted expert through the harness: {task} {rate:.0%}"
    assert (df.attempts == 1).all() and df.protocol_hash.nunique() == 1 and (df.policy_id == "expert:x1").all()
    # one MP4 per task (video_episodes: 1), a real H.264/MP4 file
    videos = df.video_path.dropna()
    assert sorted(df[df.video_path.notna()]["index"]) == [0, 0]
    for p in videos:
        data = open(p, "rb").read()
        assert len(data) > 1000 and data[4:8] == b"ftyp"
    ev = (out / "evaluation.json").read_text()
    assert "mujoco" in ev and df.protocol_hash.iloc[0] in ev
    # the sentence each episode's policy was conditioned on is recorded, in the ledger and the episodes
    # table (robosuite envs report none: the task sentence, which is the demos' own; see test_demo_replay)
    from videopolicy.sim.robosuite.experts import TASK_INSTRUCTIONS

    assert (df.instruction == df.task.map(TASK_INSTRUCTIONS)).all(), df[["task", "instruction"]]
    assert (pd.read_csv(out / "results.csv").instruction == df.instruction).all()


def test_random_policy_is_near_zero(ray_cluster, tmp_path):
    df = evaluate(eval_cfg(["Lift"], max_steps=100, episodes_per_task=4, video_episodes=0),
                  PolicySpec.parse("random"), tmp_path)
    assert len(df) == 4 and (df.status == "done").all()
    assert df.success.sum() == 0
    assert (df.failure_reason == "timeout").all() and (df.steps == 100).all()
    # random chunks are executed 16 at a time: 100 steps = 7 policy calls per episode
    details = [r["details"] for r in Ledger(tmp_path / "ledger.sqlite").records(plan_evaluation(
        eval_cfg(["Lift"], max_steps=100), PolicySpec.parse("random")).run)]
    assert all(d["policy_calls"] == 7 for d in details)


def test_same_policy_and_seeds_give_the_same_outcomes(expert_run, tmp_path):
    ref, _ = expert_run
    # another run of one task, on one worker instead of two: the episode list and outcomes are the same
    df = evaluate(eval_cfg(TASKS, workers=1, video_episodes=0), PolicySpec.parse("expert"), tmp_path,
                  episodes_per_task=1)
    sub = ref[ref["index"] < 1]
    assert outcomes(df) == outcomes(sub)
    assert df.seed.tolist() == sub.seed.tolist()


def _workers(owner: str) -> list[tuple[str, str]]:
    import ray

    return [(a["name"], a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"{owner}/worker")]


def test_killing_a_worker_mid_episode_changes_nothing(expert_run, tmp_path):
    import ray

    ref, _ = expert_run
    owner = "killtest"
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "df", evaluate(eval_cfg(["Lift"], video_episodes=0), PolicySpec.parse("expert"), tmp_path, owner=owner,
                       episodes_per_task=2)))
    t.start()
    killed = None
    deadline = time.time() + 600
    while killed is None and time.time() < deadline and t.is_alive():
        for name, namespace in _workers(owner):
            try:
                actor = ray.get_actor(name, namespace=namespace)
                prog = ray.get(actor.progress.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - starting up or already gone
                continue
            if prog.get("steps", 0) >= 5:  # mid-episode: the expert has acted 5+ times
                ray.kill(actor, no_restart=False)  # Ray restarts it; the driver must not trust its episode
                killed = prog["episode_key"]
                break
        time.sleep(0.2)
    t.join(timeout=900)
    assert killed is not None, "never saw an episode in progress"
    df = result["df"]
    assert len(df) == 2 and df.episode_key.is_unique and (df.status == "done").all()
    assert outcomes(df) == outcomes(ref[ref["index"] < 2], "Lift")
    attempts = dict(zip(df.episode_key, df.attempts))
    assert attempts[killed] == 2 and sum(attempts.values()) == 3
    led = Ledger(tmp_path / "ledger.sqlite")
    (rec,) = [r for r in led.records(plan_evaluation(eval_cfg(["Lift"]), PolicySpec.parse("expert")).run)
              if r["episode_key"] == killed]
    assert len(rec["details"]["infra_errors"]) == 1  # the actor's death, recorded, not counted


_DRIVER = textwrap.dedent("""
    import sys
    from videopolicy.config import config_from_dict
    from videopolicy.evaluate import PolicySpec, evaluate
    cfg = config_from_dict({cfg!r})
    evaluate(cfg, PolicySpec.parse("random"), sys.argv[1], owner="doomed")
""")


def test_interrupted_evaluation_resumes_from_the_ledger(ray_cluster, tmp_path):
    import ray

    raw = {"demos": {"tasks": ["Lift"], "cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 64},
           "clips": {"image_size": 64},
           "eval": {"workers": 2, "episodes_per_task": 4, "video_episodes": 0, "max_steps": 48}}
    cfg = config_from_dict(raw)
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER.format(cfg=raw), str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ledger_path = tmp_path / "ledger.sqlite"
    run = plan_evaluation(cfg, PolicySpec.parse("random")).run
    deadline = time.time() + 600
    counts = {}
    while time.time() < deadline and proc.poll() is None:
        if ledger_path.exists():
            counts = Ledger(ledger_path).counts(run)
            if counts["done"] >= 1 and counts["leased"] >= 1:
                break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)  # the driver dies with leases held; its actors die with it
    proc.wait()
    before = {r["episode_key"]: r for r in Ledger(ledger_path).records(run)}
    assert before and all(r["status"] == "done" for r in before.values())

    df = evaluate(cfg, PolicySpec.parse("random"), tmp_path, lease_ttl_s=2.0, owner="resumer")
    assert len(df) == 4 and df.episode_key.is_unique and (df.status == "done").all()
    after = {r.episode_key: r for r in df.itertuples()}
    for key, rec in before.items():  # finished episodes are not re-run
        assert after[key].attempts == rec["attempts"] and after[key].wall_s == rec["wall_s"]
    assert (df.steps == 48).all() and not df.success.any()
    assert sum(a.attempts for a in after.values()) >= 4 + counts["leased"]
    # nothing left to do: a third run starts no actors and returns the same table
    again = evaluate(cfg, PolicySpec.parse("random"), tmp_path)
    assert again.equals(df)


def test_demo_replay_reproduces_the_recordings(ray_cluster, tmp_path):
    """The replay sanity policy: recorded actions on the recorded scenes succeed, through the same
    server, worker, chunking (16 of 32) and success check as a model; a shifted scene does not."""
    from videopolicy.data.clips import demo_sources
    from videopolicy.data.hdf5 import DemoFile

    cfg = eval_cfg(TASKS, video_episodes=0)
    cfg.store = str(tmp_path / "store")
    cfg.demos.demos_per_task, cfg.demos.shard_size = 2, 2
    demos = {s.task: s.path for s in demo_sources(cfg)}  # generated on the Ray cluster
    replay = PolicySpec.parse("replay").with_demos(demos)
    plan = plan_evaluation(cfg, replay)
    assert [s.key for s in plan.specs] == [f"robosuite/{t}/demo/{i}" for t in TASKS for i in range(2)]
    df = evaluate(cfg, replay, tmp_path / "replay")
    assert len(df) == 4 and (df.status == "done").all()
    assert df.success.all(), df[["episode_key", "success", "steps", "failure_reason"]]
    for r in df.itertuples():  # success comes within the recording (it runs 10 steps past first success)
        with DemoFile(demos[r.task]) as f:
            assert r.steps <= f.length(f.demo_names()[r.index]) - 10 + 1
    assert df.policy_id.str.startswith("replay:x16:").all()
    # evaluation conditions the policy on exactly the sentence training read from these demos (one
    # source of truth: a paraphrase at evaluation is out-of-distribution text for the model)
    sources = {s.task: s for s in demo_sources(cfg)}
    for r in df.itertuples():
        with DemoFile(sources[r.task].path, language=sources[r.task].language) as f:
            trained = f.language(f.demo_names()[r.index])  # what data/clips.py puts in the clips
        assert r.instruction == trained, (r.task, r.instruction, trained)

    # the same recordings on other scenes (the eval episodes' seeds): open loop, the cubes are elsewhere
    moved = dataclasses.replace(plan.specs[0], seed=plan.specs[0].seed + 1)
    from videopolicy.evaluate.worker import SimWorker

    worker = SimWorker("robosuite", cfg, replay, 16, 0)
    worker.server = None
    assert worker.run_episode(plan.specs[0])["success"]
    res = worker.run_episode(moved)
    assert not res["success"] and res["failure_reason"] == "timeout"
    worker._drop_env()


def test_preflight_names_the_problem(tmp_path):
    with pytest.raises(EvaluationError, match="replay policy needs demo files"):
        plan_evaluation(eval_cfg(), PolicySpec.parse("replay"))
    with pytest.raises(EvaluationError, match="demo file of Lift not found"):
        plan_evaluation(eval_cfg(), PolicySpec.parse("replay").with_demos({"Lift": tmp_path / "Lift.hdf5"}))
    with pytest.raises(EvaluationError, match=str(tmp_path / "nope")):
        plan_evaluation(eval_cfg(), PolicySpec.parse(str(tmp_path / "nope")))
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(EvaluationError, match="model.safetensors"):
        plan_evaluation(eval_cfg(), PolicySpec.parse(str(tmp_path / "ckpt")))


def test_evaluate_job_runs_a_policy_on_its_training_demos_scenes(ray_cluster, tmp_path):
    """jobs/evaluate.py --scenes demos: the episodes are the demos' own scenes (keys robosuite/<task>/demo/i),
    not the evaluation's unseen ones (robosuite/<task>/default/i, the default)."""
    import importlib.util

    import yaml

    spec = importlib.util.spec_from_file_location("evaluate_job", ROOT / "jobs" / "evaluate.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "store": str(tmp_path / "store"),
        "demos": {"tasks": ["Lift"], "demos_per_task": 2, "shard_size": 2, "cameras": ["agentview"],
                  "image_size": 64, "render": {"preset": "fast", "gl": "egl"}},
        "clips": {"image_size": 64}, "eval": {"workers": 1, "max_steps": 16, "video_episodes": 0}}))
    for scenes, kind in (("demos", "demo"), ("unseen", "default")):
        out = tmp_path / scenes
        assert job.main(["--config", str(config), "--policy", "random", "--scenes", scenes, "--episodes", "2",
                         "--out", str(out)]) == 0
        df = pd.read_csv(out / "results.csv")
        assert sorted(df.episode_key) == [f"robosuite/Lift/{kind}/{i}" for i in range(2)]
