"""Anytime-valid (adaptive) evaluation: the sequential test's error level under continuous monitoring,
early stopping of a clearly better row, a row equal to the reference running to the maximum, and a
resumed evaluation continuing the same test. The stopping logic runs on the real SQLite ledger with
recorded outcomes (a scripted expert: always succeeds; random: always fails), leasing and completing
episodes the way the runner's driver does, without Ray or the simulator."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from videopolicy.evaluate.ledger import Ledger, RunKey
from videopolicy.evaluate.runner import AdaptiveRun, AdaptiveSchedule, not_run_records, results_frame
from videopolicy.evaluate.sequential import log_evalue_at_zero, sequential_test
from videopolicy.evaluate.stats import mcnemar_exact, paired_difference
from videopolicy.sim.suites.base import EpisodeSpec

TASKS = ("Lift", "Stack", "PickPlaceCan")


def _specs(n: int = 10) -> list[EpisodeSpec]:  # the runner's list order: task-major
    return [EpisodeSpec.make("robosuite", t, "default", i, 0) for t in TASKS for i in range(n)]


def _null_crossings(decision: str, sequences: int = 2000, n: int = 300, seed: int = 7) -> tuple[int, int]:
    """How many null sequences the anytime-valid test ever decides, and how many a fixed-sample McNemar
    test at 0.05 checked after every 10th pair (peeking) does, on the same sequences."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.9, size=(sequences, 1))  # both rows succeed with the same p (the null)
    a, b = rng.random((sequences, n)) < p, rng.random((sequences, n)) < p
    d = a.astype(np.int8) - b.astype(np.int8)
    ever = (log_evalue_at_zero(d, decision) >= math.log(1 / 0.05)).any(axis=1)
    wins, losses = np.cumsum(d > 0, axis=1), np.cumsum(d < 0, axis=1)
    peek = np.zeros(sequences, bool)
    for t in range(9, n, 10):  # exact two-sided McNemar p = min(1, 2 P(Bin(m, 1/2) <= min(w, l)))
        w, lose = wins[:, t], losses[:, t]
        peek |= np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(w, lose), w + lose, 0.5)) <= 0.05
    w0, lose0 = int(w[0]), int(lose[0])
    assert mcnemar_exact(w0, lose0) == pytest.approx(min(1.0, 2 * stats.binom.cdf(min(w0, lose0), w0 + lose0, 0.5)))
    return int(ever.sum()), int(peek.sum())


@pytest.mark.parametrize("decision", ["either", "better"])
def test_error_level_holds_under_continuous_monitoring(decision):
    decided, peeking = _null_crossings(decision)
    # deterministic (fixed seed): 2000 null sequences of 300 pairs, checked after EVERY pair
    assert decided <= 0.05 * 2000, decided
    # the same sequences, peeked at with a fixed-sample test: far above the level (the p-hacking we avoid)
    assert peeking > 2 * 0.05 * 2000, peeking


def test_a_clear_difference_is_decided_within_a_handful_of_pairs():
    res = sequential_test([1] * 9, [0] * 9, alpha=0.05, decision="either")
    assert res.decided and res.direction == "better" and res.decided_at <= 9
    assert res.lo > 0  # the anytime-valid interval excludes 0 as well
    worse = sequential_test([0] * 9, [1] * 9, alpha=0.05, decision="worse")
    assert worse.decided and worse.direction == "worse" and worse.hi < 0
    same = sequential_test([1, 0] * 20, [1, 0] * 20)
    assert not same.decided and same.lo < 0 < same.hi and same.delta == 0


def _drive(ledger: Ledger, run: RunKey, sched: AdaptiveSchedule, outcome, owner: str = "o",
           max_episodes: int | None = None, ttl_s: float = 120.0) -> int:
    """The driver's loop without Ray: lease released episodes, complete them with `outcome(spec)`, ask the
    schedule between rounds. Stops after `max_episodes` completions (a crash) or when finished."""
    ran = 0
    while True:
        active = sched.allowed()
        while active and (spec := ledger.lease(run, owner, active, ttl_s)) is not None:
            if max_episodes is not None and ran >= max_episodes:
                return ran  # the crash: this lease is left behind, reclaimed by the next run
            assert ledger.complete(run, owner, spec.key, outcome(spec), 10, None, None, 1.0, {})
            ran += 1
        if sched.advance():
            return ran


def _reference(outcome, specs) -> dict[str, bool]:
    return {s.key: outcome(s) for s in specs}


def expert(spec):
    return True


def random_policy(spec):
    return False


