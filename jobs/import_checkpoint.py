"""Import the authors' released checkpoints (cvlab-columbia/videopolicy) as policy directories.

    python jobs/import_checkpoint.py --ckpt checkpoints/stage_2_trained_step_369k.ckpt --out runs/authors_s2
    python jobs/evaluate.py --sweep sweeps/robocasa_paper.yaml --policy runs/authors_s2 --out runs/eval_authors

    python jobs/import_checkpoint.py --ckpt checkpoints/stage_1_trained_step_369k.ckpt --stage 1 --out runs/authors_s1
    python jobs/train_stage.py --sweep sweeps/robocasa_paper.yaml --stage stage2 --init-from runs/authors_s1

The model config (svd-xt, pretrained VAE / text sources, cameras, pad frame) comes from a sweep row
(default: the RoboCasa paper sweep's first row); its camera order decides how the authors' per-camera
adapter branches (eye-in-hand, left, right) are laid out. The checkpoint is read without unpickling
foreign code; only its network (``model.diffusion_model.*``) is used. The checkpoints store no action
normaliser: it is rebuilt from the demo files (default: the row's `demos.files`, i.e. all 24 tasks,
all demos), min-max over every step, as the authors compute it.
"""

import sys

from videopolicy import cli
from videopolicy.config import ConfigError
from videopolicy.models.convert_sgm import CheckpointError, import_policy, normalizer_from_demos, setup_problems


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument("--ckpt", required=True, help="stage_1_/stage_2_trained_step_369k.ckpt (or a .safetensors)")
    p.add_argument("--out", required=True, help="policy directory to write")
    cli.add_config_args(p, sweep="sweeps/robocasa_paper.yaml", store=False)
    p.add_argument("--stage", type=int, choices=[1, 2], default=None,
                   help="refuse a checkpoint of the other stage (default: take what the file holds)")
    p.add_argument("--demos", nargs="*", default=None,
                   help="demo HDF5 files for the action normaliser (default: the row's demos.files)")
    p.add_argument("--no-normalizer", action="store_true",
                   help="stage 1 only: write no normaliser (training builds its own from the clips)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    _, _, cfg = cli.load_row(args, check_files=False)  # the row whose model config the weights fill
    try:
        model = cfg.model_config()
        cameras = list(cfg.clips.cameras or cfg.demos.cameras)
        problems = setup_problems(model, cameras)
        if problems:
            raise ConfigError(problems + ["the authors' weights fit only their setup; use a row that has it "
                                          "(sweeps/robocasa_paper.yaml)"], args.sweep)
        normalizer, extra = None, {}
        if not args.no_normalizer:
            files = args.demos if args.demos is not None else [f.path for f in cfg.demos.files]
            normalizer, summary = normalizer_from_demos(files, cfg.clips.action_dim)
            extra["normalizer_source"] = summary
            print(f"action normaliser rebuilt (the checkpoints store none): min-max over {summary['steps']} steps "
                  f"of {summary['demos']} demos in {len(files)} file(s)\n  low  {normalizer.low.round(4).tolist()}\n"
                  f"  high {normalizer.high.round(4).tolist()}")
        elif args.stage != 1:
            raise CheckpointError("--no-normalizer is for stage 1 (--stage 1): a policy needs its action normaliser")
        out = import_policy(args.ckpt, args.out, model, cameras, normalizer, args.stage, extra)
    except (ConfigError, CheckpointError, KeyError) as e:
        return f"error: {e}"
    print(f"policy directory {out} (cameras {cameras}); evaluate it with jobs/evaluate.py --policy {out}"
          if normalizer is not None else f"stage-1 directory {out}: pass it to jobs/train_stage.py --init-from {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
