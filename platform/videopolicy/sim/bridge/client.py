"""Parent side of the isolated-environment bridge: a `SimEnv` whose simulator runs in another venv.

LIBERO (robosuite 1.4.0), RoboCasa (robosuite master) and MimicGen (robosuite 1.4.1) cannot share
the main environment (robosuite 1.5.2), nor each other's. Each runs in its own virtualenv as a child
process of the worker that needs it (a Ray actor of the evaluation harness, running the main venv):

    worker (main venv) --BridgeEnv--> <venv>/bin/python -m videopolicy.sim.bridge.server <suite>

Only observations, actions and small JSON dicts cross the pipe (`videopolicy.sim.bridge.wire`; the requests: `videopolicy.sim.bridge.server`),
so the benchmark venv needs neither torch nor ray, nor the same numpy. A subprocess bridge was chosen
over Ray's ``runtime_env={"py_executable": ...}`` because the latter needs the identical Ray (and its
dependency set) inside every old-robosuite venv, and a Ray worker that dies in native render code
takes its actor with it; here the actor survives and reports the child's death precisely.

Errors, as the harness sees them:

* `InfraError` (retryable, never counted as a policy failure): the child could not start, died,
  hung past a timeout, sent garbage, or its simulator raised. The message names the suite, the
  operation, the child's PID and exit status, and ends with the tail of its stderr. The env is
  closed and unusable afterwards; build a new one.
* `BridgeRequestError` (a ``ValueError``, not retryable): the request was wrong (unknown task, bad
  action shape). The child stays alive.
* A policy-caused physics blow-up is neither: ``StepResult.failure == "physics_unstable"``.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from videopolicy.sim.bridge import wire
from videopolicy.sim.suites.base import EpisodeSpec, SimEnv, StepResult

__all__ = ["BridgeEnv", "BridgeClient", "BridgeRequestError", "InfraError", "PLATFORM_DIR", "REPO_ROOT", "child_env"]

#: The directory holding the `videopolicy` package; the child gets it (and only it) as PYTHONPATH.
PLATFORM_DIR = Path(wire.__file__).resolve().parents[3]

#: The repository root (``platform/..``) in a source checkout; the default home of ``.venv-*``.
REPO_ROOT = PLATFORM_DIR.parent

#: Seconds; generous because env construction under a loaded 2-core box took 2-30 s (LIBERO) and
#: RoboCasa kitchens take longer. A step of LIBERO with 2x128^2 cameras is ~0.2 CPU-s.
DEFAULT_TIMEOUTS = {"start": 300.0, "make": 600.0, "reset": 600.0, "step": 120.0, "info": 300.0, "close": 30.0}


class InfraError(RuntimeError):
    """The simulator process failed (start, death, hang, crash): retry the episode, never count it."""


class BridgeRequestError(ValueError):
    """The child rejected the request itself (unknown task, bad action); retrying will not help."""


def child_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Environment of a bridge child: the parent's, minus anything that would leak the main venv in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = str(PLATFORM_DIR)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"])
    env.update(extra or {})
    return env


class BridgeClient:
    """One child process speaking the bridge protocol. Not thread-safe (one caller at a time)."""

    def __init__(self, python: str | os.PathLike, suite: str, *, env: Optional[dict[str, str]] = None,
                 timeouts: Optional[dict[str, float]] = None, stderr_lines: int = 60, echo_stderr: bool = True):
        self.python = str(python)
        self.suite = suite
        self.timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self._tail: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._echo = echo_stderr
        self._buf = bytearray()
        self.proc: Optional[subprocess.Popen] = None
        self.versions: dict[str, str] = {}
        if not os.access(self.python, os.X_OK):
            raise InfraError(f"bridge[{suite}]: interpreter {self.python} does not exist or is not executable")
        try:
            self.proc = subprocess.Popen(
                [self.python, "-s", "-m", "videopolicy.sim.bridge.server", suite],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=child_env(env), cwd=str(PLATFORM_DIR), close_fds=True, start_new_session=True,
            )
        except OSError as e:
            raise InfraError(f"bridge[{suite}]: cannot start {self.python}: {e}") from e
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name=f"bridge-{suite}-stderr", daemon=True)
        self._stderr_thread.start()
        ready = self._receive("start")[0]
        if not ready.get("ok") or ready.get("op") != "ready":
            self._fail_reply("start", ready)
        if ready.get("wire") != wire.WIRE_VERSION:
            self.kill()
            raise InfraError(f"bridge[{suite}]: child speaks wire version {ready.get('wire')}, parent {wire.WIRE_VERSION}")
        self.versions = dict(ready.get("versions") or {})

    # ------------------------------------------------------------------------------------------
    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def call(self, op: str, arrays: Optional[dict[str, np.ndarray]] = None, **fields: Any) -> tuple[dict, dict[str, np.ndarray]]:
        """Send one request and wait for its reply (raises InfraError / BridgeRequestError)."""
        if not self.alive():
            raise InfraError(self._describe(op, "the simulator process is not running"))
        try:
            self.proc.stdin.write(wire.encode({"op": op, **fields}, arrays))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise InfraError(self._describe(op, f"cannot write to the simulator process ({e})")) from e
        meta, out = self._receive(op)
        if not meta.get("ok"):
            self._fail_reply(op, meta)
        return meta, out

    def close(self) -> None:
        """Ask the child to exit; kill it (by PID) if it does not within the close timeout."""
        if self.proc is None:
            return
        if self.alive():
            try:
                self.proc.stdin.write(wire.encode({"op": "close"}))
                self.proc.stdin.flush()
                self._receive("close")
            except (InfraError, BridgeRequestError, OSError):
                pass
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=self.timeouts["close"])
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self._close_pipes()

    # ------------------------------------------------------------------------------------------
    def _close_pipes(self) -> None:
        if self.proc is None:
            return
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass

    def _drain_stderr(self) -> None:
        try:
            for line in iter(self.proc.stderr.readline, b""):
                text = line.decode(errors="replace").rstrip("\n")
                self._tail.append(text)
                if self._echo:
                    print(f"[{self.suite} sim pid {self.proc.pid}] {text}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def _describe(self, op: str, what: str) -> str:
        status = ""
        if self.proc is not None:
            rc = self.proc.poll()
            status = f"pid {self.proc.pid}, " + (f"exit status {rc}" if rc is not None else "still running")
            if rc is not None and rc < 0:
                try:
                    status += f" ({signal.Signals(-rc).name})"
                except ValueError:
                    pass
        if self.proc is not None and self.proc.poll() is not None:
            self._stderr_thread.join(timeout=2)
        tail = "\n".join(list(self._tail)[-25:])
        return (f"bridge[{self.suite}] {op}: {what} [{self.python}; {status}]"
                + (f"\n--- simulator stderr (tail) ---\n{tail}" if tail else ""))

    def _fail_reply(self, op: str, meta: dict):
        msg = f"{meta.get('error', 'Error')}: {meta.get('message', '')}"
        if meta.get("kind") == "request":
            if op == "start":
                self.kill()
            raise BridgeRequestError(f"bridge[{self.suite}] {op}: {msg}")
        self.kill()
        raise InfraError(self._describe(op, f"the simulator raised {msg}") + f"\n--- child traceback ---\n{meta.get('traceback', '')}")

    def _read(self, n: int, deadline: float, op: str) -> bytes:
        fd = self.proc.stdout.fileno()
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise InfraError(self._describe(op, f"no reply within {self.timeouts.get(op, 0):.0f} s (killed)"))
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, max(1 << 16, n - len(self._buf)))
            if not chunk:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                raise InfraError(self._describe(op, "the simulator process died"))
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _receive(self, op: str) -> tuple[dict, dict[str, np.ndarray]]:
        deadline = time.monotonic() + float(self.timeouts.get(op, self.timeouts["step"]))
        (n,) = wire.HEADER_LEN.unpack(self._read(wire.HEADER_LEN.size, deadline, op))
        if n > wire.MAX_HEADER:
            self.kill()
            raise InfraError(self._describe(op, f"garbled reply (header length {n})"))
        try:
            meta, specs = wire.decode_header(self._read(n, deadline, op))
        except ValueError as e:  # JSON or dtype garbage
            self.kill()
            raise InfraError(self._describe(op, f"garbled reply ({e})")) from e
        arrays = {name: np.frombuffer(self._read(nbytes, deadline, op), dtype=dt).reshape(shape)
                  for name, dt, shape, nbytes in specs}
        return meta, arrays


class BridgeEnv(SimEnv):
    """`SimEnv` over a `BridgeClient`: the child is started and the task's env built on construction.

    ``last_info`` holds the child's info dict of the latest reset/step (e.g. RoboCasa's per-episode
    ``lang``); ``episode_instruction`` is that episode's language when the suite has one, else None.
    """

    def __init__(self, python: str | os.PathLike, suite: str, task: str, *, cameras: tuple[str, ...],
                 options: Optional[dict] = None, env: Optional[dict[str, str]] = None,
                 timeouts: Optional[dict[str, float]] = None, echo_stderr: bool = True):
        self.suite, self.task, self.cameras = suite, task, tuple(cameras)
        self.client = BridgeClient(python, suite, env=env, timeouts=timeouts, echo_stderr=echo_stderr)
        self.last_info: dict = {}
        self.episode_instruction: Optional[str] = None
        self.steps = 0
        try:
            meta, _ = self.client.call("make", task=task, options={"cameras": list(self.cameras), **(options or {})})
        except BaseException:
            self.client.close()
            raise
        self.make_info: dict = dict(meta.get("info") or {})

    @property
    def versions(self) -> dict[str, str]:
        """Package versions reported by the child (python, numpy, the suite's simulator packages)."""
        return self.client.versions

    def _obs(self, arrays: dict[str, np.ndarray], op: str) -> dict[str, np.ndarray]:
        obs = {k[4:]: v for k, v in arrays.items() if k.startswith("obs/")}
        if tuple(obs) != self.cameras:
            self.client.kill()
            raise InfraError(f"bridge[{self.suite}] {op}: child sent cameras {tuple(obs)}, expected {self.cameras}")
        return obs

    def reset(self, spec: EpisodeSpec) -> dict[str, np.ndarray]:
        if spec.task != self.task:
            raise BridgeRequestError(f"this env runs task {self.task!r}, the episode is for {spec.task!r}")
        meta, arrays = self.client.call("reset", scene=spec.scene, index=spec.index, seed=spec.seed)
        self.last_info = dict(meta.get("info") or {})
        self.episode_instruction = self.last_info.get("lang") or None
        self.steps = 0
        return self._obs(arrays, "reset")

    def instruction(self) -> Optional[str]:
        """The episode's language as the child's env reported it at reset (``info["lang"]``), or None."""
        return self.episode_instruction

    def step(self, action: np.ndarray, observe: bool = True) -> StepResult:
        # the child renders every step whatever `observe` says (no gate across the bridge yet)
        a = np.asarray(action, dtype=np.float64)
        meta, arrays = self.client.call("step", arrays={"action": a})
        self.steps += 1
        info = dict(meta.get("info") or {})
        info["done"] = bool(meta.get("done"))
        self.last_info = info
        return StepResult(obs=self._obs(arrays, "step"), success=bool(meta.get("success")),
                          failure=meta.get("failure"), info=info)

    def close(self) -> None:
        self.client.close()

    def __del__(self):  # best effort: never leave a simulator process behind
        try:
            if getattr(self, "client", None) is not None and self.client.alive():
                self.client.kill()
        except Exception:  # noqa: BLE001
            pass
