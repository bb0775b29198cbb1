"""The on-disk queues of training metrics (`<store>/mlflow/train_outbox/<run>-<target hash>/`): where a
run's reports go (`MetricsTarget`), and applying queues with a `Tracker` (`flush_queue`, `drain_all`).

Below both `tracking.runs` (whose `Tracker.flush` drains the store's queues) and
`tracking.train_metrics` (rank 0's writer, which makes a Tracker to send its own queue), so neither of
those imports the other in a cycle. The tracker is passed in; nothing here builds one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from videopolicy.tracking.outbox import FlushResult, Outbox
from videopolicy.tracking.server import mlflow_dir

# not *.json: the Outbox takes every *.json file of its directory for a queued operation
TARGET_FILE, MARK_FILE, DONE_FILE = "target.meta", "mark.meta", "done.meta"


@dataclass(frozen=True)
class MetricsTarget:
    """Where a training run's metrics go."""

    uri: str
    managed: bool = False  # the store's own local server: found again through server.json if its port changes
    run: Optional[dict] = None  # a RunRef as dict (sweep runs), resolved when applied
    experiment: Optional[str] = None  # the run's experiment (with `run`)
    run_id: Optional[str] = None  # or a plain MLflow run id

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    def matches(self, uri: str, managed: bool) -> bool:
        """Can a Tracker on `uri` (managed or not) deliver these operations?"""
        return (self.managed and managed) or self.uri == uri


def queue_dir(store: str | Path, name: str, target: MetricsTarget) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
    return mlflow_dir(store) / "train_outbox" / f"{safe}-{target.key()}"


def flush_queue(path: Path, tracker) -> FlushResult:
    """Apply one run's queue with `tracker` (under the store's outbox lock: one applier at a time resolves
    runs, so two processes never both create the same run). Removes the queue once the run has finished
    and everything arrived; reports a healthy server rejected stay in its failed/ with their errors."""
    queue = Outbox(path)
    with tracker.outbox.lock():
        result = queue.flush(tracker._apply, tracker._server_up)
    if result.complete and (path / DONE_FILE).exists() and not queue.failed():  # rejected reports stay, with errors
        shutil.rmtree(path, ignore_errors=True)
    return result


def _queues_for(store: str | Path, tracker) -> list[Path]:
    """The training queues of `store` whose operations `tracker` can deliver."""
    root = mlflow_dir(store) / "train_outbox"
    found = []
    for path in sorted(root.glob(f"*/{TARGET_FILE}")) if root.exists() else []:
        try:
            target = MetricsTarget(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if target.matches(tracker.uri, tracker.managed):
            found.append(path.parent)
    return found


def drain_all(store: str | Path, tracker) -> int:
    """Flush every training queue of `store` that `tracker` can deliver; the number of operations still queued."""
    return sum(flush_queue(path, tracker).pending for path in _queues_for(store, tracker))


def pending_for(store: str | Path, tracker) -> int:
    return sum(len(Outbox(path).pending()) for path in _queues_for(store, tracker))
