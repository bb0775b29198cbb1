"""Nightly regression check: tonight's rows against the last good night's, paired on the same episodes.

A row regresses when the anytime-valid sequential test (videopolicy.evaluate.sequential, decision
"worse", alpha `ALPHA`) on its paired outcomes (tonight - last good, in round order) decides it is worse:
a regression is declared only with the promised error rate, also when the night ran adaptively and
stopped early; lo/hi are that test's anytime-valid interval (one-sided: [-1, hi]); sanity rows must also land
where their row kind says they always must (videopolicy.row_kinds: expert >= 0.9, random <= 0.1).
A night without regressions is tagged good and becomes the next baseline.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from videopolicy.evaluate.sequential import compare_rows
from videopolicy.evaluate.stats import paired_difference
from videopolicy.row_kinds import ROW_KINDS

STATUS_TAG = "videopolicy.nightly_status"  # good | regressed, on the sweep (parent) run
ALPHA = 0.05  # the regression gate's error level (false alarms per row per night, under any monitoring)


@dataclass
class RowVerdict:
    row: str
    rate: float
    baseline_rate: Optional[float]
    delta: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    problem: Optional[str]


def sweep_episodes(client, sweep_run_id: str) -> pd.DataFrame:
    """Every row's per-episode results logged under a sweep run (eval/episodes.parquet of each child)."""
    exp = client.get_run(sweep_run_id).info.experiment_id
    children = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{sweep_run_id}' "
                                                       f"and tags.`videopolicy.level` = 'row'", max_results=1000)
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for child in children:
            try:
                path = client.download_artifacts(child.info.run_id, "eval/episodes.parquet", tmp)
            except Exception:  # noqa: BLE001 - a failed row has no results; the comparison says so
                continue
            frames.append(pd.read_parquet(path).assign(row=child.data.tags["videopolicy.row"]))
            Path(path).unlink()
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def last_good_night(client, experiment: str, before_sweep: str) -> Optional[str]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{STATUS_TAG}` = 'good' and "
                              "tags.`videopolicy.level` = 'sweep'", order_by=["attributes.start_time DESC"])
    runs = [r for r in runs if r.data.tags.get("videopolicy.sweep") != before_sweep]
    return runs[0].info.run_id if runs else None


def compare(tonight: pd.DataFrame, baseline: Optional[pd.DataFrame],
            kinds: Optional[dict[str, str]] = None) -> list[RowVerdict]:
    """Verdicts per row of tonight. `kinds`: row -> row kind (train.method), which says where a sanity row
    must land; a row missing from it is taken to be of the kind it is named after, if any."""
    kinds = kinds or {}
    verdicts = []
    for row, part in tonight.groupby("row", sort=False):
        done = part[part["status"] == "done"]
        rate = float(done["success"].mean()) if len(done) else float("nan")
        problem = None
        kind = ROW_KINDS.get(kinds.get(row, row))
        if kind is not None and kind.expected_success is not None:
            low, high = kind.expected_success
            if not low <= rate <= high:
                problem = f"sanity row out of bounds: {rate:.2f} not in [{low}, {high}] (the harness is broken)"
        if baseline is None or baseline.empty or row not in set(baseline["row"]):
            verdicts.append(RowVerdict(row, rate, None, None, None, None, problem))
            continue
        both = pd.concat([part.assign(row="tonight"), baseline[baseline["row"] == row].assign(row="baseline")])
        d = paired_difference(both, "tonight", "baseline")
        av = compare_rows(both, "tonight", "baseline", ALPHA, "worse")
        if problem is None and av.decided:
            problem = (f"regressed: {d.delta:+.2f} (anytime-valid interval [{av.lo:+.2f}, {av.hi:+.2f}], e-value "
                       f"{av.e_value:.3g} >= {1 / ALPHA:.0f}) against the last good night")
        base = baseline[(baseline["row"] == row) & (baseline["status"] == "done")]["success"].mean()
        verdicts.append(RowVerdict(row, rate, float(base), d.delta, av.lo, av.hi, problem))
    return verdicts
