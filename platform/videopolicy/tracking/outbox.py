"""A durable local queue of MLflow logging operations: nothing is lost while the server is down.

Every logging call is first written to `<store>/mlflow/outbox/<seq>.json` (files it refers to are
hard-linked or copied next to it), then applied; an operation's file is deleted only after the
server accepted it. If the server is unreachable the operations stay, in order, and `flush()`
replays them when it is back (the next logging call flushes too). Operations are idempotent
(explicit metric timestamps, same-valued params, overwritten artifacts), so replaying one the
server had already received before it went down changes nothing.

An operation that a healthy server rejects several times (e.g. a param changed value) is moved to
`outbox/failed/` with its error, never silently dropped.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from videopolicy.util import file_lock, write_atomic

MAX_ATTEMPTS = 3  # rejections by a healthy server before an operation is set aside in failed/


@dataclass
class FlushResult:
    applied: int
    pending: int  # still queued (server down)
    failed: int  # set aside in failed/ during this flush

    @property
    def complete(self) -> bool:
        return self.pending == 0


class Outbox:
    """Operations as JSON files, applied in the order they were queued (one flusher at a time)."""

    _counter = itertools.count()

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "blobs").mkdir(exist_ok=True)
        (self.root / "failed").mkdir(exist_ok=True)

    def put(self, op: dict, files: dict[str, str | Path] | None = None) -> Path:
        """Queue `op`; `files` (name -> local path) are preserved with it under op['files']."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):06d}"
        if files:
            blob_dir = self.root / "blobs" / name
            blob_dir.mkdir()
            op = {**op, "files": {}}
            for key, src in files.items():
                dst = blob_dir / Path(src).name
                try:
                    os.link(src, dst)  # no copy of large videos when on the same filesystem
                except OSError:
                    shutil.copy2(src, dst)
                op["files"][key] = str(dst.relative_to(self.root))
        op = {**op, "id": name, "attempts": 0}
        return write_atomic(self.root / f"{name}.json", json.dumps(op, default=str))  # a crash leaves no half-written op

    def pending(self) -> list[Path]:
        return sorted(self.root.glob("*.json"))

    def failed(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.root / "failed").glob("*.json"))]

    def path(self, relative: str) -> Path:
        return self.root / relative

    def lock(self) -> AbstractContextManager[None]:
        return file_lock(self.root / ".lock")

    def _done(self, path: Path, op: dict) -> None:
        path.unlink()
        shutil.rmtree(self.root / "blobs" / op["id"], ignore_errors=True)

    def flush(self, apply: Callable[[dict], None], server_up: Callable[[], bool]) -> FlushResult:
        """Apply queued operations in order until done or the server is down."""
        applied = failed = 0
        with self.lock():
            if not server_up():
                return FlushResult(0, len(self.pending()), 0)
            for path in self.pending():
                try:
                    op = json.loads(path.read_text())
                except FileNotFoundError:  # applied by a flusher that held the lock before us
                    continue
                outcome = self._apply_one(op, apply, server_up)
                if outcome == "down":
                    break
                if outcome == "failed":  # set aside with its error and its files (blobs/ keeps them)
                    (self.root / "failed" / path.name).write_text(json.dumps(op, default=str))
                    path.unlink()
                    failed += 1
                    continue
                self._done(path, op)
                applied += 1
        return FlushResult(applied, len(self.pending()), failed)

    @staticmethod
    def _apply_one(op: dict, apply: Callable[[dict], None], server_up: Callable[[], bool]) -> str:
        """'applied', 'down' (server unreachable: keep it queued) or 'failed' (rejected MAX_ATTEMPTS times)."""
        while True:
            try:
                apply(op)
                return "applied"
            except Exception as e:  # noqa: BLE001 - classified here: server down vs operation rejected
                if not server_up():
                    return "down"
                op["attempts"] += 1
                op.setdefault("errors", []).append(f"{type(e).__name__}: {e}"[:2000])
                if op["attempts"] >= MAX_ATTEMPTS:
                    return "failed"
                time.sleep(0.5 * op["attempts"])
