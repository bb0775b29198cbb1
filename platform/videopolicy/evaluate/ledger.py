"""The episode ledger: one durable SQLite record per (episode, policy, policy seed, protocol).

States and the only transitions (each one SQL statement guarded by the current state, in WAL mode,
so a crash leaves every record in exactly one state):

    pending --lease--> leased --complete--> done
                        |  \\--infra (attempts left)--> pending
                        |   \\-infra (no attempts left)--> infra_error
                        \\--heartbeat older than ttl: reclaimable by the next lease()

A lease belongs to an owner (one evaluate() call). `complete` only succeeds while the caller still
holds the lease, so an episode whose lease was reclaimed by another run is never counted twice.
Only the driver writes the ledger (workers return results), so it may live on a local disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from videopolicy.sim.suites.base import EpisodeSpec

STATUSES = ("pending", "leased", "done", "infra_error")

#: The per-episode result schema (the stats/report helpers and the sweep rely on exactly these).
RESULT_COLUMNS = [
    "suite", "task", "scene", "index", "seed", "episode_key", "policy_id", "policy_seed", "protocol_hash",
    "status", "success", "steps", "failure_reason", "video_path", "attempts", "wall_s", "instruction",
]
# instruction: the sentence the policy was conditioned on in that episode (the env's own episode
# language where the suite has one, RoboCasa / LIBERO; the suite's task sentence otherwise)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    episode_key   TEXT NOT NULL,
    policy_id     TEXT NOT NULL,
    policy_seed   INTEGER NOT NULL,
    protocol_hash TEXT NOT NULL,
    suite TEXT NOT NULL, task TEXT NOT NULL, scene TEXT NOT NULL, idx INTEGER NOT NULL, seed INTEGER NOT NULL,
    ord           INTEGER NOT NULL,            -- lease order (the episode list's order)
    status        TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'done', 'infra_error')),
    lease_owner   TEXT,
    heartbeat     REAL,
    attempts      INTEGER NOT NULL DEFAULT 0,  -- leases taken (1 + infrastructure retries)
    success       INTEGER,
    steps         INTEGER,
    failure_reason TEXT,
    video_path    TEXT,
    wall_s        REAL,
    instruction   TEXT,                        -- the sentence the policy was given (see RESULT_COLUMNS)
    details       TEXT,                        -- JSON: timings (sim, policy wait), worker, errors
    updated       REAL NOT NULL,
    PRIMARY KEY (episode_key, policy_id, policy_seed, protocol_hash)
);
CREATE INDEX IF NOT EXISTS by_status ON episodes (policy_id, policy_seed, protocol_hash, status, ord);
CREATE TABLE IF NOT EXISTS stops (             -- adaptive evaluation: where and why a run stopped
    policy_id     TEXT NOT NULL,
    policy_seed   INTEGER NOT NULL,
    protocol_hash TEXT NOT NULL,
    rounds        INTEGER NOT NULL,            -- complete rounds (episodes per task) when it stopped
    reason        TEXT NOT NULL,               -- "decided: better" | "decided: worse" | "max_episodes"
    info          TEXT,                        -- JSON: the sequential test's result at the stop
    updated       REAL NOT NULL,
    PRIMARY KEY (policy_id, policy_seed, protocol_hash)
);
"""


