"""Driver side of a training run: checks before any worker starts, then one TorchTrainer.

    spec = TrainSpec(stage="stage1", cfg=cfg, clips_path=ds.path, name="stage1-<key>", storage_path=...)
    result = run_training(spec)            # resumes when `name` + `storage_path` already hold checkpoints
    result.policy_dir                      # -> VideoPolicy.from_pretrained(result.policy_dir)

Fault tolerance is Ray Train's: `FailureConfig(max_failures)` restarts the worker group from the latest
checkpoint (the step count continues); a second launch with the same name resumes the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from videopolicy.config import PlatformConfig, StageRunConfig, to_dict
from videopolicy.row_kinds import ROW_KINDS
from videopolicy.store import stable_seed
from videopolicy.train.checkpoint import (
    INFO_FILE,
    POLICY_DIR,
    TrainSetupError,
    check_init_checkpoint,
    local_checkpoints,
)

log = logging.getLogger(__name__)


@dataclass
class TrainSpec:
    """One training run. `name` + `storage_path` are its identity: the same pair resumes."""

    stage: Literal["stage1", "stage2"]
    cfg: PlatformConfig
    clips_path: str
    name: str
    storage_path: str
    init_from: Optional[str] = None  # a stage-1 policy dir (two_stage's stage 2 only)
    tracking_uri: Optional[str] = None
    mlflow_run_id: Optional[str] = None  # the MLflow run metrics go to; a checkpoint's id wins on resume
    # A sweep's stage run by reference (RunRef as dict; resolved when the server answers, so a stage can
    # start while it is down), with its experiment; then metrics go there and no run is created here.
    mlflow_ref: Optional[dict] = None
    mlflow_experiment: Optional[str] = None
    tracking_managed: bool = False  # tracking_uri is the store's own local server (its port may change)
    store: Optional[str] = None  # holds the metrics queue (<store>/mlflow/train_outbox); default cfg.store
    progress_dir: Optional[str] = None  # each worker writes rank<r>.json {pid, step} here at every report
    platform_dict: dict = field(default_factory=dict)

    def __post_init__(self):
        self.clips_path = str(self.clips_path)
        if not self.platform_dict:
            self.platform_dict = to_dict(self.cfg)

    @property
    def mode(self) -> str:
        """The model's training mode for this run (see loop.py's table): stage 1 trains the video model;
        a stage-2 run trains in its row kind's mode (videopolicy.row_kinds)."""
        return "stage1" if self.stage == "stage1" else self.cfg.train.kind.train_mode

    @property
    def run(self) -> StageRunConfig:
        return self.cfg.train.stage1 if self.stage == "stage1" else self.cfg.train.stage2

    @property
    def queue_store(self) -> str:
        """Where rank 0 queues its metrics (tracking/train_metrics.py): the store, if it is a local directory
        (the driver then sends what a worker could not), else this node's temp dir."""
        store = self.store or self.cfg.store
        if "://" in store:
            import tempfile

            return str(Path(tempfile.gettempdir()) / "videopolicy-train-metrics")
        return str(Path(store).expanduser().resolve())

    def metrics_target(self, run_id: Optional[str]):
        """Where the training metrics go (None: not tracked): the sweep's run reference, else `run_id`."""
        from videopolicy.tracking.train_metrics import MetricsTarget

        if not self.tracking_uri or not (self.mlflow_ref or run_id):
            return None
        if self.mlflow_ref:
            return MetricsTarget(self.tracking_uri, self.tracking_managed, run=self.mlflow_ref,
                                 experiment=self.mlflow_experiment)
        return MetricsTarget(self.tracking_uri, self.tracking_managed, run_id=run_id)


@dataclass
class TrainResult:
    checkpoint_dir: Path  # the last checkpoint (storage side)
    policy_dir: Path  # its policy/ directory: what evaluation loads
    step: int
    metrics: dict


