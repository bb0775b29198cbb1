"""What the report and MLflow know about a row: its name, its ablation axes, its training tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The axes of the paper's ablation table; MLflow params of every row run, so the comparison UI plots them.
AXES = ("train_mode", "video_tuning", "task_subset", "video_horizon", "demos_per_task", "suite")


def row_axes(cfg: Any) -> dict[str, Any]:
    """The ablation axes of a row's resolved PlatformConfig."""
    return {
        "train_mode": cfg.train.method,
        "video_tuning": cfg.train.kind.video_tuning,  # how the row kind treats the video U-Net (row_kinds)
        "task_subset": cfg.clips.task_subset,
        "video_horizon": int(cfg.clips.video_horizon),
        "demos_per_task": int(cfg.demos.demos_per_task),
        "suite": cfg.eval.suite,
    }


@dataclass(frozen=True)
class RowInfo:
    """A row of the sweep as the report sees it.

    train_tasks: the tasks whose actions the row's policy was trained on (for half_tasks rows, the
    seen half; the other evaluated tasks are unseen). Empty means: all evaluated tasks.
    """

    name: str
    axes: dict[str, Any] = field(default_factory=dict)
    train_tasks: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, name: str, cfg: Any, train_tasks: list[str] | tuple[str, ...] = ()) -> RowInfo:
        return cls(name=name, axes=row_axes(cfg), train_tasks=tuple(train_tasks))

    @property
    def video_horizon(self) -> int | None:
        v = self.axes.get("video_horizon")
        return None if v is None else int(v)

    def is_half_tasks(self, evaluated_tasks: list[str]) -> bool:
        """True when the policy was trained on a strict subset of the evaluated tasks."""
        seen = set(self.train_tasks)
        return bool(seen) and bool(set(evaluated_tasks) - seen)
