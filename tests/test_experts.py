"""Scripted experts and the robosuite env factory, against real robosuite 1.5.2 (EGL rendering).

Budgets are in simulator steps, never wall-clock. The whole module costs ~1.5 CPU-minutes on the
2-core CI box: 5 tasks x 5 state-only expert episodes (~6-15 ms/step) plus one replay each, and a
few rendered steps with 3 cameras at 128x128.
"""

import os

# tests/conftest.py sets these too; repeated here so this module also works on its own
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from videopolicy.sim.robosuite.experts import (  # noqa: E402
    EXPERTS,
    TASK_INSTRUCTIONS,
    make_expert,
    run_expert_episode,
)
from videopolicy.sim.robosuite import env as rse  # noqa: E402

# task -> step budget per episode (measured mean episode lengths incl. 10 post-success steps:
# Lift ~70, Stack ~140, PickPlaceCan ~230, NutAssemblySquare ~255, Door ~140)
BUDGET = {"Lift": 150, "Stack": 300, "PickPlaceCan": 400, "NutAssemblySquare": 450, "Door": 300}
EPISODES = 5
MIN_SUCCESS = 4


def test_registry_covers_every_supported_task():
    assert set(EXPERTS) == set(rse.SUPPORTED_TASKS) == set(BUDGET)
    for task in rse.SUPPORTED_TASKS:
        assert TASK_INSTRUCTIONS[task] and TASK_INSTRUCTIONS[task] == TASK_INSTRUCTIONS[task].strip()
        assert set(rse.DEFAULT_CAMERAS) <= set(rse.available_cameras(task)), task
        assert EXPERTS[task].task == task


def test_make_env_rejects_a_camera_the_task_lacks_before_building():
    with pytest.raises(ValueError) as e:
        rse.make_env("PickPlaceCan", ["agentview", "sideview"])
    msg = str(e.value)
    assert "PickPlaceCan" in msg and "'sideview'" in msg
    for cam in rse.available_cameras("PickPlaceCan"):
        assert cam in msg
    with pytest.raises(ValueError, match="Lift"):
        rse.make_env("Lift", ["no_such_cam"])
    with pytest.raises(ValueError, match="supported tasks"):
        rse.make_env("NoSuchTask", [])


def test_render_settings_presets_and_round_trip():
    fast, default = rse.RenderSettings(), rse.RenderSettings("default")
    assert fast.preset == "fast" and fast.gl == "egl"
    assert (fast.offsamples, fast.shadowsize, fast.shadows, fast.reflections) == (0, 0, False, False)
    assert (default.offsamples, default.shadowsize, default.shadows, default.reflections) == (4, 4096, True, True)
    custom = rse.RenderSettings("fast", shadowsize=1024)
    assert custom.shadowsize == 1024 and custom.offsamples == 0
    for rs in (fast, default, custom):
        d = json.loads(json.dumps(rs.as_dict()))
        assert rse.RenderSettings.from_dict(d) == rs
    with pytest.raises(ValueError):
        rse.RenderSettings("pretty")
    with pytest.raises(ValueError):
        rse.RenderSettings(gl="wgl")


def test_gl_backend_falls_back_and_names_both_attempts():
    fails = {"egl": "EGL init failed", "osmesa": "libOSMesa missing"}
    assert rse._choose_gl("egl", lambda gl: None) == "egl"
    assert rse._choose_gl("egl", lambda gl: fails[gl] if gl == "egl" else None) == "osmesa"
    assert rse._choose_gl("osmesa", lambda gl: fails[gl] if gl == "osmesa" else None) == "egl"
    with pytest.raises(RuntimeError) as e:
        rse._choose_gl("egl", lambda gl: fails[gl])
    assert "MUJOCO_GL=egl" in str(e.value) and "MUJOCO_GL=osmesa" in str(e.value)
    assert "EGL init failed" in str(e.value) and "libOSMesa missing" in str(e.value)


@pytest.mark.parametrize("task", sorted(BUDGET))
def test_expert_succeeds_and_its_actions_replay(task):
    env = rse.make_env(task, (), seed=0)
    try:
        model_cams = {env.sim.model.camera_id2name(i) for i in range(env.sim.model.ncam)}
        assert model_cams == set(rse.available_cameras(task)), "camera table drifted from robosuite"
        episodes, wins = [], 0
        for i in range(EPISODES):
            seed = 1000 + i
            rse.reseed(env, seed)
            obs = env.reset()
            ep = run_expert_episode(env, make_expert(task, env, np.random.default_rng(seed)), BUDGET[task], obs=obs)
            n = ep["steps"]
            assert ep["actions"].shape == (n, 7) and ep["actions"].dtype == np.float32
            assert np.all(np.abs(ep["actions"]) <= 1.0)
            assert ep["states"].shape[0] == n and ep["states"].dtype == np.float64
            assert all(len(v) == n for v in ep["obs"].values()) and "robot0_eef_pos" in ep["obs"]
            assert ep["frames"] == {}  # no cameras
            if ep["success"]:
                wins += 1
                assert n == min(ep["first_success_step"] + 10, BUDGET[task])  # stops 10 steps after success
                episodes.append(ep)
        assert wins >= MIN_SUCCESS, f"{task}: expert succeeded {wins}/{EPISODES}"

        # replay: restore the recorded start, send the recorded actions, succeed again
        ep = episodes[0]
        rse.reset_to(env, ep["model_xml"], ep["states"][0])
        np.testing.assert_array_equal(rse.env_state(env)[1:], ep["states"][0][1:])
        ok = False
        for t, a in enumerate(ep["actions"]):
            if t < 10:  # controllers re-anchored: the first steps track the recording closely
                np.testing.assert_allclose(rse.env_state(env)[1:], ep["states"][t][1:], atol=1e-3)
            env.step(a)
            ok = ok or rse.success(env)
        assert ok, f"{task}: replaying the recorded actions from states[0] did not succeed"
    finally:
        env.close()


