"""What the report and MLflow know about a row: its name, its ablation axes, its training tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from videopolicy.row_kinds import AXES, row_axes

__all__ = ["AXES", "RowInfo", "row_axes"]  # the axes are defined with the row kinds (MLflow uses them too)


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