@dataclass(frozen=True)
class RunKey:
    """Which evaluation a record belongs to: the policy (and its sampling seed) and the protocol."""

    policy_id: str
    policy_seed: int
    protocol_hash: str


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves (a writer lock before reading)
        self.db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self._add_column("instruction", "TEXT")  # ledgers written before it existed: old records read NULL

    def _add_column(self, name: str, decl: str) -> None:
        if name in {row[1] for row in self.db.execute("PRAGMA table_info(episodes)")}:
            return
        try:
            self.db.execute(f"ALTER TABLE episodes ADD COLUMN {name} {decl}")
        except sqlite3.OperationalError:  # another driver added it first
            if name not in {row[1] for row in self.db.execute("PRAGMA table_info(episodes)")}:
                raise

    def close(self) -> None:
        self.db.close()

    def _tx(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, args)

    # -- transitions -------------------------------------------------------------------------------

    def add(self, run: RunKey, specs: Iterable[EpisodeSpec]) -> int:
        """Insert missing episodes as pending (existing records, whatever their state, are kept)."""
        now = time.time()
        rows = [(s.key, run.policy_id, run.policy_seed, run.protocol_hash, s.suite, s.task, s.scene, s.index,
                 s.seed, i, now) for i, s in enumerate(specs)]
        self._tx("BEGIN IMMEDIATE")
        try:
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO episodes (episode_key, policy_id, policy_seed, protocol_hash, suite, task, "
                "scene, idx, seed, ord, status, updated) VALUES (?,?,?,?,?,?,?,?,?,?,'pending',?)", rows)
            added = self.db.total_changes - before
            self._tx("COMMIT")
        except BaseException:
            self._tx("ROLLBACK")
            raise
        return added

    def requeue_infra_errors(self, run: RunKey, keys: Optional[list[str]] = None) -> int:
        """infra_error -> pending (a new run retries what infrastructure prevented; never counted)."""
        where, args = self._where(run, keys)
        cur = self._tx(f"UPDATE episodes SET status='pending', attempts=0, failure_reason=NULL, updated=? "
                       f"WHERE {where} AND status='infra_error'", (time.time(), *args))
        return cur.rowcount

    def lease(self, run: RunKey, owner: str, keys: Optional[list[str]] = None, ttl_s: float = 120.0
              ) -> Optional[EpisodeSpec]:
        """Lease the first pending episode (or one whose lease went stale); None when there is none.

        `keys` restricts the lease to this evaluation's episode list (the ledger may hold more).
        """
        now = time.time()
        where = ("policy_id=? AND policy_seed=? AND protocol_hash=? AND "
                 "(status='pending' OR (status='leased' AND heartbeat < ?))")
        args: list = [run.policy_id, run.policy_seed, run.protocol_hash, now - ttl_s]
        if keys is not None:
            where += f" AND episode_key IN ({','.join('?' * len(keys))})"
            args += keys
        self._tx("BEGIN IMMEDIATE")
        try:
            row = self._tx(f"SELECT episode_key, suite, task, scene, idx, seed FROM episodes WHERE {where} "
                           "ORDER BY ord LIMIT 1", tuple(args)).fetchone()
            if row is None:
                self._tx("COMMIT")
                return None
            self._tx("UPDATE episodes SET status='leased', lease_owner=?, heartbeat=?, attempts=attempts+1, "
                     "updated=? WHERE episode_key=? AND policy_id=? AND policy_seed=? AND protocol_hash=?",
                     (owner, now, now, row[0], run.policy_id, run.policy_seed, run.protocol_hash))
            self._tx("COMMIT")
        except BaseException:
            self._tx("ROLLBACK")
            raise
        return EpisodeSpec(row[1], row[2], row[3], int(row[4]), int(row[5]))

    def heartbeat(self, run: RunKey, owner: str, keys: list[str]) -> None:
        if not keys:
            return
        now = time.time()
        self._tx(f"UPDATE episodes SET heartbeat=? WHERE status='leased' AND lease_owner=? AND policy_id=? AND "
                 f"policy_seed=? AND protocol_hash=? AND episode_key IN ({','.join('?' * len(keys))})",
                 (now, owner, run.policy_id, run.policy_seed, run.protocol_hash, *keys))

    def complete(self, run: RunKey, owner: str, key: str, success: bool, steps: int,
                 failure_reason: Optional[str], video_path: Optional[str], wall_s: float, details: dict,
                 instruction: Optional[str] = None) -> bool:
        """leased -> done, only if `owner` still holds the lease; False (nothing written) otherwise.
        `instruction`: the sentence the policy was conditioned on in this episode.

        Earlier infrastructure errors of this episode stay in ``details["infra_errors"]``."""
        ident = (key, run.policy_id, run.policy_seed, run.protocol_hash, owner)
        guard = "episode_key=? AND policy_id=? AND policy_seed=? AND protocol_hash=? AND status='leased' AND lease_owner=?"
        self._tx("BEGIN IMMEDIATE")
        try:
            row = self._tx(f"SELECT details FROM episodes WHERE {guard}", ident).fetchone()
            if row is None:
                self._tx("COMMIT")
                return False
            merged = {**(json.loads(row[0]) if row[0] else {}), **details}
            self._tx(f"UPDATE episodes SET status='done', success=?, steps=?, failure_reason=?, video_path=?, "
                     f"wall_s=?, instruction=?, details=?, lease_owner=NULL, updated=? WHERE {guard}",
                     (int(bool(success)), int(steps), failure_reason, video_path, float(wall_s), instruction,
                      json.dumps(merged), time.time(), *ident))
            self._tx("COMMIT")
        except BaseException:
            self._tx("ROLLBACK")
            raise
        return True

    def infra_error(self, run: RunKey, owner: str, key: str, error: str, max_retries: int) -> str:
        """An infrastructure failure of a leased episode: back to pending while retries remain, else
        infra_error (never counted as a policy failure). Returns the new status ('' if the lease was lost)."""
        self._tx("BEGIN IMMEDIATE")
        try:
            row = self._tx("SELECT attempts, details FROM episodes WHERE episode_key=? AND policy_id=? AND "
                           "policy_seed=? AND protocol_hash=? AND status='leased' AND lease_owner=?",
                           (key, run.policy_id, run.policy_seed, run.protocol_hash, owner)).fetchone()
            if row is None:
                self._tx("COMMIT")
                return ""
            details = json.loads(row[1]) if row[1] else {}
            details.setdefault("infra_errors", []).append(error[-2000:])
            status = "pending" if row[0] <= max_retries else "infra_error"
            self._tx("UPDATE episodes SET status=?, lease_owner=NULL, details=?, failure_reason=?, updated=? "
                     "WHERE episode_key=? AND policy_id=? AND policy_seed=? AND protocol_hash=?",
                     (status, json.dumps(details), "infra: " + error.strip().splitlines()[-1][:200]
                      if status == "infra_error" and error.strip() else None,
                      time.time(), key, run.policy_id, run.policy_seed, run.protocol_hash))
            self._tx("COMMIT")
        except BaseException:
            self._tx("ROLLBACK")
            raise
        return status

    def record_stop(self, run: RunKey, rounds: int, reason: str, info: dict) -> None:
        """Adaptive evaluation stopped this run after `rounds` rounds (final: the first record is kept)."""
        self._tx("INSERT OR IGNORE INTO stops (policy_id, policy_seed, protocol_hash, rounds, reason, info, updated) "
                 "VALUES (?,?,?,?,?,?,?)", (run.policy_id, run.policy_seed, run.protocol_hash, int(rounds), reason,
                                           json.dumps(info), time.time()))

    def stop_record(self, run: RunKey) -> Optional[dict]:
        """{"rounds", "reason", "info"} where adaptive evaluation stopped this run; None if it has not."""
        row = self._tx("SELECT rounds, reason, info FROM stops WHERE policy_id=? AND policy_seed=? AND protocol_hash=?",
                       (run.policy_id, run.policy_seed, run.protocol_hash)).fetchone()
        return None if row is None else {"rounds": int(row[0]), "reason": row[1],
                                         "info": json.loads(row[2]) if row[2] else {}}

    # -- reading -----------------------------------------------------------------------------------

    def counts(self, run: RunKey, keys: Optional[list[str]] = None) -> dict[str, int]:
        where, args = self._where(run, keys)
        out = {s: 0 for s in STATUSES}
        for status, n in self._tx(f"SELECT status, COUNT(*) FROM episodes WHERE {where} GROUP BY status", args):
            out[status] = n
        return out

    def _where(self, run: RunKey, keys: Optional[list[str]]) -> tuple[str, tuple]:
        where = "policy_id=? AND policy_seed=? AND protocol_hash=?"
        args: tuple = (run.policy_id, run.policy_seed, run.protocol_hash)
        if keys is not None:
            where += f" AND episode_key IN ({','.join('?' * len(keys))})"
            args += tuple(keys)
        return where, args

    def records(self, run: RunKey, keys: Optional[list[str]] = None) -> list[dict]:
        """Finished records (done / infra_error) in the result schema, plus ``details`` (dict)."""
        where, args = self._where(run, keys)
        cur = self._tx(
            "SELECT suite, task, scene, idx, seed, episode_key, policy_id, policy_seed, protocol_hash, status, "
            "success, steps, failure_reason, video_path, attempts, wall_s, instruction, details FROM episodes "
            f"WHERE {where} AND status IN ('done', 'infra_error') ORDER BY ord", args)
        out = []
        for row in cur.fetchall():
            rec = dict(zip(RESULT_COLUMNS + ["details"], row))
            rec["success"] = bool(rec["success"]) if rec["status"] == "done" else False
            rec["steps"] = int(rec["steps"] or 0)
            rec["wall_s"] = float(rec["wall_s"] or 0.0)
            rec["details"] = json.loads(rec["details"]) if rec["details"] else {}
            out.append(rec)
        return out
