"""The emulator's on-disk state, shared by the HTTP server and the worker process.

Layout of the store directory::

    emulator.sqlite3   jobs, their tags, results and batch sessions (SQLite, WAL mode)
    emulator.key       random key of this store: signs access tokens, keys token digests
    instances.json     the instances, with HMAC digests of the API tokens that may use them
    logs/              server.log and worker.log (never contain tokens or request headers)

API tokens themselves are never written: an instance lists ``hmac(key, token)`` digests, and
access tokens carry only such a digest. Everything is stdlib, so the server process starts in
a fraction of a second (the worker is the one that imports qiskit).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

FINAL_STATES = ("Completed", "Failed", "Cancelled")
PENDING_STATES = ("Queued", "Running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    instance TEXT NOT NULL,
    account TEXT,
    backend TEXT NOT NULL,
    program_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    reason_code INTEGER,
    tags TEXT NOT NULL DEFAULT '[]',
    session_id TEXT,
    private INTEGER NOT NULL DEFAULT 0,
    cost INTEGER,
    created REAL NOT NULL,
    running REAL,
    finished REAL,
    queue_seconds REAL NOT NULL DEFAULT 0,
    run_seconds REAL NOT NULL DEFAULT 0,
    planned TEXT,
    info TEXT,
    estimated_seconds REAL,
    usage_seconds REAL,
    params TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_instance_created ON jobs(instance, created);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS job_tags (
    job_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (job_id, tag)
);
CREATE INDEX IF NOT EXISTS job_tags_tag ON job_tags(tag);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    backend TEXT,
    mode TEXT,
    created REAL NOT NULL,
    accepting INTEGER NOT NULL DEFAULT 1,
    closed REAL,
    max_ttl INTEGER
);
"""

# Columns of a job without the (possibly large) params blob.
_JOB_COLUMNS = (
    "seq, id, instance, account, backend, program_id, status, reason, reason_code, tags, "
    "session_id, private, cost, created, running, finished, queue_seconds, run_seconds, planned, "
    "info, estimated_seconds, usage_seconds"
)

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_job_id() -> str:
    """A 20-character lowercase id, shaped like IBM Quantum job ids."""
    return "d" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(19))


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as the service writes times: ISO-8601 UTC with a ``Z``."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """ISO-8601 (``Z``, offset or naive = UTC) to epoch seconds."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------
# instances and secrets
# --------------------------------------------------------------------------------------

# The device names, and the fake backends' own names as aliases: a study whose config names the
# local backend (fake_fez) can be rehearsed against the emulator with only provider.name changed.
DEFAULT_BACKENDS = ("ibm_fez", "ibm_torino", "fake_fez", "fake_torino")
_PRICING = {"open": "free", "trial": "trial", "pay-as-you-go": "paygo", "paygo": "paygo", "flex": "paid",
            "premium": "subscription", "dedicated": "subscription", "on-prem": "subscription"}
_PRICING_TYPES = ("free", "trial", "paygo", "paid", "subscription", "unknown")


def make_crn(name: str, account: str = "emulator", region: str = "us-east") -> str:
    """A CRN of the form IBM uses for quantum-computing instances (stable for a name)."""
    guid = uuid.uuid5(uuid.NAMESPACE_URL, f"qpuflow-emulator/{account}/{name}")
    return f"crn:v1:bluemix:public:quantum-computing:{region}:a/{account}:{guid}::"


class Secrets:
    """The store's key: signs access tokens and turns API tokens into digests."""

    def __init__(self, store: Path):
        path = Path(store) / "emulator.key"
        if not path.exists():
            write_text_atomic(path, secrets.token_hex(32) + "\n", mode=0o600)
        self.key = bytes.fromhex(path.read_text().strip())

    def digest(self, api_token: str) -> str:
        return hmac.new(self.key, b"api-token:" + api_token.encode(), hashlib.sha256).hexdigest()


