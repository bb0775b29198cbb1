"""Privileged-state scripted experts for robosuite tasks (demo generation without humans).

Each expert is a small phase machine over object poses that the simulator knows exactly
(``obs["cube_pos"]``, ``env.sim`` for what obs lacks) and emits the 7-D action of the BASIC
composite controller made by `videopolicy.sim.robosuite.env.make_env`:

    a = (dx, dy, dz, dax, day, daz, gripper) in [-1, 1]     OSC_POSE delta; gripper -1 open, +1 closed

Position: ``a[:3] = clip(gain * (target - eef), -1, 1)`` (gain ~10/m: 10 cm error -> full speed,
about 1 cm per 20 Hz step). Orientation: the gripper is kept pointing straight down and turned
about the vertical to the object's yaw (``a[3:6]`` = axis-angle error in the base frame, which for
the Panda in these tasks is the world frame). Targets are recomputed from the live object pose
every step, so a grasp that slips is corrected, and a missed grasp goes back to the approach.

Diversity comes from a per-episode `numpy.random.Generator`: grasp offsets, approach and carry
heights, speed, and a little action noise.

Measured (robosuite 1.5.2, mujoco 3.9.0, Panda, no rendering, 2 seed sets x 30 episodes per task):
Lift 60/60 (~70 steps), Stack 60/60 (~145), PickPlaceCan 60/60 (~231), NutAssemblySquare 60/60
(~260), Door 60/60 (~139); with 3 cameras at 128^2 and the fast render preset 3/3 each.

`run_expert_episode` records an episode in the robomimic convention: ``states[t]``, ``frames[t]``
and ``obs[t]`` are what the policy saw *before* ``actions[t]``; actions are exactly what was sent
to ``env.step`` (already clipped to [-1, 1]).
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar

import numpy as np

from videopolicy.sim.robosuite.env import env_state, frames_from_obs, model_xml, success

__all__ = [
    "EXPERTS",
    "TASK_INSTRUCTIONS",
    "Expert",
    "LiftExpert",
    "StackExpert",
    "PickPlaceCanExpert",
    "NutAssemblySquareExpert",
    "DoorExpert",
    "register",
    "make_expert",
    "run_expert_episode",
    "LOW_DIM_KEYS",
]

#: One instruction per task, in the style of robot-learning datasets. Colours checked in the
#: robosuite 1.5.2 assets: Lift/Stack cubeA use the "redwood" material, Stack cubeB "greenwood",
#: the can is a red Coke can, the square nut is brass ("bmetal") and its peg is the square one.
TASK_INSTRUCTIONS: dict[str, str] = {
    "Lift": "lift the red cube",
    "Stack": "stack the red cube on the green cube",
    "PickPlaceCan": "pick up the can and place it in its bin",
    "NutAssemblySquare": "put the square nut on the square peg",
    "Door": "open the door",
}

#: Low-dimensional observation keys recorded per step (robomimic names), when the env provides them.
LOW_DIM_KEYS: tuple[str, ...] = (
    "robot0_eef_pos",
    "robot0_eef_quat",
    "robot0_gripper_qpos",
    "robot0_joint_pos",
    "object-state",
)

EXPERTS: dict[str, type["Expert"]] = {}


def register(task: str) -> Callable[[type["Expert"]], type["Expert"]]:
    """Class decorator: make an expert class the one used for `task`."""

    def deco(cls: type["Expert"]) -> type["Expert"]:
        cls.task = task
        EXPERTS[task] = cls
        return cls

    return deco


def make_expert(task: str, env, rng: np.random.Generator) -> "Expert":
    if task not in EXPERTS:
        raise ValueError(f"no scripted expert for task {task!r}; experts exist for: {', '.join(EXPERTS)}")
    return EXPERTS[task](env, rng)


# --------------------------------------------------------------------------------------------------
# Geometry helpers


def _wrap(a: float) -> float:
    """Angle wrapped to (-pi, pi]."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def _yaw_of_quat_xyzw(q: np.ndarray) -> float:
    """Yaw (rotation about world z) of an xyzw quaternion; exact for objects resting flat."""
    x, y, z, w = (float(v) for v in q)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _down_mat(closing_yaw: float) -> np.ndarray:
    """Gripper-site orientation pointing straight down, fingers closing along world angle `closing_yaw`.

    The Panda grip site's x axis is the finger closing axis and its z axis the approach direction.
    """
    x = np.array([math.cos(closing_yaw), math.sin(closing_yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def _axis_angle(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis * angle (3,)."""
    cos = (np.trace(r) - 1.0) / 2.0
    angle = math.acos(max(-1.0, min(1.0, cos)))
    if angle < 1e-6:
        return np.zeros(3)
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    s = np.linalg.norm(v)
    if s < 1e-9:  # angle ~ pi: axis from the symmetric part
        w, vecs = np.linalg.eigh((r + r.T) / 2.0)
        return vecs[:, np.argmax(w)] * angle
    return v / s * angle


def _nearest_equivalent(target: float, current: float, period: float) -> float:
    """The angle congruent to `target` modulo `period` that is closest to `current`."""
    return current + _wrap_period(target - current, period)


def _wrap_period(a: float, period: float) -> float:
    return (a + period / 2.0) % period - period / 2.0


# --------------------------------------------------------------------------------------------------
# Base class


class Expert:
    """One scripted expert per episode. Subclasses implement `_policy` (returns a raw action)."""

    task: ClassVar[str] = ""
    #: Action per metre of position error (10 cm error -> full speed, ~1 cm per step).
    POS_GAIN: ClassVar[float] = 10.0
    #: Action per radian of orientation error (+-1 asks for a 0.5 rad step).
    ROT_GAIN: ClassVar[float] = 2.0

    def __init__(self, env, rng: np.random.Generator):
        self.env = env
        self.rng = rng
        self.t = 0
        self.phase = "start"
        self.phase_t = 0
        self.retries = 0
        robot = env.robots[0]
        self._site_id = robot.eef_site_id["right"] if isinstance(robot.eef_site_id, dict) else robot.eef_site_id
        # OSC deltas are read in the arm's base frame (input_ref_frame "base"); targets here are in
        # the world frame. For the Panda on these tasks the two coincide, but rotate anyway.
        try:
            _, base_ori = robot.composite_controller.get_controller_base_pose("right")
            self._base_rot = np.asarray(base_ori, dtype=np.float64).reshape(3, 3)
        except Exception:  # noqa: BLE001 - older/other controller layouts: assume the world frame
            self._base_rot = np.eye(3)
        # per-episode style: speed and action noise
        self.speed = float(rng.uniform(0.8, 1.0))
        self.noise = float(rng.uniform(0.0, 0.03))

    # -- state -------------------------------------------------------------------------------------

    def eef_pos(self) -> np.ndarray:
        return np.array(self.env.sim.data.site_xpos[self._site_id], dtype=np.float64)

    def eef_mat(self) -> np.ndarray:
        return np.array(self.env.sim.data.site_xmat[self._site_id], dtype=np.float64).reshape(3, 3)

    def closing_yaw(self) -> float:
        x = self.eef_mat()[:, 0]
        return math.atan2(x[1], x[0])

    def gripper_opening(self, obs: dict) -> float:
        """Finger separation proxy (m): ~0.077 fully open, ~0.0 closed on nothing."""
        q = np.asarray(obs["robot0_gripper_qpos"], dtype=np.float64)
        return float(q[0] - q[1])

    def set_phase(self, name: str) -> None:
        self.phase = name
        self.phase_t = 0

    # -- action building -------------------------------------------------------------------------------

    def move(
        self,
        target_pos: np.ndarray,
        grip: float,
        closing_yaw: float | None = None,
        max_speed: float = 1.0,
        gain: float | None = None,
        target_mat: np.ndarray | None = None,
    ) -> np.ndarray:
        """Action towards `target_pos` with the gripper pointing down at `closing_yaw` (None: keep
        the current yaw), or at the full orientation `target_mat` (grip-site frame in world)."""
        a = np.zeros(7, dtype=np.float64)
        err = np.asarray(target_pos, dtype=np.float64) - self.eef_pos()
        k = self.POS_GAIN if gain is None else gain
        a[:3] = np.clip(self._base_rot.T @ (k * err), -1.0, 1.0) * min(max_speed, 1.0) * self.speed
        if target_mat is None:
            target_mat = _down_mat(self.closing_yaw() if closing_yaw is None else closing_yaw)
        r_err = target_mat @ self.eef_mat().T  # world-frame rotation still to do
        a[3:6] = np.clip(self.ROT_GAIN * (self._base_rot.T @ _axis_angle(r_err)), -1.0, 1.0)
        a[6] = grip
        return a

    def reached(self, target_pos: np.ndarray, tol: float = 0.01) -> bool:
        return bool(np.linalg.norm(np.asarray(target_pos) - self.eef_pos()) < tol)

    def act(self, obs: dict) -> np.ndarray:
        a = np.asarray(self._policy(obs), dtype=np.float64)
        if self.noise > 0:
            a[:6] += self.rng.normal(0.0, self.noise, size=6)
        self.t += 1
        self.phase_t += 1
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def _policy(self, obs: dict) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------
# Pick and place family


class PickPlaceExpert(Expert):
    """approach -> descend -> close -> lift -> [carry -> lower -> release -> retreat] -> hold.

    Subclasses give the object pose and, optionally, where the object should go.
    """

    #: Yaw symmetry of the grasp (pi/2 for a cube, pi for a handle, None = keep current yaw).
    yaw_period: ClassVar[float | None] = math.pi / 2
    close_steps: ClassVar[int] = 8  # at least; then until the fingers stop moving
    release_steps: ClassVar[int] = 8
    max_retries: ClassVar[int] = 3
    lower_timeout: ClassVar[int] = 60
    lower_speed: ClassVar[float] = 0.6
    lower_gain: ClassVar[float | None] = None
    lower_ki: ClassVar[float] = 0.0

    def __init__(self, env, rng):
        super().__init__(env, rng)
        self.above = float(rng.uniform(0.06, 0.10))  # approach height above the grasp point
        self.grasp_offset = np.array([*rng.uniform(-0.004, 0.004, size=2), 0.0])
        self.lift_h = float(rng.uniform(0.12, 0.18))  # carry height above the table
        self.grasp_yaw_jitter = float(rng.uniform(-0.08, 0.08))
        self._grasp_yaw: float | None = None
        self._xy_int = np.zeros(2)
        self._last_opening: float | None = None

    # hooks -----------------------------------------------------------------------------------------
    def object_pos(self, obs: dict) -> np.ndarray:
        raise NotImplementedError

    def object_yaw(self, obs: dict) -> float | None:
        return None

    def grasp_point(self, obs: dict) -> np.ndarray:
        return self.object_pos(obs) + self.grasp_offset

    def object_goal(self, obs: dict) -> np.ndarray | None:
        """Where the object's reference point should be when released; None = just lift."""
        return None

    def table_z(self) -> float:
        return float(self.env.table_offset[2])

    def closing_target(self, obs: dict) -> float | None:
        yaw = self.object_yaw(obs)
        if yaw is None or self.yaw_period is None:
            return None
        return _nearest_equivalent(yaw + self.grasp_yaw_jitter, self.closing_yaw(), self.yaw_period)

    def holding(self, obs: dict) -> bool:
        """Fingers stopped on something and the object moves with the hand."""
        near = np.linalg.norm(self.object_pos(obs) - self.eef_pos()) < 0.08
        return self.gripper_opening(obs) > 0.008 and near

    # phase machine -----------------------------------------------------------------------------------
    def _policy(self, obs: dict) -> np.ndarray:
        gp = self.grasp_point(obs)
        if self.phase == "start":
            self.set_phase("approach")
        if self.phase == "approach":
            yaw = self.closing_target(obs)
            target = gp + np.array([0, 0, self.above])
            yaw_ok = yaw is None or abs(_wrap(yaw - self.closing_yaw())) < 0.08
            if (self.reached(target, 0.015) and yaw_ok) or self.phase_t > 80:
                self._grasp_yaw = yaw
                self.set_phase("descend")
            return self.move(target, -1.0, yaw)
        if self.phase == "descend":
            yaw = self.closing_target(obs)
            xy_err = np.linalg.norm((gp - self.eef_pos())[:2])
            target = gp.copy()
            if xy_err > 0.02:  # re-centre before going lower
                target[2] = max(gp[2], self.eef_pos()[2])
            if self.reached(gp, 0.008) or self.phase_t > 50:
                self.set_phase("close")
            return self.move(target, -1.0, yaw, max_speed=0.7)
        if self.phase == "close":
            opening = self.gripper_opening(obs)
            settled = self._last_opening is not None and abs(opening - self._last_opening) < 5e-4
            self._last_opening = opening
            if (self.phase_t >= self.close_steps and settled) or self.phase_t > 30:
                self._last_opening = None
                self.set_phase("lift")
            return self.move(gp, 1.0, self._grasp_yaw)
        if self.phase == "lift":
            target = self.eef_pos().copy()
            target[2] = self.table_z() + self.lift_h
            if self.phase_t > 6 and not self.holding(obs):
                return self._retry()
            if abs(target[2] - self.eef_pos()[2]) < 0.02 or self.phase_t > 60:
                self.set_phase("carry" if self.object_goal(obs) is not None else "hold")
            return self.move(target, 1.0, None)
        if self.phase == "carry":
            if not self.holding(obs):
                return self._retry()
            goal = self.object_goal(obs)
            obj = self.object_pos(obs)
            target = self.eef_pos() + (goal - obj)
            target[2] = max(target[2], self.table_z() + self.lift_h)  # stay high while travelling
            if self.ready_to_lower(obs, goal, obj) or self.phase_t > 120:
                self.set_phase("lower")
            return self.move(target, 1.0, self.carry_yaw(obs))
        if self.phase == "lower":
            if not self.holding(obs):
                return self._retry()
            goal = self.object_goal(obs)
            obj = self.object_pos(obs)
            target = self.eef_pos() + (goal - obj)
            if self.lower_ki > 0:  # integral term: the OSC arm leaves a few mm of static error
                self._xy_int = np.clip(self._xy_int + (goal - obj)[:2], -0.2, 0.2)
                target[:2] += self.lower_ki * self._xy_int
            if self.release_ready(obs, goal, obj):
                self.set_phase("release")
            return self.move(target, 1.0, self.carry_yaw(obs), max_speed=self.lower_speed, gain=self.lower_gain)
        if self.phase == "release":
            if self.phase_t >= self.release_steps:
                self.set_phase("retreat")
            return self.move(self.eef_pos(), -1.0, None)
        if self.phase == "retreat":
            target = self.eef_pos().copy()
            target[2] = self.table_z() + self.lift_h + 0.05
            return self.move(target, -1.0, None)
        if self.phase == "give_up":
            return self.move(self.eef_pos() + np.array([0, 0, 0.02]), -1.0, None)
        # hold
        target = self.eef_pos().copy()
        target[2] = self.table_z() + self.lift_h
        return self.move(target, 1.0, None)

    def carry_yaw(self, obs: dict) -> float | None:
        return None

    def ready_to_lower(self, obs: dict, goal: np.ndarray, obj: np.ndarray) -> bool:
        return bool(np.linalg.norm((goal - obj)[:2]) < 0.01)

    def release_ready(self, obs: dict, goal: np.ndarray, obj: np.ndarray) -> bool:
        return bool(abs(goal[2] - obj[2]) < 0.01 or self.phase_t > self.lower_timeout)

    def _retry(self) -> np.ndarray:
        """The object is not in the hand: open and go back to the approach (a few times at most)."""
        self.retries += 1
        self.set_phase("approach" if self.retries <= self.max_retries else "give_up")
        target = self.eef_pos() + np.array([0, 0, 0.03])
        return self.move(target, -1.0, None)


@register("Lift")
class LiftExpert(PickPlaceExpert):
    def object_pos(self, obs):
        return np.asarray(obs["cube_pos"], dtype=np.float64)

    def object_yaw(self, obs):
        return _yaw_of_quat_xyzw(obs["cube_quat"])


@register("Stack")
class StackExpert(PickPlaceExpert):
    def __init__(self, env, rng):
        super().__init__(env, rng)
        self.place_gap = float(rng.uniform(0.004, 0.012))

    def object_pos(self, obs):
        return np.asarray(obs["cubeA_pos"], dtype=np.float64)

    def object_yaw(self, obs):
        return _yaw_of_quat_xyzw(obs["cubeA_quat"])

    def object_goal(self, obs):
        a_half = float(self.env.cubeA.size[2])
        b_half = float(self.env.cubeB.size[2])
        return np.asarray(obs["cubeB_pos"], dtype=np.float64) + np.array([0, 0, a_half + b_half + self.place_gap])


@register("PickPlaceCan")
class PickPlaceCanExpert(PickPlaceExpert):
    yaw_period = None  # a cylinder: any yaw

    def __init__(self, env, rng):
        super().__init__(env, rng)
        self.grasp_offset[2] = float(rng.uniform(0.012, 0.02))  # fingers above the bin floor
        self.lift_h = float(rng.uniform(0.22, 0.26))  # clear the bin walls (bins sit at z 0.8)
        self.drop_h = float(rng.uniform(0.05, 0.07))
        self.goal_jitter = np.array([*rng.uniform(-0.03, 0.03, size=2), 0.0])
        self._goal = np.asarray(env.target_bin_placements[env.object_to_id["can"]], dtype=np.float64)

    def table_z(self):
        return float(self.env.bin2_pos[2])

    def object_pos(self, obs):
        return np.asarray(obs["Can_pos"], dtype=np.float64)

    def object_goal(self, obs):
        return self._goal + self.goal_jitter + np.array([0, 0, self.drop_h + 0.04])


@register("NutAssemblySquare")
class NutAssemblySquareExpert(PickPlaceExpert):
    """Grasp the nut by its handle, turn it square to the peg, hover over the peg, slide it down.

    The nut's hole (half-width 22.8 mm) clears the square peg (half-width 16 mm) by ~7 mm a side,
    so the nut must be within a few mm and ~0.3 rad of the peg's axes before it goes down.
    """

    yaw_period = math.pi  # fingers close across the handle (along the nut's local y), either way
    lower_speed = 0.5
    lower_gain = 20.0
    lower_ki = 0.1
    HANDLE_OFFSET: ClassVar[float] = 0.054  # handle centre from the nut centre, along the nut's x

    def __init__(self, env, rng):
        super().__init__(env, rng)
        self.lift_h = float(rng.uniform(0.19, 0.22))  # nut bottom well above the peg top (z 0.95)
        # where along the handle to grasp: never inwards of its centre, where the fingers would
        # land on the ring's side bar (the handle spans 0.029..0.079 m from the nut centre)
        self.handle_shift = float(rng.uniform(0.0, 0.008))
        # aim below the handle centre: the finger links stop on the table with the pads (which sit
        # 4 mm above the grip site) level with the handle
        self.grasp_offset = np.array([0.0, 0.0, float(rng.uniform(-0.01, -0.005))])
        self._peg = np.array(env.sim.data.body_xpos[env.peg1_body_id], dtype=np.float64)
        self._peg_top = self._peg[2] + 0.1
        self._target_yaw: float | None = None

    def object_pos(self, obs):
        return np.asarray(obs["SquareNut_pos"], dtype=np.float64)

    def nut_yaw(self, obs) -> float:
        return _yaw_of_quat_xyzw(obs["SquareNut_quat"])

    def object_yaw(self, obs):
        return self.nut_yaw(obs) + math.pi / 2  # closing axis = nut's local y

    def grasp_point(self, obs):
        yaw = self.nut_yaw(obs)
        along = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        return self.object_pos(obs) + (self.HANDLE_OFFSET + self.handle_shift) * along + self.grasp_offset

    def holding(self, obs):
        near = np.linalg.norm(self.object_pos(obs) - self.eef_pos()) < 0.1
        return self.gripper_opening(obs) > 0.008 and near

    def yaw_error(self, obs) -> float:
        """Nut yaw minus its target: a multiple of 90 degrees (the peg is axis-aligned) chosen once,
        the nearest one that does not point the handle away from the robot (+x): with the handle
        beyond the peg the hand would have to reach x ~ 0.28 m, at the edge of the Panda's workspace.
        """
        yaw = self.nut_yaw(obs)
        if self._target_yaw is None:
            options = [k * math.pi / 2 for k in (1, 2, 3)]  # handle towards +y, -x, -y
            self._target_yaw = min(options, key=lambda o: abs(_wrap(o - yaw)))
        return _wrap(yaw - self._target_yaw)

    def carry_yaw(self, obs):
        return self.closing_yaw() - self.yaw_error(obs)

    def aligned(self, obs, xy_tol: float) -> bool:
        xy = np.linalg.norm((self._peg - self.object_pos(obs))[:2])
        return bool(xy < xy_tol and abs(self.yaw_error(obs)) < 0.1)

    def object_goal(self, obs):
        goal = self._peg.copy()
        engaged = self.object_pos(obs)[2] < self._peg_top  # the ring is already around the peg
        if self.phase == "lower" and (engaged or self.aligned(obs, 0.005)):
            goal[2] = self.table_z() + 0.01  # nut resting on the table around the peg
        else:
            goal[2] = self._peg_top + 0.025  # hover just above the peg top
        return goal

    def ready_to_lower(self, obs, goal, obj):
        return self.aligned(obs, 0.006) and abs(goal[2] - obj[2]) < 0.03

    def release_ready(self, obs, goal, obj):
        # only once the nut is down around the peg (success needs z < table + 0.05); while it is
        # misaligned `object_goal` keeps it hovering above the peg top instead
        return bool(obj[2] < self.table_z() + 0.035)


@register("Door")
class DoorExpert(Expert):
    """Grasp the lever handle from the front, turn it like a door handle, pull the door open.

    Geometry (robosuite 1.5.2 ``door_lock.xml``): the lever is a horizontal bar 10 cm in front of
    the panel that pivots about the panel normal; the latch only clears the frame once the lever is
    turned by ~1.3 rad (75 deg) either way (measured by forcing the latch joint), so a press from
    above cannot open it. The hand therefore points at the door (approach axis = -normal), fingers
    closing vertically around the 4 cm-high bar, and turns about its own approach axis -- which is
    the lever's pivot axis -- while its position follows the lever's arc. Then it pulls along the
    tangent of the door's swing (hinge angle > 0.3 rad is success), turning the hand with the door.
    """

    TURN: ClassVar[float] = 1.4  # lever angle to reach (rad); the latch clears at ~1.3

    def __init__(self, env, rng):
        super().__init__(env, rng)
        m = env.sim.model
        prefix = env.door.naming_prefix
        self._hinge_j = m.joint_name2id(f"{prefix}hinge")
        self._latch_j = m.joint_name2id(f"{prefix}latch_joint")
        self._door_b = m.body_name2id(f"{prefix}door")
        self._lever_g = m.geom_name2id(f"{prefix}handle")
        self.standoff = float(rng.uniform(0.07, 0.10))  # pre-grasp distance in front of the lever
        self.grasp_along = float(rng.uniform(0.015, 0.035))  # from the lever centre towards its end
        self.turn_rate = float(rng.uniform(0.04, 0.06))  # rad per step
        self.pull_step = float(rng.uniform(0.08, 0.1))  # pull target ahead of the hand (m)
        self._pull_mat = np.eye(3)
        self._pull_hinge0 = 0.0
        self._theta = 0.0
        self._turn_sign = 0.0
        self._frame: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    # geometry --------------------------------------------------------------------------------------
    def hinge_angle(self) -> float:
        return float(self.env.sim.data.qpos[self.env.hinge_qpos_addr])

    def latch_angle(self) -> float:
        return float(self.env.sim.data.qpos[self.env.handle_qpos_addr])

    def door_normal(self) -> np.ndarray:
        """Unit horizontal normal of the panel on the lever's (the robot's) side."""
        d = self.env.sim.data
        n = np.array(d.xmat[self._door_b], dtype=np.float64).reshape(3, 3)[:, 1]
        n[2] = 0.0
        n /= np.linalg.norm(n)
        lever = np.asarray(d.geom_xpos[self._lever_g])
        return n if np.dot(lever - d.xpos[self._door_b], n) > 0 else -n

    def lever_frame(self):
        """(pivot centre in the lever plane, normal, unit lever direction pivot->end, lever centre)."""
        d = self.env.sim.data
        n = self.door_normal()
        anchor = np.asarray(d.xanchor[self._latch_j], dtype=np.float64)
        centre = np.asarray(d.geom_xpos[self._lever_g], dtype=np.float64)
        pivot = anchor + np.dot(centre - anchor, n) * n
        u = centre - pivot
        u /= np.linalg.norm(u)
        return pivot, n, u, centre

    @staticmethod
    def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
        axis = axis / np.linalg.norm(axis)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)

    def grasp_mat(self, n: np.ndarray) -> np.ndarray:
        """Hand pointing at the door (site z = -n), fingers closing vertically (site x = +-z)."""
        z = -n
        cands = []
        for xs in (1.0, -1.0):
            x = np.array([0.0, 0.0, xs])
            cands.append(np.stack([x, np.cross(z, x), z], axis=1))
        cur = self.eef_mat()
        return min(cands, key=lambda r: np.linalg.norm(_axis_angle(r @ cur.T)))

    def _feasible_turn_sign(self, n: np.ndarray) -> float:
        """Keep the preferred turn direction unless it would drive the last wrist joint (which
        turns the hand about its approach axis, i.e. about n) into its limit; the latch opens
        either way."""
        m, d = self.env.sim.model, self.env.sim.data
        robot = self.env.robots[0]
        j7 = m.joint_name2id(robot.robot_joints[-1])
        q7 = float(d.qpos[m.jnt_qposadr[j7]])
        lo, hi = m.jnt_range[j7]
        align = float(np.dot(d.xaxis[j7], n))
        margin = 0.15

        def ok(sign: float) -> bool:
            q = q7 + align * sign * self.TURN
            return lo + margin < q < hi - margin

        if ok(self._turn_sign) or not ok(-self._turn_sign):
            return self._turn_sign
        return -self._turn_sign

    # phases ----------------------------------------------------------------------------------------
    def _policy(self, obs):
        if self.phase == "start":
            pivot, n, u, centre = self.lever_frame()
            grasp = centre + self.grasp_along * u
            # preferred turn: the lever's free end downwards (the rotation about n that lowers it)
            self._turn_sign = -1.0 if np.cross(n, u)[2] > 0 else 1.0
            self._frame = (pivot, n, grasp, self.grasp_mat(n))
            self.set_phase("approach")
        pivot, n, grasp, mat0 = self._frame
        if self.phase == "approach":
            target = grasp + self.standoff * n
            err = np.linalg.norm(_axis_angle(mat0 @ self.eef_mat().T))
            if (self.reached(target, 0.015) and err < 0.1) or self.phase_t > 120:
                self.set_phase("insert")
            return self.move(target, -1.0, target_mat=mat0)
        if self.phase == "insert":
            if self.reached(grasp, 0.008) or self.phase_t > 50:
                self.set_phase("close")
            return self.move(grasp, -1.0, target_mat=mat0, max_speed=0.6)
        if self.phase == "close":
            if self.phase_t >= 10:
                self._turn_sign = self._feasible_turn_sign(n)
                self.set_phase("turn")
            return self.move(grasp, 1.0, target_mat=mat0)
        if self.phase == "turn":
            self._theta = min(self._theta + self.turn_rate, self.TURN)
            rot = self._rot(n, self._turn_sign * self._theta)
            target = pivot + rot @ (grasp - pivot)
            if abs(self.latch_angle()) > 1.3 or self.phase_t > 80:
                # from here on, hold whatever hand orientation the turn actually reached (the lever
                # may lag the hand) and only turn it with the door
                self._pull_mat = self.eef_mat()
                self._pull_hinge0 = self.hinge_angle()
                self.set_phase("pull")
            return self.move(target, 1.0, target_mat=rot @ mat0)
        if self.phase == "pull":
            hinge = np.asarray(self.env.sim.data.xanchor[self._hinge_j], dtype=np.float64)
            r = self.eef_pos() - hinge
            r[2] = 0.0
            tangent = np.array([-r[1], r[0], 0.0]) / max(np.linalg.norm(r), 1e-6)
            if np.dot(tangent, n) < 0:
                tangent = -tangent
            swing = (self.hinge_angle() - self._pull_hinge0) * np.sign(np.cross(r, tangent)[2])
            rot = self._rot(np.array([0.0, 0.0, 1.0]), swing)
            target = self.eef_pos() + self.pull_step * tangent
            return self.move(target, 1.0, target_mat=rot @ self._pull_mat)
        return self.move(self.eef_pos(), 1.0, None)


# --------------------------------------------------------------------------------------------------
# Episode recording


def _env_cameras(env) -> list[str]:
    if not getattr(env, "use_camera_obs", False):
        return []
    names = env.camera_names
    return [names] if isinstance(names, str) else list(names)


def run_expert_episode(
    env,
    expert: Expert,
    max_steps: int,
    *,
    obs: dict | None = None,
    cameras: list[str] | tuple[str, ...] | None = None,
    post_success_steps: int = 10,
    low_dim_keys: tuple[str, ...] = LOW_DIM_KEYS,
) -> dict:
    """Roll `expert` out in `env` from its current state (call ``env.reset()`` first).

    Stops `post_success_steps` steps after the task first succeeds (so the last frames show the
    success) or after `max_steps` steps. ``obs`` is the observation of the current state (e.g. what
    ``env.reset()`` returned); without it the observation is recomputed.

    Returns ``{"success", "actions" (N,7) float32, "states" (N,S) float64, "frames" {camera:
    (N,H,W,3) uint8}, "obs" {key: (N,...)}, "steps" N, "first_success_step", "model_xml",
    "cpu_s"}``; index t of states/frames/obs is the state *before* ``actions[t]``. ``success`` is
    the task's success test on the final state.
    """
    import time

    cams = _env_cameras(env) if cameras is None else list(cameras)
    if obs is None:
        obs = env._get_observations(force_update=True)
    xml = model_xml(env)
    actions: list[np.ndarray] = []
    states: list[np.ndarray] = []
    frames: dict[str, list[np.ndarray]] = {c: [] for c in cams}
    low: dict[str, list[np.ndarray]] = {k: [] for k in low_dim_keys if k in obs}
    first_success: int | None = None
    c0 = time.process_time()
    for t in range(int(max_steps)):
        states.append(env_state(env))
        for cam, img in frames_from_obs(obs, cams).items():
            frames[cam].append(img)
        for k in low:
            low[k].append(np.array(obs[k], dtype=np.float64))
        action = np.clip(np.asarray(expert.act(obs), dtype=np.float32), -1.0, 1.0)
        obs, _, _, _ = env.step(action)
        actions.append(action)
        if first_success is None and success(env):
            first_success = t + 1
        if first_success is not None and (t + 1) - first_success >= post_success_steps:
            break
    n = len(actions)
    return {
        "success": bool(success(env)),
        "actions": np.asarray(actions, dtype=np.float32).reshape(n, -1),
        "states": np.asarray(states, dtype=np.float64),
        "frames": {c: np.asarray(v, dtype=np.uint8) for c, v in frames.items()},
        "obs": {k: np.asarray(v) for k, v in low.items()},
        "steps": n,
        "first_success_step": first_success,
        "model_xml": xml,
        "cpu_s": time.process_time() - c0,
    }
