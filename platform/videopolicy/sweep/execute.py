"""Run a plan: every stage whose inputs are ready, up to `max_concurrent` at once, on the Ray cluster.

Each stage is a Ray-native job of its own (Ray Data tasks, a TorchTrainer, simulator + policy-server
actors), driven from a thread of this driver; threads rather than Ray Tune trials because a stage
is not a trial (no search, no scheduler) and the stages already ask Ray for their own resources.
Keep max_concurrent at 1 on small boxes: a TorchTrainer beside a rollout pool can starve Ray Data.

A stage writes under ``<store>/<kind>/<key>/`` and marks completion last, so a crash loses only the
stage in flight, and even that resumes: training from its latest Ray Train checkpoint (same run
name), evaluation from its episode ledger. A failed stage fails its dependents; the other rows go on.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from videopolicy.sweep.plan import Plan
from videopolicy.sweep.stages import Stage, StageContext

log = logging.getLogger(__name__)


@dataclass
class StageOutcome:
    id: str
    status: str  # "done" (ran now) | "reused" (found complete) | "failed" | "skipped" (an input failed)
    seconds: float = 0.0
    error: Optional[str] = None


@dataclass
class Executor:
    plan: Plan
    tracker: Optional[object] = None  # videopolicy.tracking.Tracker
    max_concurrent: int = 1
    outcomes: dict[str, StageOutcome] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _todo: int = 0  # stages to run (not found complete), for the "stage i/n" progress lines
    _started: int = 0

    # ------------------------------------------------------------------ scheduling
    def run(self) -> dict[str, StageOutcome]:
        nodes = self.plan.nodes
        for sid in nodes:
            if self.plan.done(sid):
                self.outcomes[sid] = StageOutcome(sid, "reused")
        self._todo = len(nodes) - len(self.outcomes)
        print(f"{len(nodes)} stages: {len(self.outcomes)} found complete, {self._todo} to run", flush=True)
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=self.max_concurrent, thread_name_prefix="stage") as pool:
            while True:
                for sid, node in nodes.items():
                    if sid in self.outcomes or sid in running.values():
                        continue
                    states = [self.outcomes.get(d) for d in node.deps]
                    if any(s is not None and s.status in ("failed", "skipped") for s in states):
                        bad = [d for d, s in zip(node.deps, states) if s and s.status in ("failed", "skipped")]
                        self.outcomes[sid] = StageOutcome(sid, "skipped", error=f"input failed: {bad}")
                        continue
                    if all(s is not None for s in states) and len(running) < self.max_concurrent:
                        running[pool.submit(self._run_stage, node)] = sid
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    self.outcomes[running.pop(fut)] = fut.result()
        return self.outcomes

    def _run_stage(self, node: Stage) -> StageOutcome:
        t0 = time.time()
        with self._lock:
            self._started += 1
            step = f"stage {self._started}/{self._todo}"
        print(f"{step}: {node.kind} {node.key} rows {','.join(node.rows)} ({node.label})", flush=True)
        ref = self._track_start(node)
        out = self.plan.stage_dir(node)
        try:
            manifest = node.run(StageContext(self.plan.store, out, self.tracker, ref, self._lock))
            out.prepare()
            out.complete({**manifest, "rows": node.rows, "label": node.label, "seconds": time.time() - t0})
        except Exception as e:  # noqa: BLE001 - one stage's failure must not stop the other rows
            log.error("stage %s failed: %s\n%s", node.id, e, traceback.format_exc())
            self._track_end(ref, "FAILED", {"error": str(e)[:500]})
            print(f"{step}: {node.id} FAILED after {time.time() - t0:.0f}s: {type(e).__name__}: {e}"[:2000], flush=True)
            return StageOutcome(node.id, "failed", time.time() - t0, f"{type(e).__name__}: {e}")
        self._track_end(ref, "FINISHED", {})
        print(f"{step}: {node.id} done in {time.time() - t0:.0f}s", flush=True)
        return StageOutcome(node.id, "done", time.time() - t0)

    # ------------------------------------------------------------------ tracking
    def _track_start(self, node: Stage):
        if self.tracker is None:
            return None
        with self._lock:
            ref = self.tracker.stage_run(node.rows[0], node.id)
            self.tracker.start(ref, tags={"videopolicy.stage_label": node.label,
                                          "videopolicy.stage_rows": ",".join(node.rows)}, stage_kind=node.kind)
            return ref

    def _track_end(self, ref, status: str, tags: dict) -> None:
        if ref is None:
            return
        with self._lock:
            if tags:
                self.tracker.set_tags(ref, tags)
            self.tracker.end(ref, status)


def row_results(plan: Plan) -> pd.DataFrame:
    """Every finished row's per-episode results, with a `row` column (rows sharing an eval share rows)."""
    frames = []
    for row in plan.rows:
        sd = plan.stage_dir(row.stages["eval"])
        if sd.is_complete():
            frames.append(pd.read_parquet(Path(sd.path) / "episodes.parquet").assign(row=row.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
