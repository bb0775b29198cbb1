"""Evaluate one policy checkpoint (or a sanity policy) on one suite; resumes from the out dir's ledger.

    python jobs/evaluate.py --sweep sweeps/smoke.yaml --row two_stage --policy <checkpoint dir> --out runs/eval
    python jobs/evaluate.py --sweep sweeps/smoke.yaml --policy expert --episodes 5 --out runs/expert
    python jobs/evaluate.py --config my.yaml --policy random --out runs/random
    python jobs/evaluate.py --sweep sweeps/smoke.yaml --policy replay --episodes 4 --out runs/replay
    python jobs/evaluate.py --sweep sweeps/cpu_paper.yaml --row two_stage --policy <dir> --scenes demos --out runs/seen

`replay` replays the config's demonstrations (generated first if missing) on their own scenes: a
harness check that needs no model (near 100% when reset, physics and success check match the data).
`--scenes demos` runs a policy on the scenes its training demos were recorded in instead of the
evaluation's unseen ones: success there vs on unseen scenes tells a policy that has not fit its data
from one that has fit it and does not generalise (not paired with the unseen scenes' episodes).

Everything is validated before Ray starts (config, checkpoint files, whether the suite can run here).
Prints the per-task success table; exits non-zero when the evaluation fails or an episode ends as an
infrastructure error after its retries.
"""

import sys

from videopolicy import cli
from videopolicy.config import ConfigError
from videopolicy.data.clips import demo_sources
from videopolicy.evaluate import EvaluationError, PolicySpec, evaluate, plan_evaluation
from videopolicy.runtime import init_ray


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_config_args(p, source="either", store=False)
    p.add_argument("--policy", required=True, help="checkpoint directory, or: expert | random | replay")
    p.add_argument("--out", required=True, help="output directory (ledger.sqlite, results.csv, videos/)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per task (default: eval.episodes_per_task)")
    p.add_argument("--scenes", choices=["unseen", "demos"], default="unseen",
                   help="unseen: the evaluation's scenes (default); demos: the training demos' own scenes")
    p.add_argument("--policy-mode", choices=["server", "local"], default="server",
                   help="batched policy server actor (default) or a policy copy in every worker")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cli.setup_logging()
    _, _, cfg = cli.load_row(args, default_config="sweeps/smoke.yaml")
    try:
        if args.episodes is not None and args.episodes <= 0:
            raise ConfigError([f"--episodes: must be > 0, got {args.episodes}"])
        policy = PolicySpec.parse(args.policy)
        if policy.kind == "checkpoint" and not policy.problems():  # its pretrained VAE / text encoder are there
            from videopolicy.models.pretrained import policy_dir_problems

            if missing := policy_dir_problems(policy.path, key="--policy"):
                raise ConfigError(missing)
        demo_scenes = None
        if policy.kind == "replay" or args.scenes == "demos":  # the demo files this config trains on
            init_ray(cfg.ray)  # (scripted ones are generated on Ray)
            demo_scenes = {s.task: s.path for s in demo_sources(cfg)}
            if policy.kind == "replay":
                policy, demo_scenes = policy.with_demos(demo_scenes), None
        plan = plan_evaluation(cfg, policy, args.episodes, demo_scenes)  # checkpoint files, suite availability
    except (ConfigError, KeyError, ValueError, EvaluationError) as e:
        return f"error: {e}"

    print(f"suite {plan.protocol.suite} ({plan.protocol.sim_version}), protocol {plan.protocol.hash}, "
          f"policy {plan.policy_id}, {len(plan.specs)} episodes")
    init_ray(cfg.ray)
    try:
        df = evaluate(cfg, policy, args.out, episodes_per_task=args.episodes, policy_mode=args.policy_mode,
                      demo_scenes=demo_scenes)
    except EvaluationError as e:
        return f"error: {e}"

    from videopolicy.evaluate.stats import success_table

    print(success_table(df).to_string(index=False))
    infra = int((df.status == "infra_error").sum())
    if infra:
        return (f"error: {infra} episode(s) ended as infrastructure errors after retries (not counted); "
                f"see {args.out}/ledger.sqlite, then re-run the same command to retry them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
