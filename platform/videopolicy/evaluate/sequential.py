"""Anytime-valid comparison of two rows on paired binary outcomes: a test that may be checked after
every episode and stopped as soon as it is decided, at the promised error rate, and the matching
confidence sequence for the paired difference.

For pair i (row a's outcome A_i, the reference's B_i, both 0/1, on the same episode) let
D_i = A_i - B_i in {-1, 0, 1}, X_i = (D_i + 1) / 2 in {0, 1/2, 1} and Delta = E[D] = 2 E[X] - 1.

Method: testing by betting with a mixture of bets (Waudby-Smith & Ramdas, "Estimating means of bounded
random variables by betting", JRSS-B 86(1), 2024, arXiv 2010.09686, section 5: a fixed mixture of
constant bets, "diversified Kelly"; Robbins' method of mixtures). For a candidate mean m of X,

    K+_t(m) = sum_k w_k prod_{i<=t} (1 + lambda_k(m) (X_i - m)),   lambda_k(m) = u_k c / m
    K-_t(m) = sum_k w_k prod_{i<=t} (1 - lambda'_k(m) (X_i - m)),  lambda'_k(m) = u_k c / (1 - m)

with u_k on a grid in (0, 1], c = BET_CAP < 1 and weights w_k the Jeffreys density of the probability
q = (1 + u_k c) / 2 that the row wins a discordant pair (at m = 1/2 the bet on a pair is exactly
"the row wins with probability q": capital (2q)^wins (2(1-q))^losses, ties change nothing; this is the
Jeffreys / Krichevsky-Trofimov mixture, restricted to q >= 1/2, a sequential McNemar test). Each
product is a non-negative martingale when E[X_i | past] = m (a supermartingale for K+(1/2) whenever
E[D_i | past] <= 0), so by Ville's inequality P(sup_t K_t >= 1/alpha) <= alpha: the test may be checked
after every episode, and the evaluation stopped whenever, without inflating the error rate.

The decision the user asks for sets the hedge theta, K = theta K+ + (1 - theta) K-:
    better: theta = 1   (H0: Delta <= 0; the confidence sequence is one-sided [lo, 1])
    worse:  theta = 0   (H0: Delta >= 0; [-1, hi])
    either: theta = 1/2 (two-sided)
The confidence sequence is C_t = {m : max_{s<=t} K_s(m) < 1/alpha} (a running intersection), reported
in Delta units 2m - 1 (its ends to the grid's 1/400 in Delta), and "decided" is exactly "K_t(1/2) has
reached 1/alpha", i.e. "C_t excludes Delta = 0 on the asked side": the decision and the interval agree.
Under the null of no difference on any episode (E[D_i | past] = 0, whatever the task) the probability
of ever deciding is at most alpha. Coverage of Delta assumes a common mean per pair; the episodes run in
rounds (one episode of every task per round, `round_order`), so at the end of every round the pair mean
is the mean over tasks.

This is not STEP (Snyder et al., RSS 2025, arXiv 2503.10966), which precomputes near-optimal rejection
regions for a given maximum and alternative; a mixture needs neither. `bench/adaptive_eval.py` measures
the error rate, power and episodes against the fixed-sample exact McNemar test.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import pandas as pd

DECISIONS = ("better", "worse", "either")
BET_CAP = 0.98  # c: the largest bet stakes c of the capital that can be lost (c < 1 keeps the capital positive)
N_BETS = 64  # constant bets mixed


#: How tables and reports name the anytime-valid interval.
AV_INTERVAL_LABEL = ("anytime-valid confidence sequence for the paired difference, valid under continuous "
                     "monitoring (mixture of bets, Waudby-Smith & Ramdas 2024; Jeffreys weights)")


def _theta(decision: str) -> float:
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    return {"better": 1.0, "worse": 0.0, "either": 0.5}[decision]


def bets(n: int = N_BETS, cap: float = BET_CAP) -> tuple[np.ndarray, np.ndarray]:
    """(u, log w): the bet grid u_k in (0, 1] and the log weights (Jeffreys density of q = (1 + u c)/2,
    normalised to sum 1)."""
    u = (np.arange(n) + 0.5) / n
    q = (1 + u * cap) / 2
    w = 1.0 / np.sqrt(q * (1 - q))
    return u, np.log(w / w.sum())


def _log_mix(counts: tuple, factors) -> np.ndarray:
    """log sum_k w_k prod (factor_k,x)^count_x, accumulated bet by bet (memory: one array)."""
    out = None
    for log_w, logs in factors:
        term = log_w + sum(c * lf for c, lf in zip(counts, logs))
        out = term if out is None else np.logaddexp(out, term)
    return out


def log_capital(n0, nh, n1, m, side: str, cap: float = BET_CAP):
    """log K+(m) (side "up") or log K-(m) ("down") from the counts of X = 0, 1/2, 1 so far (arrays
    broadcastable with m)."""
    u, log_w = bets(cap=cap)
    m = np.asarray(m, dtype=float)
    factors = []
    for uk, lw in zip(u, log_w):
        lam = uk * cap / m if side == "up" else -uk * cap / (1 - m)
        factors.append((lw, (np.log1p(lam * (0 - m)), np.log1p(lam * (0.5 - m)), np.log1p(lam * (1 - m)))))
    return _log_mix((n0, nh, n1), factors)


def log_evalue_at_zero(d: np.ndarray, decision: str, cap: float = BET_CAP) -> np.ndarray:
    """log K_t(1/2), the e-process for "no difference", after each pair (decided when it reaches
    log(1/alpha)). d: (..., n) paired differences in {-1, 0, 1}, the last axis time."""
    theta = _theta(decision)
    d = np.asarray(d)
    n1, n0 = np.cumsum(d > 0, axis=-1), np.cumsum(d < 0, axis=-1)
    nh = np.zeros_like(n1)  # ties: factor 1 at m = 1/2
    parts = []
    if theta > 0:
        parts.append(math.log(theta) + log_capital(n0, nh, n1, 0.5, "up", cap))
    if theta < 1:
        parts.append(math.log(1 - theta) + log_capital(n0, nh, n1, 0.5, "down", cap))
    return parts[0] if len(parts) == 1 else np.logaddexp(*parts)


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
    method: str = "mixture_of_bets_jeffreys"

    def as_dict(self) -> dict:
        return asdict(self)


def sequential_test(a, b, alpha: float = 0.05, decision: str = "either", cap: float = BET_CAP,
                    grid: int = 801) -> SequentialResult:
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
    threshold = math.log(1.0 / alpha)
    log_e = log_evalue_at_zero(d, decision, cap)
    run_max = np.maximum.accumulate(log_e)
    crossed = np.nonzero(run_max >= threshold)[0]
    decided_at = int(crossed[0]) + 1 if len(crossed) else None
    direction = None
    if decided_at is not None:
        k = decided_at
        direction = decision if decision != "either" else ("better" if (d[:k] > 0).sum() > (d[:k] < 0).sum()
                                                             else "worse")
    # the confidence sequence on a grid of m (Delta = 2m - 1), running intersection over time
    m = np.linspace(0.0, 1.0, grid)[1:-1, None]  # m = 0 and 1 are never rejected by the other side's bets
    n1, n0 = np.cumsum(d > 0)[None, :], np.cumsum(d < 0)[None, :]
    nh = np.cumsum(d == 0)[None, :]
    parts = []
    if theta > 0:
        parts.append(math.log(theta) + log_capital(n0, nh, n1, m, "up", cap))
    if theta < 1:
        parts.append(math.log(1 - theta) + log_capital(n0, nh, n1, m, "down", cap))
    log_k = parts[0] if len(parts) == 1 else np.logaddexp(*parts)
    keep = ~(log_k >= threshold).any(axis=1)
    mm = m[:, 0]
    if keep.any():  # the smallest and largest grid points not rejected (K+ falls and K- rises with m)
        lo, hi = 2 * mm[keep].min() - 1, 2 * mm[keep].max() - 1
    else:
        lo = hi = float(d.mean())
    if theta == 1.0:
        hi = 1.0  # one-sided: no bet against large differences
    if theta == 0.0:
        lo = -1.0
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
