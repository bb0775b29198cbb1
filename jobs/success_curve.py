"""Success vs training steps: one table from evaluations of one run's checkpoints (each a `jobs/evaluate.py`
output or a sweep's eval stage directory, both holding results.csv), for a results/ directory.

    python jobs/success_curve.py --out results/cpu_curve_horizon_16 --tasks Lift \\
        --point 500=runs/h16_step500 --point 1000=runs/h16_step1000 --point 1500=<store>/eval/<key>

Each point is STEP=DIR. Episodes on the training demos' own scenes (`--scenes demos`, keys .../demo/i)
are kept apart from those on unseen scenes (.../default/i), which are paired across points: the same
keys with the same seeds, or the command stops. Writes curve.csv (step, scenes, task, n, successes,
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

    parts = []
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
    episodes = pd.concat(parts, ignore_index=True)
    unseen = episodes[episodes["scenes"] == "unseen"]
    keys = {s: sorted(zip(g["episode_key"], g["seed"])) for s, g in unseen.groupby("step")}
    if len({tuple(k) for k in keys.values()}) > 1:
        return f"error: the unseen-scene evaluations ran different episodes (steps {sorted(keys)}): not paired"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    episodes.drop(columns=["source"]).to_parquet(out / "episodes.parquet", index=False)
    curve = curve_table(episodes)
    curve.to_csv(out / "curve.csv", index=False)
    (out / "provenance.json").write_text(json.dumps({
        "command": " ".join(["python", "jobs/success_curve.py", *(argv if argv is not None else sys.argv[1:])]),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tags": provenance_tags(args.suite),
        "points": [{"step": int(g["step"].iloc[0]), "scenes": g["scenes"].iloc[0], "dir": src,
                    "policy_id": g["policy_id"].iloc[0]} for src, g in episodes.groupby("source", sort=False)]},
        indent=1) + "\n")
    print(curve.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
