"""`evaluate(cfg, policy, out_dir)`: one policy on one suite, resumable from the episode ledger.

The driver owns the ledger and the actors: it leases one episode at a time per simulator worker,
heartbeats the leases it holds, writes each result (and its MP4) when a worker returns it, and turns
every exception from a worker or the policy server into an infrastructure error (retried up to
``eval.max_retries`` times, never counted). Re-running with the same out_dir does only the
missing episodes; leases of a crashed run are reclaimed once their heartbeat is older than
``lease_ttl_s``; two drivers on one ledger share the work.

Output in out_dir: ``ledger.sqlite`` (the record of truth), ``evaluation.json`` (protocol with
its hash and simulator versions, policy identity, eval settings), ``videos/``, ``results.csv``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from videopolicy.config import PlatformConfig
from videopolicy.evaluate.ledger import RESULT_COLUMNS, Ledger, RunKey
from videopolicy.evaluate.policies import PolicySpec
from videopolicy.progress import episodes_line
from videopolicy.sim.suites import get_suite
from videopolicy.sim.suites.base import EpisodeSpec
from videopolicy.store import write_json_atomic
from videopolicy.util import write_atomic

log = logging.getLogger(__name__)


class EvaluationError(RuntimeError):
    """The evaluation cannot start (suite unavailable, bad policy) or could not finish."""


@dataclass
class _Slot:
    """One simulator worker position: its actor, how many episodes it ran, what it is running."""

    index: int
    actor: Any = None
    generation: int = 0
    episodes: int = 0
    ref: Any = None
    spec: Optional[EpisodeSpec] = None
    started: float = 0.0


@dataclass
class EvalPlan:
    """Everything decided before Ray starts (so a CLI can validate and print it)."""

    suite: Any
    protocol: Any
    specs: list[EpisodeSpec]
    policy: PolicySpec
    policy_id: str
    execute_steps: int
    run: RunKey
    extra: dict = field(default_factory=dict)


def plan_evaluation(cfg: PlatformConfig, policy: PolicySpec, episodes_per_task: Optional[int] = None,
                    demo_scenes: Optional[dict[str, str]] = None) -> EvalPlan:
    """Suite, protocol, episode list and identities; raises EvaluationError naming every problem.

    The episodes are the suite's paired evaluation list, or, for the replay policy and when
    `demo_scenes` (task -> demo HDF5) is given, the scenes the demos were recorded in (a check that a
    policy reproduces its training data closed loop; not a paired comparison).
    """
    errs = list(policy.problems())
    suite = get_suite(cfg.eval.suite, cfg)
    why = suite.unavailable()
    if why:
        errs.append(f"suite {cfg.eval.suite!r} cannot run here: {why}")
    if errs:
        raise EvaluationError("cannot evaluate:\n  " + "\n  ".join(errs))
    protocol = suite.protocol()
    n = int(episodes_per_task or cfg.eval.episodes_per_task)
    if policy.kind == "replay" or demo_scenes:  # the demos' own scenes (not a paired comparison)
        demos = dict(policy.demos) if policy.kind == "replay" else {t: str(p) for t, p in demo_scenes.items()}
        missing = [t for t in protocol.tasks if t not in demos]
        if missing:
            raise EvaluationError(f"cannot evaluate: no demo file (for the demos' own scenes) of {missing}")
        try:
            specs = [s for task in protocol.tasks for s in suite.demo_episodes(task, demos[task], n)]
        except (ValueError, OSError) as e:
            raise EvaluationError(f"cannot evaluate: {e}") from e
    else:
        specs = [s for task in protocol.tasks for s in suite.episodes(task, n, cfg.eval.seed)]
    execute = policy.execute_steps(cfg.eval.execute_steps)
    pid = policy.policy_id(cfg.eval.execute_steps, cfg.eval.sampler_steps)
    return EvalPlan(suite, protocol, specs, policy, pid, execute, RunKey(pid, cfg.eval.policy_seed, protocol.hash))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ray", "torch", "robosuite", "mujoco", "diffusers", "videopolicy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def results_frame(records: list[dict]) -> pd.DataFrame:
    """Ledger records -> the per-episode result schema (exactly RESULT_COLUMNS)."""
    df = pd.DataFrame(records, columns=RESULT_COLUMNS + ["details"])[RESULT_COLUMNS]
    return df.astype({"index": int, "seed": int, "policy_seed": int, "success": bool, "steps": int,
                      "attempts": int, "wall_s": float})


def task_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per task: episodes counted (done), successes, rate, infrastructure errors, mean steps."""
    rows = []
    for task, g in df.groupby("task", sort=False):
        done = g[g.status == "done"]
        rows.append({"task": task, "episodes": len(done), "successes": int(done.success.sum()),
                     "success_rate": float(done.success.mean()) if len(done) else float("nan"),
                     "infra_errors": int((g.status == "infra_error").sum()),
                     "mean_steps": float(done.steps.mean()) if len(done) else float("nan")})
    return pd.DataFrame(rows)


