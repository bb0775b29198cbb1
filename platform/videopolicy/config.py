"""Typed configuration: one source of truth for every stage, loaded from YAML.

Every stage reads its part of one `PlatformConfig`. Loading is strict: unknown keys, wrong types and
impossible values are all collected (with their key path and, for names, the nearest valid one) and
raised together as a `ConfigError` *before* any Ray resources are requested.

A sweep file has the shape::

    name: smoke
    base: {<PlatformConfig fields>}
    rows:
      - name: two_stage
        overrides: {<any PlatformConfig fields, nested>}

Rows are a named list (the paper's table), not a grid.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from videopolicy.catalog import SUITES, suite_cameras, suite_tasks
from videopolicy.models.config import RECIPES, ModelConfig
from videopolicy.row_kinds import ROW_KIND_NAMES, RowKind, row_kind


class ConfigError(ValueError):
    """All problems found in a config, each as 'where: what (fix)'."""

    def __init__(self, errors: list[str], source: str | None = None):
        self.errors = list(errors)
        self.source = source
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{head}{len(self.errors)} config error(s):\n{lines}")


# ---------------------------------------------------------------------------------------------
# Config dataclasses. Field comments are the user-facing documentation of each key.
# ---------------------------------------------------------------------------------------------


@dataclass
class RenderConfig:
    """Offscreen render settings; recorded with the demos so evaluation renders the same way."""

    preset: Literal["default", "fast"] = "fast"  # fast: no shadows/reflections/MSAA, ~3x cheaper on CPU
    gl: Literal["egl", "osmesa"] = "egl"  # headless backend; osmesa is the fallback when EGL fails


@dataclass
class DemoFileConfig:
    """A published robomimic-format HDF5 file (RoboCasa, LIBERO, MimicGen) used as a demo source."""

    path: str = ""
    task: str = ""  # task name to file it under; default: the file's env_name
    language: str = ""  # instruction when the file carries none (MimicGen files have no language)


@dataclass
class DemoConfig:
    """Stage `demos`: where demonstrations come from."""

    source: Literal["scripted", "files"] = "scripted"
    suite: str = "robosuite"  # suite whose scripted experts generate the demos
    tasks: list[str] = field(default_factory=lambda: ["Lift", "Stack", "PickPlaceCan"])
    demos_per_task: int = 4
    cameras: list[str] = field(default_factory=lambda: ["agentview", "frontview", "robot0_eye_in_hand"])
    image_size: int = 128
    max_steps: int = 400  # per scripted episode; failures are retried with a new seed, never written
    seed: int = 0
    shard_size: int = 2  # successful episodes per Ray task (the unit of parallelism and of resume)
    max_attempts_per_demo: float = 3.0  # give up on a shard after this many attempts per wanted demo
    render: RenderConfig = field(default_factory=RenderConfig)
    files: list[DemoFileConfig] = field(default_factory=list)
    skip_bad: bool = False  # skip (and report) invalid demos instead of failing

    def validate(self) -> list[str]:
        errs = []
        if self.demos_per_task <= 0:
            errs.append("demos_per_task: must be > 0")
        if self.image_size < 16 or self.image_size > 1024:
            errs.append("image_size: must be between 16 and 1024")
        if not self.cameras:
            errs.append("cameras: at least one camera is needed")
        if len(set(self.cameras)) != len(self.cameras):
            errs.append(f"cameras: duplicate names in {self.cameras}")
        if self.max_steps <= 0:
            errs.append("max_steps: must be > 0")
        if self.shard_size <= 0:
            errs.append("shard_size: must be > 0")
        if self.max_attempts_per_demo < 1:
            errs.append("max_attempts_per_demo: must be >= 1")
        if self.source == "scripted" and not self.tasks:
            errs.append("tasks: at least one task is needed")
        if self.source == "files":
            if not self.files:
                errs.append("files: source is 'files' but no files are listed")
            for i, f in enumerate(self.files):
                if not f.path:
                    errs.append(f"files[{i}].path: empty")
        return errs

    def missing_files(self) -> list[str]:
        """Input files that do not exist (checked before running, not when only planning)."""
        if self.source != "files":
            return []
        return [f"files[{i}].path: no such file {f.path!r}" for i, f in enumerate(self.files)
                if f.path and not Path(f.path).expanduser().exists()]


@dataclass
class ClipConfig:
    """Stage `clips`: demos -> training windows, as in the paper.

    A clip starting at step t holds, per camera, the frames of steps t, t+s, ..., t+(T-1)*s, where
    T = video_horizon / frame_stride (the authors' window: video_horizon 32 at stride 4 is 8 frames, t .. t+28;
    frame t is both the condition frame and the first target), and the actions t .. t+action_horizon-1.
    video_horizon counts the control steps the predicted video spans; 0 (the paper's horizon-0 row)
    keeps only the current frame. The first camera of the list, or `pad_camera`, supplies the U-Net's
    pad frame (the authors: eye-in-hand, then left, right).
    """

    video_horizon: int = 32  # control steps covered by the predicted video (paper ablation: 0/16/32)
    frame_stride: int = 4  # steps between predicted frames (paper: 4, so 8 frames per camera)
    action_horizon: int = 32  # action chunk length (paper: 32, the first 16 are executed)
    action_dim: int = 7  # first dims of the stored actions used (RoboCasa stores 12, the paper uses 7)
    image_size: int = 128  # frames are resized to this (<= the demos' image size)
    cameras: list[str] = field(default_factory=list)  # default: all cameras of the demos
    pad_camera: str = ""  # camera whose current frame is the U-Net's pad frame ("" = the first of `cameras`)
    task_subset: Literal["all", "half", "list"] = "all"
    task_list: list[str] = field(default_factory=list)  # tasks when task_subset == "list"
    half_seed: int = 0  # seed of the deterministic half_tasks split (recorded in the manifest)
    val_fraction: float = 0.1  # demos (not clips) held out for validation, per task
    split_seed: int = 0

    @property
    def frames_per_camera(self) -> int:
        """T: predicted frames per camera (0 for the horizon-0 row)."""
        return self.video_horizon // self.frame_stride if self.frame_stride > 0 else 0

    @property
    def frames_per_clip(self) -> int:
        """Frames stored per camera in a clip: T, or the current frame alone when T = 0."""
        return max(self.frames_per_camera, 1)

    def validate(self) -> list[str]:
        errs = []
        if self.video_horizon < 0:
            errs.append("video_horizon: must be >= 0 (control steps; the paper uses 0, 16 or 32)")
        if self.frame_stride <= 0:
            errs.append("frame_stride: must be > 0")
        elif self.video_horizon % self.frame_stride:
            errs.append(
                f"video_horizon: {self.video_horizon} is not a multiple of frame_stride {self.frame_stride}"
            )
        if self.action_horizon <= 0:
            errs.append("action_horizon: must be > 0")
        if self.action_dim <= 0:
            errs.append("action_dim: must be > 0")
        if self.image_size < 8:
            errs.append("image_size: must be >= 8")
        if not 0.0 <= self.val_fraction < 1.0:
            errs.append("val_fraction: must be in [0, 1)")
        if self.task_subset == "list" and not self.task_list:
            errs.append("task_list: task_subset is 'list' but task_list is empty")
        if self.task_subset != "list" and self.task_list:
            errs.append("task_list: only used when task_subset is 'list'")
        return errs


@dataclass
class StageRunConfig:
    """The budget of one training run (a Ray Train TorchTrainer)."""

    steps: int = 200  # optimizer steps (all workers step together)
    batch_size: int = 8  # clips per worker per step
    checkpoint_every: int = 50  # steps; a crash loses at most this many
    keep_checkpoints: int = 2
    lr: float = 0.0  # 0: model.optim.lr (U-Net); adapter + head train at lr * model.optim.head_lr_scale
    ema_decay: float = 0.0  # 0: no EMA; else the EMA weights are what the checkpoint's policy uses
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: to 0 at `steps` (Diffusion Policy, lerobot)
    warmup_steps: int = 0  # linear warm-up from 0 (either schedule)
    log_every: int = 10  # steps between metric reports (rank 0 only)
    # steps between validations on the held-out demos' clips (train/validate.py: val_loss, and for stages
    # that train actions the sampled chunks' error val_action_mse beside the mean chunk's); 0: none.
    # A multiple of log_every; needs clips.val_fraction > 0.
    val_every: int = 0
    val_clips: int = 32  # held-out clips per validation (evenly spaced over the val split)

    def validate(self) -> list[str]:
        errs = []
        if self.val_every < 0 or (self.val_every and self.val_every % max(self.log_every, 1)):
            errs.append(f"val_every: must be 0 or a multiple of log_every ({self.log_every}), got {self.val_every}")
        if self.val_clips <= 0:
            errs.append("val_clips: must be > 0")
        if self.steps <= 0:
            errs.append("steps: must be > 0")
        if self.batch_size <= 0:
            errs.append("batch_size: must be > 0")
        if self.checkpoint_every <= 0:
            errs.append("checkpoint_every: must be > 0")
        if self.keep_checkpoints < 1:
            errs.append("keep_checkpoints: must be >= 1")
        if self.lr < 0:
            errs.append("lr: must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            errs.append("ema_decay: must be in [0, 1)")
        if not 0 <= self.warmup_steps < max(self.steps, 1):
            errs.append("warmup_steps: must be in [0, steps)")
        if self.log_every <= 0:
            errs.append("log_every: must be > 0")
        return errs


#: `train.method`'s type: the registered row kinds (videopolicy.row_kinds), checked with the nearest-name hint
RowKindName = Literal[ROW_KIND_NAMES]


@dataclass
class TrainConfig:
    """Stages stage1 / stage2: how a row's policy is trained. `method` is the row kind of the paper's table
    (two_stage, joint, no_video_tuning, dp_resnet) or a sanity row (scripted_expert, random); what each
    kind trains, and how, is its entry in videopolicy.row_kinds.ROW_KINDS (`kind`).
    """

    method: RowKindName = "two_stage"
    stage1: StageRunConfig = field(default_factory=StageRunConfig)
    stage2: StageRunConfig = field(default_factory=StageRunConfig)
    workers: int = 1  # Ray Train workers (DDP ranks)
    use_gpu: bool = False
    cpus_per_worker: float = 1.0  # fractional on small boxes so Ray Data keeps a CPU (see README)
    gpus_per_worker: float = 1.0
    strategy: Literal["ddp", "fsdp"] = "ddp"  # fsdp: shard the svd-xt U-Net across A100s
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast (GPU only)
    max_failures: int = 2  # worker-group restarts from the latest checkpoint
    storage_path: str = ""  # Ray Train storage; "" = <store>/train_runs; s3://bucket/prefix on a cluster
    seed: int = 0
    # ColorJitter(brightness, contrast, saturation, hue) of the authors, on the trainer's copy of each
    # clip (one draw per camera); all zeros turns it off. Used by every learned row (video policy, DP).
    color_jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.05)
    # Video-policy rows: encode every frame once with the frozen VAE (kept in <store>/latents/) and train on
    # the cached posteriors, not a VAE pass per step (the CPU study's main saving). Targets are still
    # drawn from each frame's posterior every step; the conditioning frame's cond_aug noise is drawn once
    # per frame. Needs color_jitter off: jitter acts on pixels, before the VAE.
    latent_cache: bool = False
    # Stage 2 (U-Net frozen) with model.edm.feature_noise false: run the U-Net once per clip and keep its
    # taps in the trainer's memory (train/latents.FeatureCache); the same losses to float rounding, and a
    # stage-2 step costs the adapter and head alone. Needs latent_cache and no stage-2 condition dropout.
    feature_cache: bool = False
    # a saved policy directory to evaluate instead of training one (e.g. the authors' released weights,
    # jobs/import_checkpoint.py): the row runs only its evaluation, with the directory's own model config
    policy_dir: str = ""

    @property
    def kind(self) -> RowKind:
        """The row kind `method` names (stages, train mode, model kind, sanity policy)."""
        return row_kind(self.method)

    def validate(self) -> list[str]:
        errs = []
        if self.policy_dir and self.kind.sanity:
            errs.append(f"policy_dir: a {self.method} row has its own policy; remove policy_dir or the method")
        if any(x < 0 for x in self.color_jitter) or any(x >= 1 for x in self.color_jitter[:3]) \
                or self.color_jitter[3] > 0.5:
            errs.append("color_jitter: (brightness, contrast, saturation) in [0, 1), hue in [0, 0.5]; "
                        "[0, 0, 0, 0] turns it off")
        if self.latent_cache and any(self.color_jitter):
            errs.append("latent_cache: needs color_jitter: [0, 0, 0, 0] (jitter changes the pixels the cached "
                        "latents were encoded from); turn one of them off")
        if self.feature_cache and not self.latent_cache:
            errs.append("feature_cache: needs latent_cache: true (the conditioning latents must be fixed per clip)")
        if self.workers <= 0:
            errs.append("workers: must be > 0")
        if self.cpus_per_worker <= 0:
            errs.append("cpus_per_worker: must be > 0")
        if self.use_gpu and self.gpus_per_worker <= 0:
            errs.append("gpus_per_worker: must be > 0 when use_gpu is true")
        if self.precision == "bf16" and not self.use_gpu:
            errs.append("precision: bf16 autocast needs use_gpu: true (CPU runs use fp32: on this project's CPU "
                        "models bf16 measured no faster, bench/results/study_costs_bf16.json)")
        if self.strategy == "fsdp" and not self.use_gpu:
            errs.append("strategy: fsdp needs use_gpu: true (use ddp on CPU)")
        if self.max_failures < 0:
            errs.append("max_failures: must be >= 0")
        return errs


@dataclass
class AdaptiveConfig:
    """`eval.adaptive`: anytime-valid evaluation. Every row but the reference runs the fixed episode list
    in rounds (one episode of every task per round, the same order for every row) and stops once its
    paired comparison with the reference is decided by a sequential test valid under continuous
    monitoring (videopolicy.evaluate.sequential), or at the maximum. Off by default."""

    enabled: bool = False
    alpha: float = 0.05  # error level of the decision (false-positive rate under continuous monitoring)
    reference: str = ""  # row compared against; "" = the sweep's reference (its first row)
    decision: Literal["better", "worse", "either"] = "either"  # what to decide: row better, worse, or either
    min_episodes_per_task: int = 3  # never stop before this many rounds
    max_episodes_per_task: int = 0  # 0 = eval.episodes_per_task (the fixed budget); at most that

    def validate(self) -> list[str]:
        errs = []
        if not 0 < self.alpha < 1:
            errs.append(f"alpha: must be in (0, 1), got {self.alpha}")
        if self.min_episodes_per_task < 1:
            errs.append("min_episodes_per_task: must be >= 1")
        if self.max_episodes_per_task < 0:
            errs.append("max_episodes_per_task: must be >= 0 (0 = eval.episodes_per_task)")
        if self.max_episodes_per_task and self.max_episodes_per_task < self.min_episodes_per_task:
            errs.append("max_episodes_per_task: must be >= min_episodes_per_task")
        return errs


@dataclass
class EvalConfig:
    """Stage `eval`: closed-loop rollouts of a row's policy; every row of a sweep gets the same episodes."""

    suite: str = "robosuite"  # registry name: robosuite, libero10, robocasa, mimicgen
    tasks: list[str] = field(default_factory=list)  # default: the suite protocol's tasks (robosuite: demos.tasks)
    episodes_per_task: int = 10
    seed: int = 0  # scene seeds derive from (suite, task, scene, index, seed): identical for every row
    policy_seed: int = 0  # policy sampling noise, separate from scene seeds
    max_steps: int = 0  # 0: the suite protocol's step limit
    execute_steps: int = 16  # actions executed from each 32-step chunk before replanning (authors: 16)
    workers: int = 2  # simulator worker actors
    cpus_per_worker: float = 1.0
    policy_servers: int = 1
    max_batch: int = 8  # observations per policy call
    batch_timeout_s: float = 0.02  # wait this long to fill a batch
    recycle_after: int = 50  # episodes before a worker actor is replaced (leaks in renderers)
    max_retries: int = 3  # infrastructure errors (actor death, renderer failure) per episode
    video_episodes: int = 1  # episodes per task saved as MP4
    sampler_steps: int = 0  # 0: model.sampler.steps
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)  # stop a row once its comparison is decided

    def max_rounds(self) -> int:
        """Episodes per task a row runs at most (the fixed budget unless eval.adaptive lowers it)."""
        return min(self.adaptive.max_episodes_per_task or self.episodes_per_task, self.episodes_per_task)

    def validate(self) -> list[str]:
        errs = []
        if self.adaptive.max_episodes_per_task > self.episodes_per_task:
            errs.append(f"adaptive.max_episodes_per_task: {self.adaptive.max_episodes_per_task} is more than "
                        f"episodes_per_task {self.episodes_per_task} (the fixed episode list)")
        if self.episodes_per_task <= 0:
            errs.append("episodes_per_task: must be > 0")
        if self.max_steps < 0:
            errs.append("max_steps: must be >= 0 (0 = the suite's limit)")
        if self.execute_steps <= 0:
            errs.append("execute_steps: must be > 0")
        if self.workers <= 0:
            errs.append("workers: must be > 0")
        if self.cpus_per_worker <= 0:
            errs.append("cpus_per_worker: must be > 0")
        if self.policy_servers <= 0:
            errs.append("policy_servers: must be > 0")
        if self.max_batch <= 0:
            errs.append("max_batch: must be > 0")
        if self.batch_timeout_s < 0:
            errs.append("batch_timeout_s: must be >= 0")
        if self.recycle_after <= 0:
            errs.append("recycle_after: must be > 0")
        if self.max_retries < 0:
            errs.append("max_retries: must be >= 0")
        if self.video_episodes < 0:
            errs.append("video_episodes: must be >= 0")
        if self.sampler_steps < 0:
            errs.append("sampler_steps: must be >= 0")
        return errs


