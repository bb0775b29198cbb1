"""MLflow tracking against a REAL `mlflow server` that the platform starts on 127.0.0.1 under a tmp store.

Covers: the lean server started once per store and re-used, the given MLFLOW_TRACKING_URI winning,
the sweep/row/stage hierarchy with axes params, provenance tags and a log_table, re-attaching
without duplicates, and the outbox: the server killed by PID mid-sweep, logging continued, the
server restarted, flush, everything arrived.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from videopolicy.config import config_from_dict
from videopolicy.tracking import Tracker, ensure_tracking, local_server, log_row_results
from videopolicy.tracking.server import TrackingServer, _group_members, healthy

TASKS = ["Lift", "Stack", "PickPlaceCan"]
RATES = {"two_stage": [0.8, 0.6, 0.4], "joint": [0.6, 0.4, 0.2]}  # known outcomes, 10 episodes per task


def episodes(row: str, video_dir: Path | None = None) -> pd.DataFrame:
    """A harness-shaped per-episode frame with known successes (plus one infra_error record)."""
    recs = []
    for t, task in enumerate(TASKS):
        wins = round(RATES[row][t] * 10)
        for i in range(10):
            video = None
            if video_dir is not None and i == 0:
                video = video_dir / f"{row}_{task}_0.mp4"
                video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
            recs.append(dict(row=row, suite="robosuite", task=task, scene="default", index=i, seed=100 + i,
                             episode_key=f"robosuite/{task}/default/{i}", policy_id=f"{row}-p", policy_seed=0,
                             protocol_hash="abc", status="done", success=i < wins, steps=50,
                             failure_reason=None if i < wins else "timeout", video_path=str(video) if video else None,
                             attempts=1, wall_s=1.5))
    recs.append({**recs[-1], "index": 10, "episode_key": f"robosuite/{TASKS[-1]}/default/10", "status": "infra_error",
                 "success": False, "failure_reason": "actor_died"})
    return pd.DataFrame(recs)


def row_config(method: str, horizon: int):
    return config_from_dict({"train": {"method": method}, "clips": {"video_horizon": horizon}})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tmp store whose lean server the platform starts (MLFLOW_TRACKING_URI unset); stopped by PID."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = tmp_path_factory.mktemp("store")
    yield root
    TrackingServer.for_store(root).stop()
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def runs_of(tracker: Tracker, sweep: str) -> pd.DataFrame:
    """The sweep's runs as a frame: run_id, status and tags.<name> columns."""
    runs = tracker.client.search_runs([tracker._experiment()], filter_string=f"tags.`videopolicy.sweep` = '{sweep}'",
                                      max_results=1000)
    return pd.DataFrame([{"run_id": r.info.run_id, "status": r.info.status,
                          **{f"tags.{k}": v for k, v in r.data.tags.items()}} for r in runs])


def load_table(tracker: Tracker, run_id: str) -> pd.DataFrame:
    """The row's success table through MLflow's own reader (load_table: it must be a logged table)."""
    import mlflow

    mlflow.set_tracking_uri(tracker.uri)
    try:
        return tracker.client.load_table(tracker._experiment(), "eval/success_table.json", run_ids=[run_id])
    finally:
        mlflow.set_tracking_uri(None)


def test_lean_local_server_started_once_per_store(store):
    uri = ensure_tracking(store)
    info = json.loads((store / "mlflow" / "server.json").read_text())
    assert uri == info["uri"] == f"http://127.0.0.1:{info['port']}" and healthy(uri)
    server = TrackingServer.for_store(store)
    assert server.attach() and server.pid == info["pid"]
    cmd = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert cmd[cmd.index(b"--workers") + 1] == b"1" and cmd[cmd.index(b"--host") + 1] == b"127.0.0.1"
    assert f"sqlite:///{store.resolve()}/mlflow/mlflow.db".encode() in cmd
    environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
    assert b"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in environ
    assert len(_group_members(server.pid)) == 2  # lean: the CLI and one uvicorn worker, no job runner
    assert ensure_tracking(store) == uri  # a second driver re-uses it
    assert json.loads((store / "mlflow" / "server.json").read_text())["pid"] == info["pid"]


def test_given_tracking_uri_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert ensure_tracking(tmp_path) == "http://127.0.0.1:9"
    assert not (tmp_path / "mlflow" / "server.json").exists()


