"""Run an ablation sweep: every row's stages, shared stages once, finished stages never redone.

    ray job submit --working-dir . -- python jobs/sweep_ablations.py --sweep sweeps/smoke.yaml
    python jobs/sweep_ablations.py --sweep sweeps/smoke.yaml          # starts a local Ray

Stages run today: demos -> clips (per row; rows with the same data config share one clip dataset).
Training (stage1 / stage2 / joint) and evaluation join this driver as they land.
"""

import argparse
import logging
import sys
import time

from videopolicy.config import ConfigError, load_sweep
from videopolicy.data.clips import build_clips
from videopolicy.data.hdf5 import DemoValidationError
from videopolicy.runtime import init_ray

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--sweep", default="sweeps/smoke.yaml", help="sweep YAML (base config + named rows)")
parser.add_argument("--store", default=None, help="stage output root (default: the sweep's base.store)")
parser.add_argument("--rows", nargs="*", default=None, help="run only these rows")
parser.add_argument("--skip-bad", action="store_true", help="skip invalid demos (reported) instead of failing")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# 1. Validate everything before any cluster resources are spent.
try:
    sweep = load_sweep(args.sweep)
except ConfigError as e:
    sys.exit(f"error: {e}")
rows = [(n, c) for n, c in sweep.rows if args.rows is None or n in args.rows]
if args.rows and len(rows) != len(args.rows):
    sys.exit(f"error: unknown rows {sorted(set(args.rows) - {n for n, _ in rows})}; "
             f"the sweep has {[n for n, _ in sweep.rows]}")
store = args.store or sweep.base.store
print(f"sweep {sweep.name!r}: {len(rows)} rows, store {store}", flush=True)

# 2. Ray: the cluster of `ray job submit`, or a local one.
init_ray(sweep.base.ray)

# 3. Data stages per row (content-addressed: identical stages across rows are built once).
t0 = time.time()
results, failed = [], []
for name, cfg in rows:
    cfg.demos.skip_bad = cfg.demos.skip_bad or args.skip_bad
    try:
        ds = build_clips(cfg, store)
    except (DemoValidationError, RuntimeError, ValueError) as e:
        logging.error("row %s: data stages failed: %s", name, e)
        failed.append(name)
        continue
    m = ds.manifest
    results.append((name, ds.path.name, m["tasks"]["train"], m["clip_counts"], m["demos"], len(m["skipped"])))

# 4. Summary.
print(f"\n{'row':<14} {'clips key':<17} {'train tasks':<34} {'clips train/val':<16} {'demos train/val':<16} skipped")
for name, key, tasks, clips, demos, skipped in results:
    print(f"{name:<14} {key:<17} {','.join(tasks):<34} "
          f"{clips.get('train', 0)}/{clips.get('val', 0):<12} {demos['train']}/{demos['val']:<13} {skipped}")
print(f"\ndata stages done in {time.time() - t0:.0f}s; {len({r[1] for r in results})} distinct clip datasets "
      f"under {store}/clips")
if failed:
    sys.exit(f"error: rows failed: {failed}")
