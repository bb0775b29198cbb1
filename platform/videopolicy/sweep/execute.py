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

import json
import logging
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from videopolicy.sweep.plan import Plan, StageNode

log = logging.getLogger(__name__)

SANITY_POLICY = {"scripted_expert": "expert", "random": "random"}


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

    # ------------------------------------------------------------------ scheduling
    def run(self) -> dict[str, StageOutcome]:
        nodes = self.plan.nodes
        for sid in nodes:
            if self.plan.done(sid):
                self.outcomes[sid] = StageOutcome(sid, "reused")
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

    def _run_stage(self, node: StageNode) -> StageOutcome:
        t0 = time.time()
        log.info("stage %s (%s) for rows %s: start", node.id, node.label, node.rows)
        ref = self._track_start(node)
        try:
            manifest = getattr(self, f"_run_{node.kind}")(node, ref)
            self.plan.stage_dir(node).prepare()
            self.plan.stage_dir(node).complete({**manifest, "rows": node.rows, "label": node.label,
                                                "seconds": time.time() - t0})
        except Exception as e:  # noqa: BLE001 - one stage's failure must not stop the other rows
            log.error("stage %s failed: %s\n%s", node.id, e, traceback.format_exc())
            self._track_end(ref, "FAILED", {"error": str(e)[:500]})
            return StageOutcome(node.id, "failed", time.time() - t0, f"{type(e).__name__}: {e}")
        self._track_end(ref, "FINISHED", {})
        log.info("stage %s done in %.0fs", node.id, time.time() - t0)
        return StageOutcome(node.id, "done", time.time() - t0)

    # ------------------------------------------------------------------ tracking
    def _track_start(self, node: StageNode):
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

    def _run_id(self, ref) -> Optional[str]:
        if ref is None:
            return None
        with self._lock:
            self.tracker.flush()
            return self.tracker.run_id(ref)

    # ------------------------------------------------------------------ stage kinds
    def _dep(self, node: StageNode, kind: str) -> Optional[StageNode]:
        found = [self.plan.nodes[d] for d in node.deps if d.startswith(kind + "/")]
        return found[0] if found else None

    def _run_data(self, node: StageNode, ref) -> dict:
        from videopolicy.data.clips import build_clips

        ds = build_clips(node.cfg, self.plan.store)
        m = ds.manifest
        return {"clips_path": str(ds.path), "tasks": m["tasks"], "clip_counts": m["clip_counts"],
                "demos": m["demos"], "skipped": m["skipped"]}

    def _run_stage1(self, node: StageNode, ref) -> dict:
        return self._train(node, ref, "stage1")

    def _run_stage2(self, node: StageNode, ref) -> dict:
        return self._train(node, ref, "stage2")

    def _train(self, node: StageNode, ref, stage: str) -> dict:
        from dataclasses import asdict

        from videopolicy.train.launch import TrainSpec, export_policy, run_training

        data = self.plan.stage_dir(self._dep(node, "data")).manifest()
        init = self._dep(node, "stage1")
        stage_dir = self.plan.stage_dir(node).prepare()
        tracking_uri = getattr(self.tracker, "uri", None)
        # metrics go to the stage's run by reference: they are queued if the server is down, even now
        spec = TrainSpec(stage, node.cfg, data["clips_path"], name=f"{stage}-{node.key}",
                         storage_path=node.cfg.train.storage_path or f"{self.plan.store}/train_runs",
                         init_from=str(self.plan.stage_dir(init).path / "policy") if init else None,
                         tracking_uri=tracking_uri, mlflow_run_id=self._run_id(ref),
                         mlflow_ref=asdict(ref) if ref is not None else None,
                         mlflow_experiment=getattr(self.tracker, "experiment", None),
                         tracking_managed=bool(getattr(self.tracker, "managed", False)), store=self.plan.store,
                         progress_dir=str(stage_dir / "progress"))
        result = run_training(spec)
        export_policy(result, stage_dir / "policy")
        return {"step": result.step, "metrics": result.metrics, "train_run": spec.name,
                "checkpoint": str(result.checkpoint_dir), "clips_path": data["clips_path"],
                "train_tasks": data["tasks"]["train"]}

    def _run_eval(self, node: StageNode, ref) -> dict:
        from videopolicy.evaluate.policies import PolicySpec
        from videopolicy.evaluate.runner import evaluate

        stage_dir = self.plan.stage_dir(node).prepare()
        if node.cfg.train.policy_dir:  # a saved policy given by the row (e.g. jobs/import_checkpoint.py's)
            spec = PolicySpec.parse(node.cfg.train.policy_dir)
        elif self._dep(node, "stage2") is not None:  # (an adaptive eval also depends on its reference's eval)
            spec = PolicySpec("checkpoint", str(self.plan.stage_dir(self._dep(node, "stage2")).path / "policy"))
        else:
            spec = PolicySpec(SANITY_POLICY[node.cfg.train.method])
        adaptive = self._adaptive(node)
        df = evaluate(node.cfg, spec, stage_dir, owner=f"sweep-{node.key[:8]}", adaptive=adaptive)
        infra = int((df["status"] == "infra_error").sum())
        if infra:  # not counted and not final: a re-run retries exactly these episodes
            raise RuntimeError(f"{infra} of {len(df)} episodes ended as infrastructure errors "
                               f"(see {stage_dir / 'ledger.sqlite'}); re-run the sweep to retry them")
        df.to_parquet(stage_dir / "episodes.parquet", index=False)
        done = df[df["status"] == "done"]
        if ref is not None:
            with self._lock:
                self.tracker.log_metrics(ref, {"success_rate": float(done["success"].mean()),
                                               "episodes": float(len(done))})
        manifest = {"episodes": len(df), "success_rate": float(done["success"].mean()), "policy": spec.kind}
        if adaptive is not None:
            manifest["adaptive"] = {"reference_row": node.reference_row, "episodes_run": len(done),
                                    "not_run": int((df["status"] == "not_run").sum()),
                                    "stop": json.loads((stage_dir / "adaptive.json").read_text())["stop"]}
        return manifest

    def _adaptive(self, node: StageNode):
        """eval.adaptive for this row: the reference's finished outcomes (its eval is a dependency)."""
        from videopolicy.evaluate.runner import AdaptiveRun

        if node.reference is None:
            return None
        ref = pd.read_parquet(Path(self.plan.stage_dir(node.reference).path) / "episodes.parquet")
        ref = ref[ref["status"] == "done"]
        a = node.cfg.eval.adaptive
        return AdaptiveRun(dict(zip(ref["episode_key"], ref["success"].astype(bool))), a.alpha, a.decision,
                           a.min_episodes_per_task, node.cfg.eval.max_rounds(), node.reference_row)


def row_results(plan: Plan) -> pd.DataFrame:
    """Every finished row's per-episode results, with a `row` column (rows sharing an eval share rows)."""
    frames = []
    for row in plan.rows:
        sd = plan.stage_dir(row.stages["eval"])
        if sd.is_complete():
            frames.append(pd.read_parquet(Path(sd.path) / "episodes.parquet").assign(row=row.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
