"""Row kinds (`train.method`): the paper's table rows and the harness's sanity rows, in one registry.

Every part of the platform that depends on a row's kind reads it here: the config's allowed values
(`train.method`) and checks, the planner (which stages a row needs), the trainer (the model's mode in
the run that yields the policy), the cost estimate, the executor (the policy a sanity row evaluates),
the report and MLflow (the "video tuning" axis) and the nightly gate (where a sanity row must land).
Adding a row kind = one entry in `ROW_KINDS`. No imports beyond the standard library: the config
module, at the bottom of the import graph, reads this.

    kind             stage1 (video)             stage2 (the run that yields the policy)
    two_stage        fine-tune the video U-Net  action head on the frozen stage-1 U-Net
    joint            -                          video U-Net + action head together, from base weights
    no_video_tuning  -                          action head on the frozen base U-Net
    dp_resnet        -                          the Diffusion Policy ResNet baseline
    scripted_expert / random: no training; sanity rows whose success rates are known (>= 90% / <= 10%)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional


@dataclass(frozen=True)
class RowKind:
    name: str
    summary: str  # one line for --help and docs
    # training stages the row runs, in order: ("stage1", "stage2"), ("stage2",) or () (nothing trained)
    train_stages: tuple[str, ...]
    # the model's mode (models.config.MODES) in the stage-2 run, the one that yields the policy
    train_mode: Optional[Literal["stage2", "joint"]]
    # models.config.ModelConfig.kind of the trained policy; None: no model (a sanity row)
    model_kind: Optional[Literal["video_policy", "dp_resnet"]]
    # how the row treats the video U-Net (the paper's "video tuning"; an MLflow param and report axis)
    video_tuning: Literal["stage1", "joint", "none", "n/a"]
    # sanity rows: the known-answer policy evaluated (evaluate.policies.PolicySpec kind) ...
    sanity_policy: Optional[Literal["expert", "random"]] = None
    # ... and the success rate it must land in, or the harness is broken (the nightly gate checks it)
    expected_success: Optional[tuple[float, float]] = None

    @property
    def trains(self) -> bool:
        """Whether the row trains a policy (sanity rows bring their own)."""
        return bool(self.train_stages)

    @property
    def has_stage1(self) -> bool:
        """Whether the row fine-tunes the video model first (its stage 2 starts from stage 1's U-Net)."""
        return "stage1" in self.train_stages

    @property
    def sanity(self) -> bool:
        return self.sanity_policy is not None

    @property
    def video_at_inference(self) -> bool:
        """Whether the policy runs the video U-Net when it acts (the baseline runs its head alone)."""
        return self.model_kind == "video_policy"


ROW_KINDS: dict[str, RowKind] = {k.name: k for k in (
    RowKind("two_stage", "video U-Net fine-tuned first (stage 1), then the action head on it frozen (stage 2)",
            ("stage1", "stage2"), "stage2", "video_policy", "stage1"),
    RowKind("joint", "video U-Net and action head trained together from base weights",
            ("stage2",), "joint", "video_policy", "joint"),
    RowKind("no_video_tuning", "action head on the frozen base video U-Net",
            ("stage2",), "stage2", "video_policy", "none"),
    RowKind("dp_resnet", "the Diffusion Policy ResNet baseline (no video model)",
            ("stage2",), "stage2", "dp_resnet", "n/a"),
    RowKind("scripted_expert", "sanity row: the scripted expert, must succeed (>= 90%)",
            (), None, None, "n/a", sanity_policy="expert", expected_success=(0.9, 1.0)),
    RowKind("random", "sanity row: uniformly random actions, must fail (<= 10%)",
            (), None, None, "n/a", sanity_policy="random", expected_success=(0.0, 0.1)),
)}

#: `train.method`'s allowed values (the config builds its Literal type from them).
ROW_KIND_NAMES: tuple[str, ...] = tuple(ROW_KINDS)


def row_kind(name: str) -> RowKind:
    """The registered kind `name` (KeyError for an unknown one; configs are validated before this is asked)."""
    return ROW_KINDS[name]


#: The axes of the paper's ablation table: a row's MLflow params (so the comparison UI plots them) and
#: the report's row columns. Here, below both tracking/ and report/, so neither imports the other.
AXES = ("train_mode", "video_tuning", "task_subset", "video_horizon", "demos_per_task", "suite")


def row_axes(cfg: Any) -> dict[str, Any]:
    """The ablation axes of a row's resolved PlatformConfig."""
    return {
        "train_mode": cfg.train.method,
        "video_tuning": cfg.train.kind.video_tuning,  # how the row kind treats the video U-Net
        "task_subset": cfg.clips.task_subset,
        "video_horizon": int(cfg.clips.video_horizon),
        "demos_per_task": int(cfg.demos.demos_per_task),
        "suite": cfg.eval.suite,
    }
