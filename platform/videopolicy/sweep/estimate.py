"""Estimated GPU cost of a plan: every stage's `cost()` (stages.py, from the models' FLOP counts in
cost.py) in A100-hours, once per stage and as if every row ran on its own.

A100-hours = FLOPs / (312 TFLOP/s bf16 peak x utilisation). Training: a forward + backward of what
trains is ~3x its forward FLOPs; frozen parts (the VAE, stage 2's U-Net) cost one forward. Evaluation
is an upper bound: every episode runs to its step limit (successful episodes stop earlier).
The DP-ResNet baseline's ResNet encoders are not counted (small beside a video U-Net).
"""

from __future__ import annotations

from dataclasses import dataclass

from videopolicy.sweep.cost import A100_BF16_FLOPS, UTILISATION, a100_hours  # noqa: F401 - re-exported
from videopolicy.sweep.plan import Plan


@dataclass
class PlanCost:
    per_stage: dict[str, float]  # stage id -> A100-hours
    planned: float  # each stage once
    separately: float  # every row on its own, nothing shared
    todo: float  # stages not yet complete

    @property
    def saving(self) -> float:
        return self.separately / self.planned if self.planned else 1.0


def estimate(plan: Plan, utilisation: float = UTILISATION) -> PlanCost:
    per = {sid: a100_hours(stage.cost(), utilisation) for sid, stage in plan.nodes.items()}
    separately = sum(per[sid] for row in plan.rows for sid in _closure(plan, row.stages.values()))
    todo = sum(h for sid, h in per.items() if not plan.done(sid))
    return PlanCost(per, sum(per.values()), separately, todo)


def _closure(plan: Plan, ids) -> list[str]:
    out: list[str] = []
    stack = list(ids)
    while stack:
        sid = stack.pop()
        if sid in out or sid not in plan.nodes:
            continue
        out.append(sid)
        stack.extend(plan.nodes[sid].deps)
    return out
