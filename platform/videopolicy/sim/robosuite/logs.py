"""robosuite's known-harmless log lines, silenced at their source: robosuite's own logger.

robosuite (1.5.x and master) logs through one logger, ``robosuite_logs``, with a console handler it
adds when it is first imported. With this platform's setup, every process that imports it (each
simulator worker, each demo shard, each bridge child on robosuite master) printed the same lines: no
private macro file, no optional ``robosuite_models``, no ``mink`` IK (GR1's default only), where the
controller config was loaded from, and, per env built, one line per body part (left arm, torso,
head, base, legs) of the BASIC composite controller config that a single-arm Panda does not have.
`make run` printed ~70 of them. They say nothing about a run, so a filter on that logger drops
exactly these messages; anything else robosuite logs (joint limits, a real configuration problem)
still shows. The filter must be installed before robosuite is imported (the first lines come from
its import); `videopolicy.sim.robosuite.env` does it when it is imported, before any robosuite
import of ours, and the bridge's backends do it in their child process.

Standard library only (the bridge child imports this in a benchmark's own venv).
"""

from __future__ import annotations

import logging

ROBOSUITE_LOGGER = "robosuite_logs"

#: Message prefixes (robosuite 1.5.2; the same text in robosuite master) that are expected here.
KNOWN_HARMLESS: tuple[str, ...] = (
    "No private macro file found!",  # macros.py: the platform passes its settings in code
    "It is recommended to use a private macro file",
    "To setup, run: python ",
    "Could not import robosuite_models.",  # optional extra robot models; the Panda is built in
    "Could not load the mink-based whole-body IK.",  # only the GR1 robot's default IK needs mink
    "Loading controller configuration from: ",  # INFO, once per env
    'The config has defined for the controller "',  # "... but the robot does not have this component"
)


class KnownHarmless(logging.Filter):
    """Drops robosuite's `KNOWN_HARMLESS` records; passes everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not record.getMessage().startswith(KNOWN_HARMLESS)
        except Exception:  # noqa: BLE001 - a record that cannot format itself is not ours to drop
            return True


def quiet_robosuite() -> None:
    """Install the filter on robosuite's logger (idempotent; call before robosuite is imported)."""
    logger = logging.getLogger(ROBOSUITE_LOGGER)
    if not any(isinstance(f, KnownHarmless) for f in logger.filters):
        logger.addFilter(KnownHarmless())
