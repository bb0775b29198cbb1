"""One results directory from several committed ones that evaluated rows of the same sweep on the same
episodes (a study run in pieces on machines that did not keep its store).

    out = assemble_results([Path("results/a"), Path("results/b")], Path("results/cpu_paper"), infos,
                           reference_row="two_stage", command="python jobs/assemble_results.py ...", tags=tags)

A row's outcomes are copied, never recomputed, and a comparison across parts is only as paired as its
episodes: every part must pass check_results, share the sweep's name and evaluation settings, and give
each episode key the same seed and protocol hash (the same scene and rollout protocol); a row found in
two parts must have the same outcomes in both; with `planned` (each row's stage ids and labels as the
sweep file plans them now, from sweep.plan.build_plan), a part whose row ran other stages (another
budget, a --set it was run with) is refused, so the table is the sweep file's. The result is written
like a sweep's `--results` copy (ablation table, report, episodes, stage timings, learning curves) with a
provenance that names this assembly's command and each part's command, git SHA and finish time, and it
must pass check_results.

compare_results pairs two rows that no table holds together (two budgets of one row, two code versions),
from two results directories, with the same checks of the episodes.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pandas as pd

from videopolicy.evaluate.stats import EpisodeMismatchError, paired_difference, row_summary, success_table
from videopolicy.report.html import build_report
from videopolicy.report.results import check_results
from videopolicy.report.rows import RowInfo

SAME_EVAL = ("suite", "tasks", "episodes_per_task", "seed", "max_steps", "adaptive")
SAME_SCENES = ("suite", "seed", "max_steps")  # compare_results: on the tasks both ran, paired by episode key
OUTCOME = ["task", "episode_key", "seed", "protocol_hash", "policy_id", "success", "steps"]


class AssemblyError(ValueError):
    """The parts cannot make one paired table; the message names the part and what differs."""


PlannedStages = dict[str, dict[str, tuple[str, str]]]  # row -> {kind: (stage id, label)}
CHECKED_KINDS = ("stage1", "stage2", "eval")  # each key hashes its inputs' keys: the data and the policy


def assemble_results(parts: list[Path], out: Path, infos: list[RowInfo], reference_row: str, command: str,
                     tags: dict[str, str], planned: PlannedStages | None = None) -> Path:
    """Write the rows of `infos` (in that order; each must be in some part) into `out` from `parts`;
    with `planned`, each row's part must have run the stages the sweep plans for it."""
    loaded = [_load(Path(p)) for p in parts]
    first = loaded[0]
    for part in loaded[1:]:
        if part["prov"]["name"] != first["prov"]["name"]:
            raise AssemblyError(f"{part['dir']}: sweep {part['prov']['name']!r}, {first['dir']}: "
                                f"{first['prov']['name']!r}; only rows of one sweep make one table")
        for key in SAME_EVAL:
            if part["prov"]["eval"].get(key) != first["prov"]["eval"].get(key):
                raise AssemblyError(f"{part['dir']}: eval.{key} {part['prov']['eval'].get(key)!r} != "
                                    f"{first['prov']['eval'].get(key)!r} in {first['dir']}: not the same episodes")

    chosen: dict[str, pd.DataFrame] = {}
    source: dict[str, Path] = {}
    for info in infos:
        holders = [p for p in loaded if info.name in set(p["episodes"]["row"])]
        if not holders:
            raise AssemblyError(f"row {info.name!r} is in none of the parts {[str(p['dir']) for p in loaded]}")
        for holder in holders if planned is not None else ():  # first: which part ran another config
            _check_planned(holder, info.name, planned.get(info.name, {}))
        mine = holders[0]["episodes"][holders[0]["episodes"]["row"] == info.name]
        for other in holders[1:]:
            theirs = other["episodes"][other["episodes"]["row"] == info.name]
            if not _same_outcomes(mine, theirs):
                raise AssemblyError(f"row {info.name!r}: {holders[0]['dir']} and {other['dir']} hold different "
                                    f"outcomes for it (two evaluations of two policies?): keep one part")
        chosen[info.name], source[info.name] = mine, holders[0]["dir"]
    episodes = pd.concat(chosen.values(), ignore_index=True)
    _check_same_episodes(episodes, {r: str(d) for r, d in source.items()})

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage_ids = {s for p in loaded for s in _row_stages(p, set(chosen))}
    stages = list({s["stage"]: s for p in reversed(loaded) for s in p["stages"] if s["stage"] in stage_ids}.values())
    curves = [p["curves"][p["curves"]["stage"].isin(stage_ids)] for p in loaded if p["curves"] is not None]
    learning = pd.concat(curves, ignore_index=True).drop_duplicates(["stage", "step"]) if curves else None
    title = f"Video Policy ablation: {first['prov']['name']} (assembled from {len(loaded)} sweeps)"
    build_report(episodes, infos, out, reference_row, title=title, learning=learning)
    episodes.to_parquet(out / "episodes.parquet", index=False)
    if learning is not None and not learning.empty:
        learning.to_csv(out / "curves.csv", index=False)
    (out / "stages.json").write_text(json.dumps({"sweep": "assembled", "seconds": None, "stages": stages}, indent=1))
    (out / "provenance.json").write_text(json.dumps({
        "sweep": "assembled", "name": first["prov"]["name"], "command": command, "rows": [i.name for i in infos],
        "reference_row": reference_row, "pipeline_check": False, "eval": first["prov"]["eval"],
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "tags": tags,
        "rows_from": {name: str(d) for name, d in source.items()},
        "parts": [{"dir": str(p["dir"]), "command": p["prov"]["command"], "rows": p["prov"]["rows"],
                   "git_sha": p["prov"]["tags"].get("videopolicy.git.sha"),
                   "finished_utc": p["prov"].get("finished_utc")} for p in loaded]}, indent=1) + "\n")
    problems = check_results(out)
    if problems:
        raise AssemblyError(f"{out}: the assembled results fail their own check: {problems}")
    return out


