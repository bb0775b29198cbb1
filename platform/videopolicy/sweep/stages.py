"""The stage kinds of a sweep, one class each: its key, its inputs, how it runs, what it costs.

    DataStage   demos -> frames -> clips of one data config (jobs/build_clips.py)
    Stage1      the video U-Net fine-tuned on ALL tasks' clips (row kinds with a stage 1: two_stage)
    Stage2      the run that yields the policy: action head, joint, or the DP-ResNet baseline
    EvalStage   closed-loop rollouts of one policy on the sweep's (shared) episode list

A stage's key hashes exactly the config fields that change its output plus its inputs' ids, and its
output lives under ``<store>/<kind>/<key>/`` (videopolicy.store.StageDir, completion marker last).
The planner (plan.py) builds these objects, the executor (execute.py) calls `run`, the estimate and
`--plan` call `cost`; none of them knows more about a stage than this interface:

    stage.kind, stage.key, stage.id        "<kind>/<key>", the store directory and the plan's node id
    stage.inputs                           {role: Stage} it reads (the DAG's edges; `deps` are their ids)
    stage.run(ctx) -> manifest             writes into ctx.out (this stage's directory)
    stage.cost() -> FLOPs                  estimated compute (no weights, no GPU)

`run` imports its stage's machinery (clips, Ray Train, the evaluation runner) when it runs, so that
building and printing a plan imports none of it: no torch, no Ray.

One key per stage, with one exception explained: the data stage's key is a *plan* key (the demo and
clip config), while the clip dataset it points to (`clips/<clip_key>`, data/clips.py) is keyed by the
demos' *contents* (file digests, the demos that passed validation), which a plan cannot know without
reading the data (planning must be instant and possible away from it). The data stage's manifest
records the clip path it resolved to; identical clip datasets reached from two data keys are stored once.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Optional

from videopolicy.config import ClipConfig, PlatformConfig, StageRunConfig
from videopolicy.store import StageDir, stable_hash
from videopolicy.sweep import cost as flops

if TYPE_CHECKING:
    from videopolicy.evaluate.policies import PolicySpec

PLAN_VERSION = 1  # in every key: bump it to invalidate every stage of every store


# ---------------------------------------------------------------------------------------------
# What goes into the keys
# ---------------------------------------------------------------------------------------------


def data_key(cfg: PlatformConfig) -> str:
    return stable_hash("data", PLAN_VERSION, asdict(cfg.demos), asdict(cfg.clips))


def run_fields(run: StageRunConfig) -> dict:
    """What changes a training run's result (not how often it logs or checkpoints)."""
    return {"steps": run.steps, "batch_size": run.batch_size, "lr": run.lr, "ema_decay": run.ema_decay,
            "lr_schedule": run.lr_schedule, "warmup_steps": run.warmup_steps}


def all_tasks(cfg: PlatformConfig) -> PlatformConfig:
    """The row's config with every task's clips: what stage 1 (the video model) trains on. The subset's
    own settings are reset too, so every row's stage 1 over the same data has one key."""
    import dataclasses

    return dataclasses.replace(cfg, clips=dataclasses.replace(cfg.clips, task_subset="all", task_list=[],
                                                              half_seed=ClipConfig().half_seed))


def episode_list_id(cfg: PlatformConfig) -> tuple:
    """What decides the evaluation episodes; rows must agree on it to be compared pairwise."""
    e = cfg.eval
    tasks = tuple(e.tasks or (cfg.demos.tasks if e.suite == "robosuite" else ()))
    return e.suite, tasks, e.episodes_per_task, e.seed, e.max_steps


def eval_fields(cfg: PlatformConfig) -> dict:
    e = cfg.eval
    d = cfg.demos
    return {"episodes": episode_list_id(cfg), "policy_seed": e.policy_seed, "execute_steps": e.execute_steps,
            "sampler_steps": e.sampler_steps, "video_episodes": e.video_episodes,
            # the robosuite protocol renders like the demos
            "render": asdict(d.render), "cameras": d.cameras, "image_size": d.image_size}


def policy_dir_key(path: str) -> str:
    """Identity of a saved policy directory: its path and its files' names, sizes and mtimes."""
    d = Path(path).expanduser().resolve()
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir() if p.is_file()) \
        if d.is_dir() else []
    return stable_hash(str(d), files)


