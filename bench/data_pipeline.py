"""Benchmark: clips/s of the Ray Data clip pipeline vs a plain single-process h5py loop, same data,
side by side in one run; and scripted demo generation episodes/s with 1 and 2 parallel Ray tasks.

    python bench/data_pipeline.py [--demos 24] [--steps 150] [--skip-generation] [--out bench/results/data.json]

Each measurement runs in a fresh subprocess (its own Ray cluster sized to 1 or 2 CPUs), so one
cannot warm the other. Steady state = clips/s after the first batch (pipeline start-up is reported
separately). The demo files are synthetic (random frames of the real size and layout): the cost of
the pipeline does not depend on what the pixels show.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CAMS = ["agentview", "frontview", "robot0_eye_in_hand"]


def write_demos(root: Path, n_demos: int, steps: int, size: int) -> dict[str, str]:
    from videopolicy.data.hdf5 import DemoWriter

    files = {}
    rng = np.random.default_rng(0)
    for task in ("Lift", "Stack", "PickPlaceCan"):
        path = root / f"{task}.hdf5"
        with DemoWriter(str(path), {"env_name": task, "type": 1, "env_kwargs": {}}) as w:
            for _ in range(n_demos // 3):
                n = int(steps + rng.integers(-20, 20))
                w.add(actions=rng.uniform(-1, 1, (n, 7)),
                      frames={c: rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8) for c in CAMS},
                      language=f"do {task}")
        files[task] = str(path)
    return files


def config(files: dict, store: str, size: int):
    from videopolicy.config import config_from_dict

    return config_from_dict({"store": store, "demos": {"source": "files", "cameras": CAMS,
                                                       "files": [{"path": p, "task": t} for t, p in files.items()]},
                             "clips": {"image_size": size, "val_fraction": 0.0}})


def run_plain(files: dict, store: str, size: int) -> dict:
    """A plain loop: open each HDF5 demo with h5py, cut every window, normalise (one process)."""
    from videopolicy.data.clips import ClipDataset, cut_windows
    from videopolicy.data.hdf5 import DemoFile

    cfg = config(files, store, size)
    ds = ClipDataset.open(json.loads(Path(store, "built.json").read_text())["path"])
    norm, clips = ds.normalizer, cfg.clips
    t0 = time.perf_counter()
    n = 0
    for task, path in files.items():
        with DemoFile(path) as f:
            for demo in f.demo_names():
                d = f.read(demo, CAMS, action_dim=7)
                frames = [d.frames[c] for c in CAMS]
                starts = np.arange(len(d))
                for k in range(0, len(starts), 32):  # the trainer's batch size
                    out = cut_windows(frames, d.actions, starts[k:k + 32], clips, norm)
                    n += len(out["start"])
    wall = time.perf_counter() - t0
    return {"clips": n, "wall_s": wall, "clips_per_s": n / wall}


def run_ray(files: dict, store: str, size: int, cpus: int, cut: str) -> dict:
    """Iterate one epoch of torch batches as a trainer would (32 clips), windows cut where `cut` says."""
    import ray

    from videopolicy.data.clips import ClipCollate, ClipDataset

    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ClipDataset.open(json.loads(Path(store, "built.json").read_text())["path"])
    t0 = time.perf_counter()
    n, t_first, n_first = 0, None, 0
    batches = ds.ray_dataset("train", seed=0, cut=cut).iter_torch_batches(
        batch_size=32, collate_fn=ClipCollate(ds), prefetch_batches=2)
    for batch in batches:
        if t_first is None:
            t_first, n_first = time.perf_counter(), len(batch["start"])
        n += len(batch["start"])
    end = time.perf_counter()
    ray.shutdown()
    return {"clips": n, "cut": cut, "startup_s": t_first - t0, "wall_s": end - t0,
            "clips_per_s": (n - n_first) / (end - t_first)}


def build(files: dict, store: str, size: int) -> dict:
    import ray

    from videopolicy.data.clips import build_clips

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    t0 = time.perf_counter()
    ds = build_clips(config(files, store, size))
    Path(store, "built.json").write_text(json.dumps({"path": str(ds.path)}))
    ray.shutdown()
    return {"build_s": time.perf_counter() - t0, "clips": ds.manifest["clip_counts"]}


def run_generation(store: str, parallel: int, episodes: int) -> dict:
    import ray

    from videopolicy.config import config_from_dict
    from videopolicy.sim.robosuite.demos import generate_demos

    ray.init(num_cpus=parallel, include_dashboard=False, logging_level="ERROR")
    cfg = config_from_dict({"store": store, "demos": {"tasks": ["Lift"], "demos_per_task": episodes,
                                                      "shard_size": 1, "image_size": 128}})
    t0 = time.perf_counter()
    generate_demos(cfg, store, max_parallel=parallel)
    wall = time.perf_counter() - t0
    ray.shutdown()
    return {"episodes": episodes, "parallel": parallel, "wall_s": wall, "episodes_per_s": episodes / wall}


def child(args) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    files = json.loads(args.files) if args.files else None
    if args.mode == "build":
        out = build(files, args.store, args.size)
    elif args.mode == "plain":
        out = run_plain(files, args.store, args.size)
    elif args.mode == "ray":
        out = run_ray(files, args.store, args.size, args.cpus, args.cut)
    else:
        out = run_generation(args.store, args.cpus, args.episodes)
    print("RESULT " + json.dumps(out), flush=True)


def spawn(*argv: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"benchmark step {argv} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demos", type=int, default=24, help="synthetic demos (split over 3 tasks)")
    p.add_argument("--steps", type=int, default=150, help="mean steps per demo")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--episodes", type=int, default=4, help="generation benchmark: Lift episodes")
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--out", default="bench/results/data_pipeline.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="", help=argparse.SUPPRESS)
    p.add_argument("--files", default="", help=argparse.SUPPRESS)
    p.add_argument("--store", default="", help=argparse.SUPPRESS)
    p.add_argument("--cpus", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--cut", default="trainer", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    results: dict = {"config": {"demos": args.demos, "steps": args.steps, "size": args.size, "cameras": len(CAMS),
                                "cpu_count": os.cpu_count(), "loadavg": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="vp_bench_") as tmp:
        files = write_demos(Path(tmp), args.demos, args.steps, args.size)
        common = ["--files", json.dumps(files), "--store", f"{tmp}/store", "--size", str(args.size)]
        results["build"] = spawn("--mode", "build", *common)
        results["plain"] = spawn("--mode", "plain", *common)
        for cut in ("trainer", "workers"):
            for cpus in (1, 2):
                results[f"ray_{cut}_{cpus}cpu"] = spawn("--mode", "ray", "--cpus", str(cpus), "--cut", cut, *common)
        if not args.skip_generation:
            for par in (1, 2):
                results[f"generation_{par}"] = spawn("--mode", "generation", "--cpus", str(par),
                                                     "--episodes", str(args.episodes), "--store", f"{tmp}/gen{par}")
    plain = results["plain"]["clips_per_s"]
    results["ratios"] = {}
    print(f"clip pipeline ({results['build']['clips']} clips, {len(CAMS)} cameras x {args.size}px, batches of 32):")
    print(f"  plain h5py loop, 1 process        : {plain:8.1f} clips/s")
    for cut in ("trainer", "workers"):
        r1, r2 = (results[f"ray_{cut}_{c}cpu"]["clips_per_s"] for c in (1, 2))
        results["ratios"].update({f"{cut}_1cpu_over_plain": r1 / plain, f"{cut}_2cpu_over_plain": r2 / plain,
                                  f"{cut}_2cpu_over_1cpu": r2 / r1})
        for c, r in ((1, r1), (2, r2)):
            print(f"  Ray Data, cut in {cut:<7}, {c} CPU : {r:8.1f} clips/s  ({r / plain:.2f}x plain; start-up "
                  f"{results[f'ray_{cut}_{c}cpu']['startup_s']:.1f}s)")
        print(f"    scaling 2 CPUs / 1 CPU: {r2 / r1:.2f}x")
    if not args.skip_generation:
        g1, g2 = results["generation_1"]["episodes_per_s"], results["generation_2"]["episodes_per_s"]
        results["ratios"]["generation_2_over_1"] = g2 / g1
        print("demo generation (Lift, 3 cameras x 128px, fast render, incl. env start-up):")
        print(f"  1 task  : {g1 * 3600:7.0f} episodes/h")
        print(f"  2 tasks : {g2 * 3600:7.0f} episodes/h  ({g2 / g1:.2f}x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
