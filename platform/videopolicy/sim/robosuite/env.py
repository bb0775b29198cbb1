"""robosuite 1.5.2 environments, built the same way for demo generation and for evaluation.

Everything that determines what a camera frame looks like is decided here and recorded by
`env_args()`, so an evaluation env rebuilt from a dataset's metadata renders exactly like the
env that produced the demos:

* Robot and controller: Panda, `BASIC` composite controller whose arm part is OSC_POSE with delta
  input. The action is 7-D ``(dx, dy, dz, dax, day, daz, gripper)`` in [-1, 1]; +-1 maps to
  +-5 cm and +-0.5 rad per 20 Hz control step; gripper -1 opens, +1 closes.
* Cameras: offscreen renderer, ``<camera>_image`` observations at ``image_size`` squared.
  `DEFAULT_CAMERAS` exists in every supported task (the PickPlace bins arena has no ``sideview``).
* Render quality (`RenderSettings`): on llvmpipe, MuJoCo's 4096^2 shadow maps, the reflection
  pass and 4x MSAA cost ~3x the rest of a frame. The "fast" preset turns them off. They are applied
  *before* any render context exists: ``<visual><quality offsamples shadowsize/>`` is written into
  the model XML by an `edit_model_xml` override (robosuite runs it on every model it loads,
  including `reset_from_xml_string`), and the shadow/reflection flags of the render scene are set
  each time robosuite (re)creates its offscreen context in ``_reset_internal``. No MjrContext is
  ever recreated by us (doing that once produced ``Default framebuffer is not complete``).

Images from robosuite come out in the OpenGL convention (bottom row first); `frames_from_obs`
returns them upright.

`import robosuite` / `import mujoco` happen lazily inside the functions so that `configure_gl`
can still choose the GL backend (MuJoCo reads ``MUJOCO_GL`` when it is first imported). Importing
this module silences robosuite's known-harmless log lines first (`videopolicy.sim.robosuite.logs`).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from videopolicy.catalog import ROBOSUITE_CAMERAS
from videopolicy.sim.robosuite.logs import quiet_robosuite

quiet_robosuite()  # before any robosuite import: its known-harmless log lines start at import time

__all__ = [
    "DEFAULT_CAMERAS",
    "SUPPORTED_TASKS",
    "ROBOSUITE_ENV_TYPE",
    "RenderSettings",
    "available_cameras",
    "configure_gl",
    "env_args",
    "env_state",
    "frames_from_obs",
    "make_env",
    "model_xml",
    "reseed",
    "reset_to",
    "success",
    "validate_task_cameras",
]

#: robomimic's EnvType.ROBOSUITE_TYPE, stored as ``env_args["type"]``.
ROBOSUITE_ENV_TYPE = 1

#: Tasks with a known camera layout (and scripted experts in `videopolicy.sim.robosuite.experts`).
SUPPORTED_TASKS: tuple[str, ...] = tuple(ROBOSUITE_CAMERAS)

#: One camera triple present in every supported task, so multi-task datasets are uniform.
DEFAULT_CAMERAS: tuple[str, ...] = ("agentview", "frontview", "robot0_eye_in_hand")

_GL_BACKENDS = ("egl", "osmesa")


# --------------------------------------------------------------------------------------------------
# Render settings


_PRESETS: dict[str, dict[str, Any]] = {
    # MuJoCo's own defaults (what robosuite renders with when nothing is changed).
    "default": {"offsamples": 4, "shadowsize": 4096, "shadows": True, "reflections": True},
    # No shadow map at all (shadowsize 0 also frees its memory), no reflection pass, no MSAA.
    "fast": {"offsamples": 0, "shadowsize": 0, "shadows": False, "reflections": False},
}


@dataclass(frozen=True)
class RenderSettings:
    """How camera observations are rendered. Record `as_dict()` with the data; rebuild with `from_dict`.

    ``preset`` fills every field left as ``None``; explicit fields override the preset.

    * ``offsamples``: MSAA samples of the offscreen buffer (``<visual><quality offsamples>``).
    * ``shadowsize``: shadow-map side in texels (``<visual><quality shadowsize>``); 0 = no shadow map.
    * ``shadows``: scene flag ``mjRND_SHADOW``.
    * ``reflections``: scene flag ``mjRND_REFLECTION`` (reflective floor/table materials).
    * ``gl``: the headless GL backend asked for (`configure_gl` may fall back to the other one; both
      are Mesa llvmpipe here and give the same pixels).
    """

    preset: Literal["default", "fast"] = "fast"
    gl: Literal["egl", "osmesa"] = "egl"
    offsamples: int | None = None
    shadowsize: int | None = None
    shadows: bool | None = None
    reflections: bool | None = None

    def __post_init__(self) -> None:
        if self.preset not in _PRESETS:
            raise ValueError(f"RenderSettings.preset must be one of {sorted(_PRESETS)}, got {self.preset!r}")
        if self.gl not in _GL_BACKENDS:
            raise ValueError(f"RenderSettings.gl must be one of {_GL_BACKENDS}, got {self.gl!r}")
        for name, value in _PRESETS[self.preset].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        object.__setattr__(self, "offsamples", int(self.offsamples))
        object.__setattr__(self, "shadowsize", int(self.shadowsize))
        object.__setattr__(self, "shadows", bool(self.shadows))
        object.__setattr__(self, "reflections", bool(self.reflections))
        if self.offsamples < 0 or self.shadowsize < 0:
            raise ValueError(f"offsamples and shadowsize must be >= 0, got {self.offsamples}, {self.shadowsize}")

    def as_dict(self) -> dict[str, Any]:
        """All fields, resolved (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RenderSettings":
        """Inverse of `as_dict` (unknown keys are ignored, so newer metadata still loads)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _apply_quality(xml: str, render: RenderSettings) -> str:
    """Write the render quality into the MJCF ``<visual><quality>`` element (before any context exists)."""
    root = ET.fromstring(xml)
    visual = root.find("visual")
    if visual is None:
        visual = ET.SubElement(root, "visual")
    quality = visual.find("quality")
    if quality is None:
        quality = ET.SubElement(visual, "quality")
    quality.set("offsamples", str(render.offsamples))
    quality.set("shadowsize", str(render.shadowsize))
    return ET.tostring(root, encoding="unicode")


def _apply_scene_flags(env) -> None:
    """Set the shadow/reflection flags on robosuite's offscreen scene (after it (re)creates it)."""
    import mujoco

    ctx = getattr(env.sim, "_render_context_offscreen", None) if env.sim is not None else None
    if ctx is None:
        return
    render: RenderSettings = env._videopolicy_render
    ctx.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(render.shadows)
    ctx.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(render.reflections)


_RENDER_SUBCLASSES: dict[type, type] = {}


def _offscreen(env):
    sim = getattr(env, "sim", None)  # absent while robosuite's __init__ builds the first sim
    return getattr(sim, "_render_context_offscreen", None) if sim is not None else None


def _make_context_current(env) -> None:
    """Bind this env's GL context before it renders: robosuite binds a context only when it creates
    it, and EGL bindings are per thread (Ray may run an actor's calls on different threads)."""
    ctx = _offscreen(env)
    if ctx is not None:
        _bind(ctx)


def _bind(ctx) -> None:
    try:
        ctx.gl_ctx.make_current()
    except Exception as e:  # noqa: BLE001 - EGL's error holds ctypes pointers: Ray cannot pickle it
        raise RuntimeError(f"cannot bind the env's GL context in this thread (is it current in another "
                           f"thread? one thread must own an env): {type(e).__name__}: {e}") from None


def _free_offscreen(env) -> None:
    """Free the sim's render context now, inside its own GL context.

    robosuite's hard reset drops the old sim, but its render context stays alive in a reference cycle
    until some later garbage collection; its ``__del__`` then runs ``mjr_freeContext`` in whatever
    context is current (the new sim's), deleting the new context's framebuffer and textures, which
    have the same GL ids. Every later frame of that episode was garbage (measured: wrong pixels, and
    stepping 8x "faster" since nothing was drawn) until the next reset; a process that allocates a
    lot (loading a policy) triggers it within an episode. Freed here, the late ``__del__`` finds an
    empty MjrContext and a destroyed GL context and does nothing.
    """
    ctx = _offscreen(env)
    if ctx is not None:
        _bind(ctx)
        ctx.con.free()
        ctx.gl_ctx.free()


def _render_subclass(base: type) -> type:
    """A subclass of robosuite task class `base` that applies `RenderSettings` (cached, not registered)."""
    cls = _RENDER_SUBCLASSES.get(base)
    if cls is not None:
        return cls
    from robosuite.environments.base import REGISTERED_ENVS

    def __init__(self, *, videopolicy_render: RenderSettings, **kwargs):
        # Must exist before base.__init__: it loads the model (edit_model_xml) and creates the context.
        self._videopolicy_render = videopolicy_render
        base.__init__(self, **kwargs)

    def edit_model_xml(self, xml_str):
        return _apply_quality(base.edit_model_xml(self, xml_str), self._videopolicy_render)

    def _reset_internal(self):
        base._reset_internal(self)  # creates the offscreen context when the sim is new
        _apply_scene_flags(self)

    def _get_observations(self, force_update=False):
        _make_context_current(self)
        return base._get_observations(self, force_update)

    def _destroy_sim(self):  # close()
        _free_offscreen(self)
        base._destroy_sim(self)

    def _initialize_sim(self, xml_string=None):  # a hard reset replaces the sim without destroying it
        _free_offscreen(self)
        base._initialize_sim(self, xml_string)

    name = f"VideoPolicy_{base.__name__}"
    cls = type(base)(
        name,
        (base,),
        {"__init__": __init__, "edit_model_xml": edit_model_xml, "_reset_internal": _reset_internal,
         "_get_observations": _get_observations, "_destroy_sim": _destroy_sim,
         "_initialize_sim": _initialize_sim,
         "__module__": __name__, "__doc__": f"{base.__name__} with videopolicy render settings."},
    )
    # robosuite's metaclass registers every subclass by name; keep the registry to robosuite's tasks.
    if REGISTERED_ENVS.get(name) is cls:
        del REGISTERED_ENVS[name]
    _RENDER_SUBCLASSES[base] = cls
    return cls


# --------------------------------------------------------------------------------------------------
# GL backend

_GL_CHOSEN: str | None = None

_GL_PROBE = r"""
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><light pos="0 0 1"/><geom size=".1"/></worldbody></mujoco>')
r = mujoco.Renderer(m, 16, 16)
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r.update_scene(d)
img = r.render()
assert img.shape == (16, 16, 3), img.shape
r.close()
print("gl ok")
"""


def _probe_gl(gl: str, timeout: float = 120.0) -> str | None:
    """Try a tiny offscreen render with backend `gl` in a child process; None if it works, else the error."""
    env = dict(os.environ, MUJOCO_GL=gl, PYOPENGL_PLATFORM=gl)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _GL_PROBE], env=env, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{type(e).__name__}: {e}"
    if proc.returncode == 0 and "gl ok" in proc.stdout:
        return None
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return f"exit code {proc.returncode}: " + " | ".join(tail)


