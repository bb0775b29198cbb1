"""Rows -> a DAG of content-addressed stages, identical stages merged.

    data    demos -> frames -> clips of one data config (jobs/build_clips.py)
    stage1  the video U-Net fine-tuned on ALL tasks' clips (two_stage rows only)
    stage2  the run that yields the policy: action head (two_stage, no_video_tuning), joint, dp_resnet
    eval    closed-loop rollouts of one policy on the sweep's (shared) episode list

A stage's key hashes exactly the config fields that change its output plus its inputs' keys, so
two_stage and half_tasks share one stage-1 model (stage 1 always sees every task; half_tasks restricts
only the head's clips), horizon rows share demos, and a re-run finds every finished stage by key.
Execution knobs (workers per eval, log/checkpoint intervals) are not part of any key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from videopolicy.config import SANITY_METHODS, ConfigError, PlatformConfig, StageRunConfig, SweepConfig
from videopolicy.store import StageDir, stable_hash

PLAN_VERSION = 1
KINDS = ("data", "stage1", "stage2", "eval")


@dataclass
class StageNode:
    kind: str
    key: str
    cfg: PlatformConfig  # the config the stage runs with (that of the first row needing it)
    deps: tuple[str, ...] = ()  # ids of the stages it reads
    rows: list[str] = field(default_factory=list)
    label: str = ""
    reference: Optional[str] = None  # eval under eval.adaptive: the reference row's eval stage it is paired with
    reference_row: str = ""

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.key}"


@dataclass
class RowPlan:
    name: str
    cfg: PlatformConfig
    stages: dict[str, str]  # kind -> stage id, for the kinds this row uses

    @property
    def policy_stage(self) -> Optional[str]:
        return self.stages.get("stage2")


@dataclass
class Plan:
    sweep: SweepConfig
    store: str
    nodes: dict[str, StageNode]  # insertion order is a topological order
    rows: list[RowPlan]

    def stage_dir(self, node: StageNode | str) -> StageDir:
        node = self.nodes[node] if isinstance(node, str) else node
        return StageDir.of(self.store, node.kind, node.key)

    def done(self, node: StageNode | str) -> bool:
        return self.stage_dir(node).is_complete()

    def row(self, name: str) -> RowPlan:
        return next(r for r in self.rows if r.name == name)


def _run_fields(run: StageRunConfig) -> dict:
    """What changes a training run's result (not how often it logs or checkpoints)."""
    return {"steps": run.steps, "batch_size": run.batch_size, "lr": run.lr, "ema_decay": run.ema_decay}


def data_key(cfg: PlatformConfig) -> str:
    return stable_hash("data", PLAN_VERSION, asdict(cfg.demos), asdict(cfg.clips))


def all_tasks(cfg: PlatformConfig) -> PlatformConfig:
    """The row's config with every task's clips: what stage 1 (the video model) trains on. The subset's
    own settings are reset too, so every row's stage 1 over the same data has one key."""
    from videopolicy.config import ClipConfig

    return dataclasses.replace(cfg, clips=dataclasses.replace(cfg.clips, task_subset="all", task_list=[],
                                                              half_seed=ClipConfig().half_seed))


def episode_list_id(cfg: PlatformConfig) -> tuple:
    """What decides the evaluation episodes; rows must agree on it to be compared pairwise."""
    e = cfg.eval
    tasks = tuple(e.tasks or (cfg.demos.tasks if e.suite == "robosuite" else ()))
    return e.suite, tasks, e.episodes_per_task, e.seed, e.max_steps


def _eval_fields(cfg: PlatformConfig) -> dict:
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


def check_paired(sweep: SweepConfig) -> None:
    """Every row must be evaluated on the same episodes, or the table's comparisons are not paired."""
    ids = {name: episode_list_id(cfg) for name, cfg in sweep.rows}
    first_name, first = next(iter(ids.items()))
    errs = [f"rows[{name}].eval: episodes {eid} differ from row {first_name!r}'s {first} "
            f"(suite, tasks, episodes_per_task, seed, max_steps); set them in `base`, not per row"
            for name, eid in ids.items() if eid != first]
    if errs:
        raise ConfigError(errs + ["comparisons must be paired: every row gets the same episode list"], sweep.name)


