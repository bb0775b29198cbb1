"""Stage `demos`: scripted-expert demonstrations for robosuite tasks, generated as parallel Ray tasks.

Work is split per task into shards of `shard_size` successful episodes. A shard is one Ray task, seeded
from (config seed, task, shard, attempt), written atomically as its own HDF5; a rerun skips shards whose
file exists, so a crash loses at most the shards in flight. When every shard of a task is done, they are
merged into one `<task>.hdf5` with the task's sentence, and the stage directory is marked complete.

Only successful episodes (the env's own `_check_success`) are written. Failed attempts are counted in
the manifest, so an expert that degrades shows up as a falling success rate, not as silently fewer demos.

Output: `<store>/demos/<key>/{<task>.hdf5, manifest.json, _COMPLETE, shards/}` with one key per task,
so sweeps that differ only in their task list share the demos of the tasks they have in common.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from videopolicy.config import DemoConfig, PlatformConfig
from videopolicy.store import StageDir, stable_hash, stable_seed

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # bump when the experts or the recording change what a demo contains
# 2: frames after a mid-episode garbage collection were garbage (sim.robosuite.env._free_offscreen); regenerate


def _sim_versions() -> dict:
    from importlib.metadata import version

    return {"robosuite": version("robosuite"), "mujoco": version("mujoco")}


def demo_key(cfg: DemoConfig, task: str) -> str:
    fields = {
        "task": task,
        "suite": cfg.suite,
        "demos_per_task": cfg.demos_per_task,
        "cameras": cfg.cameras,
        "image_size": cfg.image_size,
        "max_steps": cfg.max_steps,
        "seed": cfg.seed,
        "shard_size": cfg.shard_size,
        "render": asdict(cfg.render),
    }
    return stable_hash("demos", GENERATOR_VERSION, _sim_versions(), fields)


def demo_stage(store: str, cfg: DemoConfig, task: str) -> StageDir:
    return StageDir.of(store, "demos", demo_key(cfg, task))


@dataclass(frozen=True)
class ShardSpec:
    task: str
    index: int
    n_demos: int
    path: str  # final HDF5 path of this shard


def plan_shards(stage: StageDir, cfg: DemoConfig, task: str) -> list[ShardSpec]:
    n_shards = math.ceil(cfg.demos_per_task / cfg.shard_size)
    specs = []
    for i in range(n_shards):
        n = min(cfg.shard_size, cfg.demos_per_task - i * cfg.shard_size)
        specs.append(ShardSpec(task, i, n, str(stage.path / "shards" / f"shard_{i:04d}.hdf5")))
    return specs


def episode_seed(cfg: DemoConfig, task: str, shard: int, attempt: int) -> int:
    # the "demo" namespace keeps these disjoint from evaluation episode seeds
    return stable_seed("demo", cfg.seed, task, shard, attempt)


def generate_shard(cfg: DemoConfig, spec: ShardSpec) -> dict:
    """Run the expert until `spec.n_demos` successes (or the attempt budget), write the shard HDF5."""
    from videopolicy.data.hdf5 import DemoWriter
    from videopolicy.sim.robosuite import env as rse

    t0 = time.time()
    cpu0 = time.process_time()
    render = rse.RenderSettings(preset=cfg.render.preset, gl=cfg.render.gl)
    rse.configure_gl(render.gl)
    env = rse.make_env(spec.task, cfg.cameras, cfg.image_size, render, seed=0, horizon=cfg.max_steps)
    meta = {
        "generator": "scripted_expert",
        "generator_version": GENERATOR_VERSION,
        "task": spec.task,
        "shard": spec.index,
        "render": render.as_dict(),
        "cameras": list(cfg.cameras),
        "image_size": cfg.image_size,
        **_sim_versions(),
    }
    writer = DemoWriter(spec.path, rse.env_args(env, spec.task, cfg.cameras, cfg.image_size, render), meta)
    try:
        attempts, seeds, lengths, steps = _expert_demos(env, writer, cfg, spec)
        writer.meta.update(seeds=seeds, attempts=attempts)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        env.close()
    return {
        "task": spec.task,
        "shard": spec.index,
        "path": spec.path,
        "successes": len(seeds),
        "attempts": attempts,
        "seeds": seeds,
        "lengths": lengths,
        "steps": steps,
        "wall_s": time.time() - t0,
        "cpu_s": time.process_time() - cpu0,
    }


def _expert_demos(env, writer, cfg: DemoConfig, spec: ShardSpec) -> tuple[int, list[int], list[int], int]:
    """Seeded expert episodes on `env` until `spec.n_demos` successes, each written by `writer`; raises when
    the attempt budget runs out first. Returns (attempts, seeds of the successes, their lengths, steps run)."""
    import numpy as np

    from videopolicy.sim.robosuite import env as rse
    from videopolicy.sim.robosuite.experts import EXPERTS, TASK_INSTRUCTIONS, run_expert_episode

    language = TASK_INSTRUCTIONS[spec.task]
    max_attempts = max(spec.n_demos, math.ceil(spec.n_demos * cfg.max_attempts_per_demo))
    attempts, seeds, lengths, steps = 0, [], [], 0
    while len(seeds) < spec.n_demos and attempts < max_attempts:
        seed = episode_seed(cfg, spec.task, spec.index, attempts)
        attempts += 1
        rse.reseed(env, seed)
        env.reset()
        expert = EXPERTS[spec.task](env, np.random.default_rng(seed))
        ep = run_expert_episode(env, expert, cfg.max_steps)
        steps += ep["steps"]
        if not ep["success"]:
            continue
        writer.add(
            actions=ep["actions"],
            frames=ep["frames"],
            language=language,
            states=ep["states"],
            obs=ep.get("obs"),
            model_file=rse.model_xml(env),
            ep_meta={"seed": seed, "task": spec.task},
        )
        seeds.append(seed)
        lengths.append(ep["steps"])
    if len(seeds) < spec.n_demos:
        raise RuntimeError(
            f"{spec.task} shard {spec.index}: the scripted expert succeeded {len(seeds)}/{attempts} times, "
            f"need {spec.n_demos} (demos.max_attempts_per_demo={cfg.max_attempts_per_demo}); "
            "the expert or the simulator version is broken"
        )
    return attempts, seeds, lengths, steps


def merge_task(stage: StageDir, cfg: DemoConfig, task: str, results: list[dict]) -> dict:
    """Merge a task's shards into `<task>.hdf5` and mark the stage complete."""
    from videopolicy.data.hdf5 import DemoFile, DemoWriter, copy_demos

    shards = sorted(stage.path.glob("shards/shard_*.hdf5"))
    with DemoFile(shards[0]) as first:
        env_args, meta = first.env_args, first.meta
    meta = {k: v for k, v in meta.items() if k not in ("shard", "seeds", "attempts")}
    out = stage.path / f"{task}.hdf5"
    sources = []
    for shard in shards:
        with DemoFile(shard) as f:
            sources += [(str(shard), d) for d in f.demo_names()]
    with DemoWriter(str(out), env_args, meta) as w:
        copy_demos(sources, w)
    attempts = sum(r["attempts"] for r in results)
    successes = sum(r["successes"] for r in results)
    manifest = {
        "task": task,
        "file": out.name,
        "demos": len(sources),
        "attempts": attempts,
        "expert_success_rate": successes / max(attempts, 1),
        "config": asdict(cfg),
        "shards": results,
        **_sim_versions(),
    }
    stage.complete(manifest)
    shutil.rmtree(stage.path / "shards", ignore_errors=True)
    return manifest


