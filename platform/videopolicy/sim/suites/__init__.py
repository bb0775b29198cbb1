"""Suite registry: benchmark name -> ``"module:Class"`` (`videopolicy.catalog.SUITES`), imported only when asked for.

Suites of other simulators (LIBERO, RoboCasa, MimicGen) live in their own Python environments, so
nothing here imports a suite module eagerly: `get_suite` imports exactly the one it is asked for.
Adding a benchmark = one module (its protocol, suite and, when bridged, its backend) + one line in
`videopolicy.catalog.SUITES` (config validation reads the names there without importing a simulator).
robosuite, which runs in the main venv with scripted experts and demo generation, has a package of its
own: `videopolicy.sim.robosuite`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from videopolicy.catalog import SUITES
from videopolicy.sim.suites.base import EpisodeSpec, Protocol, SimEnv, StepResult, Suite

if TYPE_CHECKING:
    from videopolicy.config import PlatformConfig

__all__ = ["SUITES", "EpisodeSpec", "Protocol", "SimEnv", "StepResult", "Suite", "get_suite", "suite_class"]


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(SUITES), n=1, cutoff=0.4)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown suite {name!r}{hint}; registered suites: {', '.join(SUITES)}")


def suite_class(name: str) -> type[Suite]:
    """The Suite class registered under `name` (imports its module now)."""
    if name not in SUITES:
        raise _unknown(name)
    module_name, _, cls_name = SUITES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):  # the suite module itself is missing
            raise ValueError(f"suite {name!r} is registered but its module {module_name} does not exist") from e
        raise
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = [v for v in vars(module).values()
                 if isinstance(v, type) and issubclass(v, Suite) and v is not Suite and v.name == name]
        if len(found) != 1:
            raise ValueError(f"suite {name!r}: {module_name} has no class {cls_name} (nor one Suite with name={name!r})")
        cls = found[0]
    return cls


def get_suite(name: str, cfg: "PlatformConfig") -> Suite:
    """The suite `name` configured by `cfg` (``Suite(cfg)``). Unknown names raise with the nearest one."""
    return suite_class(name)(cfg)
