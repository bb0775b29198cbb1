"""robosuite's known-harmless log lines are dropped at their source, in a fresh process that imports
robosuite and builds an env (as each simulator worker does); other robosuite messages still show."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from videopolicy.sim.robosuite.logs import KNOWN_HARMLESS

PROBE = textwrap.dedent("""
    import logging, sys
    from videopolicy.sim.robosuite import env as rse
    env = rse.make_env("Lift", ("agentview",), 32, rse.RenderSettings(), seed=0, horizon=20)
    env.reset()
    logging.getLogger("robosuite_logs").warning("an unexpected robosuite message")
    if sys.argv[1] == "off":  # the same process without the filter, to show what it drops
        import videopolicy.sim.robosuite.logs as quiet
        quiet.KNOWN_HARMLESS = ()
        rse.make_env("Lift", ("agentview",), 32, rse.RenderSettings(), seed=0, horizon=20).reset()
""")


def _stderr(mode: str) -> str:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    env["PYOPENGL_PLATFORM"] = env["MUJOCO_GL"]
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr


def test_known_harmless_lines_are_dropped_and_others_still_show():
    quiet = _stderr("on")
    assert "an unexpected robosuite message" in quiet
    assert not [p for p in KNOWN_HARMLESS if p in quiet], quiet
    # the filter is what keeps them out: a second env built without it prints the per-env lines again
    loud = _stderr("off")
    assert 'The config has defined for the controller "' in loud and "Loading controller configuration" in loud