def normalise_instance(spec: dict[str, Any], default_limit: float, default_backends: Sequence[str],
                       digest) -> dict[str, Any]:
    """An instance spec from a test or config -> the record stored in instances.json.

    ``tokens`` (API tokens allowed to use the instance; ``None`` = any token) is replaced by
    ``token_digests``; the tokens themselves are dropped.
    """
    unknown = set(spec) - {"name", "crn", "plan", "pricing_type", "usage_limit_seconds", "backends", "tokens",
                           "tags", "region", "token_digests"}
    if unknown:
        raise ValueError(f"unknown instance field(s) {sorted(unknown)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("an instance needs a non-empty 'name'")
    plan = str(spec.get("plan", "open")).lower()
    pricing = str(spec.get("pricing_type", _PRICING.get(plan, "paid"))).lower()
    if pricing not in _PRICING_TYPES:
        raise ValueError(f"pricing_type must be one of {_PRICING_TYPES}, got {pricing!r}")
    tokens = spec.get("tokens")
    digests = spec.get("token_digests")
    if tokens is not None:
        if isinstance(tokens, str) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("'tokens' must be a list of non-empty strings (or None for any token)")
        digests = sorted({digest(t) for t in tokens})
    backends = list(spec.get("backends") or default_backends)
    limit = spec.get("usage_limit_seconds", default_limit)
    return {
        "name": name,
        "crn": spec.get("crn") or make_crn(name, region=spec.get("region", "us-east")),
        "plan": plan,
        "pricing_type": pricing,
        "usage_limit_seconds": None if limit is None else float(limit),
        "backends": backends,
        "tags": [str(t).lower() for t in spec.get("tags", [])],
        "token_digests": digests,
    }


class InstanceRegistry:
    """instances.json, re-read when it changes on disk (the worker and server share it)."""

    def __init__(self, store: Path):
        self.path = Path(store) / "instances.json"
        self._mtime: float | None = None
        self._instances: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, instances: list[dict[str, Any]]) -> None:
        with self._lock:
            write_text_atomic(self.path, json.dumps(instances, indent=2, sort_keys=True) + "\n")
            self._mtime = None

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                return []
            if mtime != self._mtime:
                self._instances = json.loads(self.path.read_text())
                self._mtime = mtime
            return self._instances

    def by_crn(self, crn: str | None) -> dict[str, Any] | None:
        return next((i for i in self.all() if i["crn"] == crn), None)

    def for_digest(self, digest: str) -> list[dict[str, Any]]:
        """Instances a token (by digest) may use: those listing it, and the open ones."""
        return [i for i in self.all() if i["token_digests"] is None or digest in i["token_digests"]]

    def public(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in i.items() if k != "token_digests"} | {"open": i["token_digests"] is None}
                for i in self.all()]


# --------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------


