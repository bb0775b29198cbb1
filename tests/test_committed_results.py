"""Every committed results directory (results/<study>/, written by `sweep_ablations.py --results`) is
consistent: the table recomputed from its episodes, every row present, counts and pairing right, every
stage finished, provenance complete (videopolicy.report.results). Nothing is rerun."""

from __future__ import annotations

from pathlib import Path

import pytest
from videopolicy.report.results import check_results

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent for p in (ROOT / "results").glob("*/provenance.json"))


def test_there_are_committed_results():
    assert COMMITTED, "results/ holds no study (results/<name>/provenance.json)"


@pytest.mark.parametrize("directory", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_results_are_consistent(directory):
    assert check_results(directory) == []
