"""Rendering only the observed steps (`FrameGate`) changes no frame the policy sees, and skips the rest.

Real robosuite Lift envs with the study's 3 cameras at 64 px and one fixed sequence of actions: the
reference is robosuite's own ``env.step`` on a plain env (every camera rendered every step); the
evaluation's `RobosuiteSimEnv` observes only the last step of each 16-step chunk (the worker's pattern).
"""

from __future__ import annotations

import numpy as np
import pytest

from videopolicy.evaluate.worker import SimWorker, _Episode
from videopolicy.sim.suites.base import EpisodeSpec, StepResult

CAMERAS = ("robot0_eye_in_hand", "agentview", "frontview")
STEPS, CHUNK = 64, 16


def _env():
    from videopolicy.sim.robosuite import env as rse
    from videopolicy.sim.robosuite.suite import RobosuiteSimEnv

    return RobosuiteSimEnv("Lift", CAMERAS, 64, rse.RenderSettings(preset="fast", gl="egl"), max_steps=400)


def _counting_renders(sim) -> dict:
    calls, render = {"n": 0}, sim.render

    def counted(*a, **k):
        calls["n"] += 1
        return render(*a, **k)

    sim.render = counted
    return calls


def _reference(plain, seed: int, actions: np.ndarray):
    """robosuite's own reset and step, no gate: every camera rendered on robosuite's schedule."""
    from videopolicy.sim.robosuite.env import frames_from_obs, reseed

    reseed(plain, seed)  # what RobosuiteSimEnv.reset does before env.reset()
    plain.reset()
    calls = _counting_renders(plain.sim)  # a hard reset builds a new sim: count after the reset
    frames, states = [], []
    for i, a in enumerate(actions):
        raw = plain.step(a)[0]
        if (i + 1) % CHUNK == 0:
            frames.append(np.stack([frames_from_obs(raw, CAMERAS)[c] for c in CAMERAS]))
        states.append(np.concatenate([raw["robot0_eef_pos"], raw["cube_pos"]]))
    return frames, np.stack(states), calls["n"]


def _gated(env, seed: int, actions: np.ndarray):
    """The evaluation's env observing only the last step of each chunk (the worker's pattern)."""
    env.reset(EpisodeSpec("robosuite", "Lift", "default", 0, seed))
    calls = _counting_renders(env.env.sim)
    frames, states = [], []
    for i, a in enumerate(actions):
        observe = (i + 1) % CHUNK == 0
        r = env.step(a, observe=observe)
        if observe:
            assert set(r.obs) == set(CAMERAS)
            frames.append(np.stack([r.obs[c] for c in CAMERAS]))
        else:
            assert r.obs == {}, "an unobserved step returned frames"
        states.append(np.concatenate([env._raw_obs["robot0_eef_pos"], env._raw_obs["cube_pos"]]))
    return frames, np.stack(states), calls["n"]


@pytest.fixture(scope="module")
def envs():
    from videopolicy.sim.robosuite import env as rse

    gated = _env()
    plain = rse.make_env("Lift", CAMERAS, 64, rse.RenderSettings(preset="fast", gl="egl"), seed=0, horizon=500)
    yield gated, plain
    gated.close()
    plain.close()


def test_gated_frames_equal_robosuites_own_and_rendering_is_skipped(envs):
    env, plain = envs
    actions = np.random.default_rng(0).uniform(-1, 1, (STEPS, 7))  # inside [-1, 1]: the env's clip is a no-op
    ref, s_ref, n_ref = _reference(plain, 11, actions)
    gated, s_gated, n_gated = _gated(env, 11, actions)
    assert len(gated) == len(ref) == STEPS // CHUNK
    for k, (a, b) in enumerate(zip(ref, gated)):
        assert a.dtype == np.uint8 and a.std() > 0, "a blank frame proves nothing"
        np.testing.assert_array_equal(a, b, err_msg=f"frame after step {(k + 1) * CHUNK} differs with the gate")
    np.testing.assert_array_equal(s_ref, s_gated)  # same scene, same physics
    assert n_ref == STEPS * len(CAMERAS)
    assert n_gated == (STEPS // CHUNK) * len(CAMERAS), f"{n_gated} renders for {STEPS // CHUNK} observed steps"
    assert not np.array_equal(gated[0], gated[1]), "the frames should move between chunks"


def test_the_gate_survives_a_reset_with_another_scene(envs):
    env, plain = envs
    actions = np.random.default_rng(1).uniform(-1, 1, (2 * CHUNK, 7))
    _gated(env, 5, actions)  # an earlier episode in the same env
    ref, *_ = _reference(plain, 7, actions)
    gated, _, n_gated = _gated(env, 7, actions)
    for a, b in zip(ref, gated):
        np.testing.assert_array_equal(a, b)
    assert n_gated == 2 * len(CAMERAS)


class _Recorder:
    """Records which steps the worker asks to observe (the choice under test, not a simulator)."""

    def __init__(self):
        self.observed: list[bool] = []

    def step(self, action, observe=True):
        self.observed.append(observe)
        return StepResult({"cam": np.full((2, 2, 3), len(self.observed), np.uint8)} if observe else {}, False)


@pytest.mark.parametrize("record_video", [False, True])
def test_the_worker_observes_the_last_step_of_each_chunk(record_video):
    worker = object.__new__(SimWorker)
    worker.execute_steps = 16
    ep = _Episode(EpisodeSpec("robosuite", "Lift", "default", 0, 0), ("cam",), limit=400, record_video=record_video)
    env = _Recorder()
    worker._execute(env, ep, np.zeros((32, 7), np.float32))
    assert len(env.observed) == 16
    assert env.observed == ([True] * 16 if record_video else [False] * 15 + [True])
    assert ep.frames["cam"][0, 0, 0] == 16  # the policy's next input is the chunk's last frame
    assert len(ep.video) == (16 if record_video else 0)
