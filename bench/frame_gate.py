"""Benchmark: simulator steps/s with every frame rendered vs only the frames the policy looks at.

    python bench/frame_gate.py [--tasks Lift PickPlaceCan] [--steps 160] [--repeats 3] [--out bench/results/frame_gate.json]

The evaluation's `RobosuiteSimEnv` with the study's render settings (3 cameras, 64 px, fast preset,
EGL), one fixed sequence of random actions, stepped two ways in alternation (so both see the same
machine load): ``observe=True`` on every step (what robosuite does by itself) and ``observe`` on the
last step of each 16-step chunk only (what the simulator worker asks since `FrameGate`). Prints
steps/s of each and their ratio per task; no Ray, no policy (the policy's share is measured by
``bench/rollouts.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

CAMERAS = ("robot0_eye_in_hand", "agentview", "frontview")
CHUNK = 16  # execute_steps of the study's policies


def steps_per_second(env, actions, seed: int, every: int) -> float:
    from videopolicy.sim.suites.base import EpisodeSpec

    env.reset(EpisodeSpec("robosuite", env.task, "default", 0, seed))
    t0 = time.perf_counter()
    for i, a in enumerate(actions):
        env.step(a, observe=(i + 1) % every == 0)
    return len(actions) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["Lift", "PickPlaceCan"])
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--out", default="bench/results/frame_gate.json")
    args = ap.parse_args()

    import numpy as np

    from videopolicy.sim.robosuite.env import RenderSettings
    from videopolicy.sim.robosuite.suite import RobosuiteSimEnv

    results = {}
    for task in args.tasks:
        env = RobosuiteSimEnv(task, CAMERAS, args.image_size, RenderSettings(preset="fast", gl="egl"), max_steps=400)
        actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, 7))
        every, gated = [], []
        for r in range(args.repeats):  # alternate, so both ways see the same load
            every.append(steps_per_second(env, actions, r, 1))
            gated.append(steps_per_second(env, actions, r, CHUNK))
        env.close()
        res = {"every_step_steps_per_s": round(float(np.median(every)), 1),
               "one_in_16_steps_per_s": round(float(np.median(gated)), 1)}
        res["speedup"] = round(res["one_in_16_steps_per_s"] / res["every_step_steps_per_s"], 2)
        results[task] = res
        print(f"{task:14s} {json.dumps(res)}", flush=True)
    report = {"args": vars(args), "cpu_count": os.cpu_count(), "load_avg_end": os.getloadavg(), "tasks": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
