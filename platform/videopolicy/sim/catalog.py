"""Static facts about the suites that config validation needs before any simulator is imported.

Importing robosuite costs ~0.2 GB and seconds; validation must be instant and must run before Ray
starts, so the camera lists live here as data. `tests/test_experts.py` checks them against the
cameras of real environments (``test_expert_succeeds_and_its_actions_replay``), so this table cannot
drift from robosuite silently.
"""

from __future__ import annotations

_TABLETOP = ("frontview", "birdview", "agentview", "sideview", "robot0_robotview", "robot0_eye_in_hand")
# The PickPlace bins arena has no `sideview` camera.
_BINS = ("frontview", "birdview", "agentview", "robot0_robotview", "robot0_eye_in_hand")

ROBOSUITE_CAMERAS: dict[str, tuple[str, ...]] = {
    "Lift": _TABLETOP,
    "Stack": _TABLETOP,
    "PickPlaceCan": _BINS,
    "NutAssemblySquare": _TABLETOP,
    "Door": _TABLETOP,
}

_SUITES: dict[str, dict[str, tuple[str, ...]]] = {"robosuite": ROBOSUITE_CAMERAS}


def suite_tasks(suite: str) -> list[str] | None:
    """Tasks of a suite with scripted demo generation, or None for an unknown suite."""
    tasks = _SUITES.get(suite)
    return None if tasks is None else list(tasks)


def suite_cameras(suite: str, task: str) -> tuple[str, ...]:
    return _SUITES[suite][task]
