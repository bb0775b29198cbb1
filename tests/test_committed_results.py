"""Every committed results directory (results/<study>/, written by `sweep_ablations.py --results`) is
consistent: the table recomputed from its episodes, every row present, counts and pairing right, every
stage finished, provenance complete (videopolicy.report.results). Nothing is rerun."""

from __future__ import annotations

from pathlib import Path

import pytest
from videopolicy.report.results import check_results

ROOT = Path(__file__).resolve().parents[1]
CURVES = sorted(p.parent for p in (ROOT / "results").glob("*/curve.csv"))  # success vs steps (jobs/success_curve.py)
COMMITTED = sorted(p.parent for p in (ROOT / "results").glob("*/provenance.json") if p.parent not in CURVES)


def test_there_are_committed_results():
    assert COMMITTED, "results/ holds no study (results/<name>/provenance.json)"


@pytest.mark.parametrize("directory", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_results_are_consistent(directory):
    assert check_results(directory) == []



@pytest.mark.parametrize("directory", CURVES, ids=[p.name for p in CURVES])
def test_committed_success_curves_are_consistent(directory):
    """A success-vs-steps curve (jobs/success_curve.py): every (step, scenes, task) count, rate and Wilson
    interval recomputed from its episodes; the unseen-scene points ran the same episodes; provenance named."""
    import json

    import pandas as pd
    from videopolicy.report.results import wilson95

    curve = pd.read_csv(directory / "curve.csv")
    episodes = pd.read_parquet(directory / "episodes.parquet")
    assert len(curve) == episodes.groupby(["step", "scenes", "task"]).ngroups
    for r in curve.itertuples():
        g = episodes[(episodes.step == r.step) & (episodes.scenes == r.scenes) & (episodes.task == r.task)]
        k = int(g.success.astype(bool).sum())
        assert (r.n, r.successes) == (len(g), k)
        assert (r.rate, r.lo, r.hi) == pytest.approx((k / len(g), *wilson95(k, len(g))))
    unseen = episodes[episodes.scenes == "unseen"]
    keys = {tuple(sorted(zip(g.episode_key, g.seed))) for _, g in unseen.groupby("step")}
    assert len(keys) == 1, "the unseen-scene points were not evaluated on the same episodes"
    prov = json.loads((directory / "provenance.json").read_text())
    assert prov["command"].startswith("python jobs/success_curve.py") and len(prov["tags"]["videopolicy.git.sha"]) == 40
