"""Check a committed results directory (a sweep's `--results` copy: ablation.csv/.md/.html, report.html,
episodes.parquet, stages.json, provenance.json; curves.csv when its training stages reported metrics) for
consistency without rerunning anything.

    problems = check_results("results/cpu_paper")   # [] when consistent; else what is wrong, and where

What it checks: every file is there; the rows of the table, of the episodes and of the provenance agree;
every row ran the same episodes (paired), each task the configured count (a fixed-budget evaluation) with no
infrastructure errors; each rate and Wilson 95% interval in ablation.csv equals the one recomputed here
from the episodes with its own formula; each paired delta equals the mean over tasks of the paired differences; every stage
finished and reports its wall time; the provenance names a command, a git SHA and the package versions;
each learning curve in curves.csv belongs to a training stage, its steps rise and its loss is finite.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

FILES = ("ablation.csv", "ablation.md", "ablation.html", "report.html", "episodes.parquet", "stages.json",
         "provenance.json")
OPTIONAL_FILES = ("curves.csv",)  # the training stages' learning curves, when they reported metrics
VERSIONS = ("torch", "diffusers", "ray", "mujoco", "robosuite", "mlflow")


def wilson95(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval, written out again so the check does not trust evaluate.stats."""
    if n == 0:
        return 0.0, 1.0
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def check_results(directory: str | Path, tol: float = 1e-6) -> list[str]:
    d = Path(directory)
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        return [f"{d}: missing {missing} (export a finished sweep with --results {d})"]
    problems: list[str] = []
    table = pd.read_csv(d / "ablation.csv")
    episodes = pd.read_parquet(d / "episodes.parquet")
    prov = json.loads((d / "provenance.json").read_text())
    stages = json.loads((d / "stages.json").read_text())["stages"]

    rows = list(table["row"])
    if sorted(rows) != sorted(set(episodes["row"])):
        problems.append(f"ablation.csv rows {rows} != episodes.parquet rows {sorted(set(episodes['row']))}")
    if sorted(rows) != sorted(prov["rows"]):
        problems.append(f"ablation.csv rows {rows} != provenance.json rows {prov['rows']}")
    md = (d / "ablation.md").read_text()
    problems += [f"ablation.md has no row {r!r}" for r in rows if f"| {r} |" not in md]
    tasks = sorted(set(episodes["task"]))
    bad = episodes[episodes["status"] != "done"]
    if len(bad):
        problems.append(f"episodes.parquet: {len(bad)} records not done ({sorted(set(bad['status']))})")
    done = episodes[episodes["status"] == "done"]

    reference = set(map(tuple, done[done["row"] == prov["reference_row"]][["task", "episode_key"]].values))
    fixed = prov["eval"]["adaptive"] is None
    for row in rows:
        mine = done[done["row"] == row]
        keys = set(map(tuple, mine[["task", "episode_key"]].values))
        if fixed and keys != reference:
            problems.append(f"row {row}: its episodes differ from {prov['reference_row']}'s (not paired)")
        line = table[table["row"] == row].iloc[0]
        for task in tasks:
            t = mine[mine["task"] == task]
            n, k = len(t), int(t["success"].astype(bool).sum())
            if fixed and n != prov["eval"]["episodes_per_task"]:
                problems.append(f"row {row}, {task}: {n} episodes, provenance says {prov['eval']['episodes_per_task']}")
            lo, hi = wilson95(k, n)
            for col, want in ((task, k / n if n else math.nan), (f"{task}_lo", lo), (f"{task}_hi", hi)):
                got = float(line[col])
                if not (abs(got - want) <= tol or (math.isnan(got) and math.isnan(want))):
                    problems.append(f"ablation.csv row {row}, {col}: {got} != {want} recomputed from {k}/{n} episodes")
        if int(line["n_episodes"]) != len(mine):
            problems.append(f"ablation.csv row {row}: n_episodes {line['n_episodes']} != {len(mine)} in episodes.parquet")
        if row != prov["reference_row"] and fixed and not math.isnan(line["delta"]):
            pairs = mine.merge(done[done["row"] == prov["reference_row"]], on=["task", "episode_key"])
            diff = pairs["success_x"].astype(float) - pairs["success_y"].astype(float)
            want = diff.groupby(pairs["task"]).mean().mean()  # every task weighs the same
            if abs(float(line["delta"]) - want) > tol or int(line["n_pairs"]) != len(pairs):
                problems.append(f"ablation.csv row {row}: delta {line['delta']} over {line['n_pairs']} pairs != "
                                f"{want} over {len(pairs)} recomputed")

    for s in stages:
        if s["status"] not in ("done", "reused") or s.get("ran_seconds") is None:
            problems.append(f"stages.json: stage {s['stage']} is {s['status']} (ran_seconds {s.get('ran_seconds')})")
    if (d / "curves.csv").is_file():
        problems += _check_curves(pd.read_csv(d / "curves.csv"), {s["stage"]: s for s in stages})
    tags = prov.get("tags", {})
    if not re.fullmatch(r"[0-9a-f]{40}", tags.get("videopolicy.git.sha", "")):
        problems.append(f"provenance.json: git SHA {tags.get('videopolicy.git.sha')!r} is not a commit")
    if not prov.get("command", "").strip():
        problems.append("provenance.json: no command")
    problems += [f"provenance.json: no version of {p}" for p in VERSIONS
                 if tags.get(f"videopolicy.version.{p}", "absent") == "absent"]
    return problems


def _check_curves(curves: pd.DataFrame, stages: dict[str, dict]) -> list[str]:
    """curves.csv: every curve belongs to a training stage of stages.json, its steps rise, its loss is finite."""
    problems = []
    for stage, c in curves.groupby("stage", sort=False):
        if stages.get(stage, {}).get("kind") not in ("stage1", "stage2"):
            problems.append(f"curves.csv: stage {stage} is not a training stage of stages.json")
        steps = list(c["step"])
        if steps != sorted(set(steps)) or steps[0] <= 0:
            problems.append(f"curves.csv: stage {stage}: steps {steps[:5]}... are not positive and rising")
        if not c["loss"].map(math.isfinite).all():
            problems.append(f"curves.csv: stage {stage}: non-finite training loss")
    return problems


def curve_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Success per (training step, scenes, task) of a success-vs-steps curve (jobs/success_curve.py): the
    evaluation's own success_table per point (the check recomputes it with wilson95 above); `episodes` has
    the harness columns plus step and scenes ('unseen' or 'demos')."""
    from videopolicy.evaluate.stats import success_table

    parts = [success_table(g.drop(columns=["row"], errors="ignore")).assign(step=int(step), scenes=scenes)
             for (step, scenes), g in episodes.groupby(["step", "scenes"])]
    table = pd.concat(parts, ignore_index=True)
    return table[["step", "scenes", "task", "n", "successes", "rate", "lo", "hi"]]
