"""Generate scripted-expert demonstrations (robomimic HDF5, one file per task) as parallel Ray tasks.

    python jobs/generate_demos.py --config sweeps/smoke.yaml --tasks Lift Stack --demos-per-task 10

Resumable: finished shards and finished tasks are reused; rerunning only does what is missing.
"""

import argparse
import json
import logging
import sys

from videopolicy.config import ConfigError, load_config
from videopolicy.sim.robosuite.demos import demo_stage, generate_demos
from videopolicy.runtime import init_ray

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--config", default="sweeps/smoke.yaml", help="config or sweep YAML (its base is used)")
parser.add_argument("--store", default=None)
parser.add_argument("--tasks", nargs="*", default=None)
parser.add_argument("--demos-per-task", type=int, default=None)
parser.add_argument("--image-size", type=int, default=None)
parser.add_argument("--render", choices=["default", "fast"], default=None)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

overrides = {k: v for k, v in {"tasks": args.tasks, "demos_per_task": args.demos_per_task,
                               "image_size": args.image_size}.items() if v is not None}
if args.render:
    overrides["render"] = {"preset": args.render}
try:
    cfg = load_config(args.config, {"demos": overrides})
except ConfigError as e:
    sys.exit(f"error: {e}")
store = args.store or cfg.store

init_ray(cfg.ray, store)
paths = generate_demos(cfg, store)

print(f"\n{'task':<20} {'demos':>5} {'attempts':>8} {'expert success':>14}  file")
for task, path in paths.items():
    m = demo_stage(store, cfg.demos, task).manifest()
    print(f"{task:<20} {m['demos']:>5} {m['attempts']:>8} {m['expert_success_rate']:>14.0%}  {path}")
print(json.dumps({t: str(p) for t, p in paths.items()}))
