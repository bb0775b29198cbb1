"""Training metrics (rank 0) through a durable per-run outbox: none lost while the tracking server is down,
none logged twice when a run resumes, and the training step never waits for the server.

A report is one outbox operation in `<store>/mlflow/train_outbox/<run>-<target hash>/`: a local file write
of about a millisecond. A background thread applies the queue in order whenever the server answers, and
checks again every RETRY_S while it does not. At the end of the loop, `close()` flushes once more, within a
time bound. What is still queued after that is sent by the driver: `run_training` flushes after the
trainer returns, and a sweep's Tracker flushes every queue of its store whenever it flushes its own
(`drain_all`). The end of a sweep restarts the store's local server for that.

Resumption. A resumed run (a worker group restarted from a checkpoint, or the same run launched again)
repeats the steps between its last checkpoint and the crash. The queue keeps a high-water mark, the
last step it queued, and skips reports at or below it. Each step thus keeps the values logged first,
and no step of the MLflow run appears twice. Once a run has finished and everything is applied, the
queue directory is removed, and a later launch with more steps starts a fresh one. The final step is
always a checkpoint, so no step above it was logged.

Where metrics go (`MetricsTarget`) is either a sweep's run by reference (sweep/row/stage tags; it is
resolved, or created, when the server is back, as for every other outbox operation) or a plain run id
(jobs/train_stage.py).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from videopolicy.tracking.outbox import FlushResult, Outbox
from videopolicy.tracking.server import mlflow_dir
from videopolicy.tracking.train_queues import (
    DONE_FILE,
    MARK_FILE,
    TARGET_FILE,
    MetricsTarget,
    drain_all,
    flush_queue,
    pending_for,
    queue_dir,
)
from videopolicy.util import write_atomic

__all__ = ["MetricsTarget", "TrainMetrics", "drain_all", "finish_runs", "flush_queue", "pending_for", "queue_dir"]

log = logging.getLogger(__name__)

RETRY_S = 5.0  # while the server is down, the background thread probes it this often
CLOSE_TIMEOUT_S = 30.0  # the end of a training loop waits at most this long for its queue to drain
def _tracker(store: str | Path, target: MetricsTarget):
    from videopolicy.tracking.runs import Tracker

    sweep = (target.run or {}).get("sweep") or "train"
    return Tracker(store, sweep=sweep, experiment=target.experiment or "videopolicy", uri=target.uri,
                   auto_flush=False, managed=target.managed)


def finish_runs(store: str | Path, name: str) -> int:
    """Driver side, after training run `name` finished: mark its queues done and send what is left (a queue
    is removed once empty; if the server is down it stays for the next flush of the store's Tracker).
    Returns the number of reports still queued."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
    root, left = mlflow_dir(store) / "train_outbox", 0
    for path in sorted(root.glob(f"{safe}-*/{TARGET_FILE}")) if root.exists() else []:
        if not re.fullmatch(re.escape(safe) + r"-[0-9a-f]{10}", path.parent.name):
            continue
        try:
            target = MetricsTarget(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        (path.parent / DONE_FILE).write_text(json.dumps({"finished_at": time.time()}))
        try:
            left += flush_queue(path.parent, _tracker(store, target)).pending
        except Exception as e:  # noqa: BLE001 - the training itself succeeded; the reports stay queued
            log.warning("training metrics of %s: flush failed (kept in %s): %s", name, path.parent, e)
            left += len(Outbox(path.parent).pending())
    return left


class TrainMetrics:
    """Rank 0's metrics queue for one training run (see the module docstring)."""

    def __init__(self, store: str | Path, name: str, target: MetricsTarget, prefix: str = ""):
        from videopolicy.tracking.server import fail_fast_client

        fail_fast_client()  # this process's MLflow client: a few short retries, not minutes of back-off
        self.store, self.target, self.prefix = Path(store), target, prefix
        self.dir = queue_dir(store, name, target)
        self.outbox = Outbox(self.dir)
        write_atomic(self.dir / TARGET_FILE, json.dumps(asdict(target)))
        (self.dir / DONE_FILE).unlink(missing_ok=True)  # running (again): keep the queue until this run ends
        self.mark = self._recover_mark()
        self.skipped: list[int] = []
        self.last_flush: Optional[FlushResult] = None
        self._wake, self._closing = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="train-metrics", daemon=True)
        self._thread.start()

    def _recover_mark(self) -> int:
        """The last step queued by any attempt of this run: the mark file, or a queued report past it (a crash
        between queueing a report and writing the mark)."""
        mark = 0
        try:
            mark = int(json.loads((self.dir / MARK_FILE).read_text())["step"])
        except (OSError, ValueError, KeyError):
            pass
        for path in self.outbox.pending():
            try:
                mark = max(mark, max((int(row[2]) for row in json.loads(path.read_text())["metrics"]), default=0))
            except (OSError, ValueError, KeyError):
                continue
        return mark

    def log(self, metrics: dict[str, float], step: int) -> bool:
        """Queue one report (never blocks on the server). False when an earlier attempt already logged `step`."""
        if step <= self.mark:
            self.skipped.append(step)
            return False
        ts = int(time.time() * 1000)
        rows = [[self.prefix + k, float(v), int(step), ts] for k, v in metrics.items()
                if v is not None and math.isfinite(float(v))]
        op = {"op": "batch", "metrics": rows, "experiment": self.target.experiment}
        op.update({"run": self.target.run} if self.target.run else {"run_id": self.target.run_id})
        self.outbox.put(op)
        self.mark = step
        write_atomic(self.dir / MARK_FILE, json.dumps({"step": step}))
        self._wake.set()
        return True

    def _run(self) -> None:
        tracker = None
        while True:
            self._wake.wait(timeout=RETRY_S)
            self._wake.clear()
            closing = self._closing.is_set()
            if closing:
                (self.dir / DONE_FILE).write_text(json.dumps({"step": self.mark}))
            try:
                tracker = tracker or _tracker(self.store, self.target)
                self.last_flush = flush_queue(self.dir, tracker)
            except Exception as e:  # noqa: BLE001 - tracking must never stop training; retried later
                log.warning("training metrics: flush failed (kept queued in %s): %s", self.dir, e)
                self.last_flush = None
            if closing:
                return

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> Optional[FlushResult]:
        """The run has ended: flush once more (at most `timeout_s`); the driver sends what is left."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout_s)
        return self.last_flush
