"""Child side of the bridge: what every benchmark's backend shares.

A backend is one simulator inside the bridge child (`videopolicy.sim.bridge.server`), running in the
benchmark's own virtualenv. Each bridged benchmark defines its backend next to its suite (e.g.
`videopolicy.sim.suites.robocasa.RobocasaBackend`), so the protocol the parent declares and the env
the child builds are written in one module. This module and the backends' module-level imports are
the standard library and numpy only; a backend imports its simulator lazily, inside its methods.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np


class RequestError(ValueError):
    """The request is wrong (unknown task, bad action); reported with kind="request"."""


def dist_versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    out = {"python": "%d.%d.%d" % sys.version_info[:3], "numpy": np.__version__}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "absent"
    return out


def upright(img: np.ndarray) -> np.ndarray:
    # robosuite (1.4 and master) renders in the OpenGL convention: bottom row first.
    return np.ascontiguousarray(img[::-1])


def sim_unstable(sim: Any, baseline: int) -> tuple[bool, int]:
    """(physics blew up since `baseline`, new warning count): MuJoCo's bad-QACC warning or non-finite state."""
    data = getattr(sim.data, "_data", sim.data)
    count = baseline
    try:
        import mujoco

        count = int(data.warning[int(mujoco.mjtWarning.mjWARN_BADQACC)].number)
    except Exception:  # noqa: BLE001 - older bindings: fall back to the finiteness check only
        pass
    finite = bool(np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel)))
    return (count > baseline) or not finite, count


class Backend:
    """One simulator inside the child. Subclasses implement `make` and `reset` (and `step` when the
    default, below, does not fit); ``self.env`` is a robosuite-style env, ``self.opts["cameras"]``
    the cameras it renders."""

    suite = ""
    packages: tuple[str, ...] = ()

    def __init__(self) -> None:
        from videopolicy.sim.robosuite.logs import quiet_robosuite

        quiet_robosuite()  # robosuite master (RoboCasa) logs the same harmless lines; 1.4 logs none
        self.env: Any = None
        self.opts: dict = {}
        self._warn = 0

    def versions(self) -> dict[str, str]:
        return dist_versions(*self.packages)

    def info(self) -> dict:
        return {"suite": self.suite, "versions": self.versions()}

    def make(self, task: str, options: dict) -> dict:
        raise NotImplementedError

    def reset(self, scene: str, index: int, seed: int) -> tuple[dict[str, np.ndarray], bool, dict]:
        raise NotImplementedError

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool, bool, Optional[str], dict]:
        """One env step of a checked action: (obs, success, done, failure, info)."""
        return self._step(self._check_action(action, self.env.action_dim))

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    # shared helpers -------------------------------------------------------------------------
    def success(self) -> bool:
        return bool(self.env._check_success())

    def _obs(self, raw: dict) -> dict[str, np.ndarray]:
        return {cam: upright(raw[f"{cam}_image"]) for cam in self.opts["cameras"]}

    def _step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool, bool, Optional[str], dict]:
        raw, _, done, _ = self.env.step(action)
        unstable, self._warn = sim_unstable(self.env.sim, self._warn)
        success = self.success()
        return self._obs(raw), success, bool(done), ("physics_unstable" if unstable and not success else None), {}

    def _check_action(self, action: np.ndarray, dim: int) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (dim,):
            raise RequestError(f"{self.suite}: action must have shape ({dim},), got {tuple(np.shape(action))}")
        if not np.all(np.isfinite(a)):
            raise RequestError(f"{self.suite}: action has non-finite values: {a.tolist()}")
        return a
