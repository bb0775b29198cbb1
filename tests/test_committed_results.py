"""Every committed results directory (results/<study>/, written by `sweep_ablations.py --results`) is
consistent: the table recomputed from its episodes, every row present, counts and pairing right, every
stage finished, provenance complete (videopolicy.report.results). Nothing is rerun."""

from __future__ import annotations

import json
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


# results/<name>/ assembled from pieces, for a sweeps/<name>.yaml: the study's table as its sweep file says
STUDIES = [d for d in COMMITTED if (ROOT / "sweeps" / f"{d.name}.yaml").is_file() and json.loads(
    (d / "provenance.json").read_text())["command"].startswith("python jobs/assemble_results.py ")]


@pytest.mark.parametrize("directory", STUDIES, ids=[p.name for p in STUDIES])
def test_a_study_table_is_its_sweep_file_assembled_from_the_committed_pieces(directory, tmp_path, monkeypatch):
    """Its assembly command, run again (only the output moved), gives the same table and episodes: every
    piece is committed, and every row ran the stages the sweep file plans now (a budget changed in the file
    but not rerun fails here, naming the row and both stages)."""
    import importlib.util
    import shlex

    import pandas as pd

    argv = shlex.split(json.loads((directory / "provenance.json").read_text())["command"])[2:]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    spec = importlib.util.spec_from_file_location("job_assemble_results", ROOT / "jobs" / "assemble_results.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    monkeypatch.chdir(ROOT)
    assert job.main(argv) == 0
    assert pd.read_csv(tmp_path / "again" / "ablation.csv").equals(pd.read_csv(directory / "ablation.csv"))
    again = pd.read_parquet(tmp_path / "again" / "episodes.parquet")
    assert again.equals(pd.read_parquet(directory / "episodes.parquet"))


@pytest.mark.parametrize("directory", CURVES, ids=[p.name for p in CURVES])
def test_committed_success_curves_are_consistent(directory):
    """A success-vs-steps curve (jobs/success_curve.py): every (step, scenes, task) count, rate and Wilson
    interval recomputed from its episodes; the unseen-scene points ran the same episodes; provenance named."""
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
