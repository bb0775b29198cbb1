"""Build (or reuse) the clip dataset of one sweep row: demos -> per-demo Parquet shards + clip index.

    python jobs/build_clips.py --sweep sweeps/smoke.yaml --row half_tasks
    python jobs/build_clips.py --sweep my_files.yaml --skip-bad     # published HDF5 files, skip bad demos
"""

import argparse
import json
import logging
import sys

from pathlib import Path

from videopolicy.config import ConfigError, load_sweep
from videopolicy.data.clips import build_clips
from videopolicy.data.hdf5 import DemoFile, DemoValidationError, validate_file
from videopolicy.runtime import init_ray

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--sweep", default="sweeps/smoke.yaml")
parser.add_argument("--row", default=None, help="row name (default: the first row)")
parser.add_argument("--store", default=None)
parser.add_argument("--skip-bad", action="store_true", help="skip invalid demos (reported) instead of failing")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

try:
    sweep = load_sweep(args.sweep)
    cfg = sweep.row(args.row) if args.row else sweep.rows[0][1]
except (ConfigError, KeyError) as e:
    sys.exit(f"error: {e}")
cfg.demos.skip_bad = cfg.demos.skip_bad or args.skip_bad
store = args.store or cfg.store


def check_demo_files(cfg) -> None:
    """Given demo files are validated before Ray starts, as the clip stage will (same cameras, action dim,
    image size): nothing is spent before the input is known good. Scripted demos are generated on Ray,
    and checked there."""
    if cfg.demos.source != "files":
        return
    c = cfg.clips
    cameras = list(c.cameras or cfg.demos.cameras)
    problems = []
    if not c.cameras and cfg.demos.files:  # the clip stage takes the first file's cameras
        try:
            with DemoFile(Path(cfg.demos.files[0].path).expanduser()) as f:
                cameras = f.cameras()
        except (DemoValidationError, OSError):
            pass  # validate_file reports it below
    for f in cfg.demos.files:
        problems += validate_file(Path(f.path).expanduser(), cameras, c.action_dim, c.image_size, language=f.language)
    if problems and not cfg.demos.skip_bad:
        raise DemoValidationError(problems)


try:
    check_demo_files(cfg)
except DemoValidationError as e:
    sys.exit(f"error: {e}\n(nothing was started; --skip-bad skips bad demos and records them in the manifest)")

init_ray(cfg.ray, store)
try:
    ds = build_clips(cfg, store)
except DemoValidationError as e:
    sys.exit(f"error: {e}")
m = ds.manifest
print(json.dumps({"path": str(ds.path), "tasks": m["tasks"], "clips": m["clip_counts"], "demos": m["demos"],
                  "skipped": m["skipped"]}, indent=2))