@dataclass
class RayConfig:
    """How jobs reach Ray. address 'auto' joins RAY_ADDRESS / a running head, else starts a local one."""

    address: str = "auto"
    num_cpus: int = 0  # logical CPUs of a locally started cluster; 0 = max(4, cores) (util.local_num_cpus)
    auth_mode: Literal["disabled", "token"] = "token"  # when RAY_AUTH_MODE is unset; the same in every process (README)


@dataclass
class PlatformConfig:
    name: str = "default"
    store: str = "~/.cache/videopolicy/store"  # root of content-addressed stage outputs (S3 on a cluster)
    demos: DemoConfig = field(default_factory=DemoConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)
    # Clip-shaped fields (num_cameras, frames_per_camera, image_size, action_head.horizon/action_dim)
    # are derived from `clips`: see `model_config()`; setting them differently is an error.
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def model_config(self) -> ModelConfig:
        """The model config with its clip-shaped fields taken from `clips` (one source of truth)."""
        clip_cams = self.clips.cameras or self.demos.cameras
        kind = self.train.kind.model_kind or ModelConfig().kind  # a sanity row trains no model: the default
        head = dataclasses.replace(self.model.action_head, horizon=self.clips.action_horizon,
                                   action_dim=self.clips.action_dim)
        pad = list(clip_cams).index(self.clips.pad_camera) if self.clips.pad_camera in clip_cams else 0
        return dataclasses.replace(self.model, kind=kind, num_cameras=len(clip_cams), pad_camera=pad,
                                   frames_per_camera=self.clips.frames_per_camera,
                                   image_size=self.clips.image_size, action_head=head)

    def validate(self) -> list[str]:
        """Cross-section checks that need more than one section (or the suite catalogue)."""
        errs = []
        if self.demos.source == "scripted":
            known_tasks = suite_tasks(self.demos.suite)
            if known_tasks is None:
                errs.append(f"demos.suite: unknown suite {self.demos.suite!r}{_hint(self.demos.suite, ['robosuite'])}")
            else:
                for i, task in enumerate(self.demos.tasks):
                    if task not in known_tasks:
                        errs.append(f"demos.tasks[{i}]: unknown task {task!r}{_hint(task, known_tasks)}")
                        continue
                    have = suite_cameras(self.demos.suite, task)
                    for cam in self.demos.cameras:
                        if cam not in have:
                            errs.append(
                                f"demos.cameras: task {task!r} has no camera {cam!r}{_hint(cam, have)} "
                                f"(it has {sorted(have)})"
                            )
        for i, cam in enumerate(self.clips.cameras):
            if cam not in self.demos.cameras and self.demos.source == "scripted":
                errs.append(f"clips.cameras[{i}]: {cam!r} is not among demos.cameras{_hint(cam, self.demos.cameras)}")
        if self.demos.source == "scripted" and self.clips.image_size > self.demos.image_size:
            errs.append(
                f"clips.image_size: {self.clips.image_size} is larger than demos.image_size {self.demos.image_size}"
            )
        clip_cams = list(self.clips.cameras or self.demos.cameras)
        if self.clips.pad_camera and clip_cams and self.clips.pad_camera not in clip_cams:
            errs.append(f"clips.pad_camera: {self.clips.pad_camera!r} is not among the clip cameras {clip_cams}"
                        f"{_hint(self.clips.pad_camera, clip_cams)}")
        if self.clips.task_subset == "list" and self.demos.source == "scripted":
            for i, task in enumerate(self.clips.task_list):
                if task not in self.demos.tasks:
                    errs.append(f"clips.task_list[{i}]: {task!r} is not among demos.tasks{_hint(task, self.demos.tasks)}")
        if self.clips.task_subset == "half" and self.demos.source == "scripted" and len(self.demos.tasks) < 2:
            errs.append("clips.task_subset: 'half' needs at least 2 tasks in demos.tasks")
        errs.extend(self._model_errors())
        if self.train.feature_cache and self.train.kind.train_mode == "stage2":
            e = self.model.edm
            dropout = e.cond_dropout if e.stage2_cond_dropout is None else e.stage2_cond_dropout
            if e.feature_noise or dropout > 0:
                errs.append("train.feature_cache: the stage-2 U-Net pass depends on the clip alone only with "
                            "model.edm.feature_noise: false and model.edm.stage2_cond_dropout: 0")
        if self.eval.suite not in SUITES:
            errs.append(f"eval.suite: unknown suite {self.eval.suite!r}{_hint(self.eval.suite, SUITES)}; "
                        f"registered: {sorted(SUITES)}")
        if self.eval.suite == "robosuite" and self.demos.source == "scripted":
            for i, task in enumerate(self.eval.tasks):
                if task not in self.demos.tasks:
                    errs.append(f"eval.tasks[{i}]: {task!r} has no demos (demos.tasks){_hint(task, self.demos.tasks)}")
        return errs

    def _model_errors(self) -> list[str]:
        defaults, errs = ModelConfig(), []
        derived = self.model_config()
        for name, where in (("num_cameras", "clips.cameras"), ("frames_per_camera", "clips.video_horizon / frame_stride"),
                            ("image_size", "clips.image_size"), ("pad_camera", "clips.pad_camera")):
            mine = getattr(self.model, name)
            if mine != getattr(defaults, name) and mine != getattr(derived, name):
                errs.append(f"model.{name}: derived from {where} ({getattr(derived, name)}); remove it")
        for name, where in (("horizon", "clips.action_horizon"), ("action_dim", "clips.action_dim")):
            mine = getattr(self.model.action_head, name)
            if mine != getattr(defaults.action_head, name) and mine != getattr(derived.action_head, name):
                errs.append(f"model.action_head.{name}: derived from {where}; remove it")
        if self.model.kind != defaults.kind:
            errs.append("model.kind: set by train.method (dp_resnet -> the baseline); remove it")
        return errs


