"""Benchmark: closed-loop evaluation throughput, side by side in one run, on one local Ray cluster.

    python bench/rollouts.py [--episodes 4] [--max-steps 64] [--task Lift] [--out bench/results/rollouts.json]

The policy is an untrained tiny-preset checkpoint on CPU (the real model and sampler, so the policy
costs what it costs; its success rate is irrelevant here, so every episode runs to the step limit and
all variants do the same number of steps). Variants:

* ``server_1w`` / ``server_2w``: one batched policy server, 1 vs 2 simulator workers (scaling efficiency);
* ``local_2w``: every worker loads its own policy copy (throughput ratio and peak memory vs server_2w);
* ``server_2w_default_render``: MuJoCo's default render settings vs the fast preset (server_2w).

Reported per variant: episodes/hour over the wall time of `evaluate()` (actor start-up and env
construction included) and in steady state (per-episode reset + stepping + waiting, times workers),
the fraction of a worker's episode time spent waiting for actions, mean policy batch size, and the
peak RSS of the workers and the server. Cameras and image size are the demos' (3 x 128 px) and the
model's input is clips.image_size (64 px), as in the smoke sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def make_cfg(task: str, workers: int, preset: str, max_steps: int, episodes: int, sampler: str = "fast"):
    from videopolicy.config import config_from_dict

    return config_from_dict({
        "demos": {"tasks": [task], "image_size": 128, "render": {"preset": preset, "gl": "egl"}},
        "clips": {"image_size": 64},  # the smoke sweep's clip shape: 32-step video horizon, stride 4
        "model": {"preset": "tiny", "sampler": {"mode": sampler}},
        "eval": {"workers": workers, "episodes_per_task": episodes, "max_steps": max_steps, "video_episodes": 0,
                 "cpus_per_worker": 1.0, "max_batch": 8, "batch_timeout_s": 0.02, "recycle_after": 1000},
    })


def run_variant(name: str, cfg, ckpt: str, mode: str, root: Path) -> dict:
    from videopolicy.evaluate import Ledger, PolicySpec, evaluate, plan_evaluation

    out = root / name
    spec = PolicySpec.parse(ckpt)
    t0 = time.perf_counter()
    df = evaluate(cfg, spec, out, policy_mode=mode)
    wall = time.perf_counter() - t0
    recs = Ledger(out / "ledger.sqlite").records(plan_evaluation(cfg, spec).run)
    det = [r["details"] for r in recs]
    busy = sum(d["reset_s"] + d["sim_s"] + d["policy_wait_s"] for d in det)
    wait = sum(d["policy_wait_s"] for d in det)
    workers = cfg.eval.workers
    worker_rss: dict[int, float] = {}
    for d in det:
        worker_rss[d["worker_pid"]] = max(worker_rss.get(d["worker_pid"], 0.0), d["max_rss_mb"])
    servers = json.loads((out / "policy_servers.json").read_text()) if (out / "policy_servers.json").exists() else []
    server_rss = sum(s.get("max_rss_mb", 0.0) for s in servers)
    res = {
        "episodes": len(df), "steps": int(df.steps.sum()), "wall_s": round(wall, 1),
        "episodes_per_hour_wall": round(len(df) / wall * 3600, 1),
        "episodes_per_hour_steady": round(workers * len(det) / busy * 3600, 1),
        "steps_per_s_sim": round(sum(r["steps"] for r in recs) / sum(d["sim_s"] for d in det), 2),
        "policy_wait_fraction": round(wait / busy, 3),
        "mean_policy_batch": round(servers[0]["mean_batch"], 2) if servers else 1.0,
        "policy_wait_per_call_ms": round(wait / max(1, sum(d["policy_calls"] for d in det)) * 1000, 1),
        "server_compute_per_batch_ms": (round(sum(s["compute_s"] for s in servers)
                                              / max(1, sum(s["batches"] for s in servers)) * 1000, 1) if servers else None),
        "peak_rss_mb_workers": round(sum(worker_rss.values()), 0),
        "peak_rss_mb_server": round(server_rss, 0),
        "peak_rss_mb_total": round(sum(worker_rss.values()) + server_rss, 0),
    }
    print(f"{name:28s} {json.dumps(res)}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=4, help="episodes per variant")
    ap.add_argument("--max-steps", type=int, default=64)
    ap.add_argument("--task", default="Lift")
    ap.add_argument("--sampler", choices=["fast", "joint"], default="fast",
                    help="fast: one U-Net pass + head-only steps; joint: the faithful 30-step sampler with CFG "
                         "(measured: ~16 s per call on a loaded 2-core CPU, workers then wait ~87%% of the time)")
    ap.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster")
    ap.add_argument("--variants", nargs="*", default=None, help="run only these (no summary ratios then)")
    ap.add_argument("--out", default="bench/results/rollouts.json")
    args = ap.parse_args()

    import ray

    from videopolicy.evaluate.policies import save_untrained_checkpoint

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fast2 = make_cfg(args.task, 2, "fast", args.max_steps, args.episodes, args.sampler)
        ckpt = str(save_untrained_checkpoint(root / "tiny_ckpt", fast2))
        variants = {
            "server_1w": (make_cfg(args.task, 1, "fast", args.max_steps, args.episodes, args.sampler), "server"),
            "server_2w": (fast2, "server"),
            "local_2w": (fast2, "local"),
            "server_2w_default_render": (make_cfg(args.task, 2, "default", args.max_steps, args.episodes, args.sampler), "server"),
        }
        results = {name: run_variant(name, cfg, ckpt, mode, root) for name, (cfg, mode) in variants.items()
                   if not args.variants or name in args.variants}
    ray.shutdown()
    if args.variants:
        return
    r = results
    summary = {
        "scaling_efficiency_2w_steady": round(r["server_2w"]["episodes_per_hour_steady"]
                                              / (2 * r["server_1w"]["episodes_per_hour_steady"]), 3),
        "scaling_efficiency_2w_wall": round(r["server_2w"]["episodes_per_hour_wall"]
                                            / (2 * r["server_1w"]["episodes_per_hour_wall"]), 3),
        "server_vs_local_throughput": round(r["server_2w"]["episodes_per_hour_steady"]
                                            / r["local_2w"]["episodes_per_hour_steady"], 3),
        "server_vs_local_peak_memory": round(r["server_2w"]["peak_rss_mb_total"] / r["local_2w"]["peak_rss_mb_total"], 3),
        "fast_vs_default_render_throughput": round(r["server_2w"]["episodes_per_hour_steady"]
                                                   / r["server_2w_default_render"]["episodes_per_hour_steady"], 3),
        "policy_wait_fraction_server_2w": r["server_2w"]["policy_wait_fraction"],
        "goal_wait_below_20pct": r["server_2w"]["policy_wait_fraction"] < 0.2,
    }
    report = {"args": vars(args), "cpu_count": os.cpu_count(), "load_avg_end": os.getloadavg(),
              "variants": results, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
