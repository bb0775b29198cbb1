"""The training loop every Ray Train worker runs; one loop serves every stage (the mode differs).

| paper / row             | run     | model mode | trains                         | starts from            |
|-------------------------|---------|------------|--------------------------------|------------------------|
| stage 1 (two_stage)     | stage1  | stage1     | video U-Net (video loss)       | base weights           |
| stage 2 (two_stage)     | stage2  | stage2     | adapter + action head          | the stage-1 checkpoint |
| joint                   | stage2  | joint      | everything (both losses)       | base weights           |
| no_video_tuning         | stage2  | stage2     | adapter + action head          | base weights           |
| dp_resnet (baseline)    | stage2  | stage2     | ResNet encoders + action head  | random init            |

Batches come from ``ray.train.get_dataset_shard("train")``: clip references, cut into
frames (B, V, T, H, W, 3) uint8 and actions (B, 32, 7) by ``ClipCollate`` in this process.
Every worker reports on the same steps (Train V2's report is a barrier); rank 0 attaches checkpoints
and queues metrics for MLflow (sent in the background; nothing lost while the server is down).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import torch

from videopolicy.progress import training_line
from videopolicy.store import stable_seed
from videopolicy.train.augment import color_jitter
from videopolicy.train.checkpoint import (
    POLICY_DIR,
    CheckpointInfo,
    local_checkpoints,
    read_trainer_state,
    write_checkpoint,
)

log = logging.getLogger(__name__)


def _build_model(spec):
    from videopolicy.models import PolicyModel, build_model

    if spec.init_from:  # two_stage's stage 2: the stage-1 run's U-Net and encoders, this run's action branch
        return PolicyModel.from_pretrained(spec.init_from).with_stage2_config(spec.cfg.model_config())
    return build_model(spec.cfg.model_config())


class _Metrics:
    """Running sums between two reports."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.steps = 0
        self.wait_s = 0.0
        self.total_s = 0.0

    def add(self, values: dict[str, float], wait_s: float, total_s: float) -> None:
        for k, v in values.items():
            self.sums[k] += v
        self.steps += 1
        self.wait_s += wait_s
        self.total_s += total_s

    def summary(self, samples_per_step: int) -> dict[str, float]:
        n = max(self.steps, 1)
        out = {k: v / n for k, v in self.sums.items()}
        out["samples_per_s"] = samples_per_step * self.steps / max(self.total_s, 1e-9)
        out["data_wait_fraction"] = self.wait_s / max(self.total_s, 1e-9)
        out["step_time_s"] = self.total_s / n
        return out


def _metrics_queue(spec, run_id: str | None):
    """Rank 0's MLflow metrics (tracking/train_metrics.py): queued on disk in a millisecond and sent in order by
    a background thread, so the step never waits for the server; kept while it is down; a step an earlier
    attempt of this run already logged is not logged again. None when the run is not tracked."""
    from videopolicy.tracking.train_metrics import TrainMetrics

    target = spec.metrics_target(run_id)
    return TrainMetrics(spec.queue_store, spec.name, target, prefix=f"{spec.stage}/") if target else None


def lr_factor(run, step: int) -> float:
    """Multiplier of the base lr for optimizer step `step` (1-based): linear warm-up, then constant or
    cosine to 0 at ``run.steps``. A function of the step alone, so a resumed run continues the schedule."""
    import math

    warm = min(1.0, step / run.warmup_steps) if run.warmup_steps else 1.0
    if run.lr_schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, run.steps) / run.steps))
    return warm


