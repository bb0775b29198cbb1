"""Parent side of a bridged benchmark: what every suite whose simulator lives in its own virtualenv
shares: finding the interpreter, saying how to build it when absent, and building the env behind the
subprocess bridge.

Each such suite names a venv (env var override, else ``<repo>/.venv-<name>``), a build command
(``make sim-<name>``) and the distributions that identify its simulator. Versions are read from the
venv's ``*.dist-info`` directories without starting its Python, so `Suite.protocol()` stays cheap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from videopolicy.sim.bridge.client import REPO_ROOT, BridgeEnv
from videopolicy.sim.suites.base import EpisodeSpec, Suite


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
    horizons: dict[str, int] = {}  # task -> step limit where the benchmark sets one per task (else the protocol's)

    def __init__(self, cfg=None):
        self.cfg = cfg
        self.python = venv_python(self.python_var, self.venv_var, self.default_venv)

    def make_env(self, task: str) -> BridgeEnv:
        self.instruction(task)  # unknown tasks fail here, with the known ones named
        msg = self.unavailable()
        if msg:
            raise RuntimeError(msg)
        return BridgeEnv(self.python, self.name, task, cameras=self.cameras, options=dict(self.env_options))

    def step_limit(self, task: str) -> int:
        if not self.horizons:
            return super().step_limit(task)
        self.instruction(task)  # unknown tasks fail here, with the known ones named
        return self.horizons[task]

    def episode_slot(self, i: int) -> tuple[str, int]:
        """(scene, index within that scene) of a task's i-th episode, as the protocol declares it."""
        return "default", i

    def episodes(self, task: str, n: int, eval_seed: int) -> list[EpisodeSpec]:
        self.instruction(task)
        return [EpisodeSpec.make(self.name, task, *self.episode_slot(i), eval_seed) for i in range(n)]

    def unavailable(self) -> Optional[str]:
        return unavailable_message(self.name, self.python, self.dists, self.build, self.python_var, self.venv_var,
                                   required=self.required)


def venv_python(python_var: str, venv_var: str, default_dir: str) -> Path:
    """The benchmark interpreter: ``$<python_var>``, else ``$<venv_var>/bin/python``, else ``<repo>/<default_dir>/bin/python``."""
    if os.environ.get(python_var):
        return Path(os.environ[python_var]).expanduser()
    if os.environ.get(venv_var):
        return Path(os.environ[venv_var]).expanduser() / "bin" / "python"
    return REPO_ROOT / default_dir / "bin" / "python"


def site_packages(python: Path) -> Optional[Path]:
    """The venv's site-packages directory (python -> ../lib/python3.*/site-packages), or None."""
    lib = python.parent.parent / "lib"
    if not lib.is_dir():
        return None
    found = sorted(lib.glob("python3*/site-packages"))
    return found[0] if found else None


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_versions(python: Path, dists: tuple[str, ...]) -> dict[str, str]:
    """{distribution: version} for those of `dists` installed in the venv of `python` (missing ones omitted)."""
    sp = site_packages(python)
    if sp is None:
        return {}
    want = {_norm(d): d for d in dists}
    out: dict[str, str] = {}
    for info in sp.glob("*.dist-info"):
        m = re.match(r"(.+?)-([^-]+)\.dist-info$", info.name)
        if m and _norm(m.group(1)) in want:
            out[want[_norm(m.group(1))]] = m.group(2)
    for link in sp.glob("*.egg-link"):  # `pip install -e` of a git checkout (RoboCasa, MimicGen)
        n = _norm(link.name[: -len(".egg-link")])
        if n in want and want[n] not in out:
            out[want[n]] = "editable"
    return out


def sim_version(python: Path, dists: tuple[str, ...]) -> str:
    """``"dist==ver dist==ver ..."`` in the order of `dists` (``"absent"`` where missing)."""
    v = installed_versions(python, dists)
    return " ".join(f"{d}=={v.get(d, 'absent')}" for d in dists)


def unavailable_message(suite: str, python: Path, dists: tuple[str, ...], build: str, python_var: str,
                        venv_var: str, required: tuple[str, ...]) -> Optional[str]:
    """None when the venv exists and holds the `required` distributions, else how to build it."""
    how = (f"Build it with `{build}` (or point {python_var} at its interpreter / {venv_var} at the venv); "
           f"see deploy/sim/README.md.")
    if not python.exists():
        return f"suite {suite!r} runs in its own virtualenv, which is absent: {python} does not exist. {how}"
    missing = [d for d in required if d not in installed_versions(python, required)]
    if missing:
        return f"suite {suite!r}: the virtualenv of {python} lacks {', '.join(missing)}. {how}"
    return None
