"""What the sweep driver prints and saves: the plan (before), the ablation table and report (after)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from videopolicy.store import write_json_atomic
from videopolicy.sweep.plan import Plan
from videopolicy.sweep.stages import DataStage, EvalStage, TrainStage, episode_list_id

PIPELINE_CHECK_NOTICE = ("PIPELINE CHECK, not results: this sweep's training and evaluation budgets are far too small "
                         "for a policy to learn (its file sets pipeline_check: true). The numbers show that every "
                         "stage ran, not how the methods compare.")


def print_plan(plan: Plan) -> None:
    from videopolicy.sweep.estimate import UTILISATION, estimate

    cost = estimate(plan)
    print(f"plan of sweep {plan.sweep.name!r}: {len(plan.rows)} rows -> {len(plan.nodes)} stages (store {plan.store})")
    print(f"{'stage':<26}{'status':<9}{'A100-h':>9}  {'rows':<40}what")
    for sid, node in plan.nodes.items():
        status = "done" if plan.done(sid) else "todo"
        rows = ",".join(node.rows)
        print(f"{sid[:25]:<26}{status:<9}{cost.per_stage[sid]:>9.2f}  {rows[:39]:<40}{node.label}")
    shared = [n for n in plan.nodes.values() if len(n.rows) > 1 and not isinstance(n, DataStage)]
    for n in shared:
        print(f"shared: {n.id} serves rows {n.rows}")
    print(f"\nestimated A100-hours at {UTILISATION:.0%} of bf16 peak (eval: every episode to its step limit):")
    print(f"  this plan {cost.planned:.1f}; each row on its own {cost.separately:.1f} "
          f"(x{cost.saving:.2f}); still to run {cost.todo:.1f}")


def finish_sweep(plan: Plan, outcomes: dict, results: pd.DataFrame, tracker, reference: str, sweep_id: str,
                 seconds: float, command: str = "") -> dict:
    """Log rows to MLflow, print and save the ablation table and the HTML report, record stage timings and
    provenance (the command, git SHA and versions) beside them."""
    out_dir = Path(plan.store) / "reports" / sweep_id
    out_dir.mkdir(parents=True, exist_ok=True)
    _provenance(plan, sweep_id, reference, seconds, command, out_dir)
    failed_rows, infos = _finish_rows(plan, outcomes, results, tracker)
    summary: dict = {"failed_rows": failed_rows, "report": None}
    learning = learning_curves(plan, out_dir)
    if not results.empty:
        summary["report"] = _table_and_report(plan, results, infos, tracker, reference, sweep_id, out_dir, learning)
    _stage_timings(plan, outcomes, sweep_id, seconds, out_dir)
    tracker.end(tracker.sweep_run(), "FAILED" if failed_rows else "FINISHED")
    flushed = tracker.flush(restart_server=True)
    line = ("\n" + PIPELINE_CHECK_NOTICE if plan.sweep.pipeline_check else "") + (
        f"\nsweep {sweep_id} finished in {seconds:.0f}s; report {summary['report']}; MLflow UI {tracker.uri} "
        f"(experiment {plan.sweep.name!r})")
    if not getattr(flushed, "complete", True):
        line += f"; {tracker.pending()} MLflow records still queued"
    print(line)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _finish_rows(plan: Plan, outcomes: dict, results: pd.DataFrame, tracker) -> tuple[list[str], list]:
    """End each row's MLflow run (FAILED, with its stages' errors, when one failed or was skipped), logging
    its results; returns (failed rows, each row's RowInfo)."""
    from videopolicy.report import RowInfo
    from videopolicy.tracking import log_row_results

    failed_rows, infos = [], []
    for row in plan.rows:
        bad = [outcomes[s] for s in row.stages.values() if outcomes.get(s) and outcomes[s].status in ("failed", "skipped")]
        if bad:
            failed_rows.append(row.name)
            tracker.set_tags(tracker.row_run(row.name), {"videopolicy.error": "; ".join(
                f"{o.id}: {o.error}" for o in bad)[:4000]})
        train_tasks = ()
        if "stage2" in row.stages and plan.done(row.stages["stage2"]):
            train_tasks = tuple(plan.stage_dir(row.stages["stage2"]).manifest().get("train_tasks", ()))
        infos.append(RowInfo.from_config(row.name, row.cfg, train_tasks))
        if not results.empty and row.name in set(results["row"]):
            log_row_results(tracker, row.name, results)
        tracker.end(tracker.row_run(row.name), "FAILED" if row.name in failed_rows else "FINISHED")
    return failed_rows, infos


def learning_curves(plan: Plan, out_dir: Path) -> pd.DataFrame:
    """Every finished training stage's learning curve (its progress file: videopolicy.progress.read_curve),
    one row per stage and reported step, saved as curves.csv when any stage reported metrics. The report
    directory is the sweep's, shared by every `--rows` subset: a subset without training stages must not
    leave (and export) the previous invocation's curves."""
    from videopolicy.progress import read_curve

    (out_dir / "curves.csv").unlink(missing_ok=True)

    parts = []
    for node in plan.nodes.values():
        if isinstance(node, TrainStage) and plan.done(node.id):
            curve = read_curve(plan.stage_dir(node).path / "progress")
            if not curve.empty:
                parts.append(curve.assign(stage=node.id, kind=node.kind, label=node.label, rows=",".join(node.rows)))
    if not parts:
        return pd.DataFrame()
    learning = pd.concat(parts, ignore_index=True)
    front = ["stage", "kind", "label", "rows", "step"]
    learning = learning[front + [c for c in learning.columns if c not in front]]
    learning.to_csv(out_dir / "curves.csv", index=False)
    return learning


def _table_and_report(plan: Plan, results: pd.DataFrame, infos: list, tracker, reference: str, sweep_id: str,
                      out_dir: Path, learning: pd.DataFrame | None = None) -> str:
    """Print the ablation table of the rows with results, write the HTML report and the episodes (logged
    to MLflow too); returns the report's path."""
    from videopolicy.report import ablation_table, build_report
    from videopolicy.tracking import log_report

    done_rows = [i for i in infos if i.name in set(results["row"])]
    ref = reference if reference in {i.name for i in done_rows} else None
    adaptive, hours = adaptive_settings(plan)
    notice = PIPELINE_CHECK_NOTICE if plan.sweep.pipeline_check else ""
    table = ablation_table(results, ref, rows=[i.name for i in done_rows], adaptive=adaptive, episode_hours=hours,
                           notice=notice)
    print("\n" + str(table) + "\n")
    title = f"{'Pipeline check' if notice else 'Video Policy ablation'}: {sweep_id}"
    paths = build_report(results, done_rows, out_dir, ref, title=title, adaptive=adaptive, episode_hours=hours,
                         notice=notice, learning=learning)
    log_report(tracker, paths, table.numeric)
    results.to_parquet(out_dir / "episodes.parquet", index=False)
    return str(paths["report"])


def _stage_timings(plan: Plan, outcomes: dict, sweep_id: str, seconds: float, out_dir: Path) -> None:
    """Each stage's status and seconds: printed, and saved as stages.json. `seconds` is this invocation's
    time on the stage (0 when it was found complete); `ran_seconds` is what its completing run took, from
    its manifest, so a sweep run in pieces still reports every stage's wall time (a stage interrupted and
    resumed counts only its last piece)."""
    timings = []
    for o in outcomes.values():
        node = plan.nodes[o.id]
        ran = plan.stage_dir(node).manifest().get("seconds") if plan.done(o.id) else None
        timings.append({"stage": o.id, "kind": node.kind, "label": node.label, "status": o.status,
                        "seconds": round(o.seconds, 1), "ran_seconds": round(ran, 1) if ran is not None else None,
                        "rows": node.rows, "error": o.error})
    write_json_atomic(out_dir / "stages.json", {"sweep": sweep_id, "seconds": seconds, "stages": timings})
    print(f"{'stage':<26}{'status':<9}{'seconds':>8}{'ran (s)':>9}  rows")
    for t in timings:
        ran = f"{t['ran_seconds']:>9.0f}" if t["ran_seconds"] is not None else f"{'-':>9}"
        print(f"{t['stage'][:25]:<26}{t['status']:<9}{t['seconds']:>8.0f}{ran}  {','.join(t['rows'])}"
              + (f"\n    {t['error']}" if t["error"] else ""))


def _provenance(plan: Plan, sweep_id: str, reference: str, seconds: float, command: str, out_dir: Path) -> None:
    """provenance.json: what produced these results (the command, git SHA, package versions, the machine)
    and the evaluation settings a reader needs to check the counts (videopolicy.report.results)."""
    from dataclasses import asdict

    from videopolicy.tracking import provenance_tags

    e = plan.sweep.base.eval
    write_json_atomic(out_dir / "provenance.json", {
        "sweep": sweep_id, "name": plan.sweep.name, "command": command or " ".join(sys.argv),
        "rows": [r.name for r in plan.rows], "reference_row": reference, "pipeline_check": plan.sweep.pipeline_check,
        "eval": {"suite": e.suite, "tasks": list(e.tasks or []), "episodes_per_task": e.episodes_per_task,
                 "seed": e.seed, "max_steps": e.max_steps, "adaptive": asdict(e.adaptive) if e.adaptive.enabled else None},
        "this_invocation_seconds": round(seconds, 1), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "tags": provenance_tags(e.suite)})


def export_results(report_dir: Path, dest: Path) -> Path:
    """Copy a finished sweep's results (report.results.FILES; not summary.json, which names store paths)
    into `dest` (e.g. results/cpu_paper/ to commit)."""
    from videopolicy.report.results import FILES, OPTIONAL_FILES

    missing = [f for f in FILES if not (Path(report_dir) / f).exists()]
    if missing:
        raise FileNotFoundError(f"{report_dir}: no {missing}; only a sweep with evaluated rows has results to export")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES + tuple(f for f in OPTIONAL_FILES if (Path(report_dir) / f).exists()):
        shutil.copy2(Path(report_dir) / f, dest / f)
    return dest


def adaptive_settings(plan: Plan):
    """(eval.adaptive of the sweep's adaptive rows or None, row -> estimated A100-hours per episode)."""
    from videopolicy.sweep.cost import a100_hours

    adaptive = next((n.cfg.eval.adaptive for n in plan.nodes.values() if isinstance(n, EvalStage) and n.reference),
                    None)
    if adaptive is None:
        return None, None
    hours = {}
    for row in plan.rows:
        node = plan.nodes[row.stages["eval"]]
        try:
            episodes = len(episode_tasks(node)) * node.cfg.eval.episodes_per_task
            hours[row.name] = a100_hours(node.cost()) / episodes if episodes else 0.0
        except Exception:  # noqa: BLE001 - an estimate only; the table then shows episodes saved alone
            continue
    return adaptive, hours


def episode_tasks(node) -> tuple:
    return episode_list_id(node.cfg)[1] or tuple(range(24))
