"""Content-addressed stage outputs: `<store>/<kind>/<key>/` with a manifest and a completion marker.

key = hash(stage kind, the config fields that change the output, the keys of the stage's inputs).
A stage's directory counts as done only when `_COMPLETE` exists; it is written last, after the
manifest, so a crash mid-stage leaves an incomplete directory that the next run redoes (or resumes
from its own partial files), never a directory that looks finished.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videopolicy.util import write_atomic

COMPLETE = "_COMPLETE"
MANIFEST = "manifest.json"


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Hash of JSON-serialisable parts; key order does not matter, list order does."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed derived from named parts (so seeds of different purposes never collide)."""
    return int(stable_hash(*parts, length=8), 16) & 0x7FFFFFFF


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


@dataclass(frozen=True)
class StageDir:
    root: Path
    kind: str
    key: str

    @classmethod
    def of(cls, store: str | Path, kind: str, key: str) -> "StageDir":
        return cls(Path(store).expanduser().resolve(), kind, key)

    @property
    def path(self) -> Path:
        return self.root / self.kind / self.key

    def is_complete(self) -> bool:
        return (self.path / COMPLETE).exists()

    def manifest(self) -> dict:
        return json.loads((self.path / MANIFEST).read_text())

    def prepare(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def complete(self, manifest: dict) -> None:
        """Write the manifest, then the marker: the marker is the commit point."""
        write_json_atomic(self.path / MANIFEST, {"kind": self.kind, "key": self.key, **manifest})
        (self.path / COMPLETE).write_text(self.key)
