"""What Ray Train costs per step: the same tiny model on the same clips, side by side in one run.

1. plain PyTorch loop: one process, clips cut by the same ClipCutter from a shuffled index;
2. Ray Train, 1 worker: TorchTrainer + Ray Data shard + ClipCollate (the platform's path);
3. Ray Train, 2 workers at 0.5 CPU (DDP over gloo), for global samples/s.

Steady-state step time = the mean over steps after a warm-up window (Ray's run reports windowed metrics,
the plain loop times the same steps). Start-up (fit() to the first step) is reported separately.
Goals (issue 4): Ray adds at most 15% per step; data wait under 5% of step time.

    python bench/train_overhead.py [--warmup 4] [--steps 12] [--mode stage1] [--out bench/results/train_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from videopolicy.config import config_from_dict  # noqa: E402
from videopolicy.data.clips import ClipCollate, ClipDataset, build_clips  # noqa: E402
from videopolicy.data.synthetic import write_moving_block_demos  # noqa: E402
from videopolicy.models import build_model  # noqa: E402
from videopolicy.train.launch import TrainSpec, run_training  # noqa: E402

CAMS = ("agentview", "robot0_eye_in_hand", "frontview")

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--warmup", type=int, default=4)
parser.add_argument("--steps", type=int, default=12, help="measured steps after warm-up")
parser.add_argument("--batch", type=int, default=4)
parser.add_argument("--mode", choices=["stage1", "stage2"], default="stage1")
parser.add_argument("--out", default="bench/results/train_overhead.json")
args = parser.parse_args()
work = Path(tempfile.mkdtemp(prefix="vp_bench_train_"))


def config(workers: int, cpus: float):
    files = [{"path": write_moving_block_demos(work / f"{t}.hdf5", t, 8, 60, i, CAMS), "task": t}
             for i, t in enumerate(["Lift", "Stack"]) if not (work / f"{t}.hdf5").exists()] or \
        [{"path": str(work / f"{t}.hdf5"), "task": t} for t in ["Lift", "Stack"]]
    method = "two_stage" if args.mode == "stage1" else "no_video_tuning"
    run = {"steps": args.warmup + args.steps, "batch_size": args.batch, "log_every": args.warmup,
           "checkpoint_every": args.warmup + args.steps}
    return config_from_dict({
        "name": "bench-train", "store": str(work / "store"),
        "demos": {"source": "files", "cameras": list(CAMS), "files": files},
        "clips": {"video_horizon": 32, "frame_stride": 4, "action_horizon": 32, "image_size": 64, "val_fraction": 0.1},
        "train": {"method": method, "workers": workers, "cpus_per_worker": cpus,
                  "stage1" if args.mode == "stage1" else "stage2": run},
    })


def plain_loop(cfg, ds: ClipDataset) -> dict:
    """The reference: no Ray, same model, same cutting code, same thread count as one Ray worker."""
    torch.set_num_threads(1)
    model = build_model(cfg.model_config()).set_mode(args.mode)
    opt = torch.optim.Adam(model.param_groups(args.mode), fused=True)
    collate = ClipCollate(ds)
    index = ds.index("train").sample(frac=1.0, random_state=0)
    cols = ["demo_uid", "task", "language", "shard", "start"]
    times, waits = [], []
    g = torch.Generator().manual_seed(0)
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        rows = index.iloc[(i * args.batch) % (len(index) - args.batch):][: args.batch]
        batch = collate({c: rows[c].to_numpy() for c in cols})
        t1 = time.perf_counter()
        out = model({"frames": batch["frames"], "actions": batch["actions"], "text": batch["language"]}, args.mode, g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            waits.append(t1 - t0)
    return {"step_time_s": float(np.mean(times)), "data_wait_fraction": float(sum(waits) / sum(times))}


def ray_run(cfg, ds: ClipDataset, name: str) -> dict:
    progress = work / f"progress_{name}"
    stage = "stage1" if args.mode == "stage1" else "stage2"
    t0 = time.time()
    result = run_training(TrainSpec(stage, cfg, ds.path, name=name, storage_path=str(work / "runs"),
                                    progress_dir=str(progress)))
    first_report = json.loads((progress / "rank0.jsonl").read_text().splitlines()[0])
    first_window = first_report["time"] - t0  # start-up + warm-up steps
    m = result.metrics
    return {"step_time_s": m["step_time_s"], "data_wait_fraction": m["data_wait_fraction"],
            "samples_per_s": m["samples_per_s"], "fit_to_first_report_s": first_window,
            "total_s": time.time() - t0}


import ray  # noqa: E402

ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING",
         runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}})
cfg1 = config(1, 1.0)
ds = build_clips(cfg1)
print(f"clips: {ds.manifest['clip_counts']}, 3 cameras x 8 frames x 64 px, batch {args.batch}, mode {args.mode}")
results = {
    "plain": plain_loop(cfg1, ds),
    "ray_1_worker": ray_run(cfg1, ds, "one"),
    "ray_2_workers": ray_run(config(2, 0.5), ds, "two"),
}
plain, one, two = results["plain"], results["ray_1_worker"], results["ray_2_workers"]
results["ratios"] = {
    "ray_1_worker_step_time_over_plain": one["step_time_s"] / plain["step_time_s"],
    "ray_2_workers_samples_per_s_over_1": two["samples_per_s"] / one["samples_per_s"],
}
print(f"\n{'run':<16}{'step s':>9}{'data wait':>11}{'samples/s':>11}{'start-up+warm-up s':>20}")
print(f"{'plain loop':<16}{plain['step_time_s']:>9.3f}{plain['data_wait_fraction']:>10.1%}"
      f"{args.batch / plain['step_time_s']:>11.2f}{'-':>20}")
for key, r in (("ray 1 worker", one), ("ray 2 workers", two)):
    print(f"{key:<16}{r['step_time_s']:>9.3f}{r['data_wait_fraction']:>10.1%}{r['samples_per_s']:>11.2f}"
          f"{r['fit_to_first_report_s']:>20.1f}")
print(f"\nRay Train step time / plain: {results['ratios']['ray_1_worker_step_time_over_plain']:.3f} (goal <= 1.15)")
print(f"2 workers / 1 worker samples/s: {results['ratios']['ray_2_workers_samples_per_s_over_1']:.2f}")
results["meta"] = {"host": platform.node(), "cpus": os.cpu_count(), "load": os.getloadavg(), "args": vars(args)}
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps(results, indent=2))
print(f"wrote {args.out}")
ray.shutdown()
