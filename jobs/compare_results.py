"""Paired comparison of two rows from two committed results directories, on the episodes both ran.

    python jobs/compare_results.py results/cpu_paper_piece_two_stage:two_stage \\
        results/cpu_paper_no_video_tuning_12000:no_video_tuning

For rows that no single table holds: two budgets of one row, two code versions, the same row name in two
studies. Both directories must be consistent (`check_results`) and share the eval suite, seed and step
limit; the rows are compared on the tasks both ran, where each episode key must have the same seed (and
protocol hash, when both ran the same task list). Prints each row's success per task and on average
[Wilson 95%], then A minus B per task and on average [Newcombe hybrid score 95% for paired proportions],
exact McNemar p, and the discordant counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _side(text: str) -> tuple[Path, str]:
    directory, sep, row = text.rpartition(":")
    if not sep or not directory or not row:
        raise argparse.ArgumentTypeError(f"{text!r}: expected DIR:ROW, e.g. results/cpu_paper:two_stage")
    return Path(directory), row


def main(argv: list[str] | None = None) -> int | str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=_side, help="DIR:ROW, the row the difference starts from")
    p.add_argument("b", type=_side, help="DIR:ROW, the row subtracted")
    args = p.parse_args(argv)

    from videopolicy.report.assemble import AssemblyError, compare_results

    try:
        c = compare_results(args.a, args.b)
    except (AssemblyError, FileNotFoundError) as e:
        return f"error: {e}"
    if c["caveat"]:
        print(f"note: {c['caveat']}\n")
    columns = [*c["tasks"], "average"]
    print("| row | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for label in (c["a"], c["b"]):
        print(f"| {label} | " + " | ".join("{:.2f} [{:.2f}, {:.2f}]".format(*c["rates"][label][t]) for t in columns)
              + " |")
    print(f"\nA minus B, paired (A = {c['a']}, B = {c['b']}):")
    for t in columns:
        d = c["paired"][t]
        print(f"  {t}: {d.delta:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}], McNemar p = {d.mcnemar_p:.2g} "
              f"({d.n_pairs} pairs; A only {d.a_only}, B only {d.b_only}"
              + (f"; {d.dropped} dropped for infrastructure errors" if d.dropped else "") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
