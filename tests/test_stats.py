"""Evaluation statistics on synthetic per-episode frames with KNOWN outcomes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from videopolicy.evaluate.stats import (
    EpisodeMismatchError,
    mcnemar_exact,
    paired_difference,
    row_summary,
    success_table,
    wilson,
)


def records(row: str, outcomes: dict[str, list[bool]], status: dict[tuple[str, int], str] | None = None) -> list[dict]:
    """One harness record per episode; `status` marks (task, index) records as infra_error."""
    recs = []
    for task, wins in outcomes.items():
        for i, won in enumerate(wins):
            st = (status or {}).get((task, i), "done")
            recs.append(dict(row=row, suite="robosuite", task=task, scene="default", index=i, seed=i,
                             episode_key=f"robosuite/{task}/default/{i}", policy_id=row, policy_seed=0,
                             protocol_hash="h", status=st, success=bool(won) and st == "done", steps=10,
                             failure_reason=None, video_path=None, attempts=1, wall_s=0.1))
    return recs


def test_wilson_matches_known_values():
    assert wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    z2 = 1.959963984540054 ** 2
    lo, hi = wilson(0, 10)  # closed form at k = 0: [0, z^2 / (n + z^2)]
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2), abs=1e-12)
    lo, hi = wilson(10, 10)
    assert lo == pytest.approx(10 / (10 + z2), abs=1e-12) and hi == 1.0
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(63, 100)
    assert lo < 0.63 < hi and hi - lo < wilson(6, 10)[1] - wilson(6, 10)[0]  # more episodes, narrower
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_success_table_counts_only_done_episodes():
    df = pd.DataFrame(records("a", {"Lift": [1, 1, 1, 0, 0], "Stack": [1, 0, 0, 0, 0]},
                              status={("Lift", 3): "infra_error", ("Stack", 0): "infra_error"}))
    t = success_table(df).set_index("task")
    assert t.loc["Lift", ["n", "successes", "infra_errors"]].tolist() == [4, 3, 1]
    assert t.loc["Stack", ["n", "successes", "infra_errors"]].tolist() == [4, 0, 1]  # the infra "win" is not counted
    assert t.loc["Lift", "rate"] == 0.75
    assert (t.loc["Lift", "lo"], t.loc["Lift", "hi"]) == pytest.approx(wilson(3, 4))


def test_row_summary_is_the_mean_over_tasks_with_an_interval():
    df = pd.DataFrame(records("a", {"Lift": [1] * 8 + [0] * 2, "Stack": [1] * 4 + [0] * 6})
                      + records("b", {"Lift": [1] * 2 + [0] * 8, "Stack": [1] * 1 + [0] * 19}))
    s = row_summary(df).set_index("row")
    assert s.loc["a", "mean"] == pytest.approx(0.6)
    assert (s.loc["a", "lo"], s.loc["a", "hi"]) == pytest.approx(wilson(12, 20))  # equal n: the pooled Wilson
    # unequal episodes per task: every task still weighs the same (0.2 and 0.05), not the pooled 3/30
    assert s.loc["b", "mean"] == pytest.approx(0.125)
    assert s.loc["b", "lo"] < 0.125 < s.loc["b", "hi"]
    assert s.loc["b", "n_episodes"] == 30 and s.loc["b", "n_tasks"] == 2
    seen = row_summary(df, tasks=["Lift"]).set_index("row")
    assert seen.loc["a", "mean"] == pytest.approx(0.8)


def test_mcnemar_exact_p_values():
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1500, 1400) < 0.1  # large counts: exact integer arithmetic, no overflow


def test_paired_difference_on_known_pairs():
    # 40 episodes: a solves 30, b solves 20; 12 episodes only a solves, 2 only b solves
    a = [1] * 18 + [1] * 12 + [0] * 2 + [0] * 8
    b = [1] * 18 + [0] * 12 + [1] * 2 + [0] * 8
    df = pd.DataFrame(records("a", {"Lift": a}) + records("b", {"Lift": b}))
    d = paired_difference(df, "a", "b", n_boot=4000, seed=1)
    assert d.delta == pytest.approx(0.25) and d.n_pairs == 40 and (d.a_only, d.b_only) == (12, 2)
    assert d.mcnemar_p == pytest.approx(mcnemar_exact(12, 2))
    assert 0 < d.lo < 0.25 < d.hi  # a is better, and the interval says so
    # bootstrap width ~ the normal approximation of a paired mean: 2 * 1.96 * sd(diff) / sqrt(n)
    diff = np.array(a) - np.array(b)
    assert d.hi - d.lo == pytest.approx(2 * 1.96 * diff.std() / math.sqrt(len(diff)), rel=0.2)
    assert paired_difference(df, "a", "b", n_boot=4000, seed=1) == d  # seeded: reproducible
    rev = paired_difference(df, "b", "a", n_boot=4000, seed=1)
    assert rev.delta == pytest.approx(-0.25) and (rev.a_only, rev.b_only) == (2, 12)


def test_identical_rows_have_zero_delta():
    wins = {"Lift": [1, 0, 1, 1, 0], "Stack": [0, 0, 1, 0, 1]}
    df = pd.DataFrame(records("a", wins) + records("b", wins))
    d = paired_difference(df, "a", "b")
    assert (d.delta, d.lo, d.hi, d.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)


def test_paired_difference_averages_per_task_and_drops_infra_pairs():
    df = pd.DataFrame(records("a", {"Lift": [1, 1, 1, 1], "Stack": [1, 0, 0, 0, 0, 0, 0, 0]},
                              status={("Lift", 0): "infra_error"})
                      + records("b", {"Lift": [1, 0, 0, 0], "Stack": [0] * 8}))
    d = paired_difference(df, "a", "b")
    assert d.dropped == 1 and d.n_pairs == 11
    assert d.delta == pytest.approx((3 / 3 + 1 / 8) / 2)  # mean over tasks of the per-task paired delta (Lift: 3 pairs left)


def test_different_episode_sets_raise_a_clear_error():
    df = pd.DataFrame(records("a", {"Lift": [1, 0, 1]}) + records("b", {"Lift": [1, 0]}))
    with pytest.raises(EpisodeMismatchError, match=r"1 episode\(s\) only in 'a'.*robosuite/Lift/default/2"):
        paired_difference(df, "a", "b")
    with pytest.raises(EpisodeMismatchError, match="no episodes for row 'c'"):
        paired_difference(df, "a", "c")
    dup = pd.DataFrame(records("a", {"Lift": [1, 0]}) * 2 + records("b", {"Lift": [1, 0]}))
    with pytest.raises(EpisodeMismatchError, match="duplicate episode_key"):
        paired_difference(dup, "a", "b")