class JobStore:
    """SQLite job store. One connection per object, serialised by a lock (thread-safe)."""

    def __init__(self, store: Path):
        self.root = Path(store)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "emulator.sqlite3", timeout=30, check_same_thread=False,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Transaction(self._db, self._lock)

    # ---------------------------------------------------------------- writes

    def insert_job(self, job: dict[str, Any]) -> None:
        tags = list(job.get("tags") or [])
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, instance, account, backend, program_id, status, tags, session_id, private, "
                "cost, created, queue_seconds, run_seconds, planned, params) "
                "VALUES (?, ?, ?, ?, ?, 'Queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job["id"], job["instance"], job.get("account"), job["backend"], job["program_id"],
                 json.dumps(tags), job.get("session_id"), int(bool(job.get("private"))), job.get("cost"),
                 job["created"], job.get("queue_seconds", 0.0), job.get("run_seconds", 0.0),
                 json.dumps(job["planned"]) if job.get("planned") else None, job["params"]),
            )
            db.executemany("INSERT OR IGNORE INTO job_tags (job_id, tag) VALUES (?, ?)",
                           [(job["id"], t) for t in tags])

    def set_info(self, job_id: str, info: dict[str, Any], estimated_seconds: float | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET info = ?, estimated_seconds = ? WHERE id = ?",
                       (json.dumps(info), estimated_seconds, job_id))

    def start(self, job_id: str, now: float) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET status = 'Running', running = ? WHERE id = ? AND status = 'Queued'",
                             (now, job_id))
            return cur.rowcount == 1

    def release(self, job_id: str) -> bool:
        """Make a pending job due now: no queue time left, no run time (the worker finishes it
        on its next pass). False if the job is unknown or already final."""
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET queue_seconds = 0, run_seconds = 0 "
                             "WHERE id = ? AND status IN ('Queued', 'Running')", (job_id,))
            return cur.rowcount == 1

    def put_result(self, job_id: str, text: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO results (job_id, text) VALUES (?, ?)", (job_id, text))

    def has_result(self, job_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM results WHERE job_id = ?", (job_id,)).fetchone() is not None

    def finish(self, job_id: str, status: str, *, now: float, reason: str | None = None,
               reason_code: int | None = None, usage_seconds: float | None = None,
               from_states: Iterable[str] = PENDING_STATES, result_text: str | None = None) -> bool:
        """Move a pending job to a final state (only if it is still in ``from_states``)."""
        states = tuple(from_states)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET status = ?, reason = ?, reason_code = ?, finished = ?, usage_seconds = ? "
                f"WHERE id = ? AND status IN ({','.join('?' * len(states))})",
                (status, reason, reason_code, now, usage_seconds, job_id, *states),
            )
            if cur.rowcount == 1 and result_text is not None:
                db.execute("INSERT OR REPLACE INTO results (job_id, text) VALUES (?, ?)", (job_id, result_text))
            return cur.rowcount == 1

    def update_tags(self, job_id: str, tags: list[str]) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET tags = ? WHERE id = ?", (json.dumps(tags), job_id))
            db.execute("DELETE FROM job_tags WHERE job_id = ?", (job_id,))
            db.executemany("INSERT OR IGNORE INTO job_tags (job_id, tag) VALUES (?, ?)", [(job_id, t) for t in tags])

    def delete_job(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM job_tags WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))

    # ---------------------------------------------------------------- reads

    def get(self, job_id: str, *, with_params: bool = False) -> dict[str, Any] | None:
        cols = _JOB_COLUMNS + (", params" if with_params else "")
        with self._lock:
            row = self._db.execute(f"SELECT {cols} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row)

    def result(self, job_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT text FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else row["text"]

    def take_result(self, job_id: str) -> str | None:
        """Read a result and delete it in one transaction (a private job's result is readable
        once: two concurrent reads must not both get it)."""
        with self._tx() as db:
            row = db.execute("SELECT text FROM results WHERE job_id = ?", (job_id,)).fetchone()
            if row is not None:
                db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
        return None if row is None else row["text"]

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status IN ('Queued', 'Running') ORDER BY seq").fetchall()
        return [_row(r) for r in rows]

    def params(self, job_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT params FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row["params"]

    def list(self, *, instance: str | None, tags: Sequence[str] = (), pending: bool | None = None,
             backend: str | None = None, program_id: str | None = None, session_id: str | None = None,
             created_after: float | None = None, created_before: float | None = None,
             descending: bool = True, limit: int | None = None, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Jobs matching every filter (``tags``: all must be present), newest first by default."""
        where, args = [], []
        if instance is not None:
            where.append("instance = ?")
            args.append(instance)
        if pending is not None:
            states = PENDING_STATES if pending else FINAL_STATES
            where.append(f"status IN ({','.join('?' * len(states))})")
            args.extend(states)
        for column, value in (("backend", backend), ("program_id", program_id), ("session_id", session_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if created_after is not None:
            where.append("created >= ?")
            args.append(created_after)
        if created_before is not None:
            where.append("created <= ?")
            args.append(created_before)
        unique_tags = sorted(set(tags))
        if unique_tags:
            where.append(
                f"id IN (SELECT job_id FROM job_tags WHERE tag IN ({','.join('?' * len(unique_tags))}) "
                "GROUP BY job_id HAVING COUNT(DISTINCT tag) = ?)")
            args.extend(unique_tags)
            args.append(len(unique_tags))
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        order = "DESC" if descending else "ASC"
        with self._lock:
            count = self._db.execute(f"SELECT COUNT(*) FROM jobs {clause}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {clause} ORDER BY created {order}, seq {order} "
                f"LIMIT ? OFFSET ?", (*args, -1 if limit is None else int(limit), int(offset))).fetchall()
        return [_row(r) for r in rows], int(count)

    def usage(self, instance: str, *, since: float) -> float:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(usage_seconds), 0) FROM jobs WHERE instance = ? AND finished >= ?",
                (instance, since)).fetchone()
        return float(row[0])

    def queue_length(self, backend: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE backend = ? AND status = 'Queued'",
                                        (backend,)).fetchone()[0])

    def queue_position(self, job: dict[str, Any]) -> int:
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE backend = ? AND status = 'Queued' AND seq < ?",
                (job["backend"], job["seq"])).fetchone()[0]) + 1

    # ---------------------------------------------------------------- sessions

    def create_session(self, session: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO sessions (id, instance, backend, mode, created, accepting, max_ttl) "
                       "VALUES (?, ?, ?, ?, ?, 1, ?)",
                       (session["id"], session["instance"], session.get("backend"), session.get("mode"),
                        session["created"], session.get("max_ttl")))

    def session(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else dict(row)

    def update_session(self, session_id: str, *, accepting: bool | None = None, closed: float | None = None) -> None:
        with self._tx() as db:
            if accepting is not None:
                db.execute("UPDATE sessions SET accepting = ? WHERE id = ?", (int(accepting), session_id))
            if closed is not None:
                db.execute("UPDATE sessions SET closed = ?, accepting = 0 WHERE id = ?", (closed, session_id))


class _Transaction:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    job = dict(row)
    job["tags"] = json.loads(job["tags"])
    job["private"] = bool(job["private"])
    for key in ("planned", "info"):
        if job.get(key):
            job[key] = json.loads(job[key])
    return job


def now() -> float:
    return time.time()
