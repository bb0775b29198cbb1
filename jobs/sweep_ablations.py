"""Run an ablation sweep end to end: data -> stage1 -> stage2/joint/baseline -> evaluation -> table.

    ray job submit --working-dir . -- python jobs/sweep_ablations.py --sweep sweeps/smoke.yaml
    python jobs/sweep_ablations.py --sweep sweeps/robocasa_paper.yaml --plan    # the DAG and its cost, no run
    python jobs/sweep_ablations.py --set train.stage2.steps=20                 # smoke sweep, an override, local Ray

Rows become content-addressed stages; identical stages run once; finished stages, training steps
(checkpoints) and evaluation episodes (ledger) are never redone when the same command runs again.
Exits non-zero when any row failed; the other rows still finish.
"""

import json
import os
import sys
import time
from pathlib import Path

from videopolicy import cli
from videopolicy.config import ConfigError, to_dict
from videopolicy.store import stable_hash
from videopolicy.sweep.plan import build_plan


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_config_args(p, row=False)
    p.add_argument("--rows", nargs="*", default=None, help="run only these rows")
    p.add_argument("--plan", action="store_true", help="print the stage DAG, what exists and its cost; run nothing")
    p.add_argument("--reference", default=None, help="row the paired deltas compare against (default: the first)")
    p.add_argument("--max-concurrent", type=int, default=1, help="stages running at once (1 on small boxes)")
    p.add_argument("--run-id", default=None,
                   help="this sweep instance's name in MLflow; the same id re-attaches (default: name + config hash)")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="also copy the finished table, report, episodes, stage timings and provenance here "
                        "(e.g. results/cpu_paper, to commit); checked by videopolicy.report.results")
    cli.add_skip_bad(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()

    # 1. Validate everything and plan before any cluster resources are spent. --skip-bad is an override
    # like --set (the configs are not changed after validation; demos.skip_bad is part of the data keys).
    sweep = cli.load_sweep_args(args, check_files=not args.plan)
    try:
        names = [n for n, _ in sweep.rows]
        if args.rows and set(args.rows) - set(names):
            raise ConfigError([f"--rows: unknown rows {sorted(set(args.rows) - set(names))}; the sweep has {names}"])
        store = cli.store_of(args, sweep.base)
        plan = build_plan(sweep, store, args.rows)
        if not args.plan:  # pretrained sources exist (local layout, node cache or hub) before Ray starts
            from videopolicy.models.pretrained import rows_problems

            missing = rows_problems([(r.name, r.cfg) for r in plan.rows])
            if missing:
                raise ConfigError(missing, args.sweep)
    except ConfigError as e:
        return f"error: {e}"
    rows = [r.name for r in plan.rows]
    if sweep.implicit_base_row:
        print(f"{args.sweep}: no `rows` in the file: its base config runs as one row named 'base'", flush=True)
    reference = args.reference or rows[0]
    if reference not in rows:
        return f"error: --reference {reference!r} is not among the rows {rows}"
    if args.plan:
        print_plan(plan, args, rows)
        return 0

    # 2. Tracking (the given MLflow server, or the store's local one) and Ray (the job's cluster, or a local one).
    from videopolicy.runtime import init_ray
    from videopolicy.tracking import Tracker, provenance_tags

    sweep_id = args.run_id or f"{sweep.name}-{stable_hash([to_dict(c) for _, c in sweep.rows])[:8]}"
    tracker = Tracker(store, sweep=sweep_id, experiment=sweep.name, uri=os.environ.get("MLFLOW_TRACKING_URI"))
    tracker.start(tracker.sweep_run(), tags={**provenance_tags(sweep.base.eval.suite),
                                             "videopolicy.sweep_file": args.sweep},
                  params={"rows": ",".join(rows), "reference_row": reference})
    for row in plan.rows:
        tracker.start_row(row.name, row.cfg, extra_params={"stages": ",".join(row.stages.values())})
    init_ray(sweep.base.ray, store)
    print(f"sweep {sweep_id}: {len(rows)} rows, {len(plan.nodes)} stages, store {store}, MLflow {tracker.uri}",
          flush=True)

    # 3. Run every missing stage.
    from videopolicy.sweep.execute import Executor, row_results

    t0 = time.time()
    outcomes = Executor(plan, tracker, args.max_concurrent).run()

    # 4. Results: per-row MLflow logging, the ablation table, the report.
    from videopolicy.sweep.report import export_results, finish_sweep

    command = " ".join(["python", "jobs/sweep_ablations.py", *(argv if argv is not None else sys.argv[1:])])
    summary = finish_sweep(plan, outcomes, row_results(plan), tracker, reference, sweep_id, time.time() - t0, command)
    print(json.dumps({"report": summary["report"], "mlflow": tracker.uri}, indent=1))
    if args.results and summary["report"]:
        print(f"results copied to {export_results(Path(summary['report']).parent, Path(args.results))}", flush=True)
    if summary["failed_rows"]:
        return f"error: rows failed: {summary['failed_rows']} (finished stages are kept; run the same command to retry)"
    return 0


def print_plan(plan, args, rows) -> None:
    """The plan and its cost; the demo files missing here. A plan may be made away from the data, so it does
    not require them, but says which are missing: a run on this machine would stop at once on them."""
    from videopolicy.sweep.report import print_plan as print_stages

    print_stages(plan)
    missing: dict[str, list[str]] = {}
    for name, cfg in plan.sweep.rows:
        if args.rows and name not in args.rows:
            continue
        for problem in cfg.demos.missing_files():
            missing.setdefault(problem, []).append(name)
    if missing:
        print(f"MISSING {len(missing)} demo file(s) on this machine: a run here stops at once. Fix demos.files in "
              f"{args.sweep}, or run where the files are:")
        for problem, names in missing.items():
            print(f"  - demos.{problem} ({'all rows' if names == rows else 'rows: ' + ', '.join(names)})")


if __name__ == "__main__":
    sys.exit(main())