def _read_resume_point(d: str | Path):
    """(CheckpointInfo, trainer state, text-embedding cache) of one checkpoint directory."""
    from videopolicy.models import TextEmbeddingCache

    return CheckpointInfo.read(d), read_trainer_state(d), TextEmbeddingCache.load(Path(d) / POLICY_DIR / "text_cache.pt")


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    from videopolicy.data.clips import ClipCollate, ClipDataset

    spec = config["spec"]
    cfg, run = spec.cfg, spec.run
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))

    ds = ClipDataset.open(spec.clips_path)
    model = _build_model(spec).set_mode(spec.mode)
    v = model.cfg.resolve().vae
    if model.kind == "video_policy" and not spec.init_from and v.fit_steps:  # init_from carries its fitted VAE
        from videopolicy.train.vae_fit import fitted_vae

        fitted_vae(model.vae, ds, v, cfg.train.seed)
    step, run_id, state = 0, spec.mlflow_run_id, None
    found = None
    resumed = ray.train.get_checkpoint()
    if resumed is not None:
        with resumed.as_directory() as d:
            found = _read_resume_point(d)
    for disk_step, d in local_checkpoints(spec.storage_path, spec.name):
        if found is not None and disk_step <= found[0].step:
            break
        try:  # a newer checkpoint Ray did not register (see local_checkpoints); skip one cut short
            found = _read_resume_point(d)
            break
        except Exception as e:  # noqa: BLE001 - truncated file of a group killed mid-copy
            log.warning("rank %d: skipping unreadable checkpoint %s: %s", rank, d, e)
    if found is not None:
        info, state, model.text_cache = found
        model.load_state_dict(state["weights"], strict=False)  # raw trainable weights (not the EMA ones)
        step, run_id = info.step, info.mlflow_run_id or run_id
        log.info("rank %d resumes at step %d", rank, step)
    if step >= run.steps:
        return
    metrics_queue = _metrics_queue(spec, run_id) if rank == 0 else None

    model.to(device)
    groups = model.param_groups(spec.mode)
    if run.lr > 0:  # the stage's own lr replaces the model's base lr; the head keeps its multiplier
        for g in groups:
            g["lr"] *= run.lr / cfg.model.optim.lr
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if cfg.train.strategy == "fsdp":
        wrapped = ray.train.torch.prepare_model(model, parallel_strategy="fsdp",
                                                parallel_strategy_kwargs={"use_orig_params": True})
    else:
        wrapped = ray.train.torch.prepare_model(model)
    opt = torch.optim.Adam(groups, fused=device.type in ("cpu", "cuda"))
    base_lrs = [g["lr"] for g in opt.param_groups]
    ema = {n: p.detach().clone() for n, p in trainable.items()} if run.ema_decay > 0 else None
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema"):
            ema = {n: t.to(device) for n, t in state["ema"].items()}
    generator = torch.Generator(device=device).manual_seed(stable_seed("train", spec.name, cfg.train.seed, rank, step))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.train.precision == "bf16" and device.type == "cuda"
                else nullcontext())

    shard = ray.train.get_dataset_shard("train")
    cached = cfg.train.latent_cache and model.kind == "video_policy"
    if cached:  # encode every frame once (or read the store's copy) instead of a VAE pass per step
        from videopolicy.train.latents import LatentCache, sample_latents

        collate = LatentCache(ds, model.vae, model.cfg.vae.cond_aug, model.cfg.vae.encode_chunk, cfg.train.seed)
    else:
        collate = ClipCollate(ds)
    features = None
    if cfg.train.feature_cache and spec.mode == "stage2":  # the frozen U-Net once per clip (validated inputs)
        from videopolicy.train.latents import FeatureCache

        features = FeatureCache()

    validator = None
    if run.val_every and rank == 0:  # the held-out clips, batched once (checked at launch: the split has some)
        from videopolicy.train.validate import Validator, exported_weights

        validator = Validator(ds, collate, cached, run.val_clips)

    def batches():
        while True:  # one pass of the shard per epoch; reshuffled by Ray Data each time
            yield from shard.iter_torch_batches(batch_size=run.batch_size, collate_fn=collate, drop_last=True)

    extra = {"normalizer": ds.normalizer.to_dict(), "cameras": ds.cameras, "clips": ds.path.name,
             "stage": spec.stage, "method": cfg.train.method}
    progress = Path(spec.progress_dir) if spec.progress_dir else None
    if progress:
        progress.mkdir(parents=True, exist_ok=True)
    window = _Metrics()
    it = batches()
    model.train()
    while step < run.steps:
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        if cached:
            inputs = {"latents": sample_latents(batch, generator, device), "cond_latents": batch["cond_latents"],
                      "actions": batch["actions"], "text": batch["language"]}
            if features is not None:
                inputs["frozen"] = features.frozen(model, inputs, batch["clip_key"])
        else:
            frames = batch["frames"].to(device)
            if any(cfg.train.color_jitter):
                frames = color_jitter(frames, cfg.train.color_jitter, generator)
            inputs = {"frames": frames, "actions": batch["actions"], "text": batch["language"]}
        with autocast:
            out = wrapped(inputs, spec.mode, generator)
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * lr_factor(run, step + 1)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for n, p in trainable.items():
                    ema[n].mul_(run.ema_decay).add_(p.detach(), alpha=1 - run.ema_decay)
        step += 1
        window.add(out.metrics(), t1 - t0, time.perf_counter() - t0)

        save = step % run.checkpoint_every == 0 or step == run.steps
        if not (save or step % run.log_every == 0):
            continue
        metrics = {**window.summary(run.batch_size * world), "step": step,
                   "lr": opt.param_groups[0]["lr"]}
        if validator is not None and step % run.val_every == 0:
            with exported_weights(trainable, ema):
                metrics.update(validator(model, spec.mode))
        window = _Metrics()
        if rank == 0:  # one line per report in the worker's log (and the driver's stdout): where training is
            # written, not print()ed: Ray Train patches print in its workers and shows such a line twice
            sys.stdout.write(training_line(spec.stage, step, run.steps, metrics) + "\n")
            sys.stdout.flush()
        if progress:  # one line per report: who (pid) reached which step, and its metrics (the learning
            # curve that the sweep's results carry: videopolicy.progress.read_curve); tests and operators read it
            with open(progress / f"rank{rank}.jsonl", "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "step": step, "time": time.time(), "metrics": metrics}) + "\n")
        if metrics_queue is not None:
            metrics_queue.log(metrics, step)
        if save and rank == 0:
            tmp = Path(tempfile.mkdtemp(prefix="vp_ckpt_"))
            info = CheckpointInfo(step, spec.stage, cfg.train.method, run_id, spec.platform_dict)
            trainer_state = {"optimizer": opt.state_dict(), "step": step,
                             "weights": {n: p.detach().cpu() for n, p in trainable.items()},
                             "ema": {n: t.cpu() for n, t in ema.items()} if ema else None}
            ema_state = {n: t for n, t in ema.items()} if ema else None
            write_checkpoint(tmp, model, info, {**extra, "step": step}, trainer_state, ema_state)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(tmp)))
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            ray.train.report(metrics)
    if metrics_queue is not None:
        metrics_queue.close()
    if progress and rank == 0:
        (progress / "done.json").write_text(json.dumps({"step": step}))
