"""Build (or reuse) the clip dataset of one sweep row: demos -> per-demo frame shards + clip index.

    python jobs/build_clips.py --sweep sweeps/smoke.yaml --row half_tasks
    python jobs/build_clips.py --sweep my_files.yaml --skip-bad     # published HDF5 files, skip bad demos
"""

import json
import sys
from pathlib import Path

from videopolicy import cli
from videopolicy.data.clips import build_clips
from videopolicy.data.hdf5 import DemoFile, DemoValidationError, validate_file
from videopolicy.runtime import init_ray


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_config_args(p)
    cli.add_skip_bad(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()
    _, _, cfg = cli.load_row(args)  # --skip-bad is an override like --set (cli.add_skip_bad)
    store = cli.store_of(args, cfg)
    try:
        check_demo_files(cfg)
    except DemoValidationError as e:
        return f"error: {e}\n(nothing was started; --skip-bad skips bad demos and records them in the manifest)"

    init_ray(cfg.ray, store)
    try:
        ds = build_clips(cfg, store)
    except DemoValidationError as e:
        return f"error: {e}"
    m = ds.manifest
    print(json.dumps({"path": str(ds.path), "tasks": m["tasks"], "clips": m["clip_counts"], "demos": m["demos"],
                      "skipped": m["skipped"]}, indent=2))
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