def compare_results(a: tuple[Path, str], b: tuple[Path, str]) -> dict:
    """Row a[1] of results directory a[0] minus row b[1] of b[0], paired on the episodes both ran.

    For two rows that no sweep put in one table (two budgets, two code versions, the same row name in
    two studies): both directories must pass check_results and share the eval suite, seed and step limit;
    the rows are compared on the tasks both ran, where they must have run the same episode keys, each with
    the same seed and protocol hash (an adaptive row is paired on the episodes it ran). The protocol hash
    covers the task list, so for runs of two task lists only the seeds are checked (then "caveat" says so).
    Returns {"a": label, "b": label, "tasks": [...],
    "rates": {label: {task or "average": (rate, lo, hi)}}, "paired": {task or "average": PairedDifference},
    "caveat": None, or what could not be checked}.
    """
    parts = [_load(Path(d)) for d, _ in (a, b)]
    for key in SAME_SCENES:
        if parts[0]["prov"]["eval"].get(key) != parts[1]["prov"]["eval"].get(key):
            raise AssemblyError(f"{parts[1]['dir']}: eval.{key} {parts[1]['prov']['eval'].get(key)!r} != "
                                f"{parts[0]['prov']['eval'].get(key)!r} in {parts[0]['dir']}: not the same episodes")
    labels, chosen = [f"{d}:{row}" for d, row in (a, b)], []
    if labels[0] == labels[1]:
        raise AssemblyError(f"{labels[0]} compared with itself")
    for part, (_, row), label in zip(parts, (a, b), labels):
        mine = part["episodes"][part["episodes"]["row"] == row]
        if mine.empty:
            raise AssemblyError(f"{part['dir']}: no row {row!r} (rows there: {sorted(set(part['episodes']['row']))}); "
                                f"name one as DIR:ROW")
        chosen.append(mine.assign(row=label))
    shared = [t for t in pd.unique(chosen[0]["task"]) if t in set(chosen[1]["task"])]  # e.g. a Lift-only run
    if not shared:
        raise AssemblyError(f"{labels[0]} ran tasks {sorted(set(chosen[0]['task']))}, {labels[1]} "
                            f"{sorted(set(chosen[1]['task']))}: no task in common")
    episodes = pd.concat([c[c["task"].isin(shared)] for c in chosen], ignore_index=True)
    # The protocol hash covers the task list, so runs of other task lists differ in it by construction;
    # then only the scenes' seeds can be checked, and the result says so.
    same_tasks = [tuple(p["prov"]["eval"].get("tasks") or ()) for p in parts]
    checked = ("protocol_hash", "seed") if same_tasks[0] == same_tasks[1] else ("seed",)
    _check_same_episodes(episodes, {label: label.rsplit(":", 1)[0] for label in labels}, checked)
    caveat = None if len(checked) == 2 else (
        f"the two runs evaluated other task lists ({list(same_tasks[0])} and {list(same_tasks[1])}): compared on "
        f"{shared}, where every episode's seed matches; their protocol hashes differ by construction, so the "
        f"rest of the protocol (cameras, image size, render settings) is not checked")
    tasks = list(pd.unique(episodes["task"]))
    table = success_table(episodes)
    rates = {label: {t: tuple(r) for t, r in zip(g["task"], g[["rate", "lo", "hi"]].itertuples(index=False))}
             for label, g in table.groupby("row", sort=False)}
    for r in row_summary(episodes).itertuples(index=False):
        rates[r.row]["average"] = (r.mean, r.lo, r.hi)
    try:
        paired = {t: paired_difference(episodes[episodes["task"] == t], *labels) for t in tasks}
        paired["average"] = paired_difference(episodes, *labels)
    except EpisodeMismatchError as e:  # e.g. 20 episodes per task against 50
        raise AssemblyError(str(e)) from e
    return {"a": labels[0], "b": labels[1], "tasks": tasks, "rates": rates, "paired": paired, "caveat": caveat}


