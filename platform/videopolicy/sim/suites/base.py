"""The suite contract: what the evaluation harness knows about a benchmark.

A suite declares its protocol in one place (tasks, episode list, step limit, cameras, action
mapping, success check). Adding a benchmark = one module here + one registry line + one YAML.

Contract (like lerobot's ``info["is_success"]``): ``SimEnv.step`` returns ``StepResult`` whose
``success`` is the suite's own success check, evaluated on every step.

Shapes: observations are ``dict[camera] -> uint8 (H, W, 3)`` (upright, not OpenGL-flipped), in the
order of ``Protocol.cameras``; actions are float ``(action_dim,)`` in the suite's command space.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from videopolicy.store import stable_hash, stable_seed


@dataclass(frozen=True)
class EpisodeSpec:
    """One evaluation episode. Every row of a sweep gets the same list (paired comparisons)."""

    suite: str
    task: str
    scene: str  # e.g. "default", a RoboCasa "layout1_style1", a LIBERO init-state id
    index: int  # episode number within (task, scene)
    seed: int  # scene seed: depends on (suite, task, scene, index, eval seed) only, never on the policy

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.task}/{self.scene}/{self.index}"

    @classmethod
    def make(cls, suite: str, task: str, scene: str, index: int, eval_seed: int) -> "EpisodeSpec":
        return cls(suite, task, scene, index, stable_seed("episode", suite, task, scene, index, eval_seed))


@dataclass(frozen=True)
class Protocol:
    """Everything that makes two evaluations comparable; its hash is recorded with every result."""

    suite: str
    tasks: tuple[str, ...]
    cameras: tuple[str, ...]
    image_size: int
    max_steps: int  # per-episode step limit (policy-caused timeout = failure)
    action_dim: int  # the suite's command size (robosuite 7, RoboCasa 12)
    settle_steps: int = 0  # zero-action steps after reset (LIBERO: 5)
    sim_version: str = ""  # version of the simulator package that ran it
    extra: tuple[tuple[str, Any], ...] = ()  # suite-specific settings (render preset, object split, ...)

    @property
    def hash(self) -> str:
        return stable_hash(dataclasses.asdict(self))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hash"] = self.hash
        return d


@dataclass
class StepResult:
    obs: dict[str, np.ndarray]  # camera -> (H, W, 3) uint8; may be {} after a step taken with observe=False
    success: bool  # the suite's success check after this step
    failure: Optional[str] = None  # policy-caused end (e.g. "physics_unstable"); counts as a failure
    info: dict = field(default_factory=dict)


class SimEnv(ABC):
    """One live simulator, created inside a worker process (never inherited across fork)."""

    @abstractmethod
    def reset(self, spec: EpisodeSpec) -> dict[str, np.ndarray]:
        """Place the scene for `spec` (deterministic from spec.seed / spec.scene) and return the first obs."""

    @abstractmethod
    def step(self, action: np.ndarray, observe: bool = True) -> StepResult:
        """One control step. ``observe=False`` says nobody will look at this step's frames: an env may
        skip rendering them and return ``obs={}``. The frames of an observed step must not depend on
        which earlier steps were observed."""

    def expert_action(self) -> Optional[np.ndarray]:
        """The scripted expert's next action, where the suite has one (sanity policy); else None."""
        return None

    def instruction(self) -> Optional[str]:
        """The language instruction the env reports for the episode of the latest `reset` (RoboCasa:
        ``env.get_ep_meta()["lang"]``, LIBERO: the task's BDDL language), or None when the env has
        none (the harness then uses ``Suite.instruction(task)``)."""
        return None

    def close(self) -> None:
        pass


class Suite(ABC):
    """A benchmark: its protocol, its episode list, and how to build an env inside a worker."""

    name: str = ""
    #: appended to the model's 7-D action to make this suite's command (RoboCasa: base off, arm mode)
    action_suffix: tuple[float, ...] = ()

    @abstractmethod
    def protocol(self) -> Protocol: ...

    @abstractmethod
    def instruction(self, task: str) -> str:
        """The task's sentence: what the policy is conditioned on where the env reports no episode
        sentence of its own (`SimEnv.instruction`), and the task-level text of tables and plans."""

    @abstractmethod
    def episodes(self, task: str, n: int, eval_seed: int) -> list[EpisodeSpec]:
        """The first `n` episodes of `task`, deterministic (scenes cycled as the suite's protocol says)."""

    @abstractmethod
    def make_env(self, task: str) -> SimEnv:
        """Build the environment for `task` (call inside the worker process)."""

    def demo_episodes(self, task: str, demo_file: str, n: int) -> list[EpisodeSpec]:
        """Episodes that reset to the scenes of the first `n` demos in `demo_file` (scene ``"demo"``,
        index = the demo's position in the file), for the replay sanity policy."""
        raise ValueError(f"suite {self.name!r} cannot reset to a demo's scene: the replay policy runs on the "
                         "robosuite suite (scripted demos record their scene seed)")

    def step_limit(self, task: str) -> int:
        """Step limit of one episode of `task` (default: the protocol's; suites with per-task limits
        override this and record the limits in ``Protocol.extra`` so they are part of the hash)."""
        return self.protocol().max_steps

    def unavailable(self) -> Optional[str]:
        """None when the suite can run here, else how to install it (checked before any actor starts)."""
        return None