@dataclass
class AdaptiveRun:
    """Adaptive evaluation of one row against a reference (config `eval.adaptive`, resolved by the sweep).

    reference: episode_key -> success of the reference row's finished episodes (status done)."""

    reference: dict[str, bool]
    alpha: float = 0.05
    decision: str = "either"
    min_rounds: int = 3
    max_rounds: int = 10
    reference_row: str = ""


class AdaptiveSchedule:
    """Which episodes a row may run now, and whether it is done: the episode list in rounds (round r =
    the r-th episode of every task, tasks in protocol order; the same for every row), released a round
    at a time after the first `min_rounds`. Between rounds the sequential test (evaluate/sequential.py)
    runs on the complete rounds, paired with the reference; a decided test (or the maximum) stops the
    row and the ledger records where and why. Everything is derived from the ledger, so a resumed run
    continues the same test (no restart, no episode counted twice)."""

    def __init__(self, specs: list[EpisodeSpec], adaptive: AdaptiveRun, ledger: Ledger, run: RunKey):
        self.a, self.ledger, self.run = adaptive, ledger, run
        by_task: dict[str, list[str]] = {}
        for s in specs:
            by_task.setdefault(s.task, []).append(s.key)
        self.rounds = [[keys[r] for keys in by_task.values() if r < len(keys)]
                       for r in range(min(adaptive.max_rounds, max(len(k) for k in by_task.values())))]
        self.released = min(adaptive.min_rounds, len(self.rounds))
        self.stopped: Optional[dict] = ledger.stop_record(run)
        self.step = 1  # rounds released per check: the driver sets enough to keep its workers busy

    def fit_workers(self, workers: int) -> None:
        """Release ceil(workers / tasks) rounds per check, so a round barrier does not idle workers when
        there are fewer tasks than workers (the test may then run up to step - 1 rounds past a decision)."""
        tasks = max(1, len(self.rounds[0])) if self.rounds else 1
        self.step = max(1, -(-workers // tasks))

    def allowed(self) -> list[str]:
        """Keys leasable now (the released rounds; none once stopped)."""
        return [] if self.stopped else [k for r in self.rounds[:self.released] for k in r]

    def complete_rounds(self) -> int:
        finished = {rec["episode_key"]: rec for rec in self.ledger.records(self.run, [k for r in self.rounds for k in r])}
        n = 0
        while n < len(self.rounds) and all(k in finished for k in self.rounds[n]):
            n += 1
        return n

    def advance(self) -> bool:
        """Called when no released episode is pending or leased: True when the row is finished (stopped
        now or earlier), else releases the next round."""
        from videopolicy.evaluate.sequential import stop_rule

        if self.stopped:
            return True
        done = self.complete_rounds()
        recs = {r["episode_key"]: r for r in self.ledger.records(self.run, [k for r in self.rounds[:done] for k in r])}
        pairs = [(recs[k]["success"], self.a.reference[k]) for r in self.rounds[:done] for k in r
                 if recs[k]["status"] == "done" and k in self.a.reference]
        a = [p[0] for p in pairs]
        b = [p[1] for p in pairs]
        decision = stop_rule(a, b, done, self.a.min_rounds, len(self.rounds), self.a.alpha, self.a.decision)
        if decision.stop:
            info = {**decision.result.as_dict(), "reference_row": self.a.reference_row,
                    "max_rounds": len(self.rounds), "episodes_run": sum(len(r) for r in self.rounds[:done]),
                    "episodes_budget": sum(len(r) for r in self.rounds)}
            self.ledger.record_stop(self.run, done, decision.reason, info)
            self.stopped = self.ledger.stop_record(self.run)
            log.info("adaptive evaluation: stopped after %d round(s) of %d: %s (delta %+.2f, e-value %.3g)", done,
                     len(self.rounds), decision.reason, decision.result.delta, decision.result.e_value)
            return True
        self.released = min(len(self.rounds), max(self.released, done + self.step))
        return False


def not_run_records(specs: list[EpisodeSpec], run: RunKey, finished: list[dict]) -> list[dict]:
    """Records (status "not_run") of the episodes an adaptive row never ran: never counted as outcomes;
    they keep the episode list whole, so comparisons stay paired on the episodes both rows ran."""
    have = {r["episode_key"] for r in finished}
    return [{"suite": s.suite, "task": s.task, "scene": s.scene, "index": s.index, "seed": s.seed,
             "episode_key": s.key, "policy_id": run.policy_id, "policy_seed": run.policy_seed,
             "protocol_hash": run.protocol_hash, "status": "not_run", "success": False, "steps": 0,
             "failure_reason": "adaptive: stopped before this episode", "video_path": None, "attempts": 0,
             "wall_s": 0.0, "instruction": None, "details": {}} for s in specs if s.key not in have]


def evaluate(
    cfg: PlatformConfig,
    policy: PolicySpec,
    out_dir: str | Path,
    *,
    episodes_per_task: Optional[int] = None,
    policy_mode: str = "server",
    lease_ttl_s: float = 120.0,
    episode_timeout_s: float = 1800.0,
    owner: Optional[str] = None,
    worker_max_restarts: int = 3,
    retry_infra_errors: bool = True,
    demo_scenes: Optional[dict[str, str]] = None,
    adaptive: Optional[AdaptiveRun] = None,
) -> pd.DataFrame:
    """Evaluate `policy` on ``cfg.eval.suite``; returns one row per episode (RESULT_COLUMNS).

    policy_mode "server": one batched policy server actor per ``eval.policy_servers`` shared by the
    workers; "local": each worker loads its own copy (the benchmark's comparison point).
    `owner` names this run's leases and actors (``<owner>/worker<i>.<generation>``). Episodes left
    as infrastructure errors by an earlier run are retried (`retry_infra_errors`). `demo_scenes`:
    see `plan_evaluation`. `adaptive`: run in rounds and stop once the comparison with the reference is
    decided (`AdaptiveSchedule`); episodes not run come back with status "not_run" and the stop is in
    ``adaptive.json`` and the ledger.
    """
    plan = plan_evaluation(cfg, policy, episodes_per_task, demo_scenes)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out / "ledger.sqlite")
    try:
        ledger.add(plan.run, plan.specs)
        keys = [s.key for s in plan.specs]
        if retry_infra_errors and ledger.requeue_infra_errors(plan.run, keys):
            log.info("retrying episodes that ended as infrastructure errors in an earlier run")
        write_json_atomic(out / "evaluation.json", {
            "protocol": plan.protocol.as_dict(), "policy": dataclasses.asdict(policy), "policy_id": plan.policy_id,
            "policy_seed": cfg.eval.policy_seed, "execute_steps": plan.execute_steps,
            "eval": dataclasses.asdict(cfg.eval), "versions": _versions()})
        counts = ledger.counts(plan.run, keys)
        schedule = AdaptiveSchedule(plan.specs, adaptive, ledger, plan.run) if adaptive is not None else None
        if (counts["pending"] or counts["leased"]) and not (schedule and schedule.stopped):
            driver = _Driver(cfg, plan, ledger, out, policy_mode, lease_ttl_s, episode_timeout_s,
                             owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                             worker_max_restarts)
            driver.schedule = schedule
            driver.run(keys)
        records = ledger.records(plan.run, keys)
        if schedule is not None:
            if not schedule.stopped:  # every episode already finished: the test still says where it ended
                schedule.advance()
            records += not_run_records(plan.specs, plan.run, records)
            write_json_atomic(out / "adaptive.json", {**dataclasses.asdict(adaptive), "reference": None,
                                                      "stop": schedule.stopped})
        df = results_frame(records)
    finally:
        ledger.close()
    write_atomic(out / "results.csv", df.to_csv(index=False))
    return df


class _Driver:
    def __init__(self, cfg: PlatformConfig, plan: EvalPlan, ledger: Ledger, out: Path, policy_mode: str,
                 lease_ttl_s: float, episode_timeout_s: float, owner: str, worker_max_restarts: int):
        if policy_mode not in ("server", "local"):
            raise ValueError(f"policy_mode must be 'server' or 'local', got {policy_mode!r}")
        self.cfg, self.plan, self.ledger, self.out = cfg, plan, ledger, out
        self.policy_mode, self.ttl, self.timeout = policy_mode, lease_ttl_s, episode_timeout_s
        self.owner, self.max_restarts = owner, worker_max_restarts
        self.heartbeat_s = max(0.5, min(10.0, lease_ttl_s / 4))
        self.servers: list = []
        self.slots: list[_Slot] = []
        self.done_by_task: dict[str, list[int]] = {}
        self.total = 0  # episodes of this evaluation (the progress line's denominator)
        self.schedule: Optional[AdaptiveSchedule] = None  # adaptive evaluation: which keys may run now

    # -- actors ------------------------------------------------------------------------------------

    def _env_vars(self, threads: int = 1) -> dict:
        from videopolicy.runtime import worker_env

        env = worker_env(self.cfg)
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        return env

    def _start_servers(self, n_workers: int) -> None:
        import ray

        from videopolicy.evaluate.server import policy_server_actor

        if self.policy_mode != "server":
            return
        e = self.cfg.eval
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 and self.plan.policy.kind == "checkpoint" else 0.0
        per_server = max(1, -(-n_workers // e.policy_servers))
        for i in range(e.policy_servers):
            # one torch thread, as the actor reserves one CPU (measured on CPU, tiny preset: 230 ms per call
            # with 1 thread, 510 ms with 2, which only fight the simulator workers for the cores)
            cls = policy_server_actor(num_gpus=gpus, num_cpus=1.0, env_vars=self._env_vars(threads=1),
                                      name=f"{self.owner}/server{i}")
            self.servers.append(cls.remote(self.plan.policy, self.plan.protocol.suite, self.plan.protocol.cameras,
                                           self.plan.protocol.action_dim, e.max_batch, e.batch_timeout_s,
                                           per_server, e.sampler_steps))

    def _new_actor(self, slot: _Slot) -> None:
        from videopolicy.evaluate.worker import sim_worker_actor

        slot.generation += 1
        slot.episodes = 0
        server = self.servers[slot.index % len(self.servers)] if self.servers else None
        cls = sim_worker_actor(self.cfg.eval.cpus_per_worker, self._env_vars(), self.max_restarts,
                               name=f"{self.owner}/worker{slot.index}.{slot.generation}")
        slot.actor = cls.remote(self.cfg.eval.suite, self.cfg, self.plan.policy, self.plan.execute_steps,
                                self.cfg.eval.policy_seed, server, self.cfg.eval.sampler_steps)

    def _retire(self, slot: _Slot) -> None:
        import ray

        if slot.actor is not None:
            ray.kill(slot.actor, no_restart=True)
        slot.actor = None

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, keys: list[str]) -> None:
        import ray

        from videopolicy.runtime import init_ray

        init_ray(self.cfg.ray)
        self.total = len(keys)
        n_workers = self._fit_workers(keys)
        for rec in self.ledger.records(self.plan.run, keys):
            if rec["status"] == "done":
                self.done_by_task.setdefault(rec["task"], []).append(int(rec["success"]))
        if self.schedule is not None:
            self.schedule.fit_workers(n_workers)
        self._start_servers(n_workers)
        self.slots = [_Slot(i) for i in range(n_workers)]
        last_beat = time.time()
        active = self.schedule.allowed() if self.schedule else keys
        try:
            while True:
                for slot in self.slots:
                    if slot.ref is None and active:
                        self._assign(slot, active)
                busy = [s for s in self.slots if s.ref is not None]
                if not busy:
                    c = self.ledger.counts(self.plan.run, active) if active else {"pending": 0, "leased": 0}
                    if c["pending"] == 0 and c["leased"] == 0:
                        if self.schedule is None or self.schedule.advance():
                            return
                        active = self.schedule.allowed()  # the next round, released after the test
                        continue
                    time.sleep(self.heartbeat_s)  # leases held by another live driver: wait, then reclaim
                    continue
                ready, _ = ray.wait([s.ref for s in busy], num_returns=1, timeout=self.heartbeat_s)
                for slot in busy:
                    if slot.ref in ready:
                        self._collect(slot)
                    elif time.time() - slot.started > self.timeout:
                        self._retire(slot)
                        self._infra(slot, f"episode exceeded the wall-clock limit of {self.timeout:.0f}s "
                                          "(hung simulator or renderer)")
                if time.time() - last_beat >= self.heartbeat_s:
                    self.ledger.heartbeat(self.plan.run, self.owner,
                                          [s.spec.key for s in self.slots if s.spec is not None])
                    last_beat = time.time()
        finally:
            self._stop_actors()

    def _fit_workers(self, keys: list[str]) -> int:
        """Simulator workers to start: eval.workers, at most one per unfinished episode, and what fits."""
        import ray

        remaining = self.ledger.counts(self.plan.run, keys)
        n_workers = max(1, min(self.cfg.eval.workers, remaining["pending"] + remaining["leased"]))
        # An actor the cluster can never place would hold its leased episode forever: fit the pool to the
        # CPUs the cluster has now (an autoscaling cluster should keep its rollout group's min_workers up).
        total = ray.cluster_resources().get("CPU", 0.0)
        servers = self.cfg.eval.policy_servers if self.policy_mode == "server" else 0
        fit = int((total - servers * 1.0) // self.cfg.eval.cpus_per_worker)
        if fit < n_workers:
            log.warning("eval.workers %d x %.1f CPU + %d policy server(s) do not fit the cluster's %.0f CPUs: "
                        "using %d worker(s)", n_workers, self.cfg.eval.cpus_per_worker, servers, total, max(1, fit))
            n_workers = max(1, fit)
        return n_workers

    def _stop_actors(self) -> None:
        """Retire every worker; keep each policy server's stats (policy_servers.json), then stop it."""
        import ray

        for slot in self.slots:
            self._retire(slot)
        infos = []
        for server in self.servers:
            try:
                infos.append(ray.get(server.info.remote(), timeout=10))
            except Exception as e:  # noqa: BLE001 - a dead server has no stats; say so
                infos.append({"error": repr(e)})
            ray.kill(server, no_restart=True)
        if infos:
            write_json_atomic(self.out / "policy_servers.json", infos)

    def _assign(self, slot: _Slot, keys: list[str]) -> None:
        spec = self.ledger.lease(self.plan.run, self.owner, keys, self.ttl)
        if spec is None:
            return
        if slot.actor is None or slot.episodes >= self.cfg.eval.recycle_after:
            self._retire(slot)  # recycle: renderers leak over long-lived processes
            self._new_actor(slot)
        slot.spec, slot.started = spec, time.time()
        slot.ref = slot.actor.run_episode.remote(spec, spec.index < self.cfg.eval.video_episodes)

    def _collect(self, slot: _Slot) -> None:
        import ray

        from videopolicy.evaluate.worker import format_exception

        try:
            res = ray.get(slot.ref)
        except Exception as e:  # noqa: BLE001 - actor death, OOM kill, renderer/env error, server loss
            log.warning("episode %s: infrastructure error on worker %d: %s", slot.spec.key, slot.index,
                        format_exception(e))
            self._retire(slot)  # a fresh process for the retry (hermetic GL context)
            self._infra(slot, format_exception(e))
            return
        slot.episodes += 1
        spec = slot.spec
        video_path = self._write_video(spec, res.pop("video")) if res.get("video") else None
        details = {k: res[k] for k in ("setup_s", "reset_s", "sim_s", "policy_wait_s", "policy_calls", "worker_pid", "worker_episodes",
                                       "egl_device", "max_rss_mb")}
        counted = self.ledger.complete(self.plan.run, self.owner, spec.key, res["success"], res["steps"],
                                       res["failure_reason"], video_path, res["wall_s"], details,
                                       instruction=res.get("instruction"))
        if counted:
            self._metrics(spec, res["success"])
        else:
            log.warning("episode %s: lease lost (reclaimed by another run); result dropped", spec.key)
        slot.ref, slot.spec = None, None

    def _infra(self, slot: _Slot, error: str) -> None:
        status = self.ledger.infra_error(self.plan.run, self.owner, slot.spec.key, error, self.cfg.eval.max_retries)
        log.info("episode %s -> %s", slot.spec.key, status or "lease lost")
        slot.ref, slot.spec = None, None

    def _write_video(self, spec: EpisodeSpec, data: bytes) -> str:
        path = self.out / "videos" / _slug(self.plan.policy_id) / spec.task / f"{spec.scene}_{spec.index:04d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(write_atomic(path, data))

    def _metrics(self, spec: EpisodeSpec, success: bool) -> None:
        from videopolicy.evaluate.metrics import episodes_done, success_rate

        hist = self.done_by_task.setdefault(spec.task, [])
        hist.append(int(success))
        tags = {"suite": spec.suite, "task": spec.task, "policy": self.plan.policy.kind}
        episodes_done().inc(1, tags=tags)
        success_rate().set(sum(hist) / len(hist), tags=tags)
        done = [s for h in self.done_by_task.values() for s in h]  # earlier runs' episodes included
        print(episodes_line(self.out.name, len(done), self.total, sum(done)), flush=True)
