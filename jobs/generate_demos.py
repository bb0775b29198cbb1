"""Generate scripted-expert demonstrations (robomimic HDF5, one file per task) as parallel Ray tasks.

    python jobs/generate_demos.py --config sweeps/smoke.yaml --tasks Lift Stack --demos-per-task 10
    python jobs/generate_demos.py --set demos.max_steps=300

Resumable: finished shards and finished tasks are reused; rerunning only does what is missing.
"""

import json
import sys

from videopolicy import cli
from videopolicy.sim.robosuite.demos import demo_stage, generate_demos
from videopolicy.runtime import init_ray


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_config_args(p, source="config", config="sweeps/smoke.yaml", row=False)
    p.add_argument("--tasks", nargs="*", default=None, help="= --set demos.tasks=[...]")
    p.add_argument("--demos-per-task", type=int, default=None, help="= --set demos.demos_per_task=N")
    p.add_argument("--image-size", type=int, default=None, help="= --set demos.image_size=N")
    p.add_argument("--render", choices=["default", "fast"], default=None, help="= --set demos.render.preset=...")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()
    demos = {k: v for k, v in {"tasks": args.tasks, "demos_per_task": args.demos_per_task,
                               "image_size": args.image_size}.items() if v is not None}
    if args.render:
        demos["render"] = {"preset": args.render}
    _, _, cfg = cli.load_row(args, extra={"demos": demos})
    store = cli.store_of(args, cfg)

    init_ray(cfg.ray, store)
    paths = generate_demos(cfg, store)

    print(f"\n{'task':<20} {'demos':>5} {'attempts':>8} {'expert success':>14}  file")
    for task, path in paths.items():
        m = demo_stage(store, cfg.demos, task).manifest()
        print(f"{task:<20} {m['demos']:>5} {m['attempts']:>8} {m['expert_success_rate']:>14.0%}  {path}")
    print(json.dumps({t: str(p) for t, p in paths.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
