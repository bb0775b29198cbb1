"""MimicGen: NVlabs' robosuite-1.4 task variants (Stack_D0, Coffee_D0, Threading_D0, ...), in their own venv.

Protocol (declared once, in `MimicgenSuite.protocol`), the robomimic rollout protocol MimicGen's
paper uses for its released datasets:

* tasks: the environments of MimicGen's "core" datasets (`HORIZONS`). ``HammerCleanup_*`` and
  ``Kitchen_*`` need ``robosuite_task_zoo`` and are left out of the default list
  (``deploy/sim/install_mimicgen.sh`` installs it with ``WITH_TASK_ZOO=1``; name them in
  ``eval.tasks`` to use them);
* 50 episodes per task; an episode is a fresh ``env.reset()`` after seeding numpy's global RNG with
  the episode seed (robosuite 1.4's placement samplers draw from it); scene id ``"default"``;
* step limit: MimicGen's per-task evaluation horizon (``mimicgen.DATASET_REGISTRY["core"]``:
  400 for Stack/Square/Threading/Coffee, 500 for ThreePieceAssembly/MugCleanup/NutAssembly/
  HammerCleanup, 800 for Kitchen/CoffeePreparation, 1000 for PickPlace), see `step_limit`;
  robomimic ends a rollout at the first success (``terminate_on_success``), as the harness does;
* Panda, OSC_POSE (robosuite 1.4 ``load_controller_config``), 20 Hz, 7-D delta action;
* cameras ``agentview`` and ``robot0_eye_in_hand`` at 84x84, the resolution of MimicGen's image datasets;
* success = ``env._check_success()`` after any step.

Not run on the machine this was written on: MimicGen and the robomimic commit it needs are git-only
(GitHub), datasets come from the Hugging Face Hub. ``make sim-mimicgen`` builds the venv.
`MimicgenBackend`, below, is the bridge child's side and runs in that venv (numpy only at module level).
"""

from __future__ import annotations

import numpy as np

from videopolicy.sim.bridge.backend import Backend, RequestError, sim_unstable
from videopolicy.sim.bridge.suite import BridgedSuite, sim_version
from videopolicy.sim.suites.base import Protocol

PYTHON_VAR = "VIDEOPOLICY_MIMICGEN_PYTHON"
VENV_VAR = "VIDEOPOLICY_MIMICGEN_VENV"
DEFAULT_VENV = ".venv-mimicgen"
BUILD = "make sim-mimicgen"
DISTS = ("mimicgen", "robosuite", "robomimic", "mujoco")

#: env name -> evaluation horizon (MimicGen DATASET_REGISTRY "core").
HORIZONS: dict[str, int] = {
    "Stack_D0": 400, "Stack_D1": 400, "StackThree_D0": 400, "StackThree_D1": 400,
    "Square_D0": 400, "Square_D1": 400, "Square_D2": 400,
    "Threading_D0": 400, "Threading_D1": 400, "Threading_D2": 400,
    "Coffee_D0": 400, "Coffee_D1": 400, "Coffee_D2": 400,
    "CoffeePreparation_D0": 800, "CoffeePreparation_D1": 800,
    "ThreePieceAssembly_D0": 500, "ThreePieceAssembly_D1": 500, "ThreePieceAssembly_D2": 500,
    "MugCleanup_D0": 500, "MugCleanup_D1": 500,
    "NutAssembly_D0": 500,
    "PickPlace_D0": 1000,
    "HammerCleanup_D0": 500, "HammerCleanup_D1": 500,
    "Kitchen_D0": 800, "Kitchen_D1": 800,
}
NEEDS_TASK_ZOO = ("HammerCleanup_D0", "HammerCleanup_D1", "Kitchen_D0", "Kitchen_D1")
TASKS: tuple[str, ...] = tuple(t for t in HORIZONS if t not in NEEDS_TASK_ZOO)

#: MimicGen datasets carry no language; these sentences describe each task family.
_FAMILY_INSTRUCTIONS = {
    "Stack": "stack the red block on top of the green block",
    "StackThree": "stack the three blocks on top of each other",
    "Square": "pick up the square nut and place it on the square peg",
    "Threading": "pick up the needle and thread it through the hole in the tripod",
    "Coffee": "pick up the coffee pod, insert it into the coffee machine and close the lid",
    "CoffeePreparation": "place the mug under the coffee machine, open the drawer, take a pod, insert it and close the lid",
    "ThreePieceAssembly": "assemble the three pieces by stacking them onto the base",
    "MugCleanup": "open the drawer, place the mug inside and close the drawer",
    "NutAssembly": "place the square nut on the square peg and the round nut on the round peg",
    "PickPlace": "place each object into its matching bin",
    "HammerCleanup": "open the drawer, place the hammer inside and close the drawer",
    "Kitchen": "turn on the stove, put the pot on it, put the bread in the pot, then put the pot on the serving area and turn off the stove",
}