@dataclass
class RowConfig:
    name: str = ""
    overrides: dict = field(default_factory=dict)


@dataclass
class SweepConfig:
    """A sweep: a base config and a named list of rows (ablation variants), each a set of overrides."""

    name: str
    base: PlatformConfig
    rows: list[tuple[str, PlatformConfig]]
    implicit_base_row: bool = False  # the file has no `rows`: its base runs as the one row "base"
    # Budgets too small for a policy to learn (the smoke sweep): its tables and report say so
    pipeline_check: bool = False

    def row(self, name: str) -> PlatformConfig:
        for row_name, cfg in self.rows:
            if row_name == name:
                return cfg
        raise KeyError(f"no row {name!r}{_hint(name, [n for n, _ in self.rows])}")


# ---------------------------------------------------------------------------------------------
# Generic strict loader: dict -> dataclass, collecting every error with its key path.
# ---------------------------------------------------------------------------------------------


def _hint(name: str, candidates) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str, errors: list[str]) -> Any:
    """Convert a YAML value to `tp`, appending errors instead of raising."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping for {tp.__name__}, got {type(value).__name__} {value!r}")
            return tp()
        return _build(tp, value, path, errors)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            errors.append(f"{path}: {value!r} is not one of {list(choices)}{_hint(value, choices)}")
            return choices[0]
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(get_args(tp)):
            return None
        sub: list[str] = []
        out = _convert(value, args[0], path, sub)
        errors.extend(sub)
        return out
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            errors.append(f"{path}: expected a list, got {type(value).__name__} {value!r}")
            return [] if origin is list else ()
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_convert(v, item_tp, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
            return {}
        return dict(value)
    if tp is Any:
        return value
    if tp in _SCALARS:
        accepts, expected, placeholder = _SCALARS[tp]
        if not accepts(value):
            errors.append(f"{path}: expected {expected}, got {type(value).__name__} {value!r}")
            return placeholder
        return float(value) if tp is float else value
    errors.append(f"{path}: unsupported type {_type_name(tp)}")
    return value


#: scalar type -> (accepts a YAML value, what the error says was expected, the placeholder after an error).
#: YAML's true/false are not numbers here, and a number must be finite.
_SCALARS: dict[type, tuple[Any, str, Any]] = {
    bool: (lambda v: isinstance(v, bool), "true/false", False),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", 0),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
            "a finite number", 0.0),
    str: (lambda v: isinstance(v, str), "a string", ""),
}


def _build(cls, data: dict, path: str, errors: list[str]):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            errors.append(f"{where}: unknown key{_hint(key, fields)}; valid keys: {sorted(fields)}")
            continue
        kwargs[key] = _convert(value, hints[key], where, errors)
    return cls(**kwargs)  # every field has a default


def _validate_tree(obj, path: str, errors: list[str]) -> None:
    """Run every nested dataclass's own validate() (impossible values), prefixing key paths."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        where = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value):
            _validate_tree(value, where, errors)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    _validate_tree(v, f"{where}[{i}]", errors)
    validate = getattr(obj, "validate", None)
    if validate is not None and not isinstance(obj, PlatformConfig):
        errors.extend(f"{path}.{e}" if path else e for e in validate())