def configure_gl(gl: str = "egl", probe: bool = True) -> str:
    """Choose the headless GL backend before mujoco is imported; return the backend in use.

    Sets ``MUJOCO_GL`` and ``PYOPENGL_PLATFORM``. With ``probe`` (default), first checks in a child
    process that an offscreen render works with `gl`; if it does not, tries the other backend
    (EGL <-> OSMesa) and raises RuntimeError naming both attempts if neither works. Idempotent: once
    chosen (or once mujoco is imported), the backend cannot change within the process.
    """
    global _GL_CHOSEN
    if gl not in _GL_BACKENDS:
        raise ValueError(f"gl must be one of {_GL_BACKENDS}, got {gl!r}")
    if _GL_CHOSEN is not None:
        return _GL_CHOSEN
    if "mujoco" in sys.modules:
        current = os.environ.get("MUJOCO_GL", "").lower()
        if current in _GL_BACKENDS:
            _GL_CHOSEN = current
            return current
        raise RuntimeError(
            f"configure_gl({gl!r}) was called after mujoco was imported with MUJOCO_GL={current or '<unset>'}; "
            "call it (or make_env) before anything imports mujoco/robosuite, or export MUJOCO_GL."
        )
    cand = _choose_gl(gl, _probe_gl if probe else (lambda _gl: None))
    os.environ["MUJOCO_GL"] = cand
    os.environ["PYOPENGL_PLATFORM"] = cand
    _GL_CHOSEN = cand
    return cand


