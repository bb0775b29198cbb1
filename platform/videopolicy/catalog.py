"""The suites as data: their names, where each suite class lives, and the static facts that the layers
below the simulators need (config validation, the policy's action space) without importing one.

Importing robosuite costs ~0.2 GB and seconds, and the other benchmarks' simulators live in their own
virtualenvs; validation must be instant and must run before Ray starts, so what it checks lives here
as data: the registry of suite names (`SUITES`, read by `videopolicy.sim.suites`, which imports a suite
module only when asked), the robosuite tasks' cameras and the suites' action suffixes.
`tests/test_experts.py` checks the camera table against the cameras of real environments
(``test_expert_succeeds_and_its_actions_replay``), and `tests/evaluate/test_ledger_and_registry.py`
checks `ACTION_SUFFIX` against each suite class, so neither can drift silently.
"""

from __future__ import annotations

#: name (``eval.suite``) -> "module:Class". When the class name is not found in the module, the
#: module's `Suite` subclass whose ``name`` equals the registry name is used (`sim.suites.suite_class`).
SUITES: dict[str, str] = {
    "robosuite": "videopolicy.sim.robosuite.suite:RobosuiteSuite",
    "libero10": "videopolicy.sim.suites.libero10:Libero10Suite",
    "robocasa": "videopolicy.sim.suites.robocasa:RobocasaSuite",
    "mimicgen": "videopolicy.sim.suites.mimicgen:MimicgenSuite",
}

#: suite -> what its simulator expects after the policy's 7-D arm/gripper action (``Suite.action_suffix``).
#: RoboCasa's PandaMobile takes 12-D commands: base still, torso still, arm mode.
ACTION_SUFFIX: dict[str, tuple[float, ...]] = {
    "robocasa": (0.0, 0.0, 0.0, 0.0, -1.0),
}

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