def test_a_clearly_better_row_stops_early_and_the_ledger_says_where_and_why(tmp_path):
    specs = _specs(10)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    run = RunKey("expert", 0, "p")
    ledger.add(run, specs)
    sched = AdaptiveSchedule(specs, AdaptiveRun(_reference(random_policy, specs), 0.05, "either", 3, 10, "random"),
                             ledger, run)
    ran = _drive(ledger, run, sched, expert)
    stop = ledger.stop_record(run)
    assert stop["reason"] == "decided: better" and stop["rounds"] == 3  # 3 episodes per task (the minimum)
    assert ran == 9 and stop["info"]["episodes_run"] == 9 and stop["info"]["lo"] > 0
    recs = ledger.records(run)
    df = results_frame(recs + not_run_records(specs, run, recs))
    assert (df["status"] == "done").sum() == 9 and (df["status"] == "not_run").sum() == 21
    # the run prefix is the same for every task: the first 3 episodes of each
    assert sorted(df[df.status == "done"].groupby("task")["index"].max()) == [2, 2, 2]
    # comparisons stay paired on the episodes both rows ran
    ref = df.assign(policy_id="random", success=False, status="done")
    d = paired_difference(pd.concat([df.assign(row="expert"), ref.assign(row="random")]), "expert", "random")
    assert d.n_pairs == 9 and d.delta == 1.0 and d.dropped == 0


def test_a_row_equal_to_the_reference_runs_to_the_maximum(tmp_path):
    specs = _specs(10)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    run = RunKey("same", 0, "p")
    ledger.add(run, specs)

    def alternating(spec):  # succeeds on even episodes: the reference does exactly the same
        return spec.index % 2 == 0

    sched = AdaptiveSchedule(specs, AdaptiveRun(_reference(alternating, specs), 0.05, "either", 3, 10, "ref"),
                             ledger, run)
    assert _drive(ledger, run, sched, alternating) == 30
    stop = ledger.stop_record(run)
    assert stop["reason"] == "max_episodes" and stop["rounds"] == 10 and not stop["info"]["decided"]
    assert ledger.counts(run)["pending"] == 0


def test_a_resumed_evaluation_continues_the_same_test(tmp_path):
    specs = _specs(10)
    ref = _reference(random_policy, specs)

    def mostly(spec):  # better, but not at once: fails the first two episodes of every task
        return spec.index >= 2

    # uninterrupted
    whole = Ledger(tmp_path / "whole.sqlite")
    run = RunKey("p", 0, "h")
    whole.add(run, specs)
    _drive(whole, run, AdaptiveSchedule(specs, AdaptiveRun(ref, 0.05, "either", 1, 10, "r"), whole, run), mostly)
    expected = whole.stop_record(run)
    assert expected["reason"] == "decided: better" and 3 < expected["rounds"] < 10
    # crashed after 7 episodes (mid-round), then resumed by a new driver on the same ledger
    path = tmp_path / "ledger.sqlite"
    first = Ledger(path)
    first.add(run, specs)
    assert _drive(first, run, AdaptiveSchedule(specs, AdaptiveRun(ref, 0.05, "either", 1, 10, "r"), first, run),
                  mostly, owner="crashed", max_episodes=7) == 7
    first.close()
    again = Ledger(path)
    again.add(run, specs)  # what evaluate() does on a re-run: keeps every record
    _drive(again, run, AdaptiveSchedule(specs, AdaptiveRun(ref, 0.05, "either", 1, 10, "r"), again, run), mostly,
           owner="resumed", ttl_s=0.0)  # the crashed run's lease has gone stale
    got = again.stop_record(run)
    assert (got["rounds"], got["reason"]) == (expected["rounds"], expected["reason"])
    assert got["info"]["n_pairs"] == expected["info"]["n_pairs"]  # nothing counted twice
    assert got["info"]["e_value"] == pytest.approx(expected["info"]["e_value"])
    recs = again.records(run)
    assert len(recs) == 3 * got["rounds"] == len({r["episode_key"] for r in recs})
    # a finished run stays stopped: a third driver runs nothing
    sched = AdaptiveSchedule(specs, AdaptiveRun(ref, 0.05, "either", 1, 10, "r"), again, run)
    assert sched.allowed() == [] and _drive(again, run, sched, mostly) == 0


# ---------------------------------------------------------------------------------------------------
# plan, table, replay


def _sweep(tmp_path, adaptive: dict | None, rows=("random", "scripted_expert")):
    import yaml

    from videopolicy.config import load_sweep

    doc = {"name": "t", "base": {"demos": {"tasks": ["Lift"]}, "eval": {"tasks": ["Lift"], "episodes_per_task": 8}},
           "rows": [{"name": r, "overrides": {"train": {"method": r}}} for r in rows]}
    if adaptive is not None:
        doc["base"]["eval"]["adaptive"] = adaptive
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(doc))
    return load_sweep(p)


