"""Statistics of closed-loop evaluation: success per task with Wilson 95% intervals, the per-row
average over tasks (the paper's "average task success rate"), and paired differences between two
rows evaluated on the same episodes.

Input everywhere is the per-episode DataFrame of the evaluation harness (one record per episode:
row, suite, task, scene, index, seed, episode_key, policy_id, policy_seed, protocol_hash, status,
success, steps, failure_reason, video_path, attempts, wall_s, instruction). Only records with status
"done" are outcomes; "infra_error" records (the infrastructure failed, not the policy) are never counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

Z95 = 1.959963984540054  # two-sided 95% normal quantile


class EpisodeMismatchError(ValueError):
    """Two rows were not evaluated on the same episodes, so a paired comparison is meaningless."""


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n. n == 0 gives the uninformative (0, 1)."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends (no 0.9999999999999999)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def done_episodes(df: pd.DataFrame) -> pd.DataFrame:
    """The outcome records: status == "done" (infrastructure errors are retried, never counted)."""
    return df[df["status"] == "done"]


def success_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per task (per row and task when a `row` column exists): n, successes, rate, Wilson lo/hi.

    Counts only status == "done"; `infra_errors` reports how many records were excluded.
    """
    keys = ["row", "task"] if "row" in df.columns else ["task"]
    out = []
    for key, group in df.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        done = done_episodes(group)
        n, k = len(done), int(done["success"].astype(bool).sum())
        lo, hi = wilson(k, n)
        out.append({**dict(zip(keys, key)), "n": n, "successes": k,
                    "rate": k / n if n else float("nan"), "lo": lo, "hi": hi,
                    "infra_errors": int((group["status"] == "infra_error").sum())})  # not_run: never run
    cols = keys + ["n", "successes", "rate", "lo", "hi", "infra_errors"]
    return pd.DataFrame(out, columns=cols)


@dataclass(frozen=True)
class MeanInterval:
    """The mean success over tasks with its 95% interval and the counts behind it."""

    mean: float
    lo: float
    hi: float
    n_tasks: int
    n_episodes: int
    successes: int


def mean_over_tasks(per_task: pd.DataFrame) -> MeanInterval:
    """Mean of per-task rates (every task weighs the same, as in the paper's tables) with a Wilson
    interval at the effective sample size n_eff = T^2 / sum(1/n_t).

    With equal episodes per task (the protocol) this is exactly the Wilson interval of the pooled
    counts. Var(mean) = sum p_t(1-p_t)/n_t / T^2 <= p(1-p)/n_eff, so the interval is conservative
    when tasks differ in difficulty. Tasks without any outcome are left out.
    """
    t = per_task[per_task["n"] > 0]
    if t.empty:
        return MeanInterval(float("nan"), 0.0, 1.0, 0, 0, 0)
    rates = t["successes"].to_numpy(float) / t["n"].to_numpy(float)
    mean = float(rates.mean())
    n_eff = len(t) ** 2 / float((1.0 / t["n"].to_numpy(float)).sum())
    lo, hi = _wilson_float(mean, n_eff)
    return MeanInterval(mean, lo, hi, len(t), int(t["n"].sum()), int(t["successes"].sum()))


