"""Train one stage of one sweep row on Ray Train (the sweep driver calls the same code).

    python jobs/train_stage.py --sweep sweeps/smoke.yaml --row two_stage --stage stage1 --out runs/s1
    python jobs/train_stage.py --sweep sweeps/smoke.yaml --row two_stage --stage stage2 --init-from runs/s1
    python jobs/train_stage.py --sweep sweeps/smoke.yaml --row joint --stage stage2

Running the same command again (same --name and storage) resumes from the latest checkpoint.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from videopolicy.config import ConfigError, load_sweep
from videopolicy.store import stable_hash
from videopolicy.train.checkpoint import TrainSetupError
from videopolicy.train.launch import TrainSpec, check_run, export_policy, run_training

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--sweep", default="sweeps/smoke.yaml")
parser.add_argument("--row", default=None, help="row name (default: the first row)")
parser.add_argument("--stage", choices=["stage1", "stage2"], required=True)
parser.add_argument("--init-from", default=None, help="stage-1 policy directory (two_stage's stage 2)")
parser.add_argument("--store", default=None)
parser.add_argument("--name", default=None, help="run name; the same name resumes (default: from the config)")
parser.add_argument("--out", default=None, help="export the final policy here (default: <store>/policies/<name>)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# 1. Config and everything that can be checked without Ray.
try:
    sweep = load_sweep(args.sweep)
    cfg = sweep.row(args.row) if args.row else sweep.rows[0][1]
except (ConfigError, KeyError) as e:
    sys.exit(f"error: {e}")
store = str(Path(args.store or cfg.store).expanduser().resolve())
name = args.name or f"{sweep.name}-{args.row or sweep.rows[0][0]}-{args.stage}-{stable_hash(cfg.train, cfg.model)[:8]}"
storage = cfg.train.storage_path or f"{store}/train_runs"
try:
    check_run(cfg, args.stage, args.init_from)  # before Ray: building clips may generate demos
    from videopolicy.models.pretrained import problems as weight_problems

    # the model's shape, then its pretrained sources (found, in the expected layout) before Ray starts
    missing = cfg.model_problems() or weight_problems(cfg.model_config(), skip=("unet",) if args.init_from else ())
    if missing:
        raise TrainSetupError("\n  - ".join(["model:", *missing]))
except TrainSetupError as e:
    sys.exit(f"error: {e}")

# 2. Ray, then the clips this row trains on (built or reused), then the run.
from videopolicy.data.clips import build_clips  # noqa: E402
from videopolicy.runtime import init_ray  # noqa: E402

init_ray(cfg.ray, store)
clips = build_clips(cfg, store)
spec = TrainSpec(args.stage, cfg, clips.path, name=name, storage_path=storage, init_from=args.init_from,
                 tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"), store=store)
try:
    result = run_training(spec)  # preflight first: bad inputs fail before any worker starts
except TrainSetupError as e:
    sys.exit(f"error: {e}")
out = export_policy(result, args.out or f"{store}/policies/{name}")
print(f"{args.stage} done at step {result.step}: policy {out}\nmetrics {result.metrics}")