def test_the_plan_pairs_adaptive_rows_with_the_reference(tmp_path):
    from videopolicy.config import ConfigError
    from videopolicy.sweep.plan import build_plan

    fixed = build_plan(_sweep(tmp_path, None), str(tmp_path))
    plan = build_plan(_sweep(tmp_path, {"enabled": True}), str(tmp_path))
    ref, row = plan.row("random").stages["eval"], plan.row("scripted_expert").stages["eval"]
    assert ref == fixed.row("random").stages["eval"]  # the reference runs its fixed budget: same stage
    assert row != fixed.row("scripted_expert").stages["eval"]  # its output depends on the stopping rule
    assert plan.nodes[row].reference == ref and ref in plan.nodes[row].deps
    assert list(plan.nodes).index(ref) < list(plan.nodes).index(row)  # topological
    other = build_plan(_sweep(tmp_path, {"enabled": True, "alpha": 0.01}), str(tmp_path))
    assert other.row("scripted_expert").stages["eval"] != row
    with pytest.raises(ConfigError, match="not planned"):
        build_plan(_sweep(tmp_path, {"enabled": True, "reference": "nope"}), str(tmp_path))


def _frame(rows: dict, n: int = 10, tasks=("Lift", "Stack")) -> pd.DataFrame:
    """rows: name -> (outcome(task, i), episodes run per task)."""
    recs = []
    for row, (outcome, run) in rows.items():
        for t in tasks:
            for i in range(n):
                recs.append({"row": row, "suite": "robosuite", "task": t, "scene": "default", "index": i, "seed": i,
                             "episode_key": f"robosuite/{t}/default/{i}", "policy_id": row, "policy_seed": 0,
                             "protocol_hash": "p", "status": "done" if i < run else "not_run",
                             "success": bool(outcome(t, i)) if i < run else False, "steps": 1,
                             "failure_reason": None, "video_path": None, "attempts": 1, "wall_s": 1.0,
                             "instruction": None})
    return pd.DataFrame(recs)


def test_the_table_shows_episodes_run_stops_and_the_anytime_valid_interval():
    from videopolicy.config import AdaptiveConfig
    from videopolicy.report.table import ablation_table

    df = _frame({"random": (lambda t, i: False, 10), "expert": (lambda t, i: True, 4),
                 "same": (lambda t, i: False, 10)})
    table = ablation_table(df, "random", adaptive=AdaptiveConfig(enabled=True), episode_hours={"expert": 0.5})
    num = table.numeric.set_index("row")
    assert num.loc["expert", "episodes_run"] == 8 and num.loc["expert", "episodes_not_run"] == 12
    assert num.loc["expert", "stopped_early"] and num.loc["expert", "stop_reason"] == "early: decided better"
    assert num.loc["expert", "av_lo"] > 0 and num.loc["expert", "gpu_h_saved"] == 6.0
    assert num.loc["expert", "n_pairs"] == 8 and num.loc["expert", "infra_errors"] == 0  # not_run: not infra
    assert num.loc["same", "stop_reason"] == "ran to max (undecided)" and num.loc["same", "av_lo"] < 0 < num.loc["same", "av_hi"]
    cells = table.cells.set_index("row")
    assert cells.loc["expert", "episodes run"] == "8/20" and "anytime-valid" in table.caption
    assert "episodes run" not in ablation_table(df[df.status == "done"].query("row != 'expert'"), "random").cells


def test_replay_of_a_fixed_budget_study():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from adaptive_eval import replay

    df = _frame({"random": (lambda t, i: False, 10), "expert": (lambda t, i: True, 10),
                 "same": (lambda t, i: i % 2 == 0, 10), "ref2": (lambda t, i: i % 2 == 0, 10)})
    out = replay(df, "ref2", alpha=0.05, decision="either", min_per_task=2).set_index("row")
    assert out.loc["same", "reason"] == "max_episodes" and out.loc["same", "saved"] == 0
    assert out.loc["expert", "reason"] == "decided: better" and out.loc["random", "reason"] == "decided: worse"
    # 5 of 10 pairs discordant per task, all in the expert's favour: decided within a few rounds
    assert out.loc["expert", "stopped_after_rounds"] < 10 and out.loc["expert", "saved"] > 0
    assert out.loc["expert", "episodes_adaptive"] == 2 * out.loc["expert", "stopped_after_rounds"]


def test_rounds_are_released_to_keep_the_workers_busy(tmp_path):
    specs = [EpisodeSpec.make("robosuite", "Lift", "default", i, 0) for i in range(10)]  # one task: 1 episode a round
    ledger = Ledger(tmp_path / "ledger.sqlite")
    run = RunKey("expert", 0, "p")
    ledger.add(run, specs)
    sched = AdaptiveSchedule(specs, AdaptiveRun(_reference(random_policy, specs), 0.05, "better", 1, 10, "r"),
                             ledger, run)
    sched.fit_workers(2)  # two workers, one task: two rounds per check
    assert sched.step == 2
    _drive(ledger, run, sched, expert)
    stop = ledger.stop_record(run)
    # decided at the 6th pair; checks fall after rounds 1, 3, 5, 7: one round past the decision at most
    assert stop["reason"] == "decided: better" and stop["info"]["decided_at"] == 6 and stop["rounds"] == 7
