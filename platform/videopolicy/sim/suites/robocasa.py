"""RoboCasa: the 24 atomic kitchen tasks of the Video Policy paper, in their own virtualenv.

Protocol (declared once, in `RobocasaSuite.protocol`), following the authors' evaluation
(``robocasa_experiment.py`` / ``create_eval_env_modified`` in cvlab-columbia/videopolicy) and
RoboCasa's own v0.1 benchmark settings:

* tasks: RoboCasa's single-stage ("atomic") tasks that have MimicGen datasets, i.e. all 25 of
  ``SINGLE_STAGE_TASK_DATASETS`` except ``NavigateKitchen``;
* 50 episodes per task over 5 (layout, style) scenes ``(1,1) (2,2) (4,4) (6,9) (7,10)``, 10 each.
  Episode i uses scene ``i % 5`` (round robin, so a smoke run of 5 episodes sees every scene; the
  authors used blocks of 10, ``i // 10``, which gives the same 50 (scene, episode) slots for n=50);
* held-out object instances (``obj_instance_split="B"``), no generative textures, fixed cameras;
* the mobile Panda (``PandaOmron``; ``PandaMobile`` in the v0.1 era) with its default composite
  controller (arm OSC_POSE). The command is 12-D (``Protocol.action_dim``); a 7-D policy action
  ``(dx,dy,dz,dax,day,daz,gripper)`` is accepted too and sent as ``a7 + [0, 0, 0, 0, -1]`` (base
  still, torso still, arm mode), as the authors do (`map_action` is the same mapping, parent-side);
* cameras ``robot0_agentview_left``, ``robot0_agentview_right``, ``robot0_eye_in_hand`` rendered at
  256x256 (the authors' eval resolution; their datasets are ``*_im256_*``);
* step limit: RoboCasa's per-task rollout horizon (``dataset_registry``: 300-1000, mostly 500),
  see `HORIZONS` and `step_limit`. The authors capped episodes at ``max_traj_len: 1000`` instead;
  set ``eval.max_steps: 1000`` to reproduce that;
* success = ``env._check_success()`` after any step. Each episode's instruction is the env's
  ``ep_meta["lang"]`` (it names the sampled object), exposed by the env as ``instruction()``: the
  policy is conditioned on it, as in the authors' evaluation, and it is recorded per episode;
  `instruction` gives a task-level sentence for when no env exists.

Everything RoboCasa-specific lives in this module: the parent's protocol and suite, and the bridge
child's `RobocasaBackend` (which runs in RoboCasa's venv, numpy only at module level), so the cameras
(`CAMERAS`), the scene ids (`scene_id` / `layout_style`) and the 12-D action pad (`ACTION_PAD`,
`map_action`; the policy appends it through `RobocasaSuite.action_suffix`) are written once. The pad's
value is read from `videopolicy.catalog.ACTION_SUFFIX`, so the policy (models/) can append it without
importing the simulator side.

Not run on the machine this was written on: RoboCasa needs robosuite master from git and 5-10 GB of
assets from utexas.box.com. ``deploy/sim/install_robocasa.sh`` (``make sim-robocasa``) builds the venv.
"""

from __future__ import annotations

import numpy as np

from videopolicy.catalog import ACTION_SUFFIX
from videopolicy.sim.bridge.backend import Backend, RequestError, sim_unstable
from videopolicy.sim.bridge.suite import BridgedSuite, sim_version
from videopolicy.sim.suites.base import Protocol

PYTHON_VAR = "VIDEOPOLICY_ROBOCASA_PYTHON"
VENV_VAR = "VIDEOPOLICY_ROBOCASA_VENV"
DEFAULT_VENV = ".venv-robocasa"
BUILD = "make sim-robocasa"
DISTS = ("robocasa", "robosuite", "mujoco")

#: task -> RoboCasa's rollout horizon (robocasa/utils/dataset_registry.py, v0.1/v0.2).
HORIZONS: dict[str, int] = {
    "PnPCounterToCab": 500, "PnPCabToCounter": 500, "PnPCounterToSink": 700, "PnPSinkToCounter": 500,
    "PnPCounterToMicrowave": 600, "PnPMicrowaveToCounter": 500, "PnPCounterToStove": 500, "PnPStoveToCounter": 500,
    "OpenSingleDoor": 500, "CloseSingleDoor": 500, "OpenDoubleDoor": 1000, "CloseDoubleDoor": 700,
    "OpenDrawer": 500, "CloseDrawer": 500,
    "TurnOnSinkFaucet": 500, "TurnOffSinkFaucet": 500, "TurnSinkSpout": 500,
    "TurnOnStove": 500, "TurnOffStove": 500,
    "CoffeeSetupMug": 600, "CoffeeServeMug": 600, "CoffeePressButton": 300,
    "TurnOnMicrowave": 500, "TurnOffMicrowave": 500,
}
TASKS: tuple[str, ...] = tuple(HORIZONS)

