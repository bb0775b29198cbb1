"""The entry scripts' shared arguments: --set overrides go into the typed config before validation,
with the file's errors and hints; flags that change the config are overrides too (no config is changed
after validation); every jobs/*.py has a main(argv). No Ray."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

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
