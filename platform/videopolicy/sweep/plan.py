"""Rows -> a DAG of content-addressed stages (stages.py), identical stages merged.

What a row needs comes from its row kind (videopolicy.row_kinds): a data stage and a stage 2 for every
row kind that trains, a stage 1 (on all tasks' clips) before it for kinds that fine-tune the video
model first, and an evaluation of its policy (trained, a saved directory, or a sanity row's own).

A stage's key hashes exactly the config fields that change its output plus its inputs' ids, so
two_stage and half_tasks share one stage-1 model (stage 1 always sees every task; half_tasks restricts
only the head's clips), horizon rows share demos, and a re-run finds every finished stage by key.
Execution knobs (workers per eval, log/checkpoint intervals) are not part of any key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from videopolicy.config import ConfigError, PlatformConfig, SweepConfig
from videopolicy.models.pretrained import row_model_problems
from videopolicy.store import StageDir
from videopolicy.sweep.stages import (  # noqa: F401 - the key helpers are part of the planner's API
    PLAN_VERSION,
    DataStage,
    EvalStage,
    PolicySource,
    Stage,
    Stage1,
    Stage2,
    all_tasks,
    data_key,
    episode_list_id,
    policy_dir_key,
)


@dataclass
class RowPlan:
    name: str
    cfg: PlatformConfig
    stages: dict[str, str]  # kind -> stage id, for the kinds this row uses


@dataclass
class Plan:
    sweep: SweepConfig
    store: str
    nodes: dict[str, Stage]  # id -> stage; insertion order is a topological order
    rows: list[RowPlan]

    def stage_dir(self, node: Stage | str) -> StageDir:
        node = self.nodes[node] if isinstance(node, str) else node
        return StageDir.of(self.store, node.kind, node.key)

    def done(self, node: Stage | str) -> bool:
        return self.stage_dir(node).is_complete()

    def row(self, name: str) -> RowPlan:
        return next(r for r in self.rows if r.name == name)


def check_paired(sweep: SweepConfig) -> None:
    """Every row must be evaluated on the same episodes, or the table's comparisons are not paired."""
    ids = {name: episode_list_id(cfg) for name, cfg in sweep.rows}
    first_name, first = next(iter(ids.items()))
    errs = [f"rows[{name}].eval: episodes {eid} differ from row {first_name!r}'s {first} "
            f"(suite, tasks, episodes_per_task, seed, max_steps); set them in `base`, not per row"
            for name, eid in ids.items() if eid != first]
    if errs:
        raise ConfigError(errs + ["comparisons must be paired: every row gets the same episode list"], sweep.name)


class _Stages(dict):
    """The plan's stages by id, in the order they were added (topological)."""

    def add(self, stage: Stage, row: str) -> Stage:
        """The plan's stage with this id (the first row's config runs it), now serving `row` too."""
        stage = self.setdefault(stage.id, stage)
        if row not in stage.rows:
            stage.rows.append(row)
        return stage


def build_plan(sweep: SweepConfig, store: str, rows: Optional[list[str]] = None) -> Plan:
    check_paired(sweep)
    errs = [f"rows[{name}].{e}" for name, cfg in sweep.rows for e in row_model_problems(cfg)]
    if errs:
        raise ConfigError(errs, sweep.name)
    nodes = _Stages()
    plans, policies = _add_training(sweep, rows, nodes)
    _add_evaluations(sweep, plans, policies, nodes)
    ids = list(nodes)  # keep the insertion order topological: an adaptive eval after its reference's eval
    ids.sort(key=lambda i: isinstance(nodes[i], EvalStage) and nodes[i].reference is not None)
    return Plan(sweep, store, {i: nodes[i] for i in ids}, plans)


def _add_training(sweep: SweepConfig, rows: Optional[list[str]], nodes: _Stages
                  ) -> tuple[list[RowPlan], dict[str, PolicySource]]:
    """Each planned row's data and training stages (shared where their keys agree), and its policy."""
    plans: list[RowPlan] = []
    policies: dict[str, PolicySource] = {}
    for name, cfg in sweep.rows:
        if rows is not None and name not in rows:
            continue
        kind, stages = cfg.train.kind, {}
        stage2 = None
        if kind.trains and not cfg.train.policy_dir:  # a saved policy (policy_dir) is evaluated only
            data = nodes.add(DataStage.of(cfg), name)
            stages["data"] = data.id
            init = None
            if kind.has_stage1:  # the video model is fine-tuned on every task's clips
                s1 = all_tasks(cfg)
                init = nodes.add(Stage1.of(s1, nodes.add(DataStage.of(s1), name)), name)
                stages["stage1"] = init.id
            stage2 = nodes.add(Stage2.of(cfg, data, init), name)
            stages["stage2"] = stage2.id
        policies[name] = PolicySource.of(cfg, stage2)
        plans.append(RowPlan(name, cfg, stages))
    return plans, policies


def _add_evaluations(sweep: SweepConfig, plans: list[RowPlan], policies: dict[str, PolicySource],
                     nodes: _Stages) -> None:
    """Each row's evaluation: the reference rows' first, as adaptive rows depend on theirs (they stop
    against its outcomes)."""
    cfgs = {p.name: p.cfg for p in plans}
    fixed = {name: EvalStage.of(cfgs[name], policy) for name, policy in policies.items()}
    refs = {name: adaptive_reference(sweep, cfgs[name]) for name in policies}
    missing = sorted({r for r in refs.values() if r and r not in fixed})
    if missing:
        raise ConfigError([f"eval.adaptive.reference: row {r!r} is not planned (add it to --rows, or name a row "
                           f"of {list(fixed)})" for r in missing], sweep.name)
    evals: dict[str, EvalStage] = {}

    def evaluation(name: str, chain: tuple[str, ...] = ()) -> EvalStage:
        if name not in evals:
            ref, stage = refs[name], fixed[name]
            if ref and ref != name and fixed[ref].key != stage.key:  # adaptive: stops against the reference
                if ref in chain:
                    raise ConfigError([f"eval.adaptive.reference: rows {list(chain) + [ref]} compare with each "
                                       "other in a cycle; name a reference that runs its fixed budget"], sweep.name)
                stage = EvalStage.of(cfgs[name], policies[name], evaluation(ref, chain + (name,)), ref)
            evals[name] = nodes.add(stage, name)
        return evals[name]

    references = set(refs.values())
    for p in sorted(plans, key=lambda p: p.name not in references):
        p.stages["eval"] = evaluation(p.name).id


def adaptive_reference(sweep: SweepConfig, cfg: PlatformConfig) -> str:
    """The row an adaptive row is compared with ("" when eval.adaptive is off): eval.adaptive.reference,
    else the sweep's reference, its first row (as jobs/sweep_ablations.py's --reference default)."""
    a = cfg.eval.adaptive
    if not a.enabled:
        return ""
    return a.reference or sweep.rows[0][0]
