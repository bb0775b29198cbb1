"""Config loading: typos, wrong types and impossible values are all reported at once, with key paths."""

import textwrap

import pytest

from videopolicy.config import ConfigError, config_from_dict, load_sweep, to_dict


def test_defaults_are_valid_and_round_trip():
    cfg = config_from_dict({})
    assert cfg.clips.frames_per_camera == 8  # paper: 32 steps at stride 4
    again = config_from_dict({k: v for k, v in to_dict(cfg).items()})
    assert again == cfg


def test_all_errors_reported_at_once_with_paths_and_hints():
    with pytest.raises(ConfigError) as e:
        config_from_dict({
            "clips": {"video_horizn": 16, "image_size": "big"},
            "demos": {"demos_per_task": 1.5, "render": {"preset": "fasst"}},
            "ray": {"adress": "auto"},
        })
    msg = str(e.value)
    assert len(e.value.errors) == 5, msg
    assert "clips.video_horizn: unknown key (did you mean 'video_horizon'?)" in msg
    assert "clips.image_size: expected an integer, got str 'big'" in msg
    assert "demos.demos_per_task: expected an integer" in msg
    assert "demos.render.preset: 'fasst' is not one of ['default', 'fast'] (did you mean 'fast'?)" in msg
    assert "ray.adress: unknown key (did you mean 'address'?)" in msg


def test_impossible_values():
    with pytest.raises(ConfigError) as e:
        config_from_dict({
            "clips": {"video_horizon": -16, "frame_stride": 4},
            "demos": {"cameras": [], "demos_per_task": 0},
        })
    msg = str(e.value)
    assert "clips.video_horizon: must be >= 0" in msg
    assert "demos.cameras: at least one camera is needed" in msg
    assert "demos.demos_per_task: must be > 0" in msg


def test_horizon_must_be_multiple_of_stride():
    with pytest.raises(ConfigError, match="not a multiple of frame_stride"):
        config_from_dict({"clips": {"video_horizon": 18, "frame_stride": 4}})
    assert config_from_dict({"clips": {"video_horizon": 0}}).clips.frames_per_camera == 0


def test_camera_the_suite_lacks_and_unknown_task():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"demos": {"tasks": ["Lift", "PickPlaceCan", "Lfit"],
                                    "cameras": ["agentview", "sideview", "agentveiw"]}})
    msg = str(e.value)
    assert "demos.tasks[2]: unknown task 'Lfit' (did you mean 'Lift'?)" in msg
    # PickPlace's bins arena has no sideview; the nearest valid name is suggested
    assert "task 'PickPlaceCan' has no camera 'sideview'" in msg
    assert "no camera 'agentveiw' (did you mean 'agentview'?)" in msg


def test_sweep_rows_validated_with_row_names(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent("""
        name: t
        base: {demos: {tasks: [Lift, Stack]}}
        rows:
          - {name: a, overrides: {clips: {task_subset: half}}}
          - {name: b, overrides: {clips: {video_horizon: 17}}}
          - {name: a, overrides: {}}
    """))
    with pytest.raises(ConfigError) as e:
        load_sweep(p)
    msg = str(e.value)
    assert "rows[1](b).clips.video_horizon" in msg
    assert "duplicate row name 'a'" in msg


def test_smoke_sweep_file_is_valid():
    sweep = load_sweep("sweeps/smoke.yaml")
    names = [n for n, _ in sweep.rows]
    assert names[0] == "two_stage" and "half_tasks" in names
    assert sweep.row("half_tasks").clips.task_subset == "half"
    assert sweep.row("horizon_16").clips.frames_per_camera == 4
    # rows only change what they override
    assert sweep.row("half_tasks").demos == sweep.base.demos
    assert sweep.pipeline_check  # its tables say they are not results


def test_pipeline_check_must_be_a_boolean(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: t\npipeline_check: yes please\nbase: {demos: {tasks: [Lift]}}\n")
    with pytest.raises(ConfigError, match="pipeline_check: expected true or false, got 'yes please'"):
        load_sweep(p)
    p.write_text("name: t\nbase: {demos: {tasks: [Lift]}}\n")
    assert load_sweep(p).pipeline_check is False


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_sweep(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("base: {demos: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep(p)


def test_the_cpu_preset_brings_its_recipe_under_the_files_own_values():
    """model.preset: cpu fills the training/sampling recipe (models/config.py RECIPES) where the file is
    silent; a value the file gives wins; other presets keep the plain defaults."""
    from videopolicy.config import config_from_dict

    cpu = config_from_dict({"model": {"preset": "cpu", "sampler": {"head_steps": 4}, "edm": {"p_mean": 0.5}}}).model
    assert (cpu.sampler.mode, cpu.sampler.head_steps, cpu.sampler.feature_sigma) == ("fast", 4, 700.0)
    assert (cpu.edm.action_sigma, cpu.edm.p_mean, cpu.edm.feature_noise) == ("independent", 0.5, False)
    assert (cpu.vae.fit_steps, cpu.adapter.zero_init_residual, cpu.action_head.step_embedding) == (150, True, "own")
    assert tuple(cpu.resolve().unet.block_out_channels) == (32, 32, 32, 32)
    tiny = config_from_dict({"model": {"preset": "tiny"}}).model
    assert (tiny.edm.action_sigma, tiny.sampler.mode, tiny.vae.fit_steps) == ("tied", "joint", 0)
