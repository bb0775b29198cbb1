"""The isolated-environment bridge: a simulator in its own virtualenv, driven from the main one.

    wire.py      the message framing both sides speak (stdlib + numpy)
    client.py    parent side: `BridgeClient` (one child process), `BridgeEnv` (a `SimEnv` over it)
    server.py    child side: the request loop, run as ``python -m videopolicy.sim.bridge.server <suite>``
    backend.py   child side: what every benchmark's backend shares
    suite.py     parent side: `BridgedSuite` and locating a benchmark's venv

Each bridged benchmark (``sim/suites/libero10.py``, ``robocasa.py``, ``mimicgen.py``) keeps its
protocol, its suite and its backend in one module. Nothing is imported here: the child runs in a venv
without the platform's dependencies, so it loads only the modules it needs.
"""
