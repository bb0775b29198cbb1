"""Simulator worker actors: one live simulator each, created lazily inside the actor.

* The environment (and its GL context) is built on the first episode of a task, inside the actor
  process, never inherited across fork; a worker keeps one env (the current task's).
* GL: ``MUJOCO_GL=egl`` by default with the OSMesa fallback of `configure_gl`. On a GPU node the EGL
  device is derived from the GPU ids Ray assigned to this actor (`select_egl_device`): Ray remaps
  ``CUDA_VISIBLE_DEVICES``, so a physical id is not a valid index into what EGL enumerates.
* Outcomes caused by the policy (success, step-limit ``timeout``, ``physics_unstable``,
  ``invalid_action`` for non-finite actions) are returned as results. Anything else that goes wrong
  (renderer or env construction failure, policy-server loss, an exception in the simulator) is
  raised: the driver records it as an infrastructure error, retries the episode elsewhere, and never
  counts it. The env is dropped after such an error, so a broken GL context is not reused.
* Recycling after K episodes is done by the driver (it replaces the actor), like maxtasksperchild.

Episode loop (the authors' protocol): reset -> observe -> ask the policy for a 32-step chunk, conditioned
on the episode's own sentence (``SimEnv.instruction()`` after reset, else ``Suite.instruction(task)``)
-> execute its first ``execute_steps`` (16) actions -> ask again, until success, failure or the step
limit. The sentence is returned with the result and recorded in the ledger.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import resource
import tempfile
import threading
import time
import traceback
from typing import Optional

import numpy as np

from videopolicy.evaluate.policies import ActRequest, PolicySpec
from videopolicy.sim.suites.base import EpisodeSpec
from videopolicy.store import stable_seed

log = logging.getLogger(__name__)

FPS = 20  # robosuite control frequency: videos play in real time


def request_seed(policy_seed: int, episode_key: str, chunk_index: int) -> int:
    """Noise seed of one policy call: independent of batching, worker and retry."""
    return stable_seed("policy", policy_seed, episode_key, chunk_index)


def select_egl_device(gpu_ids: list, egl_cuda_ordinals: Optional[list[Optional[int]]]) -> Optional[int]:
    """Index into EGL's device list for the first GPU Ray assigned to this process, or None (CPU).

    Inside a Ray worker with GPUs, ``CUDA_VISIBLE_DEVICES`` holds the assigned physical ids, so the
    first assigned GPU is CUDA ordinal 0 of this process. EGL enumerates devices its own way (NVIDIA
    devices, plus Mesa's software device); `egl_cuda_ordinals` is, per EGL device, the CUDA ordinal it
    reports (``EGL_CUDA_DEVICE_NV``) or None. Without that information we fall back to device 0.
    """
    if not gpu_ids:
        return None
    if egl_cuda_ordinals:
        for i, ordinal in enumerate(egl_cuda_ordinals):
            if ordinal == 0:
                return i
    return 0


def _egl_cuda_ordinals() -> Optional[list[Optional[int]]]:
    """Per EGL device, its CUDA ordinal via EGL_NV_device_cuda (None when unknown)."""
    try:
        import ctypes

        from mujoco.egl import egl_ext as EGL

        devices = EGL.eglQueryDevicesEXT()
        query = EGL.eglGetProcAddress("eglQueryDeviceAttribEXT")
        if not query:
            return [None] * len(devices)
        fn = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_long))(query)
        out: list[Optional[int]] = []
        for dev in devices:
            value = ctypes.c_long(-1)
            ptr = ctypes.cast(dev, ctypes.c_void_p) if not isinstance(dev, int) else ctypes.c_void_p(dev)
            ok = fn(ptr, 0x323A, ctypes.byref(value))  # EGL_CUDA_DEVICE_NV
            out.append(int(value.value) if ok else None)
        return out
    except Exception:  # noqa: BLE001 - no NVIDIA EGL: the fallback applies
        return None


def _configure_render_device() -> Optional[int]:
    """Set MUJOCO_EGL_DEVICE_ID from Ray's GPU assignment (after robosuite's import-time check)."""
    import ray

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        # robosuite's EGL context would parse "" as a device list and crash; no GPU means Mesa EGL
        os.environ.pop("CUDA_VISIBLE_DEVICES")
    if not gpu_ids or os.environ.get("MUJOCO_GL", "egl") != "egl":
        return None
    from videopolicy.sim.robosuite.logs import quiet_robosuite

    quiet_robosuite()
    import robosuite  # noqa: F401 - its binding_utils checks MUJOCO_EGL_DEVICE_ID at import: import first

    device = select_egl_device(gpu_ids, _egl_cuda_ordinals())
    os.environ["MUJOCO_EGL_DEVICE_ID"] = str(device)
    return device


def encode_mp4(frames: list[np.ndarray], fps: int = FPS) -> bytes:
    """(H, W, 3) uint8 frames -> MP4 bytes (H.264 through imageio-ffmpeg; OpenCV's mp4v otherwise)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "episode.mp4")
        try:
            import imageio.v2 as imageio

            with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16,
                                    ffmpeg_log_level="error") as w:
                for f in frames:
                    w.append_data(f)
        except (ImportError, RuntimeError, OSError):
            import cv2

            h, w_ = frames[0].shape[:2]
            vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w_, h))
            for f in frames:
                vw.write(np.ascontiguousarray(f[..., ::-1]))
            vw.release()
        with open(path, "rb") as fh:
            return fh.read()