def _choose_gl(gl: str, probe: Callable[[str], str | None]) -> str:
    """First backend of (`gl`, the other one) whose `probe` returns None; RuntimeError naming both."""
    errors: list[str] = []
    for cand in [gl] + [g for g in _GL_BACKENDS if g != gl]:
        err = probe(cand)
        if err is None:
            if errors:
                print(f"[videopolicy] {errors[-1]}; falling back to MUJOCO_GL={cand}", file=sys.stderr)
            return cand
        errors.append(f"MUJOCO_GL={cand} failed: {err}")
    raise RuntimeError(
        "no headless OpenGL backend works. Tried " + "; ".join(errors) + ". For EGL install "
        "libegl1 + libegl-mesa0 + libgl1-mesa-dri; for OSMesa `apt-get install -y libosmesa6`."
    )


# --------------------------------------------------------------------------------------------------
# Environment construction


def available_cameras(task: str) -> tuple[str, ...]:
    """Cameras of `task`'s arena plus the robot's (``robot0_*``)."""
    if task not in ROBOSUITE_CAMERAS:
        raise ValueError(f"unsupported robosuite task {task!r}; supported tasks: {', '.join(SUPPORTED_TASKS)}")
    return ROBOSUITE_CAMERAS[task]


def validate_task_cameras(task: str, cameras: Sequence[str]) -> None:
    """Raise ValueError naming the task, the missing camera(s) and the cameras the task has."""
    if isinstance(cameras, str):
        raise TypeError(f"cameras must be a sequence of camera names, not the string {cameras!r}")
    have = available_cameras(task)
    bad = [c for c in cameras if c not in have]
    if bad:
        raise ValueError(
            f"robosuite task {task!r} has no camera {', '.join(map(repr, bad))}; "
            f"its cameras are: {', '.join(have)}"
        )
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"duplicate camera names in {list(cameras)}")


