"""Train one stage of one sweep row on Ray Train (the sweep driver calls the same code).

    python jobs/train_stage.py --sweep sweeps/smoke.yaml --row two_stage --stage stage1 --out runs/s1
    python jobs/train_stage.py --sweep sweeps/smoke.yaml --row two_stage --stage stage2 --init-from runs/s1
    python jobs/train_stage.py --sweep sweeps/smoke.yaml --row joint --stage stage2 --set train.stage2.steps=50

Running the same command again (same --name and storage) resumes from the latest checkpoint.
"""

import os
import sys

from videopolicy import cli
from videopolicy.store import stable_hash
from videopolicy.train.checkpoint import TrainSetupError
from videopolicy.train.launch import TrainSpec, check_run, export_policy, run_training


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_config_args(p)
    p.add_argument("--stage", choices=["stage1", "stage2"], required=True)
    p.add_argument("--init-from", default=None, help="stage-1 policy directory (two_stage's stage 2)")
    p.add_argument("--name", default=None, help="run name; the same name resumes (default: from the config)")
    p.add_argument("--out", default=None, help="export the final policy here (default: <store>/policies/<name>)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()

    # 1. Config and everything that can be checked without Ray.
    sweep, row, cfg = cli.load_row(args)
    store = cli.store_of(args, cfg)
    name = args.name or f"{sweep.name}-{row}-{args.stage}-{stable_hash(cfg.train, cfg.model)[:8]}"
    storage = cfg.train.storage_path or f"{store}/train_runs"
    try:
        check_run(cfg, args.stage, args.init_from)  # before Ray: building clips may generate demos
        from videopolicy.models.pretrained import problems as weight_problems
        from videopolicy.models.pretrained import row_model_problems

        # the model's shape, then its pretrained sources (found, in the expected layout) before Ray starts
        missing = row_model_problems(cfg) or weight_problems(cfg.model_config(), skip=("unet",) if args.init_from else ())
        if missing:
            raise TrainSetupError("\n  - ".join(["model:", *missing]))
    except TrainSetupError as e:
        return f"error: {e}"

    # 2. Ray, then the clips this row trains on (built or reused), then the run.
    from videopolicy.data.clips import build_clips
    from videopolicy.runtime import init_ray

    init_ray(cfg.ray, store)
    clips = build_clips(cfg, store)
    spec = TrainSpec(args.stage, cfg, clips.path, name=name, storage_path=storage, init_from=args.init_from,
                     tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"), store=store)
    try:
        result = run_training(spec)  # preflight first: bad inputs fail before any worker starts
    except TrainSetupError as e:
        return f"error: {e}"
    out = export_policy(result, args.out or f"{store}/policies/{name}")
    print(f"{args.stage} done at step {result.step}: policy {out}\nmetrics {result.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
