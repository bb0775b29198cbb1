"""Success vs training steps: one table from evaluations of one run's checkpoints (each a `jobs/evaluate.py`
output or a sweep's eval stage directory, both holding results.csv), for a results/ directory.

    python jobs/success_curve.py --out results/cpu_curve_horizon_16 --tasks Lift \\
        --point 500=runs/h16_step500 --point 1000=runs/h16_step1000 --point 1500=<store>/eval/<key>

Each point is STEP=DIR. Episodes on the training demos' own scenes (`--scenes demos`, keys .../demo/i)
are kept apart from those on unseen scenes (.../default/i), which are paired across points: the same
keys with the same seeds under the same protocol and evaluation settings (but for the list of tasks
evaluated beside them), or the command stops. Writes curve.csv (step, scenes, task, n, successes,
rate and its Wilson 95% interval), episodes.parquet and provenance.json (the command, git SHA, versions,
and each point's directory and policy); tests/test_committed_results.py recomputes curve.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int | str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--point", action="append", required=True, metavar="STEP=DIR",
                   help="a checkpoint's training step and the directory of its evaluation (results.csv)")
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", nargs="*", default=None, help="keep only these tasks (e.g. a sweep's eval ran more)")
    p.add_argument("--suite", default="robosuite", help="the suite whose package version the provenance records")
    args = p.parse_args(argv)

    import pandas as pd

    from videopolicy.report.results import curve_table
    from videopolicy.tracking import provenance_tags

    parts, settings = [], []
    for item in args.point:
        step, _, d = item.partition("=")
        if not step.isdigit() or not (Path(d) / "results.csv").is_file():
            return f"error: --point {item!r}: expected STEP=DIR with an integer step and DIR/results.csv"
        df = pd.read_csv(Path(d) / "results.csv")
        df = df[df["task"].isin(args.tasks)] if args.tasks else df
        if (df["status"] != "done").any():
            return f"error: {d}/results.csv: {int((df['status'] != 'done').sum())} episodes not done; finish them first"
        scenes = df["episode_key"].str.split("/").str[2].map(lambda s: "demos" if s == "demo" else "unseen")
        parts.append(df.assign(step=int(step), scenes=scenes, source=str(d)))
        settings.append((d, rollout_settings(Path(d) / "evaluation.json", sorted(set(df["task"])))))
    for d, other in settings[1:]:
        if other != settings[0][1]:
            diff = sorted(k for k in other if other[k] != settings[0][1].get(k))
            return f"error: {d} ran its episodes under other settings than {settings[0][0]} ({diff}): not comparable"
    episodes = pd.concat(parts, ignore_index=True)
    unseen = episodes[episodes["scenes"] == "unseen"]
    keys = {s: sorted(zip(g["episode_key"], g["seed"])) for s, g in unseen.groupby("step")}
    if len({tuple(k) for k in keys.values()}) > 1:
        return f"error: the unseen-scene evaluations ran different episodes (steps {sorted(keys)}): not paired"
    tags = provenance_tags(args.suite)  # before writing: rewriting a committed curve is not dirty code
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    episodes.drop(columns=["source"]).to_parquet(out / "episodes.parquet", index=False)
    curve = curve_table(episodes)
    curve.to_csv(out / "curve.csv", index=False)
    (out / "provenance.json").write_text(json.dumps({
        "command": " ".join(["python", "jobs/success_curve.py", *(argv if argv is not None else sys.argv[1:])]),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tags": tags,
        "points": [{"step": int(g["step"].iloc[0]), "scenes": g["scenes"].iloc[0], "dir": src,
                    "policy_id": g["policy_id"].iloc[0]} for src, g in episodes.groupby("source", sort=False)]},
        indent=1) + "\n")
    print(curve.to_string(index=False))
    return 0


def rollout_settings(path: Path, tasks: list[str]) -> dict:
    """What decides how `tasks`' episodes roll out, from an evaluation's evaluation.json: its protocol and
    eval settings without the list of tasks evaluated beside them (that changes the protocol's hash, not
    an episode), the per-task step limits cut to `tasks`. Workers and recorded videos are left out too:
    a video keeps the frames the policy already saw (evaluate/worker.py `_Episode.observe`)."""
    e = json.loads(path.read_text())
    protocol = {k: v for k, v in e["protocol"].items() if k not in ("hash", "tasks")}
    protocol["extra"] = [[k, [t for t in v if t[0] in tasks]] if k == "step_limits" else [k, v]
                         for k, v in protocol.get("extra", [])]
    ev = {k: v for k, v in e["eval"].items() if k not in ("tasks", "episodes_per_task", "workers", "adaptive",
                                                        "video_episodes")}
    return {"protocol": protocol, "eval": ev, "execute_steps": e.get("execute_steps"),
            "policy_seed": e.get("policy_seed")}


if __name__ == "__main__":
    sys.exit(main())
