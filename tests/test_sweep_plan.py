"""The planner: rows -> content-addressed stages, shared stages merged, paired evaluation enforced, cost
estimated; no Ray, no simulator (planning must be instant and possible anywhere)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from videopolicy.config import ConfigError, load_sweep
from videopolicy.sweep.estimate import estimate
from videopolicy.sweep.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, rows, **base) -> Path:
    doc = yaml.safe_load((ROOT / "sweeps/smoke.yaml").read_text())
    doc["rows"] = rows
    for k, v in base.items():
        doc["base"][k] = {**doc["base"].get(k, {}), **v}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_smoke_plan_merges_shared_stages(tmp_path):
    plan = build_plan(load_sweep(ROOT / "sweeps/smoke.yaml"), str(tmp_path))
    rows = {r.name: r.stages for r in plan.rows}
    # two_stage and half_tasks share one stage-1 model (trained on all tasks); their heads differ
    assert rows["two_stage"]["stage1"] == rows["half_tasks"]["stage1"]
    assert rows["two_stage"]["stage2"] != rows["half_tasks"]["stage2"]
    assert rows["half_tasks"]["data"] != rows["two_stage"]["data"]
    assert plan.nodes[rows["two_stage"]["stage1"]].rows == ["two_stage", "half_tasks"]
    # rows with the same data config share one data stage; horizons get their own stage 1
    assert len({rows[r]["data"] for r in ("two_stage", "joint", "no_video_tuning", "dp_resnet")}) == 1
    assert len({rows[r]["stage1"] for r in ("two_stage", "horizon_16", "horizon_0")}) == 3
    assert "stage1" not in rows["joint"] and "stage1" not in rows["no_video_tuning"]
    assert set(rows["scripted_expert"]) == {"eval"} and set(rows["random"]) == {"eval"}
    assert len({s["eval"] for s in rows.values()}) == len(rows)  # one evaluation per policy
    # a topological order: every stage's inputs come before it
    order = list(plan.nodes)
    assert all(order.index(d) < order.index(sid) for sid, n in plan.nodes.items() for d in n.deps)


def test_keys_change_exactly_with_what_changes_the_output(tmp_path):
    base = build_plan(load_sweep(ROOT / "sweeps/smoke.yaml"), str(tmp_path)).row("two_stage").stages
    again = build_plan(load_sweep(ROOT / "sweeps/smoke.yaml"), str(tmp_path)).row("two_stage").stages
    assert base == again
    logging_only = _write(tmp_path, [{"name": "two_stage", "overrides": {"train": {"stage1": {"log_every": 1,
                                                                                           "checkpoint_every": 3}},
                                                                       "eval": {"workers": 4}}}])
    assert build_plan(load_sweep(logging_only), str(tmp_path)).row("two_stage").stages == base
    longer_head = _write(tmp_path, [{"name": "two_stage", "overrides": {"train": {"stage2": {"steps": 21}}}}])
    s = build_plan(load_sweep(longer_head), str(tmp_path)).row("two_stage").stages
    assert s["stage1"] == base["stage1"] and s["data"] == base["data"]
    assert s["stage2"] != base["stage2"] and s["eval"] != base["eval"]


def test_rows_on_different_episodes_are_refused(tmp_path):
    p = _write(tmp_path, [{"name": "a", "overrides": {}},
                          {"name": "b", "overrides": {"eval": {"episodes_per_task": 3}}}])
    with pytest.raises(ConfigError) as e:
        build_plan(load_sweep(p), str(tmp_path))
    assert "rows[b].eval" in str(e.value) and "paired" in str(e.value)


def test_a_row_whose_clips_make_an_impossible_model_is_refused_at_plan_time(tmp_path):
    p = _write(tmp_path, [{"name": "a", "overrides": {}},
                          {"name": "small", "overrides": {"clips": {"image_size": 96}}}])
    with pytest.raises(ConfigError) as e:
        build_plan(load_sweep(p), str(tmp_path))
    assert "rows[small].model: image_size" in str(e.value) and "rows[a]" not in str(e.value)


def test_bad_sweep_files_get_clear_errors(tmp_path):
    p = _write(tmp_path, [{"name": "a", "overrides": {"train": {"method": "two_stages"}}},
                          {"name": "b", "overrides": {"eval": {"suite": "libero"}}}])
    with pytest.raises(ConfigError) as e:
        load_sweep(p)
    msg = str(e.value)
    assert "rows[0](a).train.method: 'two_stages' is not one of" in msg and "did you mean 'two_stage'" in msg
    assert "rows[1](b).eval.suite: unknown suite 'libero'" in msg and "did you mean 'libero10'" in msg


def test_paper_plan_shares_stage1_and_prints_its_saving(tmp_path):
    sweep = load_sweep(ROOT / "sweeps/robocasa_paper.yaml", check_files=False)
    plan = build_plan(sweep, str(tmp_path))
    cost = estimate(plan)
    shared = [n for n in plan.nodes.values() if n.kind == "stage1"]
    assert len(shared) == 1 and shared[0].rows == ["two_stage", "half_tasks"]
    s1 = cost.per_stage[shared[0].id]
    assert s1 > 10  # full svd-xt U-Net, 50k steps x 16 GPUs x 2 clips: tens of A100-hours at least
    assert cost.separately == pytest.approx(cost.planned + s1, rel=1e-6)  # only stage 1 is shared
    out = subprocess.run([sys.executable, str(ROOT / "jobs/sweep_ablations.py"), "--sweep",
                          str(ROOT / "sweeps/robocasa_paper.yaml"), "--plan", "--store", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"shared: {shared[0].id} serves rows ['two_stage', 'half_tasks']" in out.stdout
    assert f"x{cost.saving:.2f}" in out.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_sweep_loads_and_plans(path, tmp_path):
    """A sweep file nobody has run yet (e.g. a draft study) still has to be a valid, plannable sweep."""
    sweep = load_sweep(path, check_files=False)
    plan = build_plan(sweep, str(tmp_path))
    assert [name for name, _ in sweep.rows] == [r.name for r in plan.rows]
    assert all("eval" in r.stages for r in plan.rows), "a row without an evaluation"


def test_a_rows_subset_without_training_leaves_no_earlier_curves(tmp_path):
    """The report directory is shared by every `--rows` subset of a sweep; an eval-only subset (the sanity
    rows) once exported the curves an earlier subset had written there, naming stages it did not run."""
    from videopolicy.sweep.report import learning_curves

    plan = build_plan(load_sweep(ROOT / "sweeps/smoke.yaml"), str(tmp_path), rows=["scripted_expert", "random"])
    out = tmp_path / "report"
    out.mkdir()
    (out / "curves.csv").write_text("stage,step,loss\nstage2/earlier,1,0.5\n")
    assert learning_curves(plan, out).empty
    assert not (out / "curves.csv").exists()