def check_run(cfg, stage: str, init_from: Optional[str]) -> None:
    """What is wrong with a run whatever its clips (cheap, no Ray): stage vs row kind, init checkpoint use."""
    method, kind = cfg.train.method, cfg.train.kind
    with_stage1 = " or ".join(k.name for k in ROW_KINDS.values() if k.has_stage1)
    if stage not in kind.train_stages:
        raise TrainSetupError(f"train.method {method!r} has no stage {stage[-1]}" + (
            f" (only {with_stage1} fine-tunes the video model first)" if stage == "stage1" else
            " (a sanity row trains nothing)"))
    if stage == "stage2" and kind.has_stage1 and not init_from:
        raise TrainSetupError(f"{method}'s stage 2 needs the stage-1 checkpoint (init_from / --init-from)")
    if init_from and not kind.has_stage1:
        raise TrainSetupError(f"train.method {method!r} starts from base weights; init_from is only for {with_stage1}")
    if init_from and not Path(init_from).exists():
        raise TrainSetupError(f"{init_from}: stage-1 checkpoint not found. Fix: run stage1 first "
                              f"(jobs/train_stage.py --stage stage1) or pass the right --init-from")


def preflight(spec: TrainSpec) -> None:
    """Everything that can be wrong before workers start: raise TrainSetupError naming path and fix."""
    from videopolicy.data.clips import ClipDataset

    check_run(spec.cfg, spec.stage, spec.init_from)
    try:
        ds = ClipDataset.open(spec.clips_path)
    except FileNotFoundError as e:
        raise TrainSetupError(f"{e}. Fix: build the clips first (jobs/build_clips.py)") from e
    if spec.run.val_every and ds.index("val").shape[0] == 0:
        raise TrainSetupError(f"{spec.clips_path}: train.{spec.stage}.val_every is {spec.run.val_every} but the clips "
                              f"hold out no demos. Fix: clips.val_fraction > 0 (with enough demos per task) or val_every: 0")
    if ds.index("train").shape[0] < spec.run.batch_size * spec.cfg.train.workers:
        raise TrainSetupError(f"{spec.clips_path}: {ds.index('train').shape[0]} training clips, fewer than one "
                              f"batch for every worker ({spec.cfg.train.workers} x {spec.run.batch_size})")
    want = spec.cfg.model_config()
    try:
        want = want.checked()
    except ValueError as e:
        raise TrainSetupError(str(e)) from e
    from videopolicy.models.pretrained import problems as weight_problems

    missing = weight_problems(want, skip=("unet",) if spec.init_from else ())  # stage 2: U-Net of stage 1
    if missing:
        raise TrainSetupError("pretrained weights:\n  - " + "\n  - ".join(missing))
    if list(ds.clips.cameras or ds.cameras) and len(ds.cameras) != want.num_cameras:
        raise TrainSetupError(f"{spec.clips_path}: clips have {len(ds.cameras)} cameras, the model {want.num_cameras}")
    if ds.clips.frames_per_camera != want.frames_per_camera or ds.clips.image_size != want.image_size:
        raise TrainSetupError(f"{spec.clips_path}: clips are {ds.clips.frames_per_camera} frames x "
                              f"{ds.clips.image_size} px, the config asks {want.frames_per_camera} x {want.image_size}")
    if spec.init_from:
        check_init_checkpoint(spec.init_from, want, ds.cameras)


def latest_checkpoint(storage_path: str, name: str) -> Optional[Path]:
    """The newest checkpoint of run `name` in local storage, or None (used to re-attach MLflow runs)."""
    found = local_checkpoints(storage_path, name)
    return found[0][1] if found else None


def resolve_mlflow_run(spec: TrainSpec) -> Optional[str]:
    """The run id this training logs to: the checkpoint's (resume), else the given one, else a new run.
    A sweep's stage (mlflow_ref) logs by reference: nothing is created here, and the server may be down."""
    if not spec.tracking_uri or spec.mlflow_ref:
        return spec.mlflow_run_id
    ckpt = latest_checkpoint(spec.storage_path, spec.name)  # None on s3:// storage
    if ckpt is not None:
        run_id = json.loads((ckpt / INFO_FILE).read_text()).get("mlflow_run_id")
        if run_id:
            return run_id
    if spec.mlflow_run_id:
        return spec.mlflow_run_id
    from mlflow import MlflowClient

    client = MlflowClient(spec.tracking_uri)
    exp = client.get_experiment_by_name(spec.cfg.name)
    exp_id = exp.experiment_id if exp else client.create_experiment(spec.cfg.name)
    existing = client.search_runs([exp_id], filter_string=f"tags.`videopolicy.train_run` = '{spec.name}'",
                                  max_results=1)
    if existing:
        return existing[0].info.run_id
    run = client.create_run(exp_id, run_name=spec.name, tags={"videopolicy.train_run": spec.name,
                                                              "videopolicy.stage": spec.stage})
    client.log_batch(run.info.run_id, params=[_param(k, v) for k, v in train_params(spec).items()])
    return run.info.run_id


