"""Evaluation statistics on synthetic per-episode frames with KNOWN outcomes, and the paired interval
against published worked examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from videopolicy.evaluate.stats import (
    EpisodeMismatchError,
    mcnemar_exact,
    newcombe_paired,
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


# Newcombe RG (1998), Statist. Med. 17:2635-2650, Table III: 95% limits of method 10 (hybrid score,
# no continuity correction) for its 13 example tables (e, f, g, h), theta = (f - g) / n, 4 decimals.
# The paper itself was not reachable from this machine: these rows are a public transcription of its
# method-10 column, confirmed here by reproducing all 13 with the formula AND with the independent
# bisection-based computation below (a transcription error would have to fool both).
NEWCOMBE_1998_TABLE_III = [
    ((36, 12, 2, 0), (0.0569, 0.3404)),
    ((20, 12, 2, 16), (0.0562, 0.3292)),
    ((18, 12, 2, 18), (0.0562, 0.3290)),
    ((36, 14, 0, 0), (0.1528, 0.4167)),
    ((35, 14, 0, 1), (0.1461, 0.4175)),
    ((18, 14, 0, 18), (0.1441, 0.3963)),
    ((2, 97, 1, 0), (0.8721, 0.9854)),
    ((1, 97, 1, 1), (0.8736, 0.9850)),
    ((0, 29, 1, 0), (0.6666, 0.9882)),
    ((2, 98, 0, 0), (0.9178, 0.9945)),
    ((1, 98, 0, 1), (0.9171, 0.9916)),
    ((0, 30, 0, 0), (0.8395, 1.0)),
    ((54, 0, 0, 0), (-0.0664, 0.0664)),
]


@pytest.mark.parametrize("table,limits", NEWCOMBE_1998_TABLE_III)
def test_newcombe_paired_reproduces_newcombe_1998_table_iii(table, limits):
    e, f, g, h = table
    theta, lo, hi = newcombe_paired(e, f, g, h)
    assert theta == pytest.approx((f - g) / (e + f + g + h))
    # within one unit of the published 4th decimal (the paper rounds 0.87367 of (1, 97, 1, 1) to 0.8736)
    assert (lo, hi) == pytest.approx(limits, abs=1.0001e-4)


def test_newcombe_paired_reproduces_fagerland_lydersen_laake_2014_cavo_example():
    # Cavo et al. (2012) complete response before/after consolidation therapy, 2x2 = [[59, 6], [16, 80]],
    # as analysed by Fagerland, Lydersen & Laake (2014, Stat Med 33:2850; and their 2017 book, ch. 8):
    # Newcombe square-and-add interval -0.0621 (-0.1186 to -0.0046).
    theta, lo, hi = newcombe_paired(59, 6, 16, 80)
    assert (round(theta, 4), round(lo, 4), round(hi, 4)) == (-0.0621, -0.1186, -0.0046)


def _wilson_by_bisection(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson limits as the roots of (k/n - pi)^2 = z^2 pi (1 - pi) / n, found by bisection."""
    p = k / n

    def root(a: float, b: float) -> float:  # f(a), f(b) of opposite signs (or a root at an end)
        f = lambda x: (p - x) ** 2 - z * z * x * (1 - x) / n  # noqa: E731
        for _ in range(200):
            m = (a + b) / 2
            if (f(a) > 0) == (f(m) > 0):
                a = m
            else:
                b = m
        return (a + b) / 2

    return (0.0 if k == 0 else root(0.0, p)), (1.0 if k == n else root(1.0, p))


