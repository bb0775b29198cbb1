"""MLflow runs of a sweep: a parent per sweep, a child per row, a grandchild per stage.

Runs are named by logical references (`RunRef`: sweep, row, stage key), not by MLflow run ids. A
reference is resolved when an operation is applied: first by searching the experiment for a run
with its tags (videopolicy.sweep / videopolicy.row / videopolicy.stage_key), else by creating it.
So a resumed sweep re-attaches to its runs instead of duplicating them, and runs can be "started"
while the server is down (the outbox creates them when it comes back).

Every call is queued in the outbox first (see outbox.py) and applied right away when the server is
up. Metrics go out as one `log_batch` per call: each single `log_metric` is a 40-80 ms round trip.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from videopolicy.tracking.outbox import FlushResult, Outbox
from videopolicy.tracking.server import ENV_URI, TrackingServer, ensure_tracking, healthy, local_server, mlflow_dir

SWEEP_TAG, ROW_TAG, STAGE_TAG = "videopolicy.sweep", "videopolicy.row", "videopolicy.stage_key"
LEVEL_TAG, STAGE_KIND_TAG = "videopolicy.level", "videopolicy.stage_kind"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
RECHECK_DOWN_S = 10.0  # while the server is down, automatic flushes probe it at most this often


@dataclass(frozen=True)
class RunRef:
    """A run by what it is: the sweep (parent), a row of it (child), a stage of a row (grandchild)."""

    sweep: str
    row: str | None = None
    stage: str | None = None  # the stage's content key, e.g. "stage1:3f2a..."; needs a row

    def __post_init__(self) -> None:
        for part in (self.sweep, self.row, self.stage):
            if part is not None and ("'" in part or not part):
                raise ValueError(f"RunRef: names must be non-empty and contain no quote, got {part!r}")
        if self.stage is not None and self.row is None:
            raise ValueError("RunRef: a stage run belongs to a row")

    @property
    def level(self) -> str:
        return "stage" if self.stage else "row" if self.row else "sweep"

    @property
    def parent(self) -> RunRef | None:
        if self.stage:
            return RunRef(self.sweep, self.row)
        return RunRef(self.sweep) if self.row else None

    @property
    def name(self) -> str:
        return self.stage or self.row or self.sweep

    def tags(self) -> dict[str, str]:
        tags = {SWEEP_TAG: self.sweep, LEVEL_TAG: self.level}
        if self.row:
            tags[ROW_TAG] = self.row
        if self.stage:
            tags[STAGE_TAG] = self.stage
        return tags

    def filter_string(self) -> str:
        return " and ".join(f"tags.`{k}` = '{v}'" for k, v in self.tags().items())


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"} (lists as JSON), for MLflow params."""
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return out


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


