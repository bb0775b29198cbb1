"""Child side of the isolated-environment bridge: one simulator, driven over stdin/stdout.

Runs inside a *benchmark's own* virtual environment (``.venv-libero``, ``.venv-robocasa``,
``.venv-mimicgen``), which has that benchmark's robosuite/MuJoCo pins and neither torch nor ray nor
the platform's dependencies. So the bridge's modules import only the standard library and numpy at
module level; the backend of the suite asked for is imported once the protocol channel is private,
and it imports its simulator lazily. The parent side is `videopolicy.sim.bridge.client`.

    <venv>/bin/python -m videopolicy.sim.bridge.server <suite>      # PYTHONPATH=<repo>/platform

Messages are framed by `videopolicy.sim.bridge.wire`. Requests (parent -> child) have ``"op"``;
replies have ``"ok"``:

    child, on start          {"ok": true, "op": "ready", "pid", "suite", "versions", "wire": 1}
    {"op": "make", "task", "options"}             -> {"ok": true, "info"}
    {"op": "reset", "scene", "index", "seed"}     -> {"ok": true, "success", "info"} + obs/<camera>
    {"op": "step"} + array "action"               -> {"ok": true, "success", "done", "failure", "info"} + obs/<camera>
    {"op": "info"}                                -> {"ok": true, "info"}   (tasks, versions; no env built)
    {"op": "close"}                               -> {"ok": true}; the child exits
    any error                                     -> {"ok": false, "kind": "request"|"sim", "error", "message", "traceback"}

``kind="request"``: the request itself is wrong (unknown task, bad action shape); ``kind="sim"``: the
simulator raised. A policy-caused physics blow-up is not an error: the step reply carries
``failure="physics_unstable"``. Observations are ``uint8 (H, W, 3)``, upright (robosuite renders in
the OpenGL convention, bottom row first; the flip happens in the backend).

The protocol channel is a private duplicate of the original stdout; fd 1 is pointed at stderr so
that library prints (LIBERO prints "[info] ..." on import) can never corrupt it, and fd 0 at
/dev/null so that nothing can ``input()`` from the channel. The child exits on EOF of its input
(parent gone), and a watchdog thread ends it when its parent process is gone mid-step.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import BinaryIO, Optional

from videopolicy.sim.bridge.backend import Backend, RequestError
from videopolicy.sim.bridge.wire import WIRE_VERSION, encode, read_message

#: suite -> "module:Class" of its backend, imported only for the suite a child serves (each module
#: holds its benchmark's suite, protocol and backend).
BACKENDS: dict[str, str] = {
    "libero10": "videopolicy.sim.suites.libero10:LiberoBackend",
    "robocasa": "videopolicy.sim.suites.robocasa:RobocasaBackend",
    "mimicgen": "videopolicy.sim.suites.mimicgen:MimicgenBackend",
}


def backend_class(suite: str) -> type[Backend]:
    module, _, name = BACKENDS[suite].partition(":")
    return getattr(importlib.import_module(module), name)


def backend_info(suite: str) -> dict:
    """Tasks and versions, without building an env (used by the install scripts' smoke checks)."""
    return backend_class(suite)().info()


def _exit_with_parent(poll_s: float = 2.0) -> None:
    """End this process when its parent is gone (reparented), even while a step is running.

    A watchdog thread rather than PR_SET_PDEATHSIG: the latter fires when the *thread* that spawned
    the child exits, which a thread-pooled Ray actor may do while the actor itself lives on.
    """
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _private_channels() -> tuple[BinaryIO, BinaryIO]:
    """The protocol pipes, moved off fds 0/1 so that nothing else can read or write them."""
    chan_in = os.fdopen(os.dup(0), "rb", buffering=0)
    chan_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return chan_in, chan_out


def _error_reply(e: BaseException) -> dict:
    return {"ok": False, "kind": "request" if isinstance(e, RequestError) else "sim",
            "error": type(e).__name__, "message": str(e), "traceback": traceback.format_exc(limit=20)}


def serve(suite: str) -> int:
    _exit_with_parent()
    chan_in, chan_out = _private_channels()

    def send(meta: dict, arrays: Optional[dict] = None) -> None:
        chan_out.write(encode(meta, arrays))

    if suite not in BACKENDS:
        send({"ok": False, "kind": "request", "error": "UnknownSuite",
              "message": f"no bridge backend {suite!r}; known: {sorted(BACKENDS)}", "traceback": ""})
        return 2
    try:
        backend = backend_class(suite)()
        versions = backend.versions()
    except Exception as e:  # noqa: BLE001
        send(_error_reply(e))
        return 3
    send({"ok": True, "op": "ready", "pid": os.getpid(), "suite": suite, "versions": versions, "wire": WIRE_VERSION})

    while True:
        msg = read_message(chan_in)
        if msg is None:  # parent closed the pipe (or died)
            break
        req, arrays = msg
        op = req.get("op")
        try:
            if op == "make":
                send({"ok": True, "info": backend.make(str(req["task"]), dict(req.get("options") or {}))})
            elif op == "reset":
                obs, success, info = backend.reset(str(req["scene"]), int(req["index"]), int(req["seed"]))
                send({"ok": True, "success": success, "info": info}, {f"obs/{k}": v for k, v in obs.items()})
            elif op == "step":
                if "action" not in arrays:
                    raise RequestError("step without an 'action' array")
                obs, success, done, failure, info = backend.step(arrays["action"])
                send({"ok": True, "success": success, "done": done, "failure": failure, "info": info},
                     {f"obs/{k}": v for k, v in obs.items()})
            elif op == "info":
                send({"ok": True, "info": backend.info()})
            elif op == "close":
                backend.close()
                send({"ok": True})
                break
            else:
                raise RequestError(f"unknown op {op!r}")
        except (BrokenPipeError, EOFError):
            break
        except Exception as e:  # noqa: BLE001 - reported to the parent, which classifies it
            send(_error_reply(e))
    try:
        backend.close()
    except Exception:  # noqa: BLE001 - teardown noise (EGL) after the results are out is benign
        pass
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m videopolicy.sim.bridge.server <suite>", file=sys.stderr)
        return 2
    return serve(argv[0])


if __name__ == "__main__":
    sys.exit(main())