def _subset(c: ClipConfig) -> str:
    return c.task_subset if c.task_subset != "list" else f"list:{','.join(c.task_list)}"


# ---------------------------------------------------------------------------------------------
# Running a stage
# ---------------------------------------------------------------------------------------------


@dataclass
class StageContext:
    """What a running stage may use: the store (its inputs' outputs), its own directory, its MLflow run."""

    store: str
    out: StageDir  # this stage's directory
    tracker: Optional[object] = None  # videopolicy.tracking.Tracker
    ref: Optional[object] = None  # this stage's run reference in the tracker
    lock: threading.Lock = field(default_factory=threading.Lock)  # the tracker is shared by stage threads

    def dir(self, stage: Stage) -> StageDir:
        return StageDir.of(self.store, stage.kind, stage.key)

    def run_id(self) -> Optional[str]:
        if self.ref is None:
            return None
        with self.lock:
            self.tracker.flush()
            return self.tracker.run_id(self.ref)

    def log_metrics(self, metrics: dict) -> None:
        if self.ref is not None:
            with self.lock:
                self.tracker.log_metrics(self.ref, metrics)


class Stage:
    """A node of the plan. Subclasses set `kind` and build themselves with `of(...)`."""

    kind: ClassVar[str]

    def __init__(self, key: str, cfg: PlatformConfig, label: str, inputs: Optional[dict[str, Stage]] = None):
        self.key = key
        self.cfg = cfg  # the config the stage runs with (that of the first row needing it)
        self.label = label
        self.inputs: dict[str, Stage] = dict(inputs or {})
        self.rows: list[str] = []  # the rows it serves (filled by the planner)

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.key}"

    @property
    def deps(self) -> tuple[str, ...]:
        """Ids of the stages it reads (its inputs), in a fixed order."""
        return tuple(s.id for s in self.inputs.values())

    def run(self, ctx: StageContext) -> dict:
        """Produce the stage's output in ctx.out; return its manifest (the executor completes the directory)."""
        raise NotImplementedError

    def cost(self) -> float:
        """Estimated FLOPs of running it (0 for what needs no accelerator)."""
        return 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id}, rows={self.rows})"


class DataStage(Stage):
    kind = "data"

    @classmethod
    def of(cls, cfg: PlatformConfig) -> DataStage:
        c = cfg.clips
        return cls(data_key(cfg), cfg, f"clips horizon {c.video_horizon}, {_subset(c)}")

    def run(self, ctx: StageContext) -> dict:
        from videopolicy.data.clips import build_clips

        ds = build_clips(self.cfg, ctx.store)
        m = ds.manifest
        return {"clips_path": str(ds.path), "tasks": m["tasks"], "clip_counts": m["clip_counts"],
                "demos": m["demos"], "skipped": m["skipped"]}


class TrainStage(Stage):
    """A Ray Train run (TorchTrainer) on a data stage's clips; its output is the exported policy/."""

    @property
    def data(self) -> DataStage:
        return self.inputs["data"]

    @property
    def init(self) -> Optional[Stage1]:
        """The stage-1 run whose U-Net this one starts from (row kinds with a stage 1), else None."""
        return self.inputs.get("init")

    @property
    def train_run(self) -> StageRunConfig:
        """Its budget: train.stage1 or train.stage2."""
        raise NotImplementedError

    def _common(self) -> tuple:
        t = self.cfg.train
        # colour jitter and the latent cache change what the trainer sees (the cache: cond_aug drawn once)
        return asdict(self.cfg.model_config()), t.workers, t.seed, list(t.color_jitter), t.latent_cache

    def run(self, ctx: StageContext) -> dict:
        from videopolicy.train.launch import TrainSpec, export_policy, run_training

        data = ctx.dir(self.data).manifest()
        out = ctx.out.prepare()
        tracker, ref = ctx.tracker, ctx.ref
        # metrics go to the stage's run by reference: they are queued if the server is down, even now
        spec = TrainSpec(self.kind, self.cfg, data["clips_path"], name=f"{self.kind}-{self.key}",
                         storage_path=self.cfg.train.storage_path or f"{ctx.store}/train_runs",
                         init_from=str(ctx.dir(self.init).path / "policy") if self.init else None,
                         tracking_uri=getattr(tracker, "uri", None), mlflow_run_id=ctx.run_id(),
                         mlflow_ref=asdict(ref) if ref is not None else None,
                         mlflow_experiment=getattr(tracker, "experiment", None),
                         tracking_managed=bool(getattr(tracker, "managed", False)), store=ctx.store,
                         progress_dir=str(out / "progress"))
        result = run_training(spec)
        export_policy(result, out / "policy")
        return {"step": result.step, "metrics": result.metrics, "train_run": spec.name,
                "checkpoint": str(result.checkpoint_dir), "clips_path": data["clips_path"],
                "train_tasks": data["tasks"]["train"]}

    def _clips(self) -> float:
        run, t = self.train_run, self.cfg.train
        return run.steps * run.batch_size * t.workers


