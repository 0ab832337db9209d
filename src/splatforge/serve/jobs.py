"""The durable job store: one SQLite database (WAL) holding every job's state.

Every state change is one conditional UPDATE (`... WHERE id = ? AND status IN (...)`, and for a
worker's own changes `AND worker_id = ?`) in one transaction, checked by its row count, so of two
racing changes (a worker finishing while a user cancels, a timeout while a result arrives, a job
requeued and claimed by another worker) exactly one wins, and a job reaches a terminal state
exactly once. Each terminal transition is also
appended to `events`, which is how tests and the benchmark verify that claim.

WAL with synchronous=NORMAL survives the server process being killed at any instant (only a
power loss can drop the last commits). Job ids are generated here (uuid4 hex) and are the only
thing result paths are built from.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from splatforge.errors import SplatforgeError
from splatforge.serve.schemas import TERMINAL_STATUSES

JOB_ID_RE = re.compile(r"[0-9a-f]{32}(-s)?")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    webhook TEXT,
    execution_timeout_ms INTEGER,
    ttl_ms INTEGER,
    retention_s REAL NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    result TEXT,
    error TEXT,
    webhook_state TEXT,
    links_base TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, status TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class QueueFull(SplatforgeError):
    """The queue holds its maximum number of jobs; the client should retry later (HTTP 429)."""


@dataclass
class Job:
    id: str
    status: str
    input: dict
    webhook: Optional[str]
    execution_timeout_ms: Optional[int]
    ttl_ms: Optional[int]
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]
    expires_at: Optional[float]
    attempts: int
    worker_id: Optional[str]
    result: Optional[dict]
    error: Optional[str]
    webhook_state: Optional[str]
    links_base: Optional[str] = None  # URL prefix of the result links in its webhook body

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


_COLUMNS = ("id, status, input, webhook, execution_timeout_ms, ttl_ms, created_at, started_at, finished_at, "
            "expires_at, attempts, worker_id, result, error, webhook_state, links_base")


def _job(row) -> Job:
    (id_, status, input_, webhook, exec_ms, ttl_ms, created, started, finished, expires, attempts, worker,
     result, error, webhook_state, links_base) = row
    return Job(id_, status, json.loads(input_), webhook, exec_ms, ttl_ms, created, started, finished, expires,
               attempts, worker, json.loads(result) if result else None, error, webhook_state, links_base)


class JobStore:
    """Jobs in `<data_dir>/jobs.sqlite3`; safe to use from many threads of one process."""

    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "links_base" not in columns:  # a store written before result links were absolute
            self._db.execute("ALTER TABLE jobs ADD COLUMN links_base TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Transaction(self._db, self._lock)

    # ------------------------------------------------------------------ submission and lookup

    def submit(self, job_input: dict, *, webhook: Optional[str], execution_timeout_ms: Optional[int],
               ttl_ms: Optional[int], retention_s: float, max_queue: int, sync: bool = False,
               links_base: Optional[str] = None) -> str:
        job_id = uuid.uuid4().hex + ("-s" if sync else "")
        now = time.time()
        expires = now + ttl_ms / 1000 if ttl_ms else None
        with self._tx() as db:
            (queued,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'IN_QUEUE'").fetchone()
            if queued >= max_queue:
                raise QueueFull(f"the queue is full ({queued} jobs waiting); retry later")
            db.execute("INSERT INTO jobs (id, status, input, webhook, execution_timeout_ms, ttl_ms, retention_s, "
                       "created_at, expires_at, links_base) VALUES (?, 'IN_QUEUE', ?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, json.dumps(job_input), webhook, execution_timeout_ms, ttl_ms, retention_s, now,
                        expires, links_base))
        return job_id

    def get(self, job_id: str) -> Optional[Job]:
        if not JOB_ID_RE.fullmatch(job_id or ""):
            return None
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def claim(self, worker_id: str) -> Optional[Job]:
        """Move the oldest queued job to IN_PROGRESS for `worker_id`."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM jobs WHERE status = 'IN_QUEUE' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'IN_PROGRESS', started_at = ?, attempts = attempts + 1, "
                       "worker_id = ? WHERE id = ? AND status = 'IN_QUEUE'", (time.time(), worker_id, row[0]))
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (row[0],)).fetchone()
        return _job(row)

    # ------------------------------------------------------------------ transitions

    def finish(self, job_id: str, status: str, *, result: Optional[dict] = None, error: Optional[str] = None,
               from_statuses: tuple[str, ...] = ("IN_PROGRESS",), worker_id: Optional[str] = None,
               grace_s: float = 60.0) -> bool:
        """Move a job to a terminal status if it is in one of `from_statuses` (and, given
        `worker_id`, claimed by that worker); False if another change won. Results are kept for the
        job's retention (or until its ttl)."""
        with self._tx() as db:
            return _finish(db, job_id, status, result=result, error=error, from_statuses=from_statuses,
                           worker_id=worker_id, grace_s=grace_s) is not None

    def cancel(self, job_id: str) -> Optional[tuple[str, Optional[str]]]:
        """Cancel a queued or running job. Returns (status afterwards, the worker that was running
        it, to be stopped, or None); None for an unknown job. A job claimed a moment before is
        cancelled all the same, and its worker named."""
        with self._tx() as db:
            claimed_by = _finish(db, job_id, "CANCELLED", from_statuses=("IN_QUEUE", "IN_PROGRESS"))
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        return row[0], (claimed_by or None)

    def retry(self, job_id: str) -> Optional[str]:
        """Queue a FAILED or TIMED_OUT job again; returns its status afterwards (None: unknown)."""
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET status = 'IN_QUEUE', started_at = NULL, finished_at = NULL, result = NULL, "
                       "error = NULL, attempts = 0, worker_id = NULL, retried = retried + 1, webhook_state = NULL, "
                       "expires_at = CASE WHEN ttl_ms IS NULL THEN NULL ELSE ? + ttl_ms / 1000.0 END "
                       "WHERE id = ? AND status IN ('FAILED', 'TIMED_OUT')", (time.time(), job_id))
            if cur.rowcount == 1:
                db.execute("INSERT INTO totals (name, value) VALUES ('retried', 1) "
                           "ON CONFLICT(name) DO UPDATE SET value = value + 1")
        job = self.get(job_id)
        return job.status if job else None

    def purge_queue(self) -> list[str]:
        """Cancel every queued job; returns their ids."""
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE status = 'IN_QUEUE'")]
            return [i for i in ids if _finish(db, i, "CANCELLED", from_statuses=("IN_QUEUE",)) is not None]

    def requeue_or_fail(self, job_id: str, max_attempts: int, reason: str, *,
                        worker_id: Optional[str] = None) -> str:
        """After a worker died mid-job: queue it again, or fail it after `max_attempts` tries; in
        one transaction, and only while it is IN_PROGRESS (for `worker_id`, when given). Returns the
        job's status afterwards ("GONE" if it no longer exists)."""
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET status = 'IN_QUEUE', worker_id = NULL, started_at = NULL "
                             "WHERE id = ? AND status = 'IN_PROGRESS' AND (? IS NULL OR worker_id = ?) "
                             "AND attempts < ?", (job_id, worker_id, worker_id, max_attempts))
            if cur.rowcount == 1:
                return "IN_QUEUE"
            if _finish(db, job_id, "FAILED", error=f"{reason}; gave up after {max_attempts} attempts",
                       worker_id=worker_id) is not None:
                return "FAILED"
            # Another change won: a cancel, a timeout, or another worker's claim.
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else "GONE"

    def fail_queued(self, reason: str) -> list[str]:
        """End every queued job as FAILED with `reason` (no worker can run them); returns their ids."""
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE status = 'IN_QUEUE'")]
            return [i for i in ids if _finish(db, i, "FAILED", error=reason, from_statuses=("IN_QUEUE",))
                    is not None]

    def recover(self, max_attempts: int) -> tuple[int, int]:
        """At startup: jobs left IN_PROGRESS by a crash run again (or fail after `max_attempts`).
        Returns (requeued, failed)."""
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE status = 'IN_PROGRESS'")]
        outcomes = [self.requeue_or_fail(i, max_attempts, "the server stopped while the job ran") for i in ids]
        return outcomes.count("IN_QUEUE"), outcomes.count("FAILED")

    def time_out_expired(self) -> list[tuple[str, Optional[str]]]:
        """End unfinished jobs whose ttl has passed as TIMED_OUT; returns (id, the worker that was
        running it or None)."""
        now = time.time()
        ended = []
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE status IN ('IN_QUEUE', 'IN_PROGRESS') "
                                            "AND expires_at IS NOT NULL AND expires_at < ?", (now,))]
            for job_id in ids:
                worker = _finish(db, job_id, "TIMED_OUT", error="the job's ttl ran out before it finished",
                                 from_statuses=("IN_QUEUE", "IN_PROGRESS"))
                if worker is not None:
                    ended.append((job_id, worker or None))
        return ended

    def delete_expired(self) -> list[str]:
        """Remove finished jobs whose results have expired; returns their ids (to delete files)."""
        now = time.time()
        with self._tx() as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM jobs WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT') "
                "AND expires_at IS NOT NULL AND expires_at < ? AND (webhook_state IS NULL OR webhook_state != "
                "'pending')", (now,))]
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
            db.execute("DELETE FROM events WHERE at < ?", (now - 7 * 24 * 3600,))
        return ids

    # ------------------------------------------------------------------ webhooks and figures

    def pending_webhooks(self, limit: int = 16) -> list[Job]:
        with self._tx() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE webhook_state = 'pending' ORDER BY finished_at "
                              "LIMIT ?", (limit,)).fetchall()
        return [_job(r) for r in rows]

    def mark_webhook(self, job_id: str, state: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET webhook_state = ? WHERE id = ?", (state, job_id))

    def counts(self) -> dict[str, int]:
        with self._tx() as db:
            by_status = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
            row = db.execute("SELECT value FROM totals WHERE name = 'retried'").fetchone()
        return {"completed": by_status.get("COMPLETED", 0),
                "failed": by_status.get("FAILED", 0) + by_status.get("TIMED_OUT", 0),
                "inProgress": by_status.get("IN_PROGRESS", 0), "inQueue": by_status.get("IN_QUEUE", 0),
                "retried": row[0] if row else 0}

    def terminal_events(self) -> list[tuple[str, str]]:
        """Every terminal transition ever recorded (kept a week): (job id, status)."""
        with self._tx() as db:
            return [tuple(r) for r in db.execute("SELECT job_id, status FROM events ORDER BY rowid")]

    def status_of_all(self) -> dict[str, str]:
        with self._tx() as db:
            return dict(db.execute("SELECT id, status FROM jobs").fetchall())


def _finish(db: sqlite3.Connection, job_id: str, status: str, *, result: Optional[dict] = None,
            error: Optional[str] = None, from_statuses: tuple[str, ...] = ("IN_PROGRESS",),
            worker_id: Optional[str] = None, grace_s: float = 60.0) -> Optional[str]:
    """The terminal transition inside a caller's transaction. Returns None if the job was not in
    `from_statuses` (or not claimed by `worker_id`), else the worker it was claimed by ("" if none)."""
    assert status in TERMINAL_STATUSES, status
    now = time.time()
    marks = ",".join("?" * len(from_statuses))
    worker_clause = " AND worker_id = ?" if worker_id is not None else ""
    rows = db.execute(
        f"UPDATE jobs SET status = ?, finished_at = ?, result = ?, error = ?, "
        f"expires_at = CASE WHEN ttl_ms IS NULL THEN ? + retention_s "
        f"                  ELSE MAX(created_at + ttl_ms / 1000.0, ? + ?) END, "
        f"webhook_state = CASE WHEN webhook IS NULL THEN NULL ELSE 'pending' END "
        f"WHERE id = ? AND status IN ({marks}){worker_clause} RETURNING COALESCE(worker_id, '')",
        (status, now, json.dumps(result) if result is not None else None, error, now,
         now, grace_s if status != "COMPLETED" else 0.0, job_id, *from_statuses,
         *((worker_id,) if worker_id is not None else ()))).fetchall()
    if len(rows) != 1:
        return None
    db.execute("INSERT INTO events (job_id, status, at) VALUES (?, ?, ?)", (job_id, status, now))
    return rows[0][0]


class _Transaction:
    """`with` block: the store's lock plus BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


def result_dir(results_root: Path, job_id: str) -> Path:
    """Where a job's files live: built only from a job id this store generated."""
    if not JOB_ID_RE.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return Path(results_root) / job_id