def _param(k, v):
    from mlflow.entities import Param

    return Param(k, str(v)[:6000])


def train_params(spec: TrainSpec) -> dict:
    t, r = spec.cfg.train, spec.run
    return {"train_mode": t.method, "stage": spec.stage, "model_mode": spec.mode, "preset": spec.cfg.model.preset,
            "steps": r.steps, "batch_size": r.batch_size, "workers": t.workers, "lr": r.lr or spec.cfg.model.optim.lr,
            "ema_decay": r.ema_decay, "clips": Path(spec.clips_path).name, "init_from": spec.init_from or ""}


def _train_dataset(spec: TrainSpec):
    """The training clips, repeated so one Ray Data execution serves about `EPOCH_STEPS` steps (or the
    whole run, if shorter): every execution restarts the pipeline, seconds each on a small box."""
    from videopolicy.data.clips import ClipDataset

    ds = ClipDataset.open(spec.clips_path)
    n = max(int(ds.manifest["clip_counts"].get("train", 1)), 1)
    per_step = spec.run.batch_size * spec.cfg.train.workers
    repeat = max(1, min(math.ceil(min(spec.run.steps, EPOCH_STEPS) * per_step / n), 64))
    # seeded by the run: the same config trains on the same clip order (Ray Data's default reshuffles
    # differently on every launch, which made a 4-demo closed-loop test pass or fail by chance)
    return ds.ray_dataset("train", shuffle=True, repeat=repeat, seed=stable_seed("clips", spec.name, spec.cfg.train.seed))


EPOCH_STEPS = 500  # steps served by one execution of the training dataset (at most; see _train_dataset)


def run_training(spec: TrainSpec) -> TrainResult:
    """Preflight, then fit one TorchTrainer (resuming if `name` already has checkpoints)."""
    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from videopolicy.runtime import worker_env
    from videopolicy.train.loop import train_loop_per_worker

    preflight(spec)
    if "://" not in spec.storage_path:  # workers look for checkpoints there too, from their own cwd
        spec = dataclasses.replace(spec, storage_path=str(Path(spec.storage_path).expanduser().resolve()))
    spec = dataclasses.replace(spec, mlflow_run_id=resolve_mlflow_run(spec), store=spec.queue_store)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # per-epoch bars flood job logs
    t = spec.cfg.train
    resources = {"CPU": t.cpus_per_worker}
    if t.use_gpu:
        resources["GPU"] = t.gpus_per_worker
    env = {**worker_env(spec.cfg), "OMP_NUM_THREADS": str(max(1, int(t.cpus_per_worker)))}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec},
        scaling_config=ScalingConfig(num_workers=t.workers, use_gpu=t.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=spec.name,
            storage_path=spec.storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=spec.run.keep_checkpoints),
            failure_config=FailureConfig(max_failures=t.max_failures),
            worker_runtime_env={"env_vars": env},
        ),
        datasets={"train": _train_dataset(spec)},
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise RuntimeError(f"training run {spec.name!r} failed after {t.max_failures} restarts: {e}") from e
    if result.checkpoint is None:
        raise RuntimeError(f"training run {spec.name!r} finished without a checkpoint")
    ckpt = Path(result.checkpoint.path)
    info = json.loads((ckpt / INFO_FILE).read_text())
    _send_queued_metrics(spec)
    return TrainResult(ckpt, ckpt / POLICY_DIR, info["step"], dict(result.metrics or {}))


def _send_queued_metrics(spec: TrainSpec) -> None:
    """What rank 0 could not send (the server was down at the end of the run) goes now, or stays queued
    for the next flush of the store's Tracker (a sweep's end restarts its local server for that)."""
    from videopolicy.tracking.train_metrics import finish_runs

    left = finish_runs(spec.queue_store, spec.name)
    if left:
        log.warning("training run %s: %d metric reports still queued under %s/mlflow/train_outbox (tracking "
                    "server down); they are sent when it is back", spec.name, left, spec.queue_store)


def export_policy(result: TrainResult, out_dir: str | Path) -> Path:
    """Copy the final policy out of Ray's storage (a stage output must not depend on checkpoint pruning)."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(result.policy_dir, tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