#: Task-level sentences (each episode's own ``ep_meta["lang"]`` names the sampled object).
INSTRUCTIONS: dict[str, str] = {
    "PnPCounterToCab": "pick the object from the counter and place it in the cabinet",
    "PnPCabToCounter": "pick the object from the cabinet and place it on the counter",
    "PnPCounterToSink": "pick the object from the counter and place it in the sink",
    "PnPSinkToCounter": "pick the object from the sink and place it on the counter",
    "PnPCounterToMicrowave": "pick the object from the counter and place it in the microwave",
    "PnPMicrowaveToCounter": "pick the object from the microwave and place it on the counter",
    "PnPCounterToStove": "pick the object from the counter and place it on the stove burner",
    "PnPStoveToCounter": "pick the object from the stove and place it on the counter",
    "OpenSingleDoor": "open the cabinet door",
    "CloseSingleDoor": "close the cabinet door",
    "OpenDoubleDoor": "open the cabinet doors",
    "CloseDoubleDoor": "close the cabinet doors",
    "OpenDrawer": "open the drawer",
    "CloseDrawer": "close the drawer",
    "TurnOnSinkFaucet": "turn on the sink faucet",
    "TurnOffSinkFaucet": "turn off the sink faucet",
    "TurnSinkSpout": "turn the sink spout",
    "TurnOnStove": "turn on the stove burner",
    "TurnOffStove": "turn off the stove burner",
    "CoffeeSetupMug": "pick the mug from the counter and place it under the coffee machine dispenser",
    "CoffeeServeMug": "pick the mug from under the coffee machine dispenser and place it on the counter",
    "CoffeePressButton": "press the button on the coffee machine to serve coffee",
    "TurnOnMicrowave": "press the start button on the microwave",
    "TurnOffMicrowave": "press the stop button on the microwave",
}

SCENES: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (4, 4), (6, 9), (7, 10))
EPISODES_PER_TASK = 50
CAMERAS = ("robot0_agentview_left", "robot0_agentview_right", "robot0_eye_in_hand")
IMAGE_SIZE = 256
ACTION_PAD = ACTION_SUFFIX["robocasa"]  # base still, torso still, arm mode: 7-D arm action -> 12-D command
ACTION_DIM = 12
OBJ_INSTANCE_SPLIT = "B"  # held-out object instances


def map_action(a7) -> np.ndarray:
    """The authors' 7-D -> 12-D mapping: append ``[0, 0, 0, 0, -1]``."""
    a = np.asarray(a7, dtype=np.float64).reshape(-1)
    if a.shape == (12,):
        return a
    if a.shape != (7,):
        raise ValueError(f"RoboCasa action must be 7-D or 12-D, got shape {a.shape}")
    return np.concatenate([a, ACTION_PAD])


def scene_id(layout: int, style: int) -> str:
    return f"layout{layout}_style{style}"


def layout_style(scene: str) -> tuple[int, int]:
    """The inverse of `scene_id`: "layout6_style9" -> (6, 9)."""
    lay, _, sty = scene.partition("_")
    if not (lay.startswith("layout") and sty.startswith("style") and lay[6:].isdigit() and sty[5:].isdigit()):
        raise RequestError(f"RoboCasa scene must look like 'layout6_style9', got {scene!r}")
    return int(lay[6:]), int(sty[5:])


class RobocasaSuite(BridgedSuite):
    name = "robocasa"
    python_var, venv_var, default_venv, build, dists = PYTHON_VAR, VENV_VAR, DEFAULT_VENV, BUILD, DISTS
    required = ("robocasa", "robosuite")
    cameras = CAMERAS
    action_suffix = ACTION_PAD
    env_options = {"image_size": IMAGE_SIZE, "obj_instance_split": OBJ_INSTANCE_SPLIT}
    horizons = HORIZONS

    def protocol(self) -> Protocol:
        return Protocol(
            suite=self.name,
            tasks=TASKS,
            cameras=CAMERAS,
            image_size=IMAGE_SIZE,
            max_steps=max(HORIZONS.values()),
            action_dim=ACTION_DIM,  # the robot's command; a 7-D policy action is also accepted and padded (action_mapping)
            settle_steps=0,
            sim_version=sim_version(self.python, DISTS),
            extra=(
                ("scenes", tuple(scene_id(*s) for s in SCENES)),
                ("episode_to_scene", "i % 5"),
                ("episodes_per_task", EPISODES_PER_TASK),
                ("obj_instance_split", OBJ_INSTANCE_SPLIT),
                ("generative_textures", None),
                ("randomize_cameras", False),
                ("robot", "mobile Panda (PandaOmron | PandaMobile), default composite controller, arm OSC_POSE"),
                ("action_mapping", "7 -> 12: a7 + [0, 0, 0, 0, -1]; 12-D passed through"),
                ("step_limits", tuple(sorted(HORIZONS.items()))),
                ("env_rebuilt_per_episode", True),
                ("success", "env._check_success after each step"),
                ("instruction", "the episode's env.get_ep_meta()['lang'] (names the sampled object)"),
            ),
        )

    def instruction(self, task: str) -> str:
        if task not in INSTRUCTIONS:
            raise KeyError(f"unknown RoboCasa task {task!r}; the paper's 24: {', '.join(TASKS)}")
        return INSTRUCTIONS[task]

    def episode_slot(self, i: int) -> tuple[str, int]:
        return scene_id(*SCENES[i % len(SCENES)]), i // len(SCENES)


