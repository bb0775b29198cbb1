"""Training metrics survive a tracking outage (tracking/train_metrics.py).

Real parts: the store's lean `mlflow server` (stopped by PID mid-run, restarted by the sweep's final
flush), a real TorchTrainer with the tiny preset, and a sweep Tracker whose stage run the metrics go to by
reference. Step budgets only: the server goes down when rank 0 has reported step 4 and stays down
until training has ended. (A restarted worker group repeating steps without logging them twice is
checked in test_train_stages.py::test_killed_worker_restarts_from_the_last_checkpoint.)
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path

from videopolicy.tracking import Tracker
from videopolicy.tracking.server import TrackingServer, healthy
from videopolicy.train.launch import TrainSpec, run_training


def _progress(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_metrics_reported_during_an_outage_all_arrive_once(make_cfg, clips, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "store"
    try:
        _outage_then_flush(make_cfg, clips, tmp_path, store)
    finally:  # whichever server of the store is up (the first, or the one the final flush started), by PID
        TrackingServer.for_store(store).stop()


def _outage_then_flush(make_cfg, clips, tmp_path, store):
    tracker = Tracker(store, sweep="outage", experiment="outage-test")  # starts the store's lean server
    server = TrackingServer.for_store(store)
    assert server.attach() and healthy(tracker.uri)
    stage = tracker.stage_run("two_stage", "stage1:outage")
    for ref in (tracker.sweep_run(), tracker.row_run("two_stage"), stage):
        tracker.start(ref)

    cfg = make_cfg(workers=1, stage1={"steps": 12, "batch_size": 2, "checkpoint_every": 6, "log_every": 2})
    progress = tmp_path / "progress"
    down: dict = {}

    def stop_server_at_step_4():
        while not down:
            lines = _progress(progress / "rank0.jsonl")
            if lines and lines[-1]["step"] >= 4:
                server.stop()
                down["step"] = lines[-1]["step"]
            time.sleep(0.05)

    watcher = threading.Thread(target=stop_server_at_step_4, daemon=True)
    watcher.start()
    spec = TrainSpec("stage1", cfg, clips.path, name="outage", storage_path=str(tmp_path / "runs"),
                     tracking_uri=tracker.uri, mlflow_run_id=tracker.run_id(stage),  # as the sweep executor does
                     mlflow_ref=asdict(stage), mlflow_experiment=tracker.experiment,
                     tracking_managed=True, store=str(store), progress_dir=str(progress))
    result = run_training(spec)
    watcher.join(timeout=1)
    assert result.step == 12 and down, down
    assert not healthy(tracker.uri), "the server came back by itself: the outage did not last to the end"
    reported = [line["step"] for line in _progress(progress / "rank0.jsonl")]
    assert reported == list(range(2, 13, 2)) and [s for s in reported if s > down["step"]], reported
    queued = list((store / "mlflow" / "train_outbox").glob("outage-*/*.json"))
    assert queued, "no report was queued while the server was down"

    flushed = tracker.flush(restart_server=True)  # what the end of a sweep does
    assert flushed.complete and tracker.pending() == 0
    assert not list((store / "mlflow" / "train_outbox").glob("outage-*")), "the finished run's queue was kept"
    run_id = tracker.run_id(stage)
    for key in ("stage1/loss", "stage1/step_time_s", "stage1/samples_per_s"):
        steps = [m.step for m in tracker.client.get_metric_history(run_id, key)]
        assert sorted(steps) == reported, f"{key}: {sorted(steps)}"
    runs = tracker.client.search_runs([tracker._experiment()], filter_string="tags.`videopolicy.sweep` = 'outage'")
    assert len(runs) == 3  # sweep, row, stage: the training's reports created no run of their own
