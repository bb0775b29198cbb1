"""Evaluate one policy checkpoint (or a sanity policy) on one suite; resumes from the out dir's ledger.

    python jobs/evaluate.py --sweep sweeps/smoke.yaml --row two_stage --policy <checkpoint dir> --out runs/eval
    python jobs/evaluate.py --sweep sweeps/smoke.yaml --policy expert --episodes 5 --out runs/expert
    python jobs/evaluate.py --config my.yaml --policy random --out runs/random
    python jobs/evaluate.py --sweep sweeps/smoke.yaml --policy replay --episodes 4 --out runs/replay

`replay` replays the config's demonstrations (generated first if missing) on their own scenes: a
harness check that needs no model (near 100% when reset, physics and success check match the data).

Everything is validated before Ray starts (config, checkpoint files, whether the suite can run here).
Prints the per-task success table; exits non-zero when the evaluation fails or an episode ends as an
infrastructure error after its retries.
"""

import argparse
import logging
import sys

from videopolicy.config import ConfigError, load_config, load_sweep
from videopolicy.data.clips import demo_sources
from videopolicy.evaluate import EvaluationError, PolicySpec, evaluate, plan_evaluation, task_table
from videopolicy.runtime import init_ray

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
src = parser.add_mutually_exclusive_group()
src.add_argument("--config", help="a config file (or a sweep file's base)")
src.add_argument("--sweep", help="a sweep file; with --row")
parser.add_argument("--row", default=None, help="sweep row (default: the first row)")
parser.add_argument("--policy", required=True, help="checkpoint directory, or: expert | random | replay")
parser.add_argument("--out", required=True, help="output directory (ledger.sqlite, results.csv, videos/)")
parser.add_argument("--episodes", type=int, default=None, help="episodes per task (default: eval.episodes_per_task)")
parser.add_argument("--policy-mode", choices=["server", "local"], default="server",
                    help="batched policy server actor (default) or a policy copy in every worker")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

try:
    if args.sweep:
        sweep = load_sweep(args.sweep)
        cfg = sweep.row(args.row) if args.row else sweep.rows[0][1]
    else:
        cfg = load_config(args.config or "sweeps/smoke.yaml")
    if args.episodes is not None and args.episodes <= 0:
        raise ConfigError([f"--episodes: must be > 0, got {args.episodes}"])
    policy = PolicySpec.parse(args.policy)
    if policy.kind == "checkpoint" and not policy.problems():  # its pretrained VAE / text encoder are there
        from videopolicy.models.pretrained import policy_dir_problems

        if missing := policy_dir_problems(policy.path, key="--policy"):
            raise ConfigError(missing)
    if policy.kind == "replay":  # the demo files this config trains on (scripted ones are generated on Ray)
        init_ray(cfg.ray)
        policy = policy.with_demos({s.task: s.path for s in demo_sources(cfg)})
    plan = plan_evaluation(cfg, policy, args.episodes)  # checkpoint files, suite availability
except (ConfigError, KeyError, ValueError, EvaluationError) as e:
    sys.exit(f"error: {e}")

print(f"suite {plan.protocol.suite} ({plan.protocol.sim_version}), protocol {plan.protocol.hash}, "
      f"policy {plan.policy_id}, {len(plan.specs)} episodes")
init_ray(cfg.ray)
try:
    df = evaluate(cfg, policy, args.out, episodes_per_task=args.episodes, policy_mode=args.policy_mode)
except EvaluationError as e:
    sys.exit(f"error: {e}")

try:  # Wilson intervals when the stats module is there
    from videopolicy.evaluate.stats import success_table

    table = success_table(df)
except ImportError:
    table = task_table(df)
print(table.to_string(index=False))
infra = int((df.status == "infra_error").sum())
if infra:
    sys.exit(f"error: {infra} episode(s) ended as infrastructure errors after retries (not counted); "
             f"see {args.out}/ledger.sqlite, then re-run the same command to retry them")