def merge_overrides(base: dict, override: dict) -> dict:
    """`base` (config data, nested) with `override` merged in, key by key (a row's or --set's overrides)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_overrides(out[k], v)
        else:
            out[k] = v
    return out


def config_from_dict(data: dict, source: str | None = None, prefix: str = "") -> PlatformConfig:
    errors: list[str] = []
    cfg = _config_or_errors(data, prefix, errors)
    if errors:
        raise ConfigError(errors, source)
    return cfg


def _config_or_errors(data: dict, prefix: str, errors: list[str], check_files: bool = True) -> PlatformConfig:
    if not isinstance(data, dict):
        errors.append(f"{prefix or '<top>'}: expected a mapping, got {type(data).__name__}")
        return PlatformConfig()
    n_before = len(errors)
    model = data.get("model")
    if isinstance(model, dict) and model.get("preset") in RECIPES:  # the preset's recipe, under the file's values
        data = {**data, "model": merge_overrides(RECIPES[model["preset"]], model)}
    cfg = _build(PlatformConfig, data, prefix, errors)
    if len(errors) == n_before:  # value checks only make sense on well-typed input
        _validate_tree(cfg, prefix, errors)
        errors.extend(f"{prefix}.{e}" if prefix else e for e in cfg.validate())
        if check_files:
            errors.extend(f"{prefix}.demos.{e}" if prefix else f"demos.{e}" for e in cfg.demos.missing_files())
    return cfg


def to_dict(cfg) -> dict:
    """The resolved config as plain data (for manifests, MLflow params, hashing)."""
    return dataclasses.asdict(cfg)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError([f"file not found: {path}"])
    text = path.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.MarkedYAMLError as e:  # syntax: say where, in the file's own terms (not "<unicode string>")
        raise ConfigError([_yaml_syntax_error(path, text, e)], str(path)) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {e}"], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of keys (name, base, rows, ...), "
                           f"got a {type(data).__name__}"], str(path))
    return data


def _yaml_syntax_error(path: Path, text: str, e: yaml.MarkedYAMLError) -> str:
    """'<file>, line L, column C: not valid YAML: <problem>' and the offending line with a caret."""
    mark = e.problem_mark or e.context_mark
    what = e.problem or e.context or "syntax error"
    if e.problem and e.context:
        ctx = e.context_mark
        what += f" ({e.context}" + (f" that starts at line {ctx.line + 1}" if ctx is not None and mark is not None
                                    and ctx.line != mark.line else "") + ")"
    if mark is None:
        return f"{path}: not valid YAML: {what}"
    lines = text.splitlines()
    shown = lines[mark.line] if mark.line < len(lines) else ""
    return (f"{path}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {what}. Fix the syntax "
            f"there:\n      {shown}\n      {' ' * mark.column}^")


def load_config(path: str | Path, overrides: dict | None = None) -> PlatformConfig:
    """Load a plain config file, or the `base` of a sweep file, with optional overrides."""
    data = load_yaml(path)
    if "base" in data:
        data = data["base"] or {}
    return config_from_dict(merge_overrides(data, overrides or {}), str(path))


def check_overrides(overrides: dict, prefix: str = "") -> None:
    """Raise ConfigError when `overrides` (nested, as a config file's) name unknown keys or hold values of
    the wrong type, each error with its key path (after `prefix`) and the nearest valid name. Values are
    checked as a whole with the config they go into (load_sweep / load_config)."""
    errors: list[str] = []
    _build(PlatformConfig, overrides, "", errors)
    if errors:
        raise ConfigError([f"{prefix}{e}" for e in errors])


def load_sweep(path: str | Path, check_files: bool = True, overrides: dict | None = None) -> SweepConfig:
    """Load and validate a sweep file: every row's resolved config, all errors at once.

    A file without `rows` is a plain config: its base runs as one row named "base" (implicit_base_row;
    the sweep driver prints this). `rows: []` is refused.
    check_files=False skips the existence of demo files (planning a sweep whose data is elsewhere).
    overrides (nested, e.g. from the command line's --set) apply to the base and, after a row's own
    overrides, to every row."""
    data = load_yaml(path)
    errors: list[str] = []
    allowed = {"name", "base", "rows", "description", "pipeline_check"}
    for key in data:
        if key not in allowed:
            errors.append(f"{key}: unknown top-level key{_hint(key, allowed)}; valid keys: {sorted(allowed)}")
    base_data = data.get("base") or {}
    base = _config_or_errors(merge_overrides(base_data, overrides or {}), "base", errors, check_files)
    rows: list[tuple[str, PlatformConfig]] = []
    seen: set[str] = set()
    if "rows" not in data:  # a plain config file: its base is the one row, named "base" (README; the driver says so)
        raw_rows = [{"name": "base", "overrides": {}}]
    elif not data["rows"]:
        errors.append("rows: empty: a sweep needs at least one row. Fix: list rows as {name, overrides} "
                      "(e.g. `rows: [{name: base, overrides: {}}]` runs the base config alone), or delete the "
                      "`rows` key, which runs the base config as one row named 'base'")
        raw_rows = []
    else:
        raw_rows = data["rows"]
    if not isinstance(raw_rows, list):
        errors.append("rows: expected a list of {name, overrides}")
        raw_rows = []
    for i, raw in enumerate(raw_rows):
        row = _convert(raw, RowConfig, f"rows[{i}]", errors)
        if not row.name:
            errors.append(f"rows[{i}].name: every row needs a name")
        elif row.name in seen:
            errors.append(f"rows[{i}].name: duplicate row name {row.name!r}")
        seen.add(row.name)
        row_data = merge_overrides(merge_overrides(base_data, row.overrides), overrides or {})
        cfg = _config_or_errors(row_data, f"rows[{i}]({row.name})", errors, check_files)
        rows.append((row.name, cfg))
    check = data.get("pipeline_check", False)
    if not isinstance(check, bool):
        errors.append(f"pipeline_check: expected true or false, got {check!r}")
    if errors:
        raise ConfigError(errors, str(path))
    return SweepConfig(name=data.get("name") or Path(path).stem, base=base, rows=rows,
                       implicit_base_row="rows" not in data, pipeline_check=check)
