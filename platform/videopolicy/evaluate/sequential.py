"""Anytime-valid comparison of two rows on paired binary outcomes: a test that may be checked after
every episode and stopped as soon as it is decided, at the promised error rate.

For pair i (row a's outcome A_i, the reference's B_i, both 0/1, on the same episode) let
D_i = A_i - B_i in {-1, 0, 1} and Delta = E[D] (the paired success difference).

The decision: an e-process over the discordant pairs, a sequential McNemar test by Robbins' method of
mixtures (Jeffreys / Krichevsky-Trofimov mixture over the probability q that the row wins a discordant
pair; `log_evalue_at_zero`; see Ramdas, Gruenwald, Vovk & Shafer, "Game-theoretic statistics and safe
anytime-valid inference", Statistical Science 38(4), 2023). Under the null (E[D_i | past] <= 0 for
"better", >= 0 for "worse", = 0 for "either") it is a non-negative supermartingale starting at 1, so by
Ville's inequality P(it ever reaches 1/alpha) <= alpha: it may be checked after every episode, and the
evaluation stopped whenever, without inflating the error rate.

The interval: the betting confidence sequence of Waudby-Smith & Ramdas, "Estimating means of bounded
random variables by betting", JRSS-B 86(1), 2024 (arXiv 2010.09686), on X_i = (D_i + 1) / 2 in [0, 1]:
for a candidate mean m,

    K+_t(m) = prod_{i<=t} (1 + l+_i(m) (X_i - m)),   K-_t(m) = prod_{i<=t} (1 - l-_i(m) (X_i - m))

with predictable aGRAPA bets (WSR section 5.1, a first-order Kelly bet, from pairs 1..i-1 only):
l+_i(m) = clip((mu_{i-1} - m) / (s2_{i-1} + (mu_{i-1} - m)^2), 0, c/m) (l-_i: m - mu, 0, c/(1-m)),
mu_{i-1} = (1/2 + sum_{j<i} X_j) / i, s2_{i-1} = (1/4 + sum_{j<i} (X_j - mu_j)^2) / i. The hedged process
K_t(m) = max(theta K+_t(m), (1 - theta) K-_t(m)) gives C_t = {m : max_{s<=t} K_s(m) < 1/alpha} (a
running intersection), reported in Delta units 2m - 1. theta follows the decision: better 1 (a
one-sided [lo, 1]), worse 0 ([-1, hi]), either 1/2 (two-sided, alpha/2 a side).

The two are separate anytime-valid procedures at the same alpha (the mixture test needs fewer episodes
than testing with the CS: bench/adaptive_eval.py), so near the boundary a row can be decided while the CS
still touches 0, or the reverse; the table labels which is which. Coverage of Delta by the CS assumes a
common mean per pair; episodes run in rounds (one episode of every task per round, `round_order`), so at
the end of every round the pair mean is the mean over tasks.

This is not STEP (Snyder et al., RSS 2025, arXiv 2503.10966), which precomputes near-optimal rejection
regions for a given maximum and alternative; the mixture needs neither.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import pandas as pd

DECISIONS = ("better", "worse", "either")
BET_CAP = 0.9  # c: bets are at most c/m (c/(1-m)) of the capital; any c < 1 keeps validity (bench: c sets the speed)

#: How tables and reports name the anytime-valid interval.
AV_INTERVAL_LABEL = ("anytime-valid confidence sequence for the paired difference, valid under continuous "
                     "monitoring (betting CS, Waudby-Smith & Ramdas 2024, aGRAPA bets)")


def _theta(decision: str) -> float:
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    return {"better": 1.0, "worse": 0.0, "either": 0.5}[decision]


def log_capital(x: np.ndarray, m: np.ndarray, cap: float = BET_CAP) -> tuple[np.ndarray, np.ndarray]:
    """log K+_t(m), log K-_t(m) for every t, vectorised.

    x: (..., n) observations in [0, 1] (the last axis is time; leading axes are independent sequences);
    m: broadcastable to x's leading shape + (1,) (e.g. a scalar, or (G, 1) for a grid against x of (n,)).
    Returns two arrays of shape broadcast(x, m): the log capital after each observation.
    """
    x = np.asarray(x, dtype=float)
    m = np.asarray(m, dtype=float)
    n = x.shape[-1]
    t = np.arange(1, n + 1, dtype=float)
    csum = np.cumsum(x, axis=-1)
    mu_after = (0.5 + csum) / (t + 1)  # mu_j: including X_j
    sq = np.cumsum((x - mu_after) ** 2, axis=-1)
    pad = [(0, 0)] * (x.ndim - 1) + [(1, 0)]
    mu_prev = np.pad(mu_after, pad, constant_values=0.5)[..., :-1]  # mu_{i-1}, predictable
    s2_prev = (0.25 + np.pad(sq, pad)[..., :-1]) / t
    gap = mu_prev - m
    lam = gap / (s2_prev + gap * gap)
    with np.errstate(divide="ignore"):
        lam_up = np.clip(lam, 0.0, cap / np.maximum(m, 1e-12))
        lam_dn = np.clip(-lam, 0.0, cap / np.maximum(1.0 - m, 1e-12))
    log_up = np.cumsum(np.log1p(lam_up * (x - m)), axis=-1)
    log_dn = np.cumsum(np.log1p(-lam_dn * (x - m)), axis=-1)
    return log_up, log_dn


def log_evalue_at_zero(d: np.ndarray, decision: str) -> np.ndarray:
    """log of the e-process for "no difference" after each pair: the mixture over the discordant pairs.

    d: (..., n) paired differences in {-1, 0, 1} (last axis: time). Only discordant pairs carry evidence
    (a tie multiplies by 1). With A = pairs only the row solved, B = pairs only the reference solved so
    far, a bet that the row wins a discordant pair with probability q has capital (2q)^A (2(1-q))^B;
    mixing q over the Jeffreys prior Beta(1/2, 1/2) (Robbins' method of mixtures; the Krichevsky-Trofimov
    estimator, whose regret is the smallest possible up to a constant) gives

        M = 2^(A+B) B(A + 1/2, B + 1/2) / B(1/2, 1/2)                       (decision "either")
        E_better = M P(q >= 1/2 | A, B) / P(q >= 1/2)  (prior restricted to q >= 1/2; "better")
        E_worse  = M P(q <= 1/2 | A, B) / P(q <= 1/2)                                ("worse")

    Each mixture component is a supermartingale under its null (E[D_i | past] <= 0 for "better":
    P(tie) + 2q f + 2(1-q) g <= 1 when q >= 1/2 and f <= g), so Ville's inequality bounds the chance of
    ever reaching 1/alpha by alpha, however often it is looked at. "either" is the average of the two
    halves, (E_better + E_worse) / 2 = M. Decided when the running max reaches log(1/alpha).
    """
    from scipy.special import betainc, betaln

    _theta(decision)
    d = np.asarray(d)
    wins = np.cumsum(d > 0, axis=-1)
    losses = np.cumsum(d < 0, axis=-1)
    log_m = (wins + losses) * math.log(2.0) + betaln(wins + 0.5, losses + 0.5) - betaln(0.5, 0.5)
    if decision == "either":
        return log_m
    below = betainc(wins + 0.5, losses + 0.5, 0.5)  # posterior P(q <= 1/2)
    side = 1.0 - below if decision == "better" else below
    with np.errstate(divide="ignore"):
        return log_m + np.log(side) + math.log(2.0)


@dataclass(frozen=True)
class SequentialResult:
    """The anytime-valid comparison of row a against the reference b after n_pairs paired episodes."""

    n_pairs: int
    delta: float  # mean of D over the pairs (nan with none)
    lo: float  # the confidence sequence in Delta units (one-sided for better / worse)
    hi: float
    e_value: float  # the largest hedged capital at Delta = 0 so far (decided when >= 1 / alpha)
    decided: bool
    direction: Optional[str]  # "better" | "worse" once decided
    decided_at: Optional[int]  # pairs seen when the test first crossed
    alpha: float
    decision: str
    method: str = "betting_cs_agrapa"

    def as_dict(self) -> dict:
        return asdict(self)


def sequential_test(a, b, alpha: float = 0.05, decision: str = "either", cap: float = BET_CAP,
                    grid: int = 2001) -> SequentialResult:
    """Run the test over paired outcomes a (the row), b (the reference), in the order they were run."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    theta = _theta(decision)
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"sequential_test: a and b must be 1-d of one length, got {a.shape} and {b.shape}")
    n = len(a)
    if n == 0:
        return SequentialResult(0, math.nan, -1.0, 1.0, 1.0, False, None, None, alpha, decision)
    d = a - b
    if not np.isin(d, (-1.0, 0.0, 1.0)).all():
        raise ValueError("sequential_test: outcomes must be 0/1")
    x = (d + 1.0) / 2.0
    threshold = math.log(1.0 / alpha)
    # the test at Delta = 0 (m = 1/2), exactly as on the grid
    log_e = log_evalue_at_zero(d, decision)
    run_max = np.maximum.accumulate(log_e)
    crossed = np.nonzero(run_max >= threshold)[0]
    decided_at = int(crossed[0]) + 1 if len(crossed) else None
    direction = None
    if decided_at is not None:
        direction = decision if decision != "either" else ("better" if (d[:decided_at] > 0).sum() >
                                                                      (d[:decided_at] < 0).sum() else "worse")
    # the confidence sequence on a grid of m (Delta = 2m - 1), running intersection over time
    m = np.linspace(0.0, 1.0, grid)[:, None]
    gu, gd = log_capital(x[None, :], m, cap)
    with np.errstate(divide="ignore", invalid="ignore"):
        rej_up = (gu + math.log(theta) >= threshold).any(axis=1) if theta > 0 else np.zeros(grid, bool)
        rej_dn = (gd + math.log(1 - theta) >= threshold).any(axis=1) if theta < 1 else np.zeros(grid, bool)
    keep = ~(rej_up | rej_dn)
    mm = m[:, 0]
    if keep.any():
        lo, hi = 2 * mm[keep].min() - 1, 2 * mm[keep].max() - 1
        step = 2.0 / (grid - 1)  # conservative by one grid step
        lo, hi = max(-1.0, lo - step), min(1.0, hi + step)
    else:  # cannot happen with a continuous process, but say something sensible
        lo = hi = float(d.mean())
    return SequentialResult(n, float(d.mean()), float(lo), float(hi), float(math.exp(min(run_max[-1], 700.0))),
                            decided_at is not None, direction, decided_at, alpha, decision)


