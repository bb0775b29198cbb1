"""What every suite whose simulator lives in its own virtualenv shares: finding the interpreter,
saying how to build it when absent, and building the env behind the subprocess bridge."""

from __future__ import annotations

from typing import Any, Optional

from videopolicy.sim.bridge import BridgeEnv, unavailable_message, venv_python
from videopolicy.sim.suites.base import Suite


class BridgedSuite(Suite):
    """Subclasses declare their venv (env vars, default dir, build command, distributions to report and
    require), cameras and the options their bridge server gets; the protocol stays theirs."""

    python_var: str = ""  # path of the suite's interpreter, or
    venv_var: str = ""  # path of its venv (default <repo>/<default_venv>)
    default_venv: str = ""
    build: str = ""  # the command that builds the venv
    dists: tuple[str, ...] = ()  # distributions whose versions identify the simulator
    required: tuple[str, ...] = ()  # distributions that must be installed
    cameras: tuple[str, ...] = ()
    env_options: dict[str, Any] = {}

    def __init__(self, cfg=None):
        self.cfg = cfg
        self.python = venv_python(self.python_var, self.venv_var, self.default_venv)

    def make_env(self, task: str) -> BridgeEnv:
        self.instruction(task)  # unknown tasks fail here, with the known ones named
        msg = self.unavailable()
        if msg:
            raise RuntimeError(msg)
        return BridgeEnv(self.python, self.name, task, cameras=self.cameras, options=dict(self.env_options))

    def unavailable(self) -> Optional[str]:
        return unavailable_message(self.name, self.python, self.dists, self.build, self.python_var, self.venv_var,
                                   required=self.required)