def controller_config(robot: str = "Panda") -> dict:
    """The BASIC composite controller config (arm: OSC_POSE, delta input) for `robot`."""
    import robosuite

    return robosuite.load_composite_controller_config(controller="BASIC", robot=robot)


def _env_kwargs(cameras: Sequence[str], image_size: int, horizon: int, robot: str) -> dict:
    cameras = list(cameras)
    render = bool(cameras)
    return {
        "robots": robot,
        "controller_configs": controller_config(robot),
        "has_renderer": False,
        "has_offscreen_renderer": render,
        "use_camera_obs": render,
        "use_object_obs": True,
        "camera_names": cameras if render else "agentview",
        "camera_heights": int(image_size),
        "camera_widths": int(image_size),
        "camera_depths": False,
        "reward_shaping": False,
        "control_freq": 20,
        "horizon": int(horizon),
        "ignore_done": True,
        "hard_reset": True,
    }


def make_env(
    task: str,
    cameras: Sequence[str],
    image_size: int = 128,
    render: RenderSettings = RenderSettings(),
    seed: int | None = None,
    horizon: int = 500,
    robot: str = "Panda",
):
    """Build a robosuite env (not yet reset by the caller; robosuite already placed the objects once).

    ``cameras=()`` builds an env without any renderer (fast, ~6 ms/step): use it for experts' success
    checks. `seed` seeds robosuite's own generator (object placement, robot init noise) so the
    sequence of episodes produced by successive ``reset()`` calls is reproducible.
    """
    cameras = tuple(cameras)
    validate_task_cameras(task, cameras)
    if int(image_size) <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if cameras:
        configure_gl(render.gl)
    elif "mujoco" not in sys.modules and _GL_CHOSEN is None:
        os.environ.setdefault("MUJOCO_GL", render.gl)
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    from robosuite.environments.base import REGISTERED_ENVS

    if task not in REGISTERED_ENVS:  # catalog and robosuite disagree: robosuite version mismatch
        raise ValueError(f"robosuite has no environment {task!r}")
    cls = _render_subclass(REGISTERED_ENVS[task])
    kwargs = _env_kwargs(cameras, image_size, horizon, robot)
    # robosuite edits the controller config it is given; keep ours pristine for env_args().
    env = cls(videopolicy_render=render, seed=seed, **copy.deepcopy(kwargs))
    env._videopolicy_task = task
    env._videopolicy_kwargs = kwargs
    return env


