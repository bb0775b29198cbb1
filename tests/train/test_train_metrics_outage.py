"""Training metrics survive a tracking outage and a worker restart (tracking/train_metrics.py).

Real parts: the store's lean `mlflow server` (stopped by PID mid-run, restarted by the sweep's final
flush), a real TorchTrainer with the tiny preset, a sweep Tracker whose stage run the metrics go to by
reference, and rank 0 SIGKILLed after a checkpoint so that Ray Train restarts it and steps are repeated.
Step budgets only: the server goes down when rank 0 has reported step 4, the kill lands once step 10
is reported, and the server stays down until training has ended.
"""

from __future__ import annotations

import json
import os
import signal
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
    tracker = Tracker(store, sweep="outage", experiment="outage-test")  # starts the store's lean server
    server = TrackingServer.for_store(store)
    assert server.attach() and healthy(tracker.uri)
    stage = tracker.stage_run("two_stage", "stage1:outage")
    tracker.start(tracker.sweep_run())
    tracker.start(tracker.row_run("two_stage"))
    tracker.start(stage, stage_kind="stage1")

    cfg = make_cfg(workers=1, max_failures=2,
                   stage1={"steps": 16, "batch_size": 2, "checkpoint_every": 8, "log_every": 2})
    progress = tmp_path / "progress"
    events: dict = {}

    def outage_then_kill():
        while "killed" not in events:
            lines = _progress(progress / "rank0.jsonl")
            step = lines[-1]["step"] if lines else 0
            if step >= 4 and "down" not in events:
                events["down"] = step
                server.stop()
            if step >= 10 and "down" in events:
                events["killed"] = lines[-1]
                os.kill(lines[-1]["pid"], signal.SIGKILL)
            time.sleep(0.1)

    watcher = threading.Thread(target=outage_then_kill, daemon=True)
    watcher.start()
    spec = TrainSpec("stage1", cfg, clips.path, name="outage", storage_path=str(tmp_path / "runs"),
                     tracking_uri=tracker.uri, mlflow_run_id=tracker.run_id(stage),  # as the sweep executor does
                     mlflow_ref=asdict(stage), mlflow_experiment=tracker.experiment,
                     tracking_managed=True, store=str(store), progress_dir=str(progress))
    result = run_training(spec)
    watcher.join(timeout=1)
    assert result.step == 16 and "killed" in events, events
    assert not healthy(tracker.uri), "the server came back by itself: the outage did not last to the end"

    lines = _progress(progress / "rank0.jsonl")
    pids = list(dict.fromkeys(line["pid"] for line in lines))
    assert len(pids) == 2, f"rank 0 was not restarted exactly once: {lines}"
    reported = [line["step"] for line in lines]
    repeated = sorted(s for s in set(reported) if reported.count(s) > 1)
    assert repeated, f"the restart repeated no step (resumed past the kill?): {reported}"
    assert [s for s in reported if s > events["down"]], "nothing was reported while the server was down"
    queue_root = store / "mlflow" / "train_outbox"
    assert list(queue_root.glob("outage-*/*.json")), "no report queued while the server was down"

    flushed = tracker.flush(restart_server=True)  # what the end of a sweep does
    assert flushed.complete and tracker.pending() == 0
    assert not list(queue_root.glob("outage-*")), "the finished run's queue was not removed"

    run_id = tracker.run_id(stage)
    for key in ("stage1/loss", "stage1/step_time_s", "stage1/samples_per_s"):
        steps = [m.step for m in tracker.client.get_metric_history(run_id, key)]
        assert sorted(steps) == sorted(set(reported)) == list(range(2, 17, 2)), f"{key}: {sorted(steps)}"
    runs = tracker.client.search_runs([tracker._experiment()], filter_string="tags.`videopolicy.sweep` = 'outage'")
    assert len(runs) == 3  # sweep, row, stage: the training's reports created no run of their own
    TrackingServer.for_store(store).stop()
