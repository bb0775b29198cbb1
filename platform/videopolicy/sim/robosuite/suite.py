"""The robosuite suite: the tasks the scripted-expert demos were generated on, rendered the same way.

Protocol (one place): tasks = ``eval.tasks`` or ``demos.tasks``; cameras, image size and render
settings = the demos' (so the policy sees frames like its training data); 7-D OSC_POSE delta actions
in [-1, 1] (clipped); one scene ``"default"`` whose objects are placed from the episode seed
(`reseed`, so a reset depends on the seed alone, not on what ran before in the env); the episode
ends at the first step where ``env._check_success()`` holds, or fails at the step limit
(``eval.max_steps`` or a per-task default sized to ~1.5x the scripted expert's longest episodes).

Physics blow-ups caused by the policy (MuJoCo's bad-QACC warning, non-finite state) end the episode
as a failure ``"physics_unstable"``.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Optional

import numpy as np

from videopolicy.sim.suites.base import EpisodeSpec, Protocol, SimEnv, StepResult, Suite
from videopolicy.store import stable_seed

if TYPE_CHECKING:
    from videopolicy.config import PlatformConfig

#: Per-task step limits when ``eval.max_steps`` is 0. The expert's episodes take about Lift 70,
#: Stack 145, Door 139, PickPlaceCan 231, NutAssemblySquare 260 steps (sim/robosuite/experts.py).
DEFAULT_MAX_STEPS: dict[str, int] = {
    "Lift": 150,
    "Stack": 300,
    "Door": 300,
    "PickPlaceCan": 400,
    "NutAssemblySquare": 400,
}
SCENE = "default"
ACTION_DIM = 7


def _sim_version() -> str:
    try:
        return f"robosuite {version('robosuite')}, mujoco {version('mujoco')}"
    except PackageNotFoundError:
        return "robosuite not installed"


class RobosuiteSuite(Suite):
    name = "robosuite"

    def __init__(self, cfg: "PlatformConfig"):
        from videopolicy.sim.robosuite.env import RenderSettings

        self.cfg = cfg
        self.tasks = list(cfg.eval.tasks or cfg.demos.tasks)
        self.cameras = tuple(cfg.demos.cameras)
        self.image_size = int(cfg.demos.image_size)
        self.render = RenderSettings(preset=cfg.demos.render.preset, gl=cfg.demos.render.gl)
        self._limits = {t: cfg.eval.max_steps or DEFAULT_MAX_STEPS.get(t, 400) for t in self.tasks}

    def protocol(self) -> Protocol:
        return Protocol(
            suite=self.name,
            tasks=tuple(self.tasks),
            cameras=self.cameras,
            image_size=self.image_size,
            max_steps=max(self._limits.values()),
            action_dim=ACTION_DIM,
            sim_version=_sim_version(),
            extra=(
                ("render", tuple(sorted(self.render.as_dict().items()))),
                ("step_limits", tuple(sorted(self._limits.items()))),
                ("controller", "Panda BASIC, arm OSC_POSE delta, 20 Hz, actions clipped to [-1, 1]"),
                ("success", "env._check_success(), episode ends at the first success"),
                ("scene", "placement from reseed(spec.seed) then reset()"),
            ),
        )

    def step_limit(self, task: str) -> int:
        return self._limits[task]

    def instruction(self, task: str) -> str:
        from videopolicy.sim.robosuite.experts import TASK_INSTRUCTIONS

        return TASK_INSTRUCTIONS[task]

    def episodes(self, task: str, n: int, eval_seed: int) -> list[EpisodeSpec]:
        if task not in self._limits:
            raise ValueError(f"task {task!r} is not in this suite's protocol {self.tasks}")
        # namespace "episode" (EpisodeSpec.make) vs demos' "demo": eval scenes are never training scenes
        return [EpisodeSpec.make(self.name, task, SCENE, i, eval_seed) for i in range(n)]

    def demo_episodes(self, task: str, demo_file: str, n: int) -> list[EpisodeSpec]:
        from videopolicy.data.hdf5 import DemoFile

        if task not in self._limits:
            raise ValueError(f"task {task!r} is not in this suite's protocol {self.tasks}")
        with DemoFile(demo_file) as f:
            names = f.demo_names()[:n]
            seeds = [f.ep_meta(d).get("seed") for d in names]
        missing = [d for d, s in zip(names, seeds) if s is None]
        if missing:
            raise ValueError(f"{demo_file}: demos {missing[:3]} have no ep_meta['seed'] (not made by the scripted "
                             "generator), so their scenes cannot be reproduced")
        # the seed alone places the scene (`reseed`, then reset), exactly as the generator did
        return [EpisodeSpec(self.name, task, "demo", i, int(s)) for i, s in enumerate(seeds)]

    def make_env(self, task: str) -> "RobosuiteSimEnv":
        return RobosuiteSimEnv(task, self.cameras, self.image_size, self.render, self._limits[task])

    def unavailable(self) -> Optional[str]:
        for pkg in ("robosuite", "mujoco"):
            if importlib.util.find_spec(pkg) is None:
                return (f"{pkg} is not installed: `pip install -e .` installs robosuite==1.5.2 and "
                        "mujoco>=3.3,<3.10")
        major, minor = (int(x) for x in version("mujoco").split(".")[:2])
        if (major, minor) >= (3, 10):
            return f"mujoco {version('mujoco')} breaks robosuite 1.5.2's reset: pip install 'mujoco>=3.3,<3.10'"
        return None


class RobosuiteSimEnv(SimEnv):
    """One robosuite env for one task, built inside the worker; `reset(spec)` places the spec's scene."""

    def __init__(self, task: str, cameras, image_size: int, render, max_steps: int):
        from videopolicy.sim.robosuite import env as rse

        self.task = task
        self.cameras = tuple(cameras)
        # robosuite's own horizon is never reached (ignore_done); the worker enforces the step limit
        self.env = rse.make_env(task, self.cameras, image_size, render, seed=0, horizon=max_steps + 100)
        self._gate = rse.FrameGate(self.env, self.cameras)
        self._raw_obs: dict = {}
        self._spec: Optional[EpisodeSpec] = None
        self._expert = None
        self._bad_qacc = 0

    def _frames(self, raw: dict) -> dict[str, np.ndarray]:
        from videopolicy.sim.robosuite.env import frames_from_obs

        return frames_from_obs(raw, self.cameras)

    def _qacc_warnings(self) -> int:
        import mujoco

        return int(self.env.sim.data._data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number)

    def reset(self, spec: EpisodeSpec) -> dict[str, np.ndarray]:
        from videopolicy.sim.robosuite.env import reseed

        reseed(self.env, spec.seed)
        self._gate.open = True
        self._raw_obs = self.env.reset()
        self._gate.install()
        self._spec, self._expert = spec, None
        self._bad_qacc = self._qacc_warnings()
        return self._frames(self._raw_obs)

    def step(self, action: np.ndarray, observe: bool = True) -> StepResult:
        from videopolicy.sim.robosuite.env import success

        a = np.clip(np.asarray(action, dtype=np.float64).reshape(ACTION_DIM), -1.0, 1.0)
        self._gate.open = observe
        self._raw_obs, _, _, _ = self.env.step(a)
        frames = self._frames(self._raw_obs) if observe else {}
        qacc = self._qacc_warnings()
        state = self.env.sim.data._data
        if qacc > self._bad_qacc or not (np.isfinite(state.qpos).all() and np.isfinite(state.qvel).all()):
            self._bad_qacc = qacc
            return StepResult(frames, False, "physics_unstable")
        return StepResult(frames, success(self.env))

    def expert_action(self) -> Optional[np.ndarray]:
        """The scripted expert's next action from privileged state; call once per executed step."""
        from videopolicy.sim.robosuite.experts import EXPERTS, make_expert

        if self.task not in EXPERTS:
            return None
        if self._expert is None:
            # the expert's style noise is keyed on the scene, so the expert is one fixed policy per episode
            rng = np.random.default_rng(stable_seed("expert", self._spec.seed if self._spec else 0))
            self._expert = make_expert(self.task, self.env, rng)
        return np.asarray(self._expert.act(self._raw_obs), dtype=np.float32)

    def close(self) -> None:
        try:
            self.env.close()
        except Exception:  # noqa: BLE001 - teardown EGL noise is benign once results are returned
            pass
