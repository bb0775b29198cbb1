"""Assemble one results directory from the committed results of several invocations of one sweep, when a
study ran in pieces whose stores did not survive (each piece exported with `sweep_ablations.py --results`).

    python jobs/assemble_results.py --sweep sweeps/cpu_paper.yaml --out results/cpu_paper \\
        --parts results/cpu_paper_first_rows results/cpu_paper_central ...

Rows come in the sweep's order, each from the first part that holds it; the parts must be consistent
(check_results), evaluated on the same episodes, and agree where they overlap (videopolicy.report.assemble).
Each row's part must have run the stages the sweep file (with --set, as the sweep takes it) plans for it:
a piece trained at another budget is refused, so the table is the sweep file's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int | str:
    from videopolicy import cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", required=True, help="results directories, each a --results export")
    p.add_argument("--out", required=True, help="where to write the assembled results")
    p.add_argument("--reference", default=None, help="row the paired deltas compare against (default: the first)")
    cli.add_config_args(p, sweep=None, row=False, store=False)  # --sweep, and --set as the parts ran it
    args = p.parse_args(argv)
    if not args.sweep:
        p.error("--sweep is required: the sweep file the parts ran")

    from videopolicy.config import ConfigError
    from videopolicy.data.clips import select_tasks
    from videopolicy.report.assemble import AssemblyError, assemble_results
    from videopolicy.report.rows import RowInfo
    from videopolicy.sweep.plan import build_plan
    from videopolicy.tracking import provenance_tags

    sweep = cli.load_sweep_args(args, check_files=False)
    try:
        plan = build_plan(sweep, sweep.base.store)  # planning reads no store and imports no torch
    except ConfigError as e:
        return f"error: {e}"
    planned = {r.name: {plan.nodes[s].kind: (s, plan.nodes[s].label) for s in r.stages.values()} for r in plan.rows}
    infos = []
    for name, cfg in sweep.rows:  # half_tasks rows: the tasks the data stage trains on (the same split)
        seen = select_tasks(list(cfg.demos.tasks), cfg.clips)[0] if cfg.clips.task_subset != "all" else ()
        infos.append(RowInfo.from_config(name, cfg, seen))
    import pandas as pd

    present = set().union(*(set(pd.read_parquet(Path(d) / "episodes.parquet")["row"]) for d in args.parts))
    infos = [i for i in infos if i.name in present]
    reference = args.reference or infos[0].name
    command = " ".join(["python", "jobs/assemble_results.py", *(argv if argv is not None else sys.argv[1:])])
    try:
        out = assemble_results([Path(d) for d in args.parts], Path(args.out), infos, reference, command,
                               provenance_tags(sweep.base.eval.suite), planned)
    except (AssemblyError, FileNotFoundError) as e:
        return f"error: {e}"
    print((out / "ablation.md").read_text())
    print(f"assembled {len(infos)} rows from {len(args.parts)} parts into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