# ---------------------------------------------------------------------------------------------------
# Pairing rows in the order they were run


def round_order(df: pd.DataFrame, tasks: Optional[list[str]] = None) -> pd.DataFrame:
    """The episodes in the adaptive schedule's order: round r holds the r-th episode of every task, tasks
    in protocol order (`tasks`, default: order of appearance). Adds a `round` column (0-based)."""
    tasks = tasks or list(pd.unique(df["task"]))
    pos = {t: i for i, t in enumerate(tasks)}
    out = df.copy()
    out["round"] = out.groupby("task")["index"].rank(method="dense").astype(int) - 1
    out["_task_pos"] = out["task"].map(pos)
    return out.sort_values(["round", "_task_pos"], kind="stable").drop(columns="_task_pos")


def paired_sequence(results: pd.DataFrame, row: str, reference: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(a, b, pairs): the row's and the reference's outcomes on the episodes both ran (status done), in
    round order. `pairs` holds episode_key, task, round of each pair."""
    ref = results[results["row"] == reference]
    tasks = list(pd.unique(ref["task"]))
    mine = results[(results["row"] == row) & (results["status"] == "done")].set_index("episode_key")
    theirs = ref[ref["status"] == "done"].set_index("episode_key")
    common = mine.index.intersection(theirs.index)
    pairs = round_order(theirs.loc[common].reset_index()[["episode_key", "task", "index"]], tasks)
    keys = pairs["episode_key"].to_numpy()
    a = mine.loc[keys, "success"].astype(bool).to_numpy()
    b = theirs.loc[keys, "success"].astype(bool).to_numpy()
    return a, b, pairs.reset_index(drop=True)


def compare_rows(results: pd.DataFrame, row: str, reference: str, alpha: float = 0.05,
                 decision: str = "either") -> SequentialResult:
    """The sequential test of `row` against `reference` on the per-episode frame (harness schema + row)."""
    a, b, _ = paired_sequence(results, row, reference)
    return sequential_test(a, b, alpha, decision)


# ---------------------------------------------------------------------------------------------------
# The stopping rule the evaluation runner applies between rounds


@dataclass(frozen=True)
class StopDecision:
    stop: bool
    reason: str  # "decided: better" | "decided: worse" | "max_episodes" | "" (go on)
    rounds: int  # completed rounds (episodes per task) so far
    result: SequentialResult


def stop_rule(a, b, rounds: int, min_rounds: int, max_rounds: int, alpha: float, decision: str) -> StopDecision:
    """Stop a row after `rounds` complete rounds when the test is decided (and rounds >= min_rounds),
    or at max_rounds. a, b: the paired outcomes of all complete rounds, in round order."""
    res = sequential_test(a, b, alpha, decision)
    if res.decided and rounds >= min_rounds:
        return StopDecision(True, f"decided: {res.direction}", rounds, res)
    if rounds >= max_rounds:
        return StopDecision(True, "max_episodes", rounds, res)
    return StopDecision(False, "", rounds, res)
