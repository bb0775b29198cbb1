"""Nightly: regressions against the last good night are found on paired episodes (real MLflow, sqlite
backend, results logged the way the sweep logs them); a job running past its timeout is stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from videopolicy.sweep.nightly import STATUS_TAG, compare, last_good_night, sweep_episodes
from videopolicy.tracking import Tracker, log_row_results

ROOT = Path(__file__).resolve().parents[1]


def _episodes(rates: dict[str, float], n: int = 20) -> pd.DataFrame:
    rows = []
    for row, rate in rates.items():
        for task in ("Lift", "Stack"):
            for i in range(n):
                rows.append({"row": row, "suite": "robosuite", "task": task, "scene": "default", "index": i,
                             "seed": i, "episode_key": f"robosuite/{task}/default/{i}", "policy_id": row,
                             "policy_seed": 0, "protocol_hash": "p", "status": "done", "success": i < rate * n,
                             "steps": 10, "failure_reason": None, "video_path": None, "attempts": 1, "wall_s": 1.0})
    return pd.DataFrame(rows)


def _log_night(tmp_path, uri, name: str, df: pd.DataFrame, status: str | None) -> str:
    tracker = Tracker(tmp_path / "store", sweep=name, experiment="nightly", uri=uri)
    tracker.start(tracker.sweep_run())
    for row in df["row"].unique():
        tracker.start(tracker.row_run(row))
        log_row_results(tracker, row, df, videos=False)
        tracker.end(tracker.row_run(row))
    tracker.end(tracker.sweep_run())
    assert tracker.flush().complete
    run_id = tracker.run_id(tracker.sweep_run())
    if status:
        tracker.client.set_tag(run_id, STATUS_TAG, status)
    return run_id


def test_regressions_are_found_on_paired_episodes(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # a sqlite backend puts artifacts under ./mlruns

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    good = _log_night(tmp_path, uri, "nightly-20261123", _episodes({"two_stage": 0.8, "scripted_expert": 1.0,
                                                                    "random": 0.0}), "good")
    _log_night(tmp_path, uri, "nightly-20261124", _episodes({"two_stage": 0.1, "scripted_expert": 1.0,
                                                             "random": 0.0}), "regressed")
    tonight = _log_night(tmp_path, uri, "nightly-20261125", _episodes({"two_stage": 0.3, "scripted_expert": 0.5,
                                                                       "random": 0.0}), None)
    # the baseline is the last GOOD night, not the last night
    assert last_good_night(client, "nightly", "nightly-20261125") == good
    verdicts = {v.row: v for v in compare(sweep_episodes(client, tonight), sweep_episodes(client, good))}
    assert verdicts["two_stage"].delta == pytest.approx(-0.5)
    assert verdicts["two_stage"].hi < 0 and "regressed" in verdicts["two_stage"].problem
    assert "sanity row out of bounds" in verdicts["scripted_expert"].problem
    assert verdicts["random"].problem is None

    same = compare(sweep_episodes(client, good), sweep_episodes(client, good))
    assert all(v.problem is None and v.delta == 0 for v in same)


def test_a_job_past_its_timeout_is_stopped(tmp_path):
    out = subprocess.run([sys.executable, "jobs/nightly.py", "--entrypoint", "sleep 600", "--timeout-s", "20",
                          "--store", str(tmp_path / "store")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "timed out after 20s" in out.stderr, out.stdout[-2000:] + out.stderr[-2000:]
    assert "stopping it" in out.stdout
