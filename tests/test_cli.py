"""The entry scripts' shared arguments: --set overrides go into the typed config before validation,
with the file's errors and hints; flags that change the config are overrides too (no config is changed
after validation); every jobs/*.py has a main(argv). No Ray."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from videopolicy import cli
from videopolicy.sweep.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "sweeps/smoke.yaml")


def _args(*argv: str) -> argparse.Namespace:
    p = cli.parser(None)
    cli.add_config_args(p)
    return p.parse_args(list(argv))


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines main(); runs nothing
    return module


def test_set_overrides_every_row_after_its_own_overrides():
    sweep = cli.load_sweep_args(_args("--sweep", SMOKE, "--set", "train.stage2.steps=7",
                                      "--set", "clips.video_horizon=16", "--set", "eval.tasks=[Lift]"))
    for _, cfg in sweep.rows:
        assert cfg.train.stage2.steps == 7 and cfg.clips.video_horizon == 16 and cfg.eval.tasks == ["Lift"]
    assert sweep.base.train.stage2.steps == 7
    assert sweep.row("joint").train.method == "joint"  # the row's own override stays where --set is silent


def test_bad_sets_get_the_files_errors_all_at_once(capsys):
    with pytest.raises(SystemExit) as e:
        cli.load_row(_args("--sweep", SMOKE, "--set", "train.stage1.stepz=3", "--set", "train.method=joint_",
                           "--set", "nokey", "--set", "eval.episodes_per_task=many"))
    msg = str(e.value.code)
    assert msg.startswith("error: 4 config error(s)")
    assert "--set train.stage1.stepz: unknown key (did you mean 'steps'?)" in msg
    assert "--set train.method: 'joint_' is not one of" in msg and "did you mean 'joint'?" in msg
    assert "--set 'nokey': expected KEY=VALUE" in msg
    assert "--set eval.episodes_per_task: expected an integer, got str 'many'" in msg
    with pytest.raises(SystemExit) as e:  # values are validated with the config, per row, as in the file
        cli.load_row(_args("--sweep", SMOKE, "--set", "train.stage2.steps=0"))
    assert "rows[0](two_stage).train.stage2.steps: must be > 0" in str(e.value.code)


def test_a_flag_that_changes_the_config_is_an_override_not_a_mutation(tmp_path):
    """--skip-bad is --set demos.skip_bad=true: the same configs and data keys, decided before validation."""
    by_flag = cli.load_sweep_args(_args("--sweep", SMOKE), extra={"demos": {"skip_bad": True}})
    by_set = cli.load_sweep_args(_args("--sweep", SMOKE, "--set", "demos.skip_bad=true"))
    plain = cli.load_sweep_args(_args("--sweep", SMOKE))
    assert all(cfg.demos.skip_bad for _, cfg in by_flag.rows) and not plain.row("two_stage").demos.skip_bad
    keys = [{r.name: r.stages for r in build_plan(s, str(tmp_path)).rows} for s in (by_flag, by_set, plain)]
    assert keys[0] == keys[1] and keys[0]["two_stage"]["data"] != keys[2]["two_stage"]["data"]


def test_every_job_has_a_main_and_the_sweep_driver_plans_in_process(tmp_path, capsys):
    for name in ("sweep_ablations", "train_stage", "build_clips", "evaluate", "generate_demos", "import_checkpoint",
                 "local_cluster", "nightly"):
        assert callable(_job(name).main), name
    rc = _job("sweep_ablations").main(["--sweep", SMOKE, "--store", str(tmp_path), "--plan",
                                       "--set", "train.stage2.steps=3"])
    out = capsys.readouterr().out
    assert rc == 0 and "two_stage, all, 3 steps" in out and "shared: stage1/" in out


def _evaluation(d: Path, seeds: list[int], scene: str = "default", **eval_settings) -> Path:
    """An evaluation's output as success_curve reads it: results.csv and evaluation.json (a Lift evaluation)."""
    d.mkdir(parents=True)
    pd.DataFrame({"suite": "robosuite", "task": "Lift", "scene": scene, "index": range(len(seeds)), "seed": seeds,
                  "episode_key": [f"robosuite/Lift/{scene}/{i}" for i in range(len(seeds))],
                  "policy_id": f"checkpoint:policy:{d.name}", "status": "done",
                  "success": [i % 2 == 0 for i in range(len(seeds))]}).to_csv(d / "results.csv", index=False)
    ev = {"tasks": ["Lift"], "workers": 2, "video_episodes": 0, "sampler_steps": 10, "max_steps": 400, **eval_settings}
    (d / "evaluation.json").write_text(json.dumps({
        "protocol": {"hash": "x", "tasks": ["Lift"], "cameras": ["agentview"], "extra": [["step_limits", [["Lift", 400]]]]},
        "eval": ev, "execute_steps": 16, "policy_seed": 0}))
    return d


def test_success_curve_pairs_its_points_and_refuses_other_rollout_settings(tmp_path):
    """Unseen-scene points must be the same episodes under the same rollout settings; a recorded video or
    another worker count is not another setting, another sampler is; training-scene points stand apart."""
    curve = _job("success_curve").main
    a = _evaluation(tmp_path / "a", [7, 8, 9, 10])
    b = _evaluation(tmp_path / "b", [7, 8, 9, 10], video_episodes=2, workers=1)
    demos = _evaluation(tmp_path / "demos", [1, 2], scene="demo", video_episodes=3)
    out = tmp_path / "curve"
    assert curve(["--out", str(out), "--point", f"100={a}", "--point", f"200={b}", "--point", f"200={demos}"]) == 0
    table = pd.read_csv(out / "curve.csv")
    assert table[["step", "scenes", "n", "successes"]].values.tolist() == [
        [100, "unseen", 4, 2], [200, "demos", 2, 1], [200, "unseen", 4, 2]]
    other_sampler = _evaluation(tmp_path / "c", [7, 8, 9, 10], sampler_steps=20)
    msg = curve(["--out", str(tmp_path / "x"), "--point", f"100={a}", "--point", f"200={other_sampler}"])
    assert isinstance(msg, str) and "under other settings" in msg and "['eval']" in msg
    other_seeds = _evaluation(tmp_path / "d", [7, 8, 9, 11])
    msg = curve(["--out", str(tmp_path / "y"), "--point", f"100={a}", "--point", f"200={other_seeds}"])
    assert isinstance(msg, str) and "not paired" in msg
