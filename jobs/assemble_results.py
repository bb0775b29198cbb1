"""Assemble one results directory from the committed results of several invocations of one sweep, when a
study ran in pieces whose stores did not survive (each piece exported with `sweep_ablations.py --results`).

    python jobs/assemble_results.py --sweep sweeps/cpu_paper.yaml --out results/cpu_paper \\
        --parts results/cpu_paper_first_rows results/cpu_paper_central ...

Rows come in the sweep's order, each from the first part that holds it; the parts must be consistent
(check_results), evaluated on the same episodes, and agree where they overlap (videopolicy.report.assemble).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int | str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", required=True, help="the sweep file the parts ran (rows' order and ablation axes)")
    p.add_argument("--parts", nargs="+", required=True, help="results directories, each a --results export")
    p.add_argument("--out", required=True, help="where to write the assembled results")
    p.add_argument("--reference", default=None, help="row the paired deltas compare against (default: the first)")
    args = p.parse_args(argv)

    from videopolicy.config import ConfigError, load_sweep
    from videopolicy.data.clips import select_tasks
    from videopolicy.report.assemble import AssemblyError, assemble_results
    from videopolicy.report.rows import RowInfo
    from videopolicy.tracking import provenance_tags

    try:
        sweep = load_sweep(args.sweep, check_files=False)
    except ConfigError as e:
        return f"error: {e}"
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
                               provenance_tags(sweep.base.eval.suite))
    except (AssemblyError, FileNotFoundError) as e:
        return f"error: {e}"
    print((out / "ablation.md").read_text())
    print(f"assembled {len(infos)} rows from {len(args.parts)} parts into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