EPISODES_PER_TASK = 50
CAMERAS = ("agentview", "robot0_eye_in_hand")
IMAGE_SIZE = 84


class MimicgenSuite(BridgedSuite):
    name = "mimicgen"
    python_var, venv_var, default_venv, build, dists = PYTHON_VAR, VENV_VAR, DEFAULT_VENV, BUILD, DISTS
    required = ("mimicgen", "robosuite", "robomimic")
    cameras = CAMERAS
    env_options = {"image_size": IMAGE_SIZE}
    horizons = HORIZONS

    def protocol(self) -> Protocol:
        return Protocol(
            suite=self.name,
            tasks=TASKS,
            cameras=CAMERAS,
            image_size=IMAGE_SIZE,
            max_steps=max(HORIZONS[t] for t in TASKS),
            action_dim=7,
            settle_steps=0,
            sim_version=sim_version(self.python, DISTS),
            extra=(
                ("episodes_per_task", EPISODES_PER_TASK),
                ("episode_seeding", "np.random.seed(spec.seed) before env.reset()"),
                ("robot", "Panda"),
                ("controller", "OSC_POSE (robosuite 1.4 default config)"),
                ("control_freq", 20),
                ("step_limits", tuple(sorted(HORIZONS.items()))),
                ("success", "env._check_success after each step; episode ends at first success"),
            ),
        )

    def instruction(self, task: str) -> str:
        if task not in HORIZONS:
            raise KeyError(f"unknown MimicGen task {task!r}; known: {', '.join(HORIZONS)}")
        return _FAMILY_INSTRUCTIONS[task.rsplit("_", 1)[0]]



class MimicgenBackend(Backend):
    """The bridge child's MimicGen tasks (robosuite 1.4.1, MuJoCo 2.3.2; NOT run on the machine this was written on).

    Env as in MimicGen's datasets / robomimic rollouts: Panda, OSC_POSE, control at 20 Hz, cameras
    agentview + robot0_eye_in_hand, ``ignore_done`` (the harness enforces the step limit). An episode
    is seeded by seeding numpy's global RNG (robosuite 1.4's placement samplers draw from it) right
    before ``env.reset()``; the env object is reused across episodes of a task.
    """

    suite = "mimicgen"
    packages = DISTS

    def info(self) -> dict:
        import mimicgen  # noqa: F401  (registers Stack_D0, Coffee_D0, ... with robosuite)
        from robosuite.environments.base import REGISTERED_ENVS

        return {"suite": self.suite, "versions": self.versions(), "registered": sorted(REGISTERED_ENVS)}

    def make(self, task: str, options: dict) -> dict:
        import mimicgen  # noqa: F401
        import robosuite
        from robosuite import load_controller_config
        from robosuite.environments.base import REGISTERED_ENVS

        if task not in REGISTERED_ENVS:
            raise RequestError(f"unknown MimicGen task {task!r} (is robosuite_task_zoo installed for Kitchen/HammerCleanup?)")
        self.opts = {"cameras": list(CAMERAS), "image_size": IMAGE_SIZE, **options}
        size = int(self.opts["image_size"])
        self.env = robosuite.make(
            env_name=task, robots="Panda", controller_configs=load_controller_config(default_controller="OSC_POSE"),
            has_renderer=False, has_offscreen_renderer=True, use_camera_obs=True, use_object_obs=True,
            camera_names=list(self.opts["cameras"]), camera_heights=size, camera_widths=size,
            ignore_done=True, reward_shaping=False, control_freq=20,
        )
        return {"task": task, "action_dim": int(self.env.action_dim)}

    def reset(self, scene: str, index: int, seed: int):
        if self.env is None:
            raise RequestError("reset before make")
        np.random.seed(int(seed) % (2**32))
        raw = self.env.reset()
        _, self._warn = sim_unstable(self.env.sim, 0)
        return self._obs(raw), self.success(), {}