class _Episode:
    """The state of one episode as the worker runs it: frames, counters, outcome, video and timers."""

    def __init__(self, spec: EpisodeSpec, cameras: tuple[str, ...], limit: int, record_video: bool):
        self.spec, self.cameras, self.limit, self.record_video = spec, cameras, limit, record_video
        self.frames: dict = {}
        self.video: list[np.ndarray] = []
        self.steps, self.chunk_index = 0, 0
        self.success, self.failure = False, None
        self.t_sim, self.t_wait = 0.0, 0.0

    def observe(self, frames: dict) -> None:
        """The env's new frames (camera -> (H, W, 3)); recorded with the cameras side by side."""
        self.frames = frames
        if self.record_video:
            self.video.append(np.concatenate([frames[c] for c in self.cameras], axis=1))


class SimWorker:
    """Use through `sim_worker_actor(...)`. max_concurrency 2: `progress()` answers during an episode."""

    def __init__(self, suite_name: str, cfg, policy: PolicySpec, execute_steps: int, policy_seed: int,
                 server=None, sampler_steps: int = 0):
        from videopolicy.sim.suites import get_suite

        self.suite = get_suite(suite_name, cfg)
        self.protocol = self.suite.protocol()
        self.policy_spec, self.execute_steps, self.policy_seed = policy, int(execute_steps), int(policy_seed)
        self.server = server
        self.sampler_steps = sampler_steps
        self.local_policy = None  # loaded lazily when there is no server (each worker its own copy)
        self.env = None
        self.env_task: Optional[str] = None
        self.episodes = 0
        self.egl_device: Optional[int] = None
        self._progress: dict = {}
        self._lock = threading.Lock()
        self._sim_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim")

    # -- lazy construction -------------------------------------------------------------------------

    def _ensure_env(self, task: str):
        if self.env is not None and self.env_task == task:
            return self.env
        self._drop_env()
        if self.episodes == 0 and self.env is None and self.egl_device is None:
            self.egl_device = _configure_render_device()
        self.env = self.suite.make_env(task)
        self.env_task = task
        return self.env

    def _drop_env(self) -> None:
        if self.env is not None:
            self.env.close()
        self.env, self.env_task = None, None

    def _act(self, request: ActRequest) -> np.ndarray:
        if self.server is not None:
            import ray

            return ray.get(self.server.act.remote(request))
        if self.local_policy is None:
            from videopolicy.evaluate.policies import load_policy

            self.local_policy = load_policy(self.policy_spec, self.protocol.suite, self.protocol.cameras,
                                            self.protocol.action_dim, self.sampler_steps)
        return self.local_policy.act([request])[0]

    # -- the episode -------------------------------------------------------------------------------

    def run_episode(self, spec: EpisodeSpec, record_video: bool = False) -> dict:
        # Every simulator call runs on this actor's one simulator thread: a GL context is bound to a
        # thread, and Ray runs the calls of a threaded actor on whichever of its threads is free.
        return self._sim_thread.submit(self._run_or_drop, spec, record_video).result()

    def _run_or_drop(self, spec: EpisodeSpec, record_video: bool) -> dict:
        try:
            return self._run(spec, record_video)
        except BaseException:
            self._drop_env()  # whatever broke (GL context, sim) is not reused
            raise

    def _run(self, spec: EpisodeSpec, record_video: bool) -> dict:
        """One episode: reset, then policy chunks executed until success, failure or the step limit."""
        from videopolicy.evaluate.metrics import steps_per_second

        t0 = time.perf_counter()
        env = self._ensure_env(spec.task)
        t_setup = time.perf_counter() - t0  # env construction (lazy, first episode of a task only)
        frames = env.reset(spec)
        # the sentence of THIS episode as its env reports it (RoboCasa's ep_meta["lang"] names the sampled
        # object; LIBERO's comes from the task's BDDL), as in the authors' evaluation and in the demos;
        # the suite's task sentence where the env has none
        text = env.instruction() or self.suite.instruction(spec.task)
        t_reset = time.perf_counter() - t0 - t_setup
        ep = _Episode(spec, self.protocol.cameras, self.suite.step_limit(spec.task), record_video)
        ep.observe(frames)
        self._set_progress({"episode_key": spec.key, "steps": 0})
        while ep.failure is None and not ep.success:
            chunk = self._next_chunk(env, ep, text)
            ts = time.perf_counter()
            self._execute(env, ep, chunk)
            ep.t_sim += time.perf_counter() - ts
            self._set_progress({"episode_key": spec.key, "steps": ep.steps})
        self.episodes += 1
        wall = time.perf_counter() - t0
        steps_per_second().set(ep.steps / max(ep.t_sim, 1e-9), tags={"suite": spec.suite, "task": spec.task})
        self._set_progress({})
        return {
            "episode_key": spec.key,
            "success": bool(ep.success),
            "steps": ep.steps,
            "failure_reason": None if ep.success else ep.failure,
            "instruction": text,
            "wall_s": wall,
            "setup_s": t_setup,
            "reset_s": t_reset,
            "sim_s": ep.t_sim,  # stepping (physics + rendering), without setup and reset
            "policy_wait_s": ep.t_wait,
            "policy_calls": ep.chunk_index,
            "video": encode_mp4(ep.video) if record_video and ep.video else None,
            "worker_pid": os.getpid(),
            "worker_episodes": self.episodes,
            "egl_device": self.egl_device,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }

    def _next_chunk(self, env, ep: "_Episode", text: str) -> np.ndarray:
        """The policy's next action chunk (L, action_dim) for the episode's current frames."""
        spec = ep.spec
        images = np.stack([ep.frames[c] for c in ep.cameras])  # (V, H, W, 3) uint8
        privileged = env.expert_action() if self.policy_spec.privileged else None
        if self.policy_spec.privileged and privileged is None:
            raise RuntimeError(f"suite {spec.suite} has no scripted expert for {spec.task}")
        req = ActRequest(spec.key, ep.chunk_index, images, text,
                         request_seed(self.policy_seed, spec.key, ep.chunk_index), privileged, ep.steps)
        tw = time.perf_counter()
        chunk = np.asarray(self._act(req), dtype=np.float32)
        ep.t_wait += time.perf_counter() - tw
        ep.chunk_index += 1
        if chunk.ndim != 2 or chunk.shape[1] != self.protocol.action_dim:
            raise ValueError(f"policy returned a chunk of shape {chunk.shape}, expected (L, "
                             f"{self.protocol.action_dim})")
        return chunk

    def _execute(self, env, ep: "_Episode", chunk: np.ndarray) -> None:
        """Step the chunk's first `execute_steps` actions, stopping at success, failure or the step limit.

        Only the chunk's last step is observed (the policy's next input), unless the episode is
        recorded: the env may skip rendering the others (5x faster stepping on llvmpipe)."""
        actions = chunk[: self.execute_steps]
        for i, action in enumerate(actions):
            if not np.isfinite(action).all():
                ep.failure = "invalid_action"
                return
            observe = ep.record_video or i == len(actions) - 1
            result = env.step(action, observe=observe)
            ep.steps += 1
            if observe:
                ep.observe(result.obs)
            if result.failure:
                ep.failure = result.failure
            elif result.success:
                ep.success = True
            elif ep.steps >= ep.limit:
                ep.failure = "timeout"
            if ep.failure or ep.success:
                return

    def _set_progress(self, progress: dict) -> None:
        with self._lock:
            self._progress = progress

    def progress(self) -> dict:
        """The episode in progress and its steps so far ({} between episodes)."""
        with self._lock:
            return dict(self._progress, pid=os.getpid(), episodes=self.episodes)

    def ping(self) -> int:
        return os.getpid()


def sim_worker_actor(num_cpus: float, env_vars: dict, max_restarts: int = 3, name: Optional[str] = None,
                     namespace: Optional[str] = None):
    """The Ray actor class, configured. max_task_retries=0: Ray never replays an episode by itself;
    the ledger decides (so nothing is counted twice)."""
    import ray

    opts = dict(num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=0, max_concurrency=2,
                runtime_env={"env_vars": dict(env_vars)})
    if name:
        opts["name"] = name
    if namespace:
        opts["namespace"] = namespace
    return ray.remote(SimWorker).options(**opts)


def format_exception(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(e), e)).strip()