class Stage1(TrainStage):
    kind = "stage1"

    @classmethod
    def of(cls, cfg: PlatformConfig, data: DataStage) -> Stage1:
        """`cfg` is all_tasks(row config): stage 1 always sees every task."""
        stage = cls("", cfg, f"video U-Net, horizon {cfg.clips.video_horizon}, {cfg.train.stage1.steps} steps",
                    {"data": data})
        stage.key = stable_hash("stage1", PLAN_VERSION, data.key, run_fields(cfg.train.stage1), *stage._common())
        return stage

    @property
    def train_run(self) -> StageRunConfig:
        return self.cfg.train.stage1

    def cost(self) -> float:
        f = flops.model_flops(self.cfg)
        return self._clips() * (3 * f["unet_pass"] + f["vae_encode_clip"])


class Stage2(TrainStage):
    kind = "stage2"

    @classmethod
    def of(cls, cfg: PlatformConfig, data: DataStage, init: Optional[Stage1]) -> Stage2:
        t = cfg.train
        inputs = {"data": data, **({"init": init} if init else {})}
        stage = cls("", cfg, f"{t.method}, {_subset(cfg.clips)}, {t.stage2.steps} steps", inputs)
        stage.key = stable_hash("stage2", PLAN_VERSION, t.method, data.key, init.id if init else "",
                                run_fields(t.stage2), *stage._common())
        return stage

    @property
    def train_run(self) -> StageRunConfig:
        return self.cfg.train.stage2

    def cost(self) -> float:
        kind, f = self.cfg.train.kind, flops.model_flops(self.cfg)
        if kind.train_mode == "joint":  # everything trains
            per_clip = 3 * (f["unet_pass"] + f["adapter"] + f["head"]) + f["vae_encode_clip"]
        elif not kind.video_at_inference:  # the baseline: its head (ResNet encoders not counted)
            per_clip = 3 * f["head"]
        else:  # frozen U-Net: one forward; adapter + head train
            per_clip = f["unet_pass"] + 3 * (f["adapter"] + f["head"]) + f["vae_encode_clip"]
        return self._clips() * per_clip


@dataclass(frozen=True)
class PolicySource:
    """What an evaluation evaluates: a trained stage-2 policy, a saved policy directory (e.g. the authors'
    weights, jobs/import_checkpoint.py) or a sanity row's known-answer policy. `ident` goes into the key."""

    ident: str
    stage: Optional[Stage2] = None
    policy_dir: str = ""
    sanity: str = ""  # evaluate.policies.PolicySpec kind

    @classmethod
    def of(cls, cfg: PlatformConfig, stage2: Optional[Stage2]) -> PolicySource:
        t = cfg.train
        if t.policy_dir:  # keyed by the directory's files
            return cls(f"policy:{policy_dir_key(t.policy_dir)}", policy_dir=t.policy_dir)
        if stage2 is not None:
            return cls(stage2.id, stage=stage2)
        return cls(t.method, sanity=t.kind.sanity_policy)

    def spec(self, ctx: StageContext) -> PolicySpec:
        from videopolicy.evaluate.policies import PolicySpec

        if self.policy_dir:
            return PolicySpec.parse(self.policy_dir)
        if self.stage is not None:
            return PolicySpec("checkpoint", str(ctx.dir(self.stage).path / "policy"))
        return PolicySpec(self.sanity)