def _newcombe_independent(e: int, f: int, g: int, h: int, z: float = 1.959963984540054):
    """A second, differently written method 10: Wilson limits by bisection, phi from the marginal
    sums written as a determinant, the limits as the distance of 2-vectors under a correlation."""
    n = e + f + g + h
    m1, m2 = e + f, e + g  # successes of a, of b
    (l1, u1), (l2, u2) = _wilson_by_bisection(m1, n, z), _wilson_by_bisection(m2, n, z)
    det = np.linalg.det(np.array([[e, f], [g, h]], dtype=float))
    marg = [m1, n - m1, m2, n - m2]
    cc = det - n / 2 if det > n / 2 else min(det, 0.0)
    phi = 0.0 if 0 in marg else cc / math.sqrt(np.prod(np.array(marg, dtype=float)))
    cov = np.array([[1.0, -phi], [-phi, 1.0]])
    down = np.array([m1 / n - l1, u2 - m2 / n])
    up = np.array([u1 - m1 / n, m2 / n - l2])
    theta = (f - g) / n
    return theta - math.sqrt(down @ cov @ down), theta + math.sqrt(up @ cov @ up)


def test_newcombe_paired_agrees_with_an_independent_computation():
    tables = [t for t, _ in NEWCOMBE_1998_TABLE_III] + [
        (1, 1, 7, 12), (5, 1, 3, 2), (0, 0, 0, 1), (0, 1, 0, 0), (0, 0, 1, 0), (2, 0, 0, 0), (0, 0, 0, 2),
        (3, 4, 0, 0), (0, 0, 5, 5), (40, 0, 0, 40), (0, 20, 20, 0), (10, 3, 9, 1)]
    for t in tables:
        _, lo, hi = newcombe_paired(*t)
        assert (lo, hi) == pytest.approx(_newcombe_independent(*t), abs=1e-9), t


def test_equal_outcomes_at_two_pairs_give_a_wide_honest_interval():
    # the issue: 2 episodes, all outcomes equal, used to print +0.00 [+0.00, +0.00]
    z2 = 1.959963984540054 ** 2
    for table in [(2, 0, 0, 0), (0, 0, 0, 2), (1, 0, 0, 1)]:
        theta, lo, hi = newcombe_paired(*table)
        assert theta == 0.0 and lo < 0.0 < hi
        assert hi - lo > 1.0, table  # two pairs say little: the interval spans more than half of [-1, 1]
    theta, lo, hi = newcombe_paired(2, 0, 0, 0)
    assert (lo, hi) == pytest.approx((-z2 / (2 + z2), z2 / (2 + z2)))  # the Wilson half-width at k = n
    wins = {"Lift": [1, 0]}  # through the frame-level API as the table calls it
    d = paired_difference(pd.DataFrame(records("a", wins) + records("b", wins)), "a", "b")
    assert d.delta == 0.0 and d.lo < -0.5 and d.hi > 0.5 and d.mcnemar_p == 1.0


def test_interval_narrows_as_pairs_accumulate():
    widths = []
    for k in (1, 4, 16, 64):  # the same proportions (e, f, g, h) = k * (5, 2, 1, 2)
        theta, lo, hi = newcombe_paired(5 * k, 2 * k, 1 * k, 2 * k)
        assert theta == pytest.approx(0.1) and lo < 0.1 < hi
        widths.append(hi - lo)
    assert all(a > b for a, b in zip(widths, widths[1:])), widths
    assert widths[-1] < 0.2 < widths[0]


def _coverage(n: int, cells: tuple[float, float, float, float], reps: int, seed: int) -> int:
    """How many of `reps` simulated paired samples of size n give an interval holding the true theta."""
    rng = np.random.default_rng(seed)
    theta = cells[1] - cells[2]
    counts = rng.multinomial(n, cells, size=reps)
    hits = 0
    for e, f, g, h in counts:
        _, lo, hi = newcombe_paired(e, f, g, h)
        hits += lo <= theta <= hi
    return hits