def test_hierarchy_params_provenance_and_tables(store, tmp_path):
    tracker = Tracker(store, sweep="paper-1")
    sweep = tracker.start(tracker.sweep_run())
    for row, method, horizon in [("two_stage", "two_stage", 32), ("joint", "joint", 16)]:
        ref = tracker.start_row(row, row_config(method, horizon))
        stage = tracker.start(tracker.stage_run(row, f"stage2:{row}"), stage_kind="stage2")
        for step in range(3):
            tracker.log_metrics(stage, {"loss": 1.0 / (step + 1), "samples_per_s": 10.0 + step}, step=step)
        tracker.end(stage)
        logged = log_row_results(tracker, row, episodes(row, tmp_path))
        assert logged["success_rate"] == pytest.approx(sum(RATES[row]) / 3)
        tracker.end(ref)
    tracker.end(sweep)
    assert tracker.pending() == 0 and not tracker.outbox.failed()

    runs = runs_of(tracker, "paper-1")
    by_level = {lvl: runs[runs["tags.videopolicy.level"] == lvl] for lvl in ("sweep", "row", "stage")}
    assert [len(by_level[lvl]) for lvl in ("sweep", "row", "stage")] == [1, 2, 2]
    parent_id = by_level["sweep"]["run_id"].iloc[0]
    assert set(by_level["row"]["tags.mlflow.parentRunId"]) == {parent_id}
    row_ids = dict(zip(by_level["row"]["tags.videopolicy.row"], by_level["row"]["run_id"]))
    stage_parents = dict(zip(by_level["stage"]["tags.videopolicy.stage_key"], by_level["stage"]["tags.mlflow.parentRunId"]))
    assert stage_parents == {"stage2:two_stage": row_ids["two_stage"], "stage2:joint": row_ids["joint"]}
    assert set(runs["status"]) == {"FINISHED"}

    two = tracker.client.get_run(row_ids["two_stage"])
    p = two.data.params
    assert (p["train_mode"], p["video_tuning"], p["task_subset"], p["video_horizon"], p["demos_per_task"], p["suite"]) == \
        ("two_stage", "stage1", "all", "32", "4", "robosuite")
    assert tracker.client.get_run(row_ids["joint"]).data.params["video_horizon"] == "16"
    assert p["config.eval.episodes_per_task"] == "10"
    tags = two.data.tags
    assert len(tags["videopolicy.git.sha"]) == 40 and tags["videopolicy.git.dirty"] in ("true", "false")
    for pkg in ("torch", "diffusers", "ray", "mujoco", "robosuite"):
        assert tags[f"videopolicy.version.{pkg}"] not in ("", "absent"), pkg
    assert two.data.metrics["success_rate"] == pytest.approx(0.6)
    assert two.data.metrics["success/Lift"] == pytest.approx(0.8)
    assert two.data.metrics["infra_errors"] == 1
    history = tracker.client.get_metric_history(by_level["stage"]["run_id"].iloc[0], "loss")
    assert sorted(m.step for m in history) == [0, 1, 2]

    # the success table is an MLflow table (listed in the run's loggedArtifacts tag)
    assert {"path": "eval/success_table.json", "type": "table"} in json.loads(tags["mlflow.loggedArtifacts"])
    table = load_table(tracker, row_ids["two_stage"])
    assert table.set_index("task")["rate"].to_dict() == pytest.approx(dict(zip(TASKS, RATES["two_stage"])))
    assert table.set_index("task")["infra_errors"].to_dict() == {"Lift": 0, "Stack": 0, "PickPlaceCan": 1}
    local = tracker.client.download_artifacts(row_ids["two_stage"], "eval/episodes.parquet", str(tmp_path))
    assert len(pd.read_parquet(local)) == 31
    videos = {a.path for t in TASKS for a in tracker.client.list_artifacts(row_ids["two_stage"], f"videos/{t}")}
    assert videos == {f"videos/{t}/two_stage_{t}_0.mp4" for t in TASKS}
    config = tracker.client.download_artifacts(row_ids["two_stage"], "config/resolved_config.json", str(tmp_path))
    assert json.loads(Path(config).read_text())["clips"]["video_horizon"] == 32


