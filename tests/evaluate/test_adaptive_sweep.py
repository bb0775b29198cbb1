"""Adaptive evaluation end to end: a small sweep (planner + executor, real Ray actors, real robosuite)
with the sanity rows random (the reference) and scripted_expert, `eval.adaptive` on. The expert must
stop after a handful of episodes; the random reference runs its whole budget; the table shows it.

Cheap episodes as in test_evaluate_robosuite.py: Lift only, 64 px, two cameras, fast render preset,
a 100-step limit."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from videopolicy.config import AdaptiveConfig, load_sweep
from videopolicy.report.table import ablation_table
from videopolicy.sweep.execute import Executor, row_results
from videopolicy.sweep.plan import build_plan

SWEEP = {
    "name": "adaptive_test",
    "base": {
        "demos": {"tasks": ["Lift"], "cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 64,
                  "render": {"preset": "fast", "gl": "egl"}},
        "clips": {"image_size": 64},
        "eval": {"tasks": ["Lift"], "episodes_per_task": 8, "max_steps": 100, "workers": 2, "video_episodes": 0,
                 "adaptive": {"enabled": True, "decision": "better", "min_episodes_per_task": 2}},
    },
    "rows": [{"name": "random", "overrides": {"train": {"method": "random"}}},
             {"name": "scripted_expert", "overrides": {"train": {"method": "scripted_expert"}}}],
}


def test_expert_against_random_stops_early_in_a_sweep(ray_cluster, tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    plan = build_plan(load_sweep(path), str(tmp_path / "store"))
    expert_eval = plan.nodes[plan.row("scripted_expert").stages["eval"]]
    assert expert_eval.reference == plan.row("random").stages["eval"]  # waits for the reference's outcomes
    outcomes = Executor(plan).run()
    assert all(o.status == "done" for o in outcomes.values()), outcomes
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("stage ")]
    random_key = plan.nodes[plan.row("random").stages["eval"]].key
    assert f"eval {random_key}: episodes 8/8, success so far 0/8" in out  # the evaluation's own progress
    assert progress[0].startswith(f"stage 1/2: eval {plan.nodes[plan.row('random').stages['eval']].key} rows random")
    assert progress[-1].startswith(f"stage 2/2: {expert_eval.id} done in ")  # the adaptive row after its reference
    results = row_results(plan)
    rnd = results[results.row == "random"]
    assert len(rnd) == 8 and (rnd.status == "done").all() and rnd.success.sum() == 0
    exp = results[results.row == "scripted_expert"]
    done = exp[exp.status == "done"]
    # every expert success against a random failure: decided after 7 pairs ('better', alpha 0.05)
    assert len(done) <= 7 and (exp.status == "not_run").sum() == 8 - len(done)
    assert sorted(done["index"]) == list(range(len(done)))  # a prefix of the episode list
    manifest = plan.stage_dir(expert_eval).manifest()
    assert manifest["adaptive"]["stop"]["reason"] == "decided: better"
    stop = json.loads((Path(plan.stage_dir(expert_eval).path) / "adaptive.json").read_text())["stop"]
    assert stop["rounds"] == len(done)
    table = ablation_table(results, "random", adaptive=AdaptiveConfig(enabled=True, decision="better"))
    line = table.numeric.set_index("row").loc["scripted_expert"]
    assert line["stopped_early"] and line["episodes_not_run"] == 8 - len(done) and line["av_lo"] > 0
    assert line["n_pairs"] == len(done)  # the fixed-sample delta is paired on the episodes both ran