class Tracker:
    """Logging of one sweep to MLflow, through the durable outbox.

    >>> tracker = Tracker(store, sweep="robocasa_paper-1a2b")
    >>> tracker.start(tracker.sweep_run(), tags=provenance_tags("robosuite"))
    >>> row = tracker.start_row("two_stage", cfg)          # axes params, provenance, resolved config
    >>> stage = tracker.start(tracker.stage_run("two_stage", "stage1:ab12"), stage_kind="stage1")
    >>> tracker.log_metrics(stage, {"loss": 0.1, "samples_per_s": 40.0}, step=100)
    >>> tracker.end(stage); log_row_results(tracker, "two_stage", df); tracker.end(row)
    """

    def __init__(self, store: str | Path, sweep: str, experiment: str = "videopolicy", uri: str | None = None,
                 auto_flush: bool = True, managed: bool | None = None):
        self.store = Path(store).expanduser().resolve()
        self.sweep = sweep
        self.experiment = experiment
        # a local server we manage may come back on another port: re-read <store>/mlflow/server.json then
        # (managed=True with a uri: that server, as passed to a training worker, which never starts one)
        self.managed = (uri is None and not os.environ.get(ENV_URI)) if managed is None else managed
        self.uri = uri or ensure_tracking(self.store)
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.outbox = Outbox(mlflow_dir(self.store) / "outbox")
        self.auto_flush = auto_flush
        self._ids: dict[tuple[str, RunRef], str] = {}
        self._experiment_ids: dict[str, str] = {}
        self._down_until = 0.0
        self._client = None

    # ----------------------------------------------------------------- references
    def sweep_run(self) -> RunRef:
        return RunRef(self.sweep)

    def row_run(self, row: str) -> RunRef:
        return RunRef(self.sweep, row)

    def stage_run(self, row: str, stage_key: str) -> RunRef:
        return RunRef(self.sweep, row, stage_key)

    # ----------------------------------------------------------------- logging (queued, then applied)
    def start(self, ref: RunRef, tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
              stage_kind: str | None = None) -> RunRef:
        """Create or re-attach to `ref`'s run (status RUNNING) and set tags and params on it."""
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if stage_kind:
            tags[STAGE_KIND_TAG] = stage_kind
        self._queue({"op": "start", "run": asdict(ref), "tags": tags, "params": _params(params or {})})
        return ref

    def start_row(self, row: str, cfg: Any, suite_version: str | None = None,
                  extra_params: Mapping[str, Any] | None = None) -> RunRef:
        """A row's run: its ablation axes as params (plus the flattened config under `config.`),
        provenance tags, and the resolved config as `config/resolved_config.json`."""
        from videopolicy.config import to_dict
        from videopolicy.row_kinds import row_axes
        from videopolicy.tracking.provenance import provenance_tags

        resolved = to_dict(cfg)
        params = {**row_axes(cfg), **flatten(resolved, "config."), **(extra_params or {})}
        ref = self.start(self.row_run(row), tags=provenance_tags(cfg.eval.suite, suite_version), params=params)
        self.log_dict(ref, resolved, "config/resolved_config.json")
        return ref

    def set_tags(self, ref: RunRef, tags: Mapping[str, Any]) -> None:
        self._queue({"op": "batch", "run": asdict(ref), "tags": {k: str(v) for k, v in tags.items()}})

    def log_params(self, ref: RunRef, params: Mapping[str, Any]) -> None:
        self._queue({"op": "batch", "run": asdict(ref), "params": _params(params)})

    def log_metrics(self, ref: RunRef, metrics: Mapping[str, float], step: int = 0) -> None:
        """All of `metrics` in one request (timestamps fixed now, so a replay is a no-op)."""
        ts = int(time.time() * 1000)
        rows = [[k, float(v), int(step), ts] for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
        self._queue({"op": "batch", "run": asdict(ref), "metrics": rows})

    def log_artifact(self, ref: RunRef, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file (kept in the outbox, hard-linked, until the server has it)."""
        self._queue({"op": "artifact", "run": asdict(ref), "artifact_path": artifact_path},
                    files={"file": Path(path)})

    def log_dict(self, ref: RunRef, data: Any, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
            self.log_artifact(ref, path, str(Path(artifact_file).parent) if "/" in artifact_file else None)

    def log_table(self, ref: RunRef, df: pd.DataFrame, artifact_file: str) -> None:
        """An MLflow table (`mlflow.log_table`; shown in the UI's evaluation view). Keep them few and
        large: every table adds an entry to the run's `mlflow.loggedArtifacts` tag (~5000 chars)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            df.to_json(path, orient="split", index=False, date_format="iso")
            self._queue({"op": "table", "run": asdict(ref), "artifact_file": artifact_file}, files={"file": path})

    def end(self, ref: RunRef, status: str = "FINISHED") -> None:
        self._queue({"op": "end", "run": asdict(ref), "status": status})

    def flush(self, restart_server: bool = False) -> FlushResult:
        """Replay everything queued (this process's and earlier ones'); safe to call any time. Training
        runs' metric queues of this store (train_queues.py) that go to this server are replayed too.

        restart_server: when the store's local server (one this platform manages) is dead, start
        it again first; e.g. at the end of a sweep, so nothing stays queued.
        """
        from videopolicy.tracking.train_queues import drain_all

        if restart_server and self.managed and not self._server_up():
            local_server(self.store)
        result = self.outbox.flush(self._apply, self._server_up)
        if result.complete:  # the server is up: training metrics next (their runs' start ops went first)
            result = FlushResult(result.applied, drain_all(self.store, self), result.failed)
        self._down_until = 0.0 if result.complete else time.monotonic() + RECHECK_DOWN_S
        return result

    def pending(self) -> int:
        """Operations still queued: this store's outbox and the training metric queues this tracker delivers."""
        from videopolicy.tracking.train_queues import pending_for

        return len(self.outbox.pending()) + pending_for(self.store, self)

    def run_id(self, ref: RunRef) -> str | None:
        """The MLflow run id of `ref` (found or created); None while the server is down."""
        if not self._server_up():
            return None
        return self._resolve(ref)

    # ----------------------------------------------------------------- internals
    def _queue(self, op: dict, files: dict[str, Path] | None = None) -> None:
        self.outbox.put({**op, "experiment": self.experiment}, files)  # replayable by any Tracker of the store
        if self.auto_flush and time.monotonic() >= self._down_until:
            self.flush()

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _server_up(self) -> bool:
        if healthy(self.uri):
            return True
        if self.managed:  # restarted meanwhile (by another driver or `flush(restart_server=True)`)?
            server = TrackingServer.for_store(self.store)
            if server.attach() and server.uri != self.uri:
                self.uri, self._client = server.uri, None
                return True
        return False

    def _experiment(self, name: str | None = None) -> str:
        """The id of experiment `name` (default: this tracker's), created if missing."""
        name = name or self.experiment
        if name not in self._experiment_ids:
            from mlflow.exceptions import MlflowException

            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                try:
                    self._experiment_ids[name] = self.client.create_experiment(name)
                except MlflowException:  # created meanwhile by another driver
                    self._experiment_ids[name] = self.client.get_experiment_by_name(name).experiment_id
            else:
                self._experiment_ids[name] = exp.experiment_id
        return self._experiment_ids[name]

    def _resolve(self, ref: RunRef, experiment: str | None = None) -> str:
        """Find the run of `ref` by its tags, else create it under its parent."""
        exp_id = self._experiment(experiment)
        if (exp_id, ref) in self._ids:
            return self._ids[(exp_id, ref)]
        parent_id = self._resolve(ref.parent, experiment) if ref.parent else None
        found = self.client.search_runs([exp_id], filter_string=ref.filter_string(),
                                        order_by=["attributes.start_time ASC"], max_results=1)
        if found:
            run_id = found[0].info.run_id
        else:
            tags = ref.tags()
            if parent_id:
                tags[PARENT_TAG] = parent_id
            run_id = self.client.create_run(exp_id, run_name=ref.name, tags=tags).info.run_id
        self._ids[(exp_id, ref)] = run_id
        return run_id

    def _apply(self, op: dict) -> None:
        """Apply one queued operation; idempotent (a replay after a partial success changes nothing)."""
        from mlflow.entities import Metric, Param, RunTag

        run_id = op.get("run_id") or self._resolve(RunRef(**op["run"]), op.get("experiment"))
        kind = op["op"]
        if kind == "start" and self.client.get_run(run_id).info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")  # re-attached by a resumed sweep
        if kind in ("start", "batch"):
            params = [Param(k, v) for k, v in op.get("params", {}).items()]
            tags = [RunTag(k, v) for k, v in op.get("tags", {}).items()]
            metrics = [Metric(k, v, ts, step) for k, v, step, ts in op.get("metrics", [])]
            for chunk in _chunks(params, 100):  # MLflow: at most 100 params / tags, 1000 metrics a request
                self.client.log_batch(run_id, params=chunk)
            for chunk in _chunks(tags, 100):
                self.client.log_batch(run_id, tags=chunk)
            for chunk in _chunks(metrics, 1000):
                if chunk:
                    self.client.log_batch(run_id, metrics=chunk)
        elif kind == "artifact":
            self.client.log_artifact(run_id, str(self.outbox.path(op["files"]["file"])), op.get("artifact_path"))
        elif kind == "table":
            self._log_table(run_id, self.outbox.path(op["files"]["file"]), op["artifact_file"])
        elif kind == "end":
            self.client.set_terminated(run_id, op["status"])
        else:
            raise ValueError(f"unknown outbox operation {kind!r}")

    def _log_table(self, run_id: str, path: Path, artifact_file: str) -> None:
        """`log_table` appends to an existing table file; a replay or re-run overwrites it instead."""
        folder = os.path.dirname(artifact_file) or None
        existing = {f.path for f in self.client.list_artifacts(run_id, folder)}
        if artifact_file in existing:
            self.client.log_artifact(run_id, str(path), folder)
        else:
            self.client.log_table(run_id, pd.read_json(path, orient="split"), artifact_file)


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()}