def build_plan(sweep: SweepConfig, store: str, rows: Optional[list[str]] = None) -> Plan:
    check_paired(sweep)
    errs = [f"rows[{name}].{e}" for name, cfg in sweep.rows for e in cfg.model_problems()]
    if errs:
        raise ConfigError(errs, sweep.name)
    nodes: dict[str, StageNode] = {}

    def add(kind: str, key: str, cfg: PlatformConfig, row: str, deps: tuple[str, ...], label: str) -> str:
        node = nodes.setdefault(f"{kind}/{key}", StageNode(kind, key, cfg, deps, [], label))
        if row not in node.rows:
            node.rows.append(row)
        return node.id

    plans = []
    evals: list[tuple[str, PlatformConfig, dict, str]] = []
    for name, cfg in sweep.rows:
        if rows is not None and name not in rows:
            continue
        t, stages = cfg.train, {}
        if t.policy_dir:  # a saved policy (e.g. the authors' weights): evaluation only, keyed by its files
            policy = f"policy:{policy_dir_key(t.policy_dir)}"
        elif t.method not in SANITY_METHODS:
            c = cfg.clips
            subset = c.task_subset if c.task_subset != "list" else f"list:{','.join(c.task_list)}"
            stages["data"] = add("data", data_key(cfg), cfg, name, (), f"clips horizon {c.video_horizon}, {subset}")
            model = asdict(cfg.model_config())
            common = (model, t.workers, t.seed)
            init = ""
            if t.method == "two_stage":
                s1 = all_tasks(cfg)
                s1_data = add("data", data_key(s1), s1, name, (), f"clips horizon {c.video_horizon}, all")
                key1 = stable_hash("stage1", PLAN_VERSION, data_key(s1), _run_fields(t.stage1), *common)
                stages["stage1"] = init = add("stage1", key1, s1, name, (s1_data,),
                                              f"video U-Net, horizon {c.video_horizon}, {t.stage1.steps} steps")
            key2 = stable_hash("stage2", PLAN_VERSION, t.method, data_key(cfg), init, _run_fields(t.stage2), *common)
            deps = (stages["data"],) + ((init,) if init else ())
            stages["stage2"] = add("stage2", key2, cfg, name, deps, f"{t.method}, {subset}, {t.stage2.steps} steps")
            policy = stages["stage2"]
        else:
            policy = t.method
        evals.append((name, cfg, stages, policy))
        plans.append(RowPlan(name, cfg, stages))
    # evaluations: the reference rows' first, as adaptive rows depend on theirs (they stop against its outcomes)
    keys = {name: stable_hash("eval", PLAN_VERSION, policy, _eval_fields(cfg)) for name, cfg, _, policy in evals}
    refs = {name: adaptive_reference(sweep, cfg) for name, cfg, _, _ in evals}
    missing = sorted({r for r in refs.values() if r and r not in keys})
    if missing:
        raise ConfigError([f"eval.adaptive.reference: row {r!r} is not planned (add it to --rows, or name a row "
                           f"of {list(keys)})" for r in missing], sweep.name)
    order = sorted(evals, key=lambda e: e[0] not in set(refs.values()))
    for name, cfg, stages, policy in order:
        deps = (policy,) if "/" in policy else ()
        key, ref = keys[name], refs[name]
        label = f"{cfg.eval.suite}, {cfg.eval.episodes_per_task}/task, policy {policy.split('/')[-1][:8]}"
        ref_id = None
        if ref and ref != name and keys[ref] != key:  # an adaptive row: its output depends on the reference's
            a = asdict(cfg.eval.adaptive)
            a.pop("reference")
            ref_id = f"eval/{keys[ref]}"
            key = stable_hash("eval-adaptive", key, a, cfg.eval.max_rounds(), ref_id)
            deps += (ref_id,)
            label += f", adaptive vs {ref} ({cfg.eval.adaptive.decision}, alpha {cfg.eval.adaptive.alpha})"
        stages["eval"] = add("eval", key, cfg, name, deps, label)
        if ref_id:
            nodes[stages["eval"]].reference, nodes[stages["eval"]].reference_row = ref_id, ref
    ids = list(nodes)  # keep the insertion order topological: an adaptive eval after its reference's eval
    ids.sort(key=lambda i: (i.startswith("eval/") and nodes[i].reference is not None))
    return Plan(sweep, store, {i: nodes[i] for i in ids}, plans)


def adaptive_reference(sweep: SweepConfig, cfg: PlatformConfig) -> str:
    """The row an adaptive row is compared with ("" when eval.adaptive is off): eval.adaptive.reference,
    else the sweep's reference, its first row (as jobs/sweep_ablations.py's --reference default)."""
    a = cfg.eval.adaptive
    if not a.enabled:
        return ""
    return a.reference or sweep.rows[0][0]