class RobocasaBackend(Backend):
    """The bridge child's RoboCasa atomic tasks (robosuite master + robocasa from git; NOT run on the
    machine this was written on).

    The evaluation env mirrors the authors' ``create_eval_env_modified``: the mobile Panda, its default
    composite controller (arm OSC_POSE), cameras left/right agent view + eye-in-hand, ``ignore_done``,
    object split "B", no generative textures, no camera randomisation, and ONE (layout, style) pair
    per episode. The env is rebuilt for every episode with the episode's seed (as the authors do), so
    an episode is a pure function of (task, scene, seed). Actions are the robot's 12-D command; a
    7-D arm action is mapped to it by `map_action` (appending `ACTION_PAD`).
    """

    suite = "robocasa"
    packages = DISTS

    def __init__(self) -> None:
        super().__init__()
        self.task = ""
        self.robot = ""

    def info(self) -> dict:
        import robocasa  # noqa: F401  (registers the kitchen envs with robosuite)
        from robosuite.environments.base import REGISTERED_ENVS

        return {"suite": self.suite, "versions": self.versions(), "registered": sorted(REGISTERED_ENVS)}

    def make(self, task: str, options: dict) -> dict:
        import robocasa  # noqa: F401
        from robosuite.environments.base import REGISTERED_ENVS

        if task not in REGISTERED_ENVS:
            raise RequestError(f"unknown RoboCasa task {task!r}")
        self.task = task
        self.opts = {"cameras": list(CAMERAS), "image_size": IMAGE_SIZE, "obj_instance_split": OBJ_INSTANCE_SPLIT,
                     "robot": "", **options}
        self.robot = self.opts["robot"] or _mobile_panda_name()
        return {"task": task, "robot": self.robot}

    def _build(self, layout: int, style: int, seed: int):
        import robosuite
        from robosuite.controllers import load_composite_controller_config

        if self.env is not None:
            self.env.close()
            self.env = None
        size = int(self.opts["image_size"])
        self.env = robosuite.make(
            env_name=self.task, robots=self.robot,
            controller_configs=load_composite_controller_config(controller=None, robot=self.robot),
            camera_names=list(self.opts["cameras"]), camera_widths=size, camera_heights=size,
            has_renderer=False, has_offscreen_renderer=True, ignore_done=True, use_object_obs=True,
            use_camera_obs=True, camera_depths=False, seed=int(seed),
            obj_instance_split=self.opts["obj_instance_split"], generative_textures=None,
            randomize_cameras=False, layout_and_style_ids=((int(layout), int(style)),), translucent_robot=False,
        )

    def reset(self, scene: str, index: int, seed: int):
        if not self.task:
            raise RequestError("reset before make")
        layout, style = layout_style(scene)
        self._build(layout, style, seed)
        raw = self.env.reset()
        _, self._warn = sim_unstable(self.env.sim, 0)
        ep_meta = self.env.get_ep_meta() if hasattr(self.env, "get_ep_meta") else {}
        info = {"lang": ep_meta.get("lang", ""), "layout": layout, "style": style, "robot": self.robot,
                "action_dim": int(self.env.action_dim)}
        return self._obs(raw), self.success(), info

    def step(self, action: np.ndarray):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        cmd = self._check_action(map_action(a) if a.shape == (7,) else a, ACTION_DIM)
        if self.env.action_dim != cmd.shape[0]:
            raise RequestError(f"{self.robot} takes {self.env.action_dim}-D commands; the 7->12 mapping does not fit")
        return self._step(cmd)


def _mobile_panda_name() -> str:
    # robosuite master / RoboCasa v0.2+: "PandaOmron"; the RoboCasa v0.1 era: "PandaMobile".
    from robosuite.robots import ROBOT_CLASS_MAPPING

    for name in ("PandaOmron", "PandaMobile"):
        if name in ROBOT_CLASS_MAPPING:
            return name
    raise RequestError("this robosuite has no mobile Panda (PandaOmron / PandaMobile); install robosuite master")