def test_resumed_sweep_reattaches_without_duplicates(store, tmp_path):
    first = Tracker(store, sweep="resume-1")
    first.start(first.sweep_run())
    ref = first.start_row("two_stage", row_config("two_stage", 32))
    log_row_results(first, "two_stage", episodes("two_stage"))
    ids = {r: first.run_id(r) for r in (first.sweep_run(), ref)}

    second = Tracker(store, sweep="resume-1")  # a new driver process resuming the sweep
    assert {r: second.run_id(r) for r in ids} == ids
    second.start(second.sweep_run())
    again = second.start_row("two_stage", row_config("two_stage", 32))
    assert second.client.get_run(ids[ref]).info.status == "RUNNING"
    log_row_results(second, "two_stage", episodes("two_stage"))
    second.start_row("joint", row_config("joint", 32))
    second.end(again)

    runs = runs_of(second, "resume-1")
    assert sorted(runs["tags.videopolicy.level"]) == ["row", "row", "sweep"]
    table = load_table(second, ids[ref])
    assert len(table) == len(TASKS)  # re-logged, not appended
    assert second.client.get_run(ids[ref]).info.status == "FINISHED"


def test_replayed_operation_is_idempotent(store):
    tracker = Tracker(store, sweep="idem-1", auto_flush=False)
    ref = tracker.start(tracker.row_run("r"))
    tracker.log_metrics(ref, {"success_rate": 0.5}, step=7)
    ops = [json.loads(p.read_text()) for p in tracker.outbox.pending()]
    assert tracker.flush().applied == 2
    for op in ops:  # as if the server had applied them and died before answering
        tracker._apply(op)
    history = tracker.client.get_metric_history(tracker.run_id(ref), "success_rate")
    assert [(m.step, m.value) for m in history] == [(7, 0.5)]
    assert len(runs_of(tracker, "idem-1")) == 2  # the sweep parent and the row, once each


def test_outbox_keeps_everything_while_the_server_is_down(tmp_path_factory, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path_factory.mktemp("outage")
    server = local_server(root)
    try:
        tracker = Tracker(root, sweep="outage-1")
        tracker.start(tracker.sweep_run())
        two = tracker.start_row("two_stage", row_config("two_stage", 32))
        tracker.log_metrics(two, {"loss": 1.0}, step=0)
        assert tracker.pending() == 0

        os.killpg(server.pid, signal.SIGKILL)  # the server dies mid-sweep (killed by its PID / group)
        while _group_members(server.pid):
            time.sleep(0.05)
        assert not healthy(server.uri)

        tracker.log_metrics(two, {"loss": 0.5}, step=1)
        log_row_results(tracker, "two_stage", episodes("two_stage", root))
        tracker.end(two)
        joint = tracker.start_row("joint", row_config("joint", 16))  # a run first seen while down
        stage = tracker.start(tracker.stage_run("joint", "stage2:joint"), stage_kind="stage2")
        tracker.log_metrics(stage, {"loss": 2.0}, step=0)
        tracker.end(stage)
        log_row_results(tracker, "joint", episodes("joint"))
        tracker.end(joint)
        tracker.end(tracker.sweep_run())
        queued = tracker.pending()
        assert queued >= 12 and tracker.flush().pending == queued  # still down: nothing applied, nothing lost

        server = local_server(root)  # the server returns
        result = tracker.flush()
        assert result.complete and result.applied == queued and result.failed == 0
        assert not tracker.outbox.failed() and tracker.pending() == 0

        runs = runs_of(tracker, "outage-1")
        assert sorted(runs["tags.videopolicy.level"]) == ["row", "row", "stage", "sweep"]
        assert set(runs["status"]) == {"FINISHED"}
        row_runs = runs[runs["tags.videopolicy.level"] == "row"]
        ids = dict(zip(row_runs["tags.videopolicy.row"], row_runs["run_id"]))
        loss = tracker.client.get_metric_history(ids["two_stage"], "loss")
        assert sorted((m.step, m.value) for m in loss) == [(0, 1.0), (1, 0.5)]
        for row in ("two_stage", "joint"):
            table = load_table(tracker, ids[row])
            assert table.set_index("task")["rate"].to_dict() == pytest.approx(dict(zip(TASKS, RATES[row])))
            assert tracker.client.get_run(ids[row]).data.metrics["success_rate"] == pytest.approx(sum(RATES[row]) / 3)
        stage_run = runs[runs["tags.videopolicy.level"] == "stage"].iloc[0]
        assert stage_run["tags.mlflow.parentRunId"] == ids["joint"]
        assert {a.path for a in tracker.client.list_artifacts(ids["two_stage"], "videos/Lift")} == \
            {"videos/Lift/two_stage_Lift_0.mp4"}
        assert not any((root / "mlflow" / "outbox" / "blobs").iterdir())  # queued files cleaned up once sent
    finally:
        server.stop()