class EvalStage(Stage):
    kind = "eval"

    def __init__(self, key, cfg, label, inputs=None, policy: Optional[PolicySource] = None, reference_row: str = ""):
        super().__init__(key, cfg, label, inputs)
        self.policy = policy
        self.reference_row = reference_row  # eval.adaptive: the row it is compared with, else ""

    @classmethod
    def of(cls, cfg: PlatformConfig, policy: PolicySource, reference: Optional[EvalStage] = None,
           reference_row: str = "") -> EvalStage:
        """`reference`: under eval.adaptive, the reference row's evaluation this one is paired with (it
        stops against that one's outcomes, so its output, and key, depend on it)."""
        e = cfg.eval
        key = stable_hash("eval", PLAN_VERSION, policy.ident, eval_fields(cfg))
        label = f"{e.suite}, {e.episodes_per_task}/task, policy {policy.ident.split('/')[-1][:8]}"
        inputs = {"policy": policy.stage} if policy.stage is not None else {}
        if reference is not None:
            a = asdict(e.adaptive)
            a.pop("reference")
            key = stable_hash("eval-adaptive", key, a, e.max_rounds(), reference.id)
            inputs["reference"] = reference
            label += f", adaptive vs {reference_row} ({e.adaptive.decision}, alpha {e.adaptive.alpha})"
        return cls(key, cfg, label, inputs, policy, reference_row if reference is not None else "")

    @property
    def reference(self) -> Optional[str]:
        """Id of the reference's evaluation under eval.adaptive, else None."""
        ref = self.inputs.get("reference")
        return ref.id if ref is not None else None

    def run(self, ctx: StageContext) -> dict:
        from videopolicy.evaluate.runner import evaluate

        out = ctx.out.prepare()
        spec = self.policy.spec(ctx)
        adaptive = self._adaptive(ctx)
        df = evaluate(self.cfg, spec, out, owner=f"sweep-{self.key[:8]}", adaptive=adaptive)
        infra = int((df["status"] == "infra_error").sum())
        if infra:  # not counted and not final: a re-run retries exactly these episodes
            raise RuntimeError(f"{infra} of {len(df)} episodes ended as infrastructure errors "
                               f"(see {out / 'ledger.sqlite'}); re-run the sweep to retry them")
        df.to_parquet(out / "episodes.parquet", index=False)
        done = df[df["status"] == "done"]
        ctx.log_metrics({"success_rate": float(done["success"].mean()), "episodes": float(len(done))})
        manifest = {"episodes": len(df), "success_rate": float(done["success"].mean()), "policy": spec.kind}
        if adaptive is not None:
            manifest["adaptive"] = {"reference_row": self.reference_row, "episodes_run": len(done),
                                    "not_run": int((df["status"] == "not_run").sum()),
                                    "stop": json.loads((out / "adaptive.json").read_text())["stop"]}
        return manifest

    def _adaptive(self, ctx: StageContext):
        """eval.adaptive for this row: the reference's finished outcomes (its eval is an input)."""
        import pandas as pd

        from videopolicy.evaluate.runner import AdaptiveRun

        reference = self.inputs.get("reference")
        if reference is None:
            return None
        ref = pd.read_parquet(ctx.dir(reference).path / "episodes.parquet")
        ref = ref[ref["status"] == "done"]
        a = self.cfg.eval.adaptive
        return AdaptiveRun(dict(zip(ref["episode_key"], ref["success"].astype(bool))), a.alpha, a.decision,
                           a.min_episodes_per_task, self.cfg.eval.max_rounds(), self.reference_row)

    def cost(self) -> float:
        """An upper bound: every episode to its step limit. Sanity policies are free."""
        if self.policy.sanity:
            return 0.0
        f = flops.model_flops(self.cfg)
        s = self.cfg.model.sampler
        passes = (self.cfg.eval.sampler_steps or s.steps) * (2 if s.guidance != 1.0 else 1)
        chunks = flops.eval_steps(self.cfg, len(episode_list_id(self.cfg)[1])) / self.cfg.eval.execute_steps
        if not self.cfg.train.kind.video_at_inference:  # the baseline: head steps only
            per_chunk = passes * f["head"]
        else:
            per_chunk = passes * (f["unet_pass"] + f["adapter"] + f["head"]) + f["vae_encode_current_frames"]
        return chunks * per_chunk


STAGE_KINDS: dict[str, type[Stage]] = {c.kind: c for c in (DataStage, Stage1, Stage2, EvalStage)}