def _wilson_float(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson interval for a rate p observed on a (possibly fractional) effective sample size n."""
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def row_summary(df: pd.DataFrame, tasks: list[str] | None = None) -> pd.DataFrame:
    """Per row: mean success over tasks (each task weighs the same) with a 95% interval.

    `tasks` restricts the average to those tasks (e.g. the unseen tasks of a half_tasks row).
    Columns: row, mean, lo, hi, n_tasks, n_episodes, successes, infra_errors.
    """
    table = success_table(df if "row" in df.columns else df.assign(row="all"))
    if tasks is not None:
        table = table[table["task"].isin(tasks)]
    out = []
    for row, group in table.groupby("row", sort=False):
        m = mean_over_tasks(group)
        out.append({"row": row, **asdict(m), "infra_errors": int(group["infra_errors"].sum())})
    return pd.DataFrame(out, columns=["row", "mean", "lo", "hi", "n_tasks", "n_episodes", "successes",
                                      "infra_errors"])


@dataclass(frozen=True)
class PairedDifference:
    """Success of row_a minus row_b on the same episodes (a positive delta: row_a is better).

    delta is the mean over tasks of the per-task paired difference (the difference of the two rows'
    averages over the paired episodes); lo/hi Newcombe's hybrid score 95% interval for a paired
    difference of proportions (`newcombe_paired`, on the task-weighted 2x2 table, see
    `paired_difference`); mcnemar_p the exact two-sided McNemar test on the discordant pairs
    (a_only, b_only).
    """

    row_a: str
    row_b: str
    delta: float
    lo: float
    hi: float
    mcnemar_p: float
    n_pairs: int
    a_only: int  # episodes row_a solved and row_b failed
    b_only: int  # episodes row_b solved and row_a failed
    dropped: int  # episodes left out because either row had an infrastructure error there
    both: int = 0  # episodes both rows solved
    neither: int = 0  # episodes both rows failed
    method: str = "newcombe_hybrid_score"  # how lo/hi were computed (PAIRED_INTERVAL_LABEL says it in words)

    def as_dict(self) -> dict:
        return asdict(self)


#: How tables and reports name the paired interval.
PAIRED_INTERVAL_LABEL = "Newcombe hybrid score 95% interval for paired proportions (Newcombe 1998, method 10)"


def _wilson_real(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n, k and n real (task-weighted counts); exact 0 / 1
    at k == 0 / k == n."""
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if k <= 0 else max(0.0, centre - half)
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return lo, hi


def newcombe_paired(both: float, a_only: float, b_only: float, neither: float,
                    z: float = Z95) -> tuple[float, float, float]:
    """(theta, lo, hi): Newcombe's hybrid score interval for a difference of paired proportions.

    Newcombe RG (1998), "Improved confidence intervals for the difference between binomial
    proportions based on paired data", Statistics in Medicine 17:2635-2650, method 10. With the
    paired 2x2 table (row a's outcome x row b's outcome)

        e = both succeed, f = only a succeeds, g = only b succeeds, h = both fail, n = e + f + g + h
        p1 = (e + f) / n  (a's success rate),   p2 = (e + g) / n  (b's),   theta = p1 - p2 = (f - g) / n
        (l1, u1), (l2, u2) = Wilson score intervals of e + f and of e + g successes out of n

    and phi the correlation of the two marginal rates, with a continuity correction:

        A = (e + f)(g + h)(e + g)(f + h),   B = e*h - f*g
        C = B - n/2 if B > n/2;  C = 0 if 0 <= B <= n/2;  C = B if B < 0
        phi = C / sqrt(A), and phi = 0 when any of the four marginal sums is 0 (A = 0)

    the limits are

        lo = theta - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        hi = theta + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2)

    Unlike a Wald or bootstrap interval it never collapses to zero width: with every outcome equal
    it still spans about +-z^2 / (n + z^2) (+-0.66 at n = 2). Counts may be real (task-weighted).
    n == 0 gives (nan, -1, 1).
    """
    e, f, g, h = (float(x) for x in (both, a_only, b_only, neither))
    if min(e, f, g, h) < 0:
        raise ValueError(f"newcombe_paired: counts must be >= 0, got {(both, a_only, b_only, neither)}")
    n = e + f + g + h
    if n == 0:
        return math.nan, -1.0, 1.0
    p1, p2 = (e + f) / n, (e + g) / n
    l1, u1 = _wilson_real(e + f, n, z)
    l2, u2 = _wilson_real(e + g, n, z)
    a = (e + f) * (g + h) * (e + g) * (f + h)
    b = e * h - f * g
    c = b - n / 2 if b > n / 2 else (0.0 if b >= 0 else b)
    phi = c / math.sqrt(a) if a > 0 else 0.0
    theta = (f - g) / n
    d1, d2 = p1 - l1, u2 - p2
    lo = theta - math.sqrt(max(d1 * d1 - 2 * phi * d1 * d2 + d2 * d2, 0.0))
    d1, d2 = u1 - p1, p2 - l2
    hi = theta + math.sqrt(max(d1 * d1 - 2 * phi * d1 * d2 + d2 * d2, 0.0))
    return theta, max(-1.0, lo), min(1.0, hi)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: binomial test of a_only vs b_only at p = 1/2."""
    m = a_only + b_only
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**m)  # int / int: exact even when 2**m overflows a float


def _outcomes(df: pd.DataFrame, row: str) -> pd.DataFrame:
    part = df[df["row"] == row]
    if part.empty:
        raise EpisodeMismatchError(f"paired_difference: no episodes for row {row!r} "
                                   f"(rows present: {sorted(df['row'].unique())})")
    dup = part["episode_key"][part["episode_key"].duplicated()]
    if len(dup):
        raise EpisodeMismatchError(f"paired_difference: row {row!r} has {len(dup)} duplicate episode_key "
                                   f"record(s), e.g. {dup.iloc[0]!r}; expected one record per episode")
    return part.set_index("episode_key")[["task", "status", "success"]]


def paired_difference(df: pd.DataFrame, row_a: str, row_b: str, z: float = Z95) -> PairedDifference:
    """Paired comparison of two rows on the same episodes (matched by episode_key).

    delta is the mean over tasks of the per-task paired difference (every task weighs the same, as
    in `mean_over_tasks`). The interval is `newcombe_paired` on the 2x2 table of paired outcomes,
    each pair of task t weighted w_t = n_eff / (T n_t) with n_eff = T^2 / sum(1 / n_t): the weighted
    cells sum to n_eff and their proportions are the means over tasks of the per-task proportions,
    so theta equals delta. With the same number of pairs in every task (the protocol) w_t = 1 and
    this is exactly Newcombe's interval on the pooled counts.

    Raises EpisodeMismatchError when the rows were evaluated on different episode sets. Episodes
    where either row had an infrastructure error are dropped from both (counted in `dropped`); episodes
    a row never ran (status "not_run": adaptive evaluation stopped it early) are left out too, so the
    comparison is paired on the episodes both rows ran.
    """
    a, b = _outcomes(df, row_a), _outcomes(df, row_b)
    only_a, only_b = a.index.difference(b.index), b.index.difference(a.index)
    if len(only_a) or len(only_b):
        raise EpisodeMismatchError(
            f"paired_difference: rows {row_a!r} and {row_b!r} were not evaluated on the same episodes: "
            f"{len(only_a)} episode(s) only in {row_a!r} (e.g. {list(only_a[:3])}), "
            f"{len(only_b)} only in {row_b!r} (e.g. {list(only_b[:3])}); "
            f"a paired delta needs the same eval suite, tasks, episodes_per_task and seed")
    b = b.loc[a.index]
    ok = (a["status"] == "done") & (b["status"] == "done")
    sa = a["success"][ok].astype(bool).to_numpy()
    sb = b["success"][ok].astype(bool).to_numpy()
    tasks = a["task"][ok].to_numpy()
    cells = np.stack([sa & sb, sa & ~sb, ~sa & sb, ~sa & ~sb], axis=1)  # e, f, g, h per pair
    e, f, g, h = (int(x) for x in cells.sum(axis=0))
    p = mcnemar_exact(f, g)
    dropped = int(((a["status"] == "infra_error") | (b["status"] == "infra_error")).sum())  # not "not_run"
    if len(cells) == 0:
        return PairedDifference(row_a, row_b, math.nan, -1.0, 1.0, p, 0, 0, 0, dropped)
    per_task = [cells[tasks == t] for t in pd.unique(tasks)]
    delta = float(np.mean([(c[:, 1].sum() - c[:, 2].sum()) / len(c) for c in per_task]))
    n_eff = len(per_task) ** 2 / sum(1.0 / len(c) for c in per_task)
    weighted = sum(c.sum(axis=0) * (n_eff / (len(per_task) * len(c))) for c in per_task)
    _, lo, hi = newcombe_paired(*weighted, z=z)
    return PairedDifference(row_a, row_b, delta, lo, hi, p, len(cells), f, g, dropped, e, h)
