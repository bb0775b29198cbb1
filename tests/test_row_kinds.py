"""The row-kind registry is the one place a row kind (train.method) is decoded: the config's allowed
values, the planner's stages, the trainer's mode, the sanity policy and bounds all come from it; and
loading and planning a sweep stays free of torch. No Ray, no simulator."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pandas as pd
import pytest
import yaml

from videopolicy.config import ConfigError, TrainConfig, load_sweep
from videopolicy.row_kinds import ROW_KINDS
from videopolicy.sweep.plan import build_plan
from videopolicy.sweep.stages import STAGE_KINDS, EvalStage, data_key
from videopolicy.train.checkpoint import TrainSetupError
from videopolicy.train.launch import TrainSpec, check_run

ROOT = Path(__file__).resolve().parents[1]


def _sweep(tmp_path, rows) -> Path:
    doc = yaml.safe_load((ROOT / "sweeps/smoke.yaml").read_text())
    doc["rows"] = rows
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_the_configs_allowed_kinds_are_the_registry():
    method_type = typing.get_type_hints(TrainConfig)["method"]
    assert typing.get_args(method_type) == tuple(ROW_KINDS)


@pytest.mark.parametrize("name", list(ROW_KINDS))
def test_every_registered_kind_validates_and_plans_its_stages(name, tmp_path):
    kind = ROW_KINDS[name]
    sweep = load_sweep(_sweep(tmp_path, [{"name": "r", "overrides": {"train": {"method": name}}}]))
    cfg = sweep.row("r")
    assert cfg.train.kind is kind
    plan = build_plan(sweep, str(tmp_path / "store"))
    stages = plan.row("r").stages
    trained = [k for k in stages if k not in ("data", "eval")]
    assert trained == list(kind.train_stages)
    assert ("data" in stages) == kind.trains and "eval" in stages
    for sid, node in plan.nodes.items():  # typed stages: the DAG's edges are the stages' inputs
        assert type(node) is STAGE_KINDS[node.kind] and node.id == sid
        assert node.deps == tuple(s.id for s in node.inputs.values()) and all(d in plan.nodes for d in node.deps)
    if kind.trains:
        assert plan.nodes[stages["data"]].key == data_key(cfg)
        assert plan.nodes[stages["eval"]].inputs["policy"].id == stages["stage2"]
        assert cfg.model_config().kind == kind.model_kind
        assert TrainSpec("stage2", cfg, "x", "n", "s").mode == kind.train_mode
    else:
        evaluation = plan.nodes[stages["eval"]]
        assert isinstance(evaluation, EvalStage) and evaluation.deps == ()
        assert evaluation.policy.sanity == kind.sanity_policy and evaluation.cost() == 0.0
        assert kind.expected_success is not None


@pytest.mark.parametrize("name", list(ROW_KINDS))
def test_training_stages_are_checked_against_the_kind(name, tmp_path):
    kind = ROW_KINDS[name]
    cfg = load_sweep(_sweep(tmp_path, [{"name": "r", "overrides": {"train": {"method": name}}}])).row("r")
    for stage in ("stage1", "stage2"):
        init = str(tmp_path) if kind.has_stage1 and stage == "stage2" else None
        if stage in kind.train_stages:
            check_run(cfg, stage, init)
        else:
            with pytest.raises(TrainSetupError, match=f"has no stage {stage[-1]}"):
                check_run(cfg, stage, init)
    if kind.trains and not kind.has_stage1:
        with pytest.raises(TrainSetupError, match="init_from is only for two_stage"):
            check_run(cfg, "stage2", str(tmp_path))


def test_a_misspelt_kind_gets_the_nearest_registered_name(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_sweep(_sweep(tmp_path, [{"name": "r", "overrides": {"train": {"method": "no_video_tunning"}}}]))
    msg = str(e.value)
    assert "rows[0](r).train.method: 'no_video_tunning' is not one of" in msg
    assert "did you mean 'no_video_tuning'" in msg and all(k in msg for k in ROW_KINDS)


def test_sanity_bounds_follow_the_rows_kind_not_its_name():
    from videopolicy.sweep.nightly import compare

    df = pd.DataFrame({"row": ["expert"] * 4 + ["scripted_expert"] * 4, "status": "done",
                       "success": [True, False, False, False] * 2})
    verdicts = {v.row: v for v in compare(df, None, kinds={"expert": "scripted_expert"})}
    assert "sanity row out of bounds" in verdicts["expert"].problem  # named freely, checked by its kind
    assert "sanity row out of bounds" in verdicts["scripted_expert"].problem  # no kinds given: by its name
    assert compare(df, None, kinds={"expert": "two_stage", "scripted_expert": "joint"})[0].problem is None


def test_loading_and_planning_a_sweep_imports_no_torch(tmp_path):
    code = ("import sys\nfrom videopolicy.config import load_sweep\nfrom videopolicy.sweep.plan import build_plan\n"
            f"build_plan(load_sweep({str(ROOT / 'sweeps/smoke.yaml')!r}), {str(tmp_path)!r})\n"
            "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'ray') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
