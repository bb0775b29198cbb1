"""The sweep end to end at CI budgets (tests/sweeps/ci.yaml: same code path as sweeps/smoke.yaml):
real robosuite demos, Ray Data clips, Ray Train stages, rollouts on Ray actors, a real MLflow server the
platform starts, the ablation table and report. The first driver is killed (SIGKILL) once the shared
stage-1 model exists; the same command then finishes without redoing a finished stage or duplicating an
MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = ["two_stage", "half_tasks", "joint", "scripted_expert", "random"]


def _driver(store: Path, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "jobs/sweep_ablations.py", "--sweep", "tests/sweeps/ci.yaml",
                             "--store", str(store)], cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_sweep_end_to_end_survives_a_killed_driver(ray_cluster, tmp_path):
    from mlflow import MlflowClient

    from videopolicy.tracking import ensure_tracking, stop_tracking

    store = tmp_path / "store"
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    env.pop("MLFLOW_TRACKING_URI", None)  # the platform starts its own server in the store
    try:
        # 1. First driver: killed as soon as the shared stage-1 model is finished.
        first = _driver(store, env, tmp_path / "first.log")
        while first.poll() is None and not list(store.glob("stage1/*/_COMPLETE")):
            time.sleep(1)
        assert first.poll() is None, f"driver ended early:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        finished = {p.parent.relative_to(store).as_posix(): p.stat().st_mtime_ns for p in store.glob("*/*/_COMPLETE")}
        assert any(k.startswith("stage1/") for k in finished)

        # 2. The same command again: finishes, redoing nothing that had finished.
        second = subprocess.run([sys.executable, "jobs/sweep_ablations.py", "--sweep", "tests/sweeps/ci.yaml",
                                 "--store", str(store), "--results", str(tmp_path / "results")],
                                cwd=ROOT, env=env, capture_output=True, text=True)
        assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
        (report_dir,) = [p.parent for p in store.glob("reports/*/stages.json")]
        stages = {s["stage"]: s for s in json.loads((report_dir / "stages.json").read_text())["stages"]}
        assert all(s["status"] in ("done", "reused") for s in stages.values()), stages
        for sid, mtime in finished.items():
            if sid.split("/")[0] in ("data", "stage1", "stage2", "eval"):
                assert stages[sid]["status"] == "reused", f"{sid} was redone"
                assert (store / sid / "_COMPLETE").stat().st_mtime_ns == mtime
                assert stages[sid]["ran_seconds"] > 0  # its wall time from the first driver's run
        # the --results copy (what a study commits) passes the consistency check
        from videopolicy.report.results import check_results

        assert check_results(tmp_path / "results") == []
        # every training stage's learning curve, as its MLflow run has it (stage 1: log_every 2 of 4 steps)
        curves = pd.read_csv(tmp_path / "results" / "curves.csv")
        train_stages = {s for s in stages if s.split("/")[0] in ("stage1", "stage2")}
        assert set(curves["stage"]) == train_stages
        (stage1_id,) = [s for s in train_stages if s.startswith("stage1/")]
        assert list(curves[curves.stage == stage1_id]["step"]) == [2, 4]

        # 3. The table has every row, on the same episodes; the sanity rows land where they must.
        episodes = pd.read_parquet(report_dir / "episodes.parquet")
        assert sorted(set(episodes["row"])) == sorted(ROWS)
        keys = {row: sorted(g["episode_key"]) for row, g in episodes.groupby("row")}
        assert all(k == keys["two_stage"] for k in keys.values()), "rows were not evaluated on the same episodes"
        assert (episodes["status"] == "done").all()
        assert episodes[episodes.row == "scripted_expert"]["success"].mean() >= 0.9
        assert episodes[episodes.row == "random"]["success"].sum() == 0
        for row in ROWS:
            assert row in second.stdout  # the printed ablation table
        html = Path(json.loads((report_dir / "summary.json").read_text())["report"]).read_text()
        assert all(row in html for row in ROWS)
        # a pipeline check (ci.yaml, like smoke.yaml) says so wherever its table goes
        assert second.stdout.count("PIPELINE CHECK, not results") == 2  # above the table and in the last lines
        assert "PIPELINE CHECK, not results" in html and "<title>Pipeline check:" in html
        assert (report_dir / "ablation.md").read_text().startswith("> **PIPELINE CHECK, not results")

        # 4. MLflow: one parent, one child per row, one run per stage; tables logged; no duplicates.
        client = MlflowClient(ensure_tracking(store))
        exp = client.get_experiment_by_name("ci")
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        by_level: dict[str, list] = {}
        for r in runs:
            by_level.setdefault(r.data.tags.get("videopolicy.level"), []).append(r)
        assert len(by_level["sweep"]) == 1
        assert sorted(r.data.tags["videopolicy.row"] for r in by_level["row"]) == sorted(ROWS)
        stage_keys = [r.data.tags["videopolicy.stage_key"] for r in by_level["stage"]]
        assert sorted(stage_keys) == sorted(set(stage_keys)) and set(stage_keys) == set(stages)
        parent = by_level["sweep"][0].info.run_id
        assert all(r.data.tags["mlflow.parentRunId"] == parent for r in by_level["row"])
        expert = next(r for r in by_level["row"] if r.data.tags["videopolicy.row"] == "scripted_expert")
        assert expert.data.metrics["success_rate"] >= 0.9
        assert expert.data.params["train_mode"] == "scripted_expert"
        table = client.download_artifacts(expert.info.run_id, "eval/success_table.json", str(tmp_path))
        assert "Lift" in Path(table).read_text()
        stage1 = next(r for r in by_level["stage"] if r.data.tags["videopolicy.stage_key"].startswith("stage1/"))
        history = client.get_metric_history(stage1.info.run_id, "stage1/loss")
        assert [m.step for m in history] == [2, 4]
        assert list(curves[curves.stage == stage1_id]["loss"]) == pytest.approx([m.value for m in history], rel=1e-9)
        assert all(f'data-stage="{s}"' in html for s in train_stages)  # a chart each in the report
    finally:
        stop_tracking(store)