@pytest.fixture(scope="module")
def rendered():
    """One Lift scene rendered with the fast and with the default settings (same seed)."""
    out = {}
    for preset in ("fast", "default"):
        render = rse.RenderSettings(preset)
        env = rse.make_env("Lift", rse.DEFAULT_CAMERAS, 128, render, seed=0)
        rse.reseed(env, 7)
        obs = env.reset()
        ctx = env.sim._render_context_offscreen
        import mujoco

        q = env.sim.model.vis.quality
        out[preset] = {
            "obs": obs,
            "state": rse.env_state(env),
            "quality": (int(q.offsamples), int(q.shadowsize)),
            "flags": (int(ctx.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW]),
                      int(ctx.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION])),
            "args": rse.env_args(env, "Lift", rse.DEFAULT_CAMERAS, 128, render),
            "render": render,
        }
        if preset == "fast":  # a short recorded episode with cameras
            out["episode"] = run_expert_episode(
                env, make_expert("Lift", env, np.random.default_rng(7)), 12, obs=obs)
        env.close()
    return out


def test_frames_are_uint8_upright_and_recorded_per_step(rendered):
    obs = rendered["fast"]["obs"]
    frames = rse.frames_from_obs(obs, rse.DEFAULT_CAMERAS)
    assert list(frames) == list(rse.DEFAULT_CAMERAS)
    for cam, img in frames.items():
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8, cam
        np.testing.assert_array_equal(img, obs[f"{cam}_image"][::-1])  # robosuite's are bottom-up
    # known features of the Lift start scene, upright: agentview has the white table at the bottom
    # and the robot/wall at the top; the wrist camera has its fingers at the bottom, table above
    band = 128 // 5
    agent = frames["agentview"].astype(float).mean(-1)
    assert agent[-band:].mean() > agent[:band].mean() + 50
    wrist = frames["robot0_eye_in_hand"].astype(float).mean(-1)
    assert wrist[:band].mean() > wrist[-band:].mean() + 50

    ep = rendered["episode"]
    n = ep["steps"]
    assert n == 12 and ep["actions"].shape == (12, 7)
    for cam in rse.DEFAULT_CAMERAS:
        assert ep["frames"][cam].shape == (n, 128, 128, 3) and ep["frames"][cam].dtype == np.uint8
        np.testing.assert_array_equal(ep["frames"][cam][0], frames[cam])  # frame t is before action t


def test_fast_and_default_render_settings_are_applied_and_differ(rendered):
    fast, default = rendered["fast"], rendered["default"]
    assert fast["quality"] == (0, 0) and fast["flags"] == (0, 0)
    assert default["quality"] == (4, 4096) and default["flags"] == (1, 1)
    np.testing.assert_array_equal(fast["state"], default["state"])  # same scene ...
    diffs = []
    for cam in rse.DEFAULT_CAMERAS:
        a = rse.frames_from_obs(fast["obs"], [cam])[cam].astype(float)
        b = rse.frames_from_obs(default["obs"], [cam])[cam].astype(float)
        diffs.append(np.abs(a - b).mean())
    assert max(diffs) > 0.3, diffs  # ... rendered differently (no reflections, no MSAA)
    assert max(diffs) < 30, diffs  # but still the same picture


def test_env_args_is_robomimic_style_and_json(rendered):
    args = json.loads(json.dumps(rendered["fast"]["args"]))
    assert args["env_name"] == "Lift" and args["type"] == 1
    kw = args["env_kwargs"]
    assert kw["camera_names"] == list(rse.DEFAULT_CAMERAS)
    assert kw["camera_heights"] == kw["camera_widths"] == 128
    assert kw["control_freq"] == 20 and kw["ignore_done"] is True and kw["use_object_obs"] is True
    arm = kw["controller_configs"]["body_parts"]["right"]
    assert kw["controller_configs"]["type"] == "BASIC"
    assert arm["type"] == "OSC_POSE" and arm["input_type"] == "delta"
    assert rse.RenderSettings.from_dict(args["render_settings"]) == rendered["fast"]["render"]
    assert args["gl_backend"] in ("egl", "osmesa")
    with pytest.raises(ValueError):
        env = type("E", (), {"_videopolicy_kwargs": kw})()
        rse.env_args(env, "Lift", ["agentview"], 128, rendered["fast"]["render"])


def test_frames_survive_garbage_collection_after_a_hard_reset():
    """A hard reset used to leave the old sim's render context to the garbage collector, whose late
    ``__del__`` deleted the live context's framebuffer: later frames of the episode were garbage."""
    import gc

    env = rse.make_env("Lift", ["agentview"], 64, rse.RenderSettings("fast"), seed=0, horizon=50)
    try:
        def frames_after(collect: bool) -> list:
            rse.reseed(env, 3)
            env.reset()  # hard reset: a new sim and render context replace the old ones
            if collect:
                gc.collect()
            return [env.step(np.zeros(7))[0]["agentview_image"].copy() for _ in range(3)]

        reference = frames_after(collect=False)
        for ref, got in zip(reference, frames_after(collect=True)):
            np.testing.assert_array_equal(got, ref)
    finally:
        env.close()
