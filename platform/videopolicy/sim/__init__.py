"""Simulators, one home per benchmark.

    suites/      the suite contract (`base`: EpisodeSpec, Protocol, SimEnv, Suite) and the registry;
                 libero10.py, robocasa.py, mimicgen.py: a bridged benchmark each (protocol, suite, backend)
    robosuite/   robosuite in the main venv: env and rendering, scripted experts, its suite, demo generation
    bridge/      the isolated-environment bridge to a benchmark's own virtualenv (wire, client, server)

The suite names, their classes' modules and the static facts config validation needs before any
simulator is imported (cameras, action suffixes) live below this package, in `videopolicy.catalog`.
"""
