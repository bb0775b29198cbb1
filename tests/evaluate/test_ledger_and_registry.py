"""The episode ledger's state machine, the suite registry and the EGL device choice (no Ray, no simulator)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from videopolicy.config import config_from_dict
from videopolicy.evaluate.ledger import Ledger, RunKey
from videopolicy.evaluate.worker import select_egl_device
from videopolicy.sim.suites import SUITES, get_suite
from videopolicy.sim.suites.base import EpisodeSpec

RUN = RunKey("random:x16", 0, "proto")


def _specs(n: int) -> list[EpisodeSpec]:
    return [EpisodeSpec.make("robosuite", "Lift", "default", i, 0) for i in range(n)]


def test_ledger_transitions_count_each_episode_once(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    specs = _specs(3)
    assert led.add(RUN, specs) == 3 and led.add(RUN, specs) == 0  # re-adding keeps existing records
    a = led.lease(RUN, "A")
    b = led.lease(RUN, "B")
    assert a.key == specs[0].key and b.key == specs[1].key and a == specs[0]
    assert led.complete(RUN, "A", a.key, True, 10, None, None, 1.0, {})
    assert not led.complete(RUN, "A", a.key, True, 10, None, None, 1.0, {})  # already done: not counted again
    assert not led.complete(RUN, "A", b.key, False, 5, "timeout", None, 1.0, {})  # not A's lease
    # infrastructure errors go back to pending while retries remain, then to infra_error
    assert led.infra_error(RUN, "B", b.key, "ActorDiedError: boom", max_retries=1) == "pending"
    again = led.lease(RUN, "B")
    assert again.key == b.key
    assert led.infra_error(RUN, "B", b.key, "ActorDiedError: boom", max_retries=1) == "infra_error"
    assert led.counts(RUN) == {"pending": 1, "leased": 0, "done": 1, "infra_error": 1}
    recs = {r["episode_key"]: r for r in led.records(RUN)}
    assert recs[b.key]["attempts"] == 2 and recs[b.key]["failure_reason"].startswith("infra: ActorDiedError")
    assert not recs[b.key]["success"] and recs[a.key]["success"] and recs[a.key]["steps"] == 10


def test_ledger_records_each_episodes_instruction_and_upgrades_an_old_ledger(tmp_path):
    import sqlite3

    from videopolicy.evaluate.ledger import RESULT_COLUMNS

    # a ledger written before the instruction column existed (the schema of the previous version)
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.executescript("""CREATE TABLE episodes (episode_key TEXT NOT NULL, policy_id TEXT NOT NULL,
        policy_seed INTEGER NOT NULL, protocol_hash TEXT NOT NULL, suite TEXT NOT NULL, task TEXT NOT NULL,
        scene TEXT NOT NULL, idx INTEGER NOT NULL, seed INTEGER NOT NULL, ord INTEGER NOT NULL,
        status TEXT NOT NULL, lease_owner TEXT, heartbeat REAL, attempts INTEGER NOT NULL DEFAULT 0,
        success INTEGER, steps INTEGER, failure_reason TEXT, video_path TEXT, wall_s REAL, details TEXT,
        updated REAL NOT NULL, PRIMARY KEY (episode_key, policy_id, policy_seed, protocol_hash));""")
    spec = _specs(2)
    db.execute("INSERT INTO episodes VALUES (?,?,?,?,?,?,?,?,?,0,'done',NULL,NULL,1,1,9,NULL,NULL,1.0,NULL,0)",
               (spec[0].key, RUN.policy_id, RUN.policy_seed, RUN.protocol_hash, "robosuite", "Lift", "default", 0,
                spec[0].seed))
    db.commit()
    db.close()
    led = Ledger(old)
    led.add(RUN, spec)
    e = led.lease(RUN, "A")
    assert e.key == spec[1].key
    assert led.complete(RUN, "A", e.key, False, 5, "timeout", None, 1.0, {},
                        instruction="pick up the red cube from the counter")
    recs = {r["episode_key"]: r for r in led.records(RUN)}
    assert list(recs[e.key])[:-1] == RESULT_COLUMNS  # the result schema, then details
    assert recs[e.key]["instruction"] == "pick up the red cube from the counter"
    assert recs[spec[0].key]["instruction"] is None and recs[spec[0].key]["steps"] == 9  # old record kept
    assert Ledger(old).records(RUN) == led.records(RUN)  # reopening an upgraded ledger changes nothing


def test_stale_leases_are_reclaimed_and_the_old_owner_loses_them(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    led.add(RUN, _specs(1))
    first = led.lease(RUN, "crashed", ttl_s=0.5)
    assert led.lease(RUN, "new", ttl_s=0.5) is None  # a live lease is not taken
    time.sleep(0.6)
    second = led.lease(RUN, "new", ttl_s=0.5)
    assert second.key == first.key
    assert not led.complete(RUN, "crashed", first.key, True, 1, None, None, 0.1, {})  # late result dropped
    assert led.complete(RUN, "new", first.key, False, 7, "timeout", None, 0.1, {})
    (rec,) = led.records(RUN)
    assert rec["attempts"] == 2 and rec["steps"] == 7


def test_heartbeat_keeps_a_lease(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    led.add(RUN, _specs(1))
    spec = led.lease(RUN, "A", ttl_s=0.5)
    time.sleep(0.3)
    led.heartbeat(RUN, "A", [spec.key])
    time.sleep(0.3)
    assert led.lease(RUN, "B", ttl_s=0.5) is None


def test_registry_is_lazy_and_hints_names():
    assert set(SUITES) == {"robosuite", "libero10", "robocasa", "mimicgen"}
    # in a fresh interpreter: other tests of this session import suite modules on purpose
    probe = ("import sys, videopolicy.config, videopolicy.sim.suites; "
             "print(sorted(m for m in sys.modules if m.startswith('videopolicy.sim.suites.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['videopolicy.sim.suites.base']", out
    cfg = config_from_dict({})
    with pytest.raises(ValueError, match="did you mean 'libero10'"):
        get_suite("libero_10", cfg)


def test_catalog_action_suffixes_are_the_suites():
    """The policy (models/) appends a suite's action suffix from the static catalog, without importing
    the suite: every registered suite class agrees with it."""
    from videopolicy.catalog import ACTION_SUFFIX
    from videopolicy.sim.suites import suite_class

    assert set(ACTION_SUFFIX) <= set(SUITES)
    for name in SUITES:
        assert tuple(suite_class(name).action_suffix) == ACTION_SUFFIX.get(name, ()), name


def test_robosuite_protocol_and_paired_episodes():
    cfg = config_from_dict({"demos": {"tasks": ["Lift", "Stack"]}, "eval": {"tasks": ["Stack"]}})
    suite = get_suite("robosuite", cfg)
    proto = suite.protocol()
    assert proto.tasks == ("Stack",) and proto.action_dim == 7 and "robosuite 1.5.2" in proto.sim_version
    assert suite.step_limit("Stack") == 300
    eps = suite.episodes("Stack", 3, eval_seed=0)
    assert [e.index for e in eps] == [0, 1, 2] and len({e.seed for e in eps}) == 3
    assert eps == suite.episodes("Stack", 3, eval_seed=0)  # every row gets the same list
    # a policy-side change (another row) keeps the protocol; a render change does not
    other = config_from_dict({"demos": {"tasks": ["Lift", "Stack"]}, "eval": {"tasks": ["Stack"], "policy_seed": 5},
                              "train": {"method": "joint"}})
    assert get_suite("robosuite", other).protocol().hash == proto.hash
    fancy = config_from_dict({"demos": {"tasks": ["Lift", "Stack"], "render": {"preset": "default"}},
                              "eval": {"tasks": ["Stack"]}})
    assert get_suite("robosuite", fancy).protocol().hash != proto.hash


def test_egl_device_follows_the_gpu_ray_assigned():
    assert select_egl_device([], [0, 1]) is None  # CPU actor: Mesa's EGL, nothing set
    # Ray gave physical GPU 3 (CUDA_VISIBLE_DEVICES=3): it is CUDA ordinal 0 in the actor; EGL lists a
    # software device first and the NVIDIA devices after it.
    assert select_egl_device([3], [None, 0]) == 1
    assert select_egl_device(["2"], [1, 0, None]) == 1
    assert select_egl_device([3], None) == 0