def _check_same_episodes(episodes: pd.DataFrame, source: dict[str, str],
                         checked: tuple[str, ...] = ("protocol_hash", "seed")) -> None:
    """Each episode key must mean one scene and rollout protocol (seed, protocol hash) across rows."""
    variants = episodes.groupby(["task", "episode_key"])[list(checked)].nunique().max(axis=1)
    if (variants > 1).any():
        task, key = variants[variants > 1].index[0]
        rows = sorted(set(episodes[episodes["episode_key"] == key]["row"]))
        what = " or ".join(c.replace("_", " ") for c in checked)
        raise AssemblyError(f"episode {key} ({task}) has a different {what} across rows {rows} (from "
                            f"{sorted({source[r] for r in rows})}): not the same episode, not paired")


def _load(d: Path) -> dict:
    problems = check_results(d)
    if problems:
        raise AssemblyError(f"{d}: not a consistent results directory: {problems}")
    curves = d / "curves.csv"
    return {"dir": d, "prov": json.loads((d / "provenance.json").read_text()),
            "episodes": pd.read_parquet(d / "episodes.parquet"),
            "stages": json.loads((d / "stages.json").read_text())["stages"],
            "curves": pd.read_csv(curves) if curves.is_file() else None}


def _check_planned(part: dict, row: str, planned: dict[str, tuple[str, str]]) -> None:
    """The row's stage1/stage2/eval in `part` must be the ones the sweep plans (same ids, so same config)."""
    ran = {s["kind"]: (s["stage"], s.get("label", "")) for s in part["stages"]
           if row in s.get("rows", []) and s["kind"] in CHECKED_KINDS}
    for kind in CHECKED_KINDS:
        want, got = planned.get(kind), ran.get(kind)
        if (want and want[0]) != (got and got[0]):
            raise AssemblyError(
                f"row {row!r} in {part['dir']}: its {kind} is {_describe(got)}, the sweep plans {_describe(want)}: "
                f"that part ran another config (its command: {part['prov'].get('command')!r}); rerun the row with "
                f"the sweep file as it is, or assemble with the sweep file (and --set) it ran")


def _describe(stage: tuple[str, str] | None) -> str:
    return "none" if stage is None else f"{stage[0]} ({stage[1]!r})" if stage[1] else stage[0]


def _row_stages(part: dict, rows: set[str]) -> list[str]:
    """The stages of `part` that served one of `rows` (stages.json names each stage's rows)."""
    return [s["stage"] for s in part["stages"] if rows & set(s.get("rows", []))]


def _same_outcomes(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    key = ["task", "episode_key"]
    a, b = a[OUTCOME].sort_values(key).reset_index(drop=True), b[OUTCOME].sort_values(key).reset_index(drop=True)
    return a.equals(b)
