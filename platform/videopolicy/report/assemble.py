"""One results directory from several committed ones that evaluated rows of the same sweep on the same
episodes (a study run in pieces on machines that did not keep its store).

    out = assemble_results([Path("results/a"), Path("results/b")], Path("results/cpu_paper"), infos,
                           reference_row="two_stage", command="python jobs/assemble_results.py ...", tags=tags)

A row's outcomes are copied, never recomputed, and a comparison across parts is only as paired as its
episodes: every part must pass check_results, share the sweep's name and evaluation settings, and give
each episode key the same seed and protocol hash (the same scene and rollout protocol); a row found in
two parts must have the same outcomes in both. The result is written like a sweep's `--results` copy
(ablation table, report, episodes, stage timings, learning curves) with a provenance that names this
assembly's command and each part's command, git SHA and finish time, and it must pass check_results.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pandas as pd

from videopolicy.report.html import build_report
from videopolicy.report.results import check_results
from videopolicy.report.rows import RowInfo

SAME_EVAL = ("suite", "tasks", "episodes_per_task", "seed", "max_steps", "adaptive")
OUTCOME = ["task", "episode_key", "seed", "protocol_hash", "policy_id", "success", "steps"]


class AssemblyError(ValueError):
    """The parts cannot make one paired table; the message names the part and what differs."""


def assemble_results(parts: list[Path], out: Path, infos: list[RowInfo], reference_row: str, command: str,
                     tags: dict[str, str]) -> Path:
    """Write the rows of `infos` (in that order; each must be in some part) into `out` from `parts`."""
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
        mine = holders[0]["episodes"][holders[0]["episodes"]["row"] == info.name]
        for other in holders[1:]:
            theirs = other["episodes"][other["episodes"]["row"] == info.name]
            if not _same_outcomes(mine, theirs):
                raise AssemblyError(f"row {info.name!r}: {holders[0]['dir']} and {other['dir']} hold different "
                                    f"outcomes for it (two evaluations of two policies?): keep one part")
        chosen[info.name], source[info.name] = mine, holders[0]["dir"]
    episodes = pd.concat(chosen.values(), ignore_index=True)
    variants = episodes.groupby(["task", "episode_key"])[["protocol_hash", "seed"]].nunique().max(axis=1)
    if (variants > 1).any():
        task, key = variants[variants > 1].index[0]
        rows = sorted(set(episodes[episodes["episode_key"] == key]["row"]))
        raise AssemblyError(f"episode {key} ({task}) has a different protocol hash or seed across rows {rows} (from "
                            f"{sorted({str(source[r]) for r in rows})}): not the same episode, not paired")

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


def _load(d: Path) -> dict:
    problems = check_results(d)
    if problems:
        raise AssemblyError(f"{d}: not a consistent results directory: {problems}")
    curves = d / "curves.csv"
    return {"dir": d, "prov": json.loads((d / "provenance.json").read_text()),
            "episodes": pd.read_parquet(d / "episodes.parquet"),
            "stages": json.loads((d / "stages.json").read_text())["stages"],
            "curves": pd.read_csv(curves) if curves.is_file() else None}


def _row_stages(part: dict, rows: set[str]) -> list[str]:
    """The stages of `part` that served one of `rows` (stages.json names each stage's rows)."""
    return [s["stage"] for s in part["stages"] if rows & set(s.get("rows", []))]


def _same_outcomes(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    key = ["task", "episode_key"]
    a, b = a[OUTCOME].sort_values(key).reset_index(drop=True), b[OUTCOME].sort_values(key).reset_index(drop=True)
    return a.equals(b)
