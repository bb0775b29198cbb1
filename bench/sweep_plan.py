"""What planning saves, and where a sweep's time goes.

1. Stages and estimated A100-hours of the paper's RoboCasa and horizon sweeps: the merged plan against
   every row run on its own (a ratio), from the models' FLOP counts (no GPU, no data needed).
2. The smoke sweep's wall time split by stage kind, read from the stages.json a finished run wrote
   (`make run` first; pass --store if it is not .vp_store), so the slowest part is visible.

    python bench/sweep_plan.py [--store .vp_store] [--out bench/results/sweep_plan.json]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from videopolicy.config import load_sweep
from videopolicy.sweep.estimate import estimate
from videopolicy.sweep.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--store", default=str(ROOT / ".vp_store"))
parser.add_argument("--out", default="bench/results/sweep_plan.json")
args = parser.parse_args()

results: dict = {"plans": {}, "smoke": None}
print(f"{'sweep':<16}{'rows':>5}{'stages':>8}{'alone':>7}{'A100-h plan':>13}{'A100-h alone':>14}{'ratio':>7}")
for name in ("robocasa_paper", "horizon", "libero10_paper"):
    sweep = load_sweep(ROOT / f"sweeps/{name}.yaml", check_files=False)
    plan = build_plan(sweep, "/nonexistent-store")
    cost = estimate(plan)
    from videopolicy.sweep.estimate import _closure

    alone = sum(len(_closure(plan, r.stages.values())) for r in plan.rows)  # every row with all its inputs
    by_kind: dict = defaultdict(float)
    for sid, h in cost.per_stage.items():
        by_kind[plan.nodes[sid].kind] += h
    results["plans"][name] = {"rows": len(plan.rows), "stages": len(plan.nodes), "stages_alone": alone,
                              "a100_h_planned": cost.planned, "a100_h_alone": cost.separately,
                              "ratio": cost.saving, "a100_h_by_kind": dict(by_kind)}
    print(f"{name:<16}{len(plan.rows):>5}{len(plan.nodes):>8}{alone:>7}{cost.planned:>13.1f}"
          f"{cost.separately:>14.1f}{cost.saving:>7.2f}")

reports = sorted(Path(args.store).glob("reports/*/stages.json"), key=lambda p: p.stat().st_mtime)
smoke = [p for p in reports if p.parent.name.startswith("smoke")]
if smoke:
    data = json.loads(smoke[-1].read_text())
    by_kind = defaultdict(lambda: [0, 0.0])
    for s in data["stages"]:
        if s["status"] == "done":
            by_kind[s["kind"]][0] += 1
            by_kind[s["kind"]][1] += s["seconds"]
    total = sum(v[1] for v in by_kind.values()) or 1.0
    print(f"\nsmoke sweep {data['sweep']}: {data['seconds']:.0f}s driver wall time (stages run in that run only)")
    for kind, (n, sec) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"  {kind:<8}{n:>3} stages {sec:>8.0f}s  {sec / total:>6.1%}")
    results["smoke"] = {"sweep": data["sweep"], "seconds": data["seconds"],
                        "by_kind": {k: {"stages": n, "seconds": s} for k, (n, s) in by_kind.items()}}
else:
    print(f"\nno finished smoke sweep under {args.store}: run `make run` first for the wall-time split")
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps(results, indent=2))
print(f"wrote {args.out}")