def reseed(env, seed: int) -> None:
    """Make the next ``env.reset()`` a function of `seed` alone, whatever ran before in `env`.

    robosuite draws everything random at reset (object sizes and placement, robot init noise) from
    the one Generator ``env.rng``, which its placement samplers keep a reference to; so the state of
    that Generator is reset *in place*. Samplers holding another generator are pointed at it too.
    """
    rng = env.rng
    rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state

    def fix(sampler) -> None:
        if sampler is None:
            return
        if hasattr(sampler, "rng") and sampler.rng is not rng:
            sampler.rng = rng
        for sub in getattr(sampler, "samplers", {}).values():
            fix(sub)

    fix(getattr(env, "placement_initializer", None))


def env_args(env, task: str, cameras: Sequence[str], image_size: int, render: RenderSettings) -> dict:
    """robomimic ``env_args`` (``data.attrs["env_args"]``) for `env`, plus our render settings.

    ``env_kwargs`` holds exactly the robosuite constructor arguments (so robomimic's
    ``create_env_from_metadata`` can rebuild the env); ``render_settings`` and ``gl_backend`` are
    extra top-level keys that `make_env(render=RenderSettings.from_dict(...))` needs to reproduce
    the pixels.
    """
    import robosuite

    kwargs = getattr(env, "_videopolicy_kwargs", None)
    if kwargs is None:  # an env not built by make_env: describe it as make_env would have built it
        robot = env.robots[0].name if getattr(env, "robots", None) else "Panda"
        kwargs = _env_kwargs(cameras, image_size, getattr(env, "horizon", 500), robot)
    kwargs = copy.deepcopy(kwargs)
    built_cams = list(kwargs["camera_names"]) if kwargs["use_camera_obs"] else []
    if built_cams != list(cameras):
        raise ValueError(f"env was built with cameras {built_cams}, not {list(cameras)}")
    if built_cams and kwargs["camera_heights"] != int(image_size):
        raise ValueError(f"env renders {kwargs['camera_heights']}px images, not image_size={image_size}")
    return {
        "env_name": task,
        "type": ROBOSUITE_ENV_TYPE,
        "env_version": robosuite.__version__,
        "env_kwargs": kwargs,
        "cameras": list(cameras),
        "image_size": int(image_size),
        "render_settings": render.as_dict(),
        "gl_backend": os.environ.get("MUJOCO_GL", render.gl),
    }


# --------------------------------------------------------------------------------------------------
# Observations, state, replay