def test_coverage_on_simulated_paired_bernoulli_is_near_95_percent():
    # paired success of two policies on n episodes: (both, only a, only b, neither), positively
    # correlated as real rows are (same scenes), small n as in a smoke sweep and larger
    points = [(10, (0.5, 0.2, 0.1, 0.2)), (20, (0.6, 0.15, 0.05, 0.2)), (40, (0.3, 0.1, 0.1, 0.5)),
              (40, (0.7, 0.05, 0.15, 0.1))]
    reps = 1000
    hits = [_coverage(n, cells, reps, seed=1234 + i) for i, (n, cells) in enumerate(points)]
    assert hits == [_coverage(n, cells, reps, seed=1234 + i) for i, (n, cells) in enumerate(points)]  # seeded
    total = sum(hits) / (reps * len(points))
    # Newcombe reports mean coverage ~0.95 for method 10; binomial sd of this estimate ~0.0035
    assert 0.935 <= total <= 0.975, hits
    assert min(hits) >= 0.91 * reps, hits  # and no point badly under-covered


def test_paired_difference_on_known_pairs():
    # 40 episodes: a solves 30, b solves 20; 12 episodes only a solves, 2 only b solves
    a = [1] * 18 + [1] * 12 + [0] * 2 + [0] * 8
    b = [1] * 18 + [0] * 12 + [1] * 2 + [0] * 8
    df = pd.DataFrame(records("a", {"Lift": a}) + records("b", {"Lift": b}))
    d = paired_difference(df, "a", "b")
    assert d.delta == pytest.approx(0.25) and d.n_pairs == 40 and (d.a_only, d.b_only) == (12, 2)
    assert (d.both, d.neither) == (18, 8)
    assert d.mcnemar_p == pytest.approx(mcnemar_exact(12, 2))
    assert (d.lo, d.hi) == pytest.approx(newcombe_paired(18, 12, 2, 8)[1:])
    assert 0 < d.lo < 0.25 < d.hi  # a is better, and the interval says so
    rev = paired_difference(df, "b", "a")
    assert rev.delta == pytest.approx(-0.25) and (rev.a_only, rev.b_only) == (2, 12)
    assert (rev.lo, rev.hi) == pytest.approx((-d.hi, -d.lo))  # swapping the rows mirrors the interval


def test_equal_tasks_pool_the_counts_and_unequal_tasks_weigh_each_task_the_same():
    wa = {"Lift": [1, 1, 1, 0, 0, 1], "Stack": [1, 0, 0, 0, 0, 0]}
    wb = {"Lift": [1, 0, 1, 0, 1, 0], "Stack": [0, 0, 0, 0, 0, 1]}
    d = paired_difference(pd.DataFrame(records("a", wa) + records("b", wb)), "a", "b")
    assert (d.both, d.a_only, d.b_only, d.neither) == (2, 3, 2, 5)
    assert (d.lo, d.hi) == pytest.approx(newcombe_paired(2, 3, 2, 5)[1:])  # equal n per task: the pooled table
    # 2 pairs in Stack, 8 in Lift: each task still weighs 1/2, so theta of the weighted table = delta
    wa = {"Lift": [1] * 8, "Stack": [0, 0]}
    wb = {"Lift": [0] * 8, "Stack": [0, 0]}
    d = paired_difference(pd.DataFrame(records("a", wa) + records("b", wb)), "a", "b")
    assert d.delta == pytest.approx(0.5)
    n_eff = 4 / (1 / 8 + 1 / 2)  # 6.4 pairs: the weighted table is (0, 3.2, 0, 3.2)
    assert (d.lo, d.hi) == pytest.approx(newcombe_paired(0, n_eff / 2, 0, n_eff / 2)[1:])
    assert d.lo < 0.5 < d.hi


def test_identical_rows_have_zero_delta_and_an_interval_around_it():
    wins = {"Lift": [1, 0, 1, 1, 0], "Stack": [0, 0, 1, 0, 1]}
    df = pd.DataFrame(records("a", wins) + records("b", wins))
    d = paired_difference(df, "a", "b")
    assert (d.delta, d.mcnemar_p) == (0.0, 1.0)
    assert d.lo == pytest.approx(-d.hi) and 0.1 < d.hi < 0.5  # 10 pairs, no discordant one: not [0, 0]


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