def shard_result_from_file(spec: ShardSpec) -> dict:
    """Result record of a shard finished by an earlier run (resume)."""
    from videopolicy.data.hdf5 import DemoFile

    with DemoFile(spec.path) as f:
        seeds = f.meta["seeds"]
        lengths = [f.length(d) for d in f.demo_names()]
        attempts = f.meta["attempts"]
    return {"task": spec.task, "shard": spec.index, "path": spec.path, "successes": len(seeds),
            "attempts": attempts, "seeds": seeds, "lengths": lengths, "resumed": True}


def generate_demos(cfg: PlatformConfig, store: str | None = None, max_parallel: int | None = None) -> dict[str, Path]:
    """Make sure every task's demos exist; returns task -> HDF5 path. Runs missing shards on Ray."""
    import ray

    from videopolicy.runtime import worker_env

    store = store or cfg.store
    d = cfg.demos
    outputs: dict[str, Path] = {}
    pending: dict[str, tuple[StageDir, list[ShardSpec], list[dict]]] = {}
    for task in d.tasks:
        stage = demo_stage(store, d, task)
        if stage.is_complete():
            log.info("demos %s: reusing %s", task, stage.path)
            outputs[task] = stage.path / f"{task}.hdf5"
            continue
        stage.prepare()
        specs = plan_shards(stage, d, task)
        done = [shard_result_from_file(s) for s in specs if os.path.exists(s.path)]
        todo = [s for s in specs if not os.path.exists(s.path)]
        pending[task] = (stage, todo, done)
        log.info("demos %s: %d/%d shards done, %d to run", task, len(done), len(specs), len(todo))
    if not pending:
        return outputs

    remote = ray.remote(num_cpus=1, max_retries=2, retry_exceptions=[OSError])(generate_shard).options(
        runtime_env={"env_vars": worker_env(cfg)}
    )
    queue = [s for _, todo, _ in pending.values() for s in todo]
    limit = max_parallel or max(1, int(ray.cluster_resources().get("CPU", 1)))
    in_flight: dict = {}
    errors: list[str] = []
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            spec = queue.pop(0)
            in_flight[remote.remote(d, spec)] = spec
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        spec = in_flight.pop(ready[0])
        try:
            res = ray.get(ready[0])
        except Exception as e:  # noqa: BLE001 - report every failed shard, keep the finished ones
            errors.append(f"{spec.task} shard {spec.index}: {e}")
            continue
        pending[spec.task][2].append(res)
        log.info("demos %s shard %d: %d/%d successes in %.1fs", spec.task, spec.index,
                 res["successes"], res["attempts"], res["wall_s"])
    for task, (stage, todo, results) in pending.items():
        if len(results) == len(plan_shards(stage, d, task)):
            merge_task(stage, d, task, sorted(results, key=lambda r: r["shard"]))
            outputs[task] = stage.path / f"{task}.hdf5"
    if errors:
        raise RuntimeError("demo generation failed (finished shards are kept and reused on rerun):\n  "
                           + "\n  ".join(errors))
    return outputs
