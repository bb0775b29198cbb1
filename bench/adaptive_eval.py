"""What anytime-valid evaluation saves: the sequential test against the fixed-sample one, at equal
error rate and power, on simulated Bernoulli pairs like the STEP paper's grid; and a replay of a
finished study's episodes to show what adaptive evaluation would have saved on its rows.

1. Grid (default): 45 alternative pairs (p0, p1), p0 in {0.05, 0.15, ..., 0.85}, p1 in {p0 + 0.1, ..., 0.95}
   (the reference succeeds with p0, the row with p1, independently per episode, as in STEP), and 10 null
   pairs p0 = p1. Per pair, `--sequences` sequences of paired outcomes (fixed seed, numpy-vectorised):
   - the fixed-sample test: the exact one-sided McNemar test at level alpha; n_fixed = the smallest number
     of pairs at which its power (computed exactly) reaches `--power`;
   - the sequential test (`videopolicy.evaluate.sequential`, decision "better", same alpha), checked after
     every pair; its maximum n_max = the smallest truncation at which it reaches the same power on the
     simulated sequences; its cost = the mean of min(stopping time, n_max) over ALL sequences (the ones
     that never decide run to n_max and count in full).
   Printed per pair and overall: power, mean episodes sequential vs n_fixed, their ratio; and the
   false-positive rate on the null pairs (sequences run to the largest n_max of the grid).
2. `--replay EPISODES --reference ROW`: a per-episode Parquet/CSV (harness schema plus `row`, e.g. a
   study's committed episodes): replays the adaptive schedule in round order on every row against the
   reference (min/max episodes per task as given) and prints where each row would have stopped and the
   episodes saved. The study's own fixed-budget table is not touched.

    python bench/adaptive_eval.py [--sequences 2000] [--alpha 0.05] [--power 0.8] [--out bench/results/adaptive_eval.json]
    python bench/adaptive_eval.py --replay results/cpu_paper_stage2_1500/episodes.parquet --reference two_stage
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from videopolicy.evaluate.sequential import log_evalue_at_zero, paired_sequence, stop_rule


def mcnemar_power(p0: float, p1: float, alpha: float, n_max: int) -> np.ndarray:
    """Exact power of the one-sided exact McNemar test (conditional binomial on the discordant pairs) at
    every n = 0..n_max, for independent outcomes A ~ Bern(p1) (row), B ~ Bern(p0) (reference)."""
    f, g = p1 * (1 - p0), p0 * (1 - p1)  # P(only the row succeeds), P(only the reference)
    r, q = f + g, f / (f + g)
    m = np.arange(n_max + 1)
    # critical value per discordant count m: smallest c with P(Bin(m, 1/2) >= c) <= alpha
    cs = np.arange(n_max + 2)
    tail = stats.binom.sf(cs[None, :] - 1, m[:, None], 0.5)  # P(X >= c)
    crit = np.argmax(tail <= alpha, axis=1)
    reject = stats.binom.sf(crit - 1, m, q)  # P(reject | m discordant)
    n = np.arange(n_max + 1)
    pmf = stats.binom.pmf(m[None, :], n[:, None], r)  # (n, m)
    return pmf @ reject


def fixed_n(power_curve: np.ndarray, target: float) -> int | None:
    hit = np.nonzero(power_curve >= target)[0]
    return int(hit[0]) if len(hit) else None


def stopping_times(p0: float, p1: float, n: int, sequences: int, alpha: float, rng) -> np.ndarray:
    """Pairs to a decision for each simulated sequence (n + 1 where it never decided within n)."""
    a = rng.random((sequences, n)) < p1
    b = rng.random((sequences, n)) < p0
    log_e = log_evalue_at_zero(a.astype(np.int8) - b.astype(np.int8), "better")
    crossed = log_e >= math.log(1 / alpha)
    first = np.argmax(crossed, axis=1) + 1
    return np.where(crossed.any(axis=1), first, n + 1)


def grid(args) -> dict:
    rng = np.random.default_rng(args.seed)
    levels = np.round(np.arange(0.05, 0.96, 0.1), 2)
    pairs = [(p0, p1) for p0 in levels for p1 in levels if p1 > p0 + 1e-9]
    rows, n_max_all = [], 0
    print(f"alpha {args.alpha}, target power {args.power}, {args.sequences} sequences per pair, decision 'better'")
    print(f"{'p0':>5}{'p1':>6}{'n_fixed':>9}{'n_max':>7}{'power':>7}{'E[n] seq':>10}{'ratio':>7}")
    for p0, p1 in pairs:
        curve = mcnemar_power(p0, p1, args.alpha, args.cap)
        nf = fixed_n(curve, args.power)
        if nf is None:
            print(f"{p0:>5.2f}{p1:>6.2f}  fixed test below power {args.power} at {args.cap} pairs: skipped")
            continue
        horizon = min(args.cap, 4 * nf + 20)
        tau = stopping_times(p0, p1, horizon, args.sequences, args.alpha, rng)
        power_at = np.searchsorted(np.sort(tau), np.arange(horizon + 1), side="right") / len(tau)  # P(tau <= n)
        n_max = fixed_n(power_at, args.power)
        if n_max is None:
            print(f"{p0:>5.2f}{p1:>6.2f}{nf:>9}  sequential below power {args.power} at {horizon}: counted at {horizon}")
            n_max = horizon
        cost = float(np.minimum(tau, n_max).mean())
        n_max_all = max(n_max_all, n_max)
        rows.append({"p0": p0, "p1": p1, "n_fixed": nf, "fixed_power": float(curve[nf]), "n_max": n_max,
                     "seq_power": float(power_at[n_max]), "seq_mean_episodes": cost, "ratio": cost / nf})
        r = rows[-1]
        print(f"{p0:>5.2f}{p1:>6.2f}{nf:>9}{n_max:>7}{r['seq_power']:>7.3f}{cost:>10.1f}{r['ratio']:>7.2f}")
    nulls = []
    horizon = max(n_max_all, 1)
    for p in levels:
        tau = stopping_times(p, p, horizon, args.sequences, args.alpha, rng)
        nulls.append({"p": float(p), "n": horizon, "false_positive_rate": float((tau <= horizon).mean())})
    seq_total = sum(r["seq_mean_episodes"] for r in rows)
    fixed_total = sum(r["n_fixed"] for r in rows)
    summary = {"pairs": len(rows), "mean_ratio": float(np.mean([r["ratio"] for r in rows])),
               "median_ratio": float(np.median([r["ratio"] for r in rows])),
               "total_ratio": seq_total / fixed_total, "episodes_seq_total": seq_total,
               "episodes_fixed_total": fixed_total, "max_false_positive_rate": max(x["false_positive_rate"] for x in nulls),
               "null_horizon": horizon}
    print("\nnull pairs (p0 = p1), sequences run to", horizon, "pairs, checked after every pair:")
    print("  " + "  ".join(f"{x['p']:.2f}:{x['false_positive_rate']:.4f}" for x in nulls))
    print(f"\nfalse-positive rate: max {summary['max_false_positive_rate']:.4f} (alpha {args.alpha})")
    print(f"mean episodes, sequential / fixed at equal power: mean ratio {summary['mean_ratio']:.3f}, "
          f"median {summary['median_ratio']:.3f}, total {seq_total:.0f} / {fixed_total} = {summary['total_ratio']:.3f} "
          f"({1 - summary['total_ratio']:.0%} fewer)")
    return {"settings": vars(args), "pairs": rows, "nulls": nulls, "summary": summary}


def replay(episodes: pd.DataFrame, reference: str, alpha: float = 0.05, decision: str = "either",
           min_per_task: int = 3, max_per_task: int = 0) -> pd.DataFrame:
    """Replay the adaptive schedule on a finished fixed-budget study: per row (not the reference), the
    round at which it would have stopped, why, and the episodes it would have run and saved.

    episodes: per-episode frame (harness schema plus `row`), each row run to the full budget."""
    if reference not in set(episodes["row"]):
        raise ValueError(f"reference row {reference!r} not in the episodes (rows: {sorted(episodes['row'].unique())})")
    out = []
    for row in pd.unique(episodes["row"]):
        if row == reference:
            continue
        a, b, pairs = paired_sequence(episodes, row, reference)
        n_tasks = pairs["task"].nunique()
        full_rounds = int(pairs.groupby("round").size().eq(n_tasks).sum()) if len(pairs) else 0
        max_rounds = min(max_per_task or full_rounds, full_rounds)
        stop = None
        for r in range(1, max_rounds + 1):
            k = int((pairs["round"] < r).sum())
            stop = stop_rule(a[:k], b[:k], r, min_per_task, max_rounds, alpha, decision)
            if stop.stop:
                break
        run = int((pairs["round"] < stop.rounds).sum()) if stop else 0
        total = int((episodes["row"] == row).sum())
        out.append({"row": row, "episodes_fixed": total, "episodes_adaptive": run, "saved": total - run,
                    "saved_fraction": (total - run) / total if total else 0.0, "stopped_after_rounds": stop.rounds if stop else 0,
                    "reason": stop.reason if stop else "no pairs", "delta": stop.result.delta if stop else math.nan,
                    "av_lo": stop.result.lo if stop else -1.0, "av_hi": stop.result.hi if stop else 1.0})
    return pd.DataFrame(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--power", type=float, default=0.8)
    parser.add_argument("--cap", type=int, default=1500, help="longest sequence simulated (pairs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/adaptive_eval.json")
    parser.add_argument("--replay", default=None, help="per-episode Parquet/CSV of a finished study")
    parser.add_argument("--reference", default=None)
    parser.add_argument("--decision", default="either", choices=["better", "worse", "either"])
    parser.add_argument("--min-per-task", type=int, default=3)
    parser.add_argument("--max-per-task", type=int, default=0)
    args = parser.parse_args(argv)
    if args.replay:
        path = Path(args.replay)
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        if not args.reference:
            parser.error("--replay needs --reference ROW")
        table = replay(df, args.reference, args.alpha, args.decision, args.min_per_task, args.max_per_task)
        print(table.to_string(index=False))
        print(f"\nepisodes: adaptive {table['episodes_adaptive'].sum()} of {table['episodes_fixed'].sum()} "
              f"({table['saved'].sum()} saved) on the rows other than {args.reference!r}")
        return
    t0 = time.time()
    result = grid(args)
    result["seconds"] = time.time() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{result['seconds']:.0f}s; written {out}")


if __name__ == "__main__":
    main()