class FrameGate:
    """Render the cameras only on the control steps whose frames someone looks at.

    robosuite renders every camera on every control step: at 3 cameras x 64 px on llvmpipe that is
    ~80% of a step. A policy that executes 16 actions per chunk looks at one frame in 16. Closed, the
    gate hands each camera's sensor back its previous image instead of rendering; robosuite's own
    sampling schedule (which sub-step a camera is read at) is untouched, so an open step renders
    exactly the frame it would have rendered with no gate (``tests/evaluate/test_frame_gate.py``).

    `install()` after every ``env.reset()``: a hard reset builds new observables.
    """

    def __init__(self, env, cameras: Sequence[str]):
        self.env, self.cameras = env, tuple(cameras)
        self.open = True

    def install(self) -> None:
        import functools

        for cam in self.cameras:
            observable = self.env._observables[f"{cam}_image"]
            render = observable._sensor
            if getattr(render, "_videopolicy_gate", None) is self:
                continue

            @functools.wraps(render)  # keeps robosuite's sensor attributes (__modality__)
            def gated(obs_cache, render=render, observable=observable):
                if self.open:
                    return render(obs_cache)
                return observable._current_observed_value  # never looked at; not rendered

            gated._videopolicy_gate = self
            observable._sensor = gated


def frames_from_obs(obs: Mapping[str, np.ndarray], cameras: Sequence[str]) -> dict[str, np.ndarray]:
    """``{camera: (H, W, 3) uint8}``, upright (row 0 = top of the image)."""
    from robosuite import macros

    flip = macros.IMAGE_CONVENTION == "opengl"  # robosuite's default: bottom row first
    out: dict[str, np.ndarray] = {}
    for cam in cameras:
        key = f"{cam}_image"
        if key not in obs:
            raise KeyError(f"observation has no {key!r} (was the env made with camera {cam!r}?)")
        img = np.asarray(obs[key])
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        out[cam] = np.ascontiguousarray(img[::-1] if flip else img)
    return out


def env_state(env) -> np.ndarray:
    """Flattened MuJoCo state ``[time, qpos, qvel]`` as robomimic stores in ``states``."""
    return np.asarray(env.sim.get_state().flatten(), dtype=np.float64).copy()


def model_xml(env) -> str:
    """The MJCF of the loaded model (robomimic's ``model_file`` attribute)."""
    return env.sim.model.get_xml()


def reset_to(env, xml: str, state: np.ndarray) -> dict:
    """Restore a recorded episode start the way robomimic does; returns fresh observations.

    Reloads the model from `xml` (robosuite re-applies its path fixes and our render quality),
    resets, then sets the flattened `state` and runs forward.
    """
    env.reset_from_xml_string(xml)
    env.sim.reset()
    env.sim.set_state_from_flattened(np.asarray(state, dtype=np.float64))
    env.sim.forward()
    _sync_controllers(env)
    if hasattr(env, "update_state"):
        env.update_state()
    return env._get_observations(force_update=True)


def _sync_controllers(env) -> None:
    """Re-anchor the arm controllers on the restored joint positions.

    robosuite builds the controllers during reset and OSC keeps the joint configuration of that
    moment as its nullspace posture target. The recorded episode started from a *noisy* reset
    (robot init noise), while `reset_from_xml_string` resets deterministically (no noise), so without
    this the replayed torques differ from the recorded ones from the very first step (measured:
    1.7e-3 rad after one step on Lift; robomimic's own reset_to has the same drift). ``states[0]``
    is the state right after the recorded reset, so its joint positions are exactly that target.
    """
    qpos = env.sim.data.qpos
    for robot in getattr(env, "robots", []):
        composite = getattr(robot, "composite_controller", None)
        for ctrl in getattr(composite, "part_controllers", {}).values():
            if getattr(ctrl, "ref_name", None) is None or not hasattr(ctrl, "update_initial_joints"):
                continue  # grippers etc. have no posture target
            ctrl.update_initial_joints(np.array(qpos[ctrl.qpos_index]))


def success(env) -> bool:
    """The task's own success test (``env._check_success()``)."""
    return bool(env._check_success())
