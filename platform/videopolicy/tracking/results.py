"""A row's evaluation results into its MLflow run: metrics, the success table, episodes, videos."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd

from videopolicy.evaluate.stats import row_summary, success_table
from videopolicy.tracking.runs import RunRef, Tracker

TABLE_FILE = "eval/success_table.json"  # one table per row run (few, large tables)
EPISODES_FILE = "episodes.parquet"  # under eval/


def _metric_key(name: str) -> str:
    """MLflow metric keys allow alphanumerics, _ - . / and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def log_row_results(tracker: Tracker, row: str, df: pd.DataFrame, videos: bool = True,
                    ref: RunRef | None = None) -> dict[str, float]:
    """Log one row's per-episode results (the harness's DataFrame, all rows or just this one).

    - metrics (one batch): success_rate with success_rate_lo/hi (mean over tasks, 95% interval),
      episodes, infra_errors, and success/<task> per task
    - table `eval/success_table.json`: task, n, successes, rate, lo, hi, infra_errors
    - artifact `eval/episodes.parquet`: every record of the row, as given
    - artifacts `videos/<task>/...`: the rollout videos the harness saved (video_path)

    Returns the metrics logged.
    """
    part = df[df["row"] == row] if "row" in df.columns else df.assign(row=row)
    if part.empty:
        raise ValueError(f"log_row_results: no episodes for row {row!r}")
    ref = ref or tracker.row_run(row)
    table = success_table(part).drop(columns=["row"])
    summary = row_summary(part).iloc[0]
    metrics = {"success_rate": summary["mean"], "success_rate_lo": summary["lo"], "success_rate_hi": summary["hi"],
               "episodes": float(summary["n_episodes"]), "infra_errors": float(summary["infra_errors"])}
    metrics.update({_metric_key(f"success/{t.task}"): t.rate for t in table.itertuples()})
    tracker.log_metrics(ref, metrics)
    tracker.log_table(ref, table, TABLE_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / EPISODES_FILE
        part.to_parquet(path, index=False)
        tracker.log_artifact(ref, path, "eval")
    if videos and "video_path" in part.columns:
        for rec in part.dropna(subset=["video_path"]).itertuples():
            if Path(rec.video_path).is_file():
                tracker.log_artifact(ref, rec.video_path, f"videos/{_metric_key(str(rec.task))}")
    return metrics


def log_report(tracker: Tracker, files: dict[str, Path] | list[Path], table: pd.DataFrame | None = None,
               ref: RunRef | None = None) -> None:
    """The sweep's report files (ablation CSV/Markdown/HTML, report.html) on the parent run under
    `report/`, and optionally the ablation table as one MLflow table."""
    ref = ref or tracker.sweep_run()
    for path in (files.values() if isinstance(files, dict) else files):
        tracker.log_artifact(ref, path, "report")
    if table is not None:
        tracker.log_table(ref, table, "eval/ablation_table.json")
