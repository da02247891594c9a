"""The submission ledger: an append-only journal that makes submission exactly-once.

Snakemake deletes a rule's outputs before rerunning it, so a marker cannot protect its own
rule. The ledger can: before the provider is called an ``intent`` line is flushed to disk,
after it returns an ``accepted`` line holding the job ID and the whole marker. A rerun finds
``accepted`` and rewrites the marker instead of submitting; a dangling ``intent`` (the process
died between the two) is resolved by asking the provider for the job's pack tag.

Events (one JSON object per line):

``intent``        before a POST: the pack (``pack`` tag, ``runs`` in PUB order, ``run_ids``), the
                  account, and each run's marker without its job ID (``markers``), so any later
                  submit or collect that finds the job can write them. (Ledgers written before
                  packs had one intent per run, with ``run_key`` and ``tag``.)
``submit_error``  a POST that failed: ``kind`` refused (nothing created) or uncertain (5xx,
                  timeout, dropped connection: a job may exist), the HTTP ``status``.
``accepted``      per run: the job ID and the whole marker.
``checked``       the provider was asked which jobs carry a pack's tag after it was accepted;
                  ``job_id`` is the one kept. Until then the pack may have duplicates.
``duplicate``     an extra job carrying a pack's runs: its ``state``, what was done
                  (``outcome``), its charged ``usage_seconds`` (``usage_final``) so the budget
                  counts it. Later lines for the same job ID update earlier ones.

Lines are JSON objects; a torn last line (a kill -9 mid-write) is ignored when read and
never glued to the next one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

EVENTS = ("intent", "accepted", "submit_error", "duplicate", "checked")


@dataclasses.dataclass
class _Parsed:
    """What this process has parsed of one ledger file."""

    inode: int
    offset: int = 0
    lines: int = 0
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)


_CACHE: dict[str, _Parsed] = {}
_VIEWS: dict[str, "LedgerView"] = {}
_CACHE_LOCK = threading.Lock()


def _parse(line: str, path: Path, number: int) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        warnings.warn(f"{path}:{number}: skipping an unreadable ledger line (torn write?)")
        return None
    return record if isinstance(record, dict) and record.get("event") in EVENTS else None


@dataclasses.dataclass(frozen=True)
class RunHistory:
    """What the ledger knows about one run key."""

    intents: tuple[dict[str, Any], ...]
    accepted: dict[str, Any] | None
    errors: tuple[dict[str, Any], ...]

    @property
    def dangling_intent(self) -> dict[str, Any] | None:
        """The last intent if no job ID followed it: the provider may or may not have the job."""
        if self.accepted is None and self.intents:
            return self.intents[-1]
        return None


def _runs_of(event: dict[str, Any]) -> list[str]:
    """Run keys an event is about (per-run events name one, pack events list them)."""
    if event.get("run_key"):
        return [event["run_key"]]
    return list(event.get("runs") or event.get("run_keys") or ())


class LedgerView:
    """An index over the events of one read, for questions asked many times per submission."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events: list[dict[str, Any]] = []
        self.accepted: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}
        self.pack_intents: dict[str, list[dict[str, Any]]] = {}
        self.pack_errors: dict[str, list[dict[str, Any]]] = {}
        self.checked: dict[str, dict[str, Any]] = {}
        self.duplicates: dict[str, dict[str, Any]] = {}
        self.known_jobs: set[str] = set()
        self._accepted_at: dict[str, int] = {}
        self._intent_at: dict[str, int] = {}
        self.extend(events)

    def extend(self, events: list[dict[str, Any]]) -> "LedgerView":
        """Index events appended since (the ledger only grows)."""
        start = len(self.events)
        self.events.extend(events)
        for position, event in enumerate(events, start=start):
            kind = event["event"]
            runs = _runs_of(event)
            if kind == "accepted":
                self.accepted[runs[0]] = event
                self._accepted_at[runs[0]] = position
                self.known_jobs.add(event["job_id"])
            elif kind == "intent":
                for key in runs:
                    self.intents.setdefault(key, []).append(event)
                if event.get("pack"):
                    self.pack_intents.setdefault(event["pack"], []).append(event)
                    self._intent_at[event["pack"]] = position
            elif kind == "submit_error":
                for key in runs:
                    self.errors.setdefault(key, []).append(event)
                if event.get("pack"):
                    self.pack_errors.setdefault(event["pack"], []).append(event)
            elif kind == "checked":
                self.checked[event["pack"]] = event
            elif kind == "duplicate":
                self.duplicates[event["job_id"]] = {**self.duplicates.get(event["job_id"], {}), **event}
                self.known_jobs.add(event["job_id"])
        return self

    def history(self, run_key: str) -> RunHistory:
        return RunHistory(intents=tuple(self.intents.get(run_key, ())), accepted=self.accepted.get(run_key),
                          errors=tuple(self.errors.get(run_key, ())))

    def dangling(self) -> list[dict[str, Any]]:
        """Pack intents none of whose runs was accepted since: the job may or may not exist."""
        out = []
        for tag, intents in self.pack_intents.items():
            since = self._intent_at[tag]
            if not any(self._accepted_at.get(key, -1) > since for key in intents[-1]["runs"]):
                out.append(intents[-1])
        return out

    def unchecked_packs(self) -> dict[str, list[dict[str, Any]]]:
        """Accepted packs (pack tag -> accepted events) nobody has checked for duplicates yet."""
        packs: dict[str, list[dict[str, Any]]] = {}
        for event in self.accepted.values():
            tag = event.get("pack")
            if tag and tag not in self.checked:
                packs.setdefault(tag, []).append(event)
        return packs


class Ledger:
    """Append-only JSON-lines journal with an inter-process lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")

    @contextlib.contextmanager
    def locked(self, timeout: float = -1) -> Iterator["Ledger"]:
        """Hold the ledger lock: one submitting process at a time decides and records.

        Raises:
            filelock.Timeout: the lock was not free within ``timeout`` seconds (-1: wait).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock.acquire(timeout=timeout):
            yield self

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event, flushed and fsynced before returning."""
        if event not in EVENTS:
            raise ValueError(f"unknown ledger event {event!r}; expected one of {EVENTS}")
        record = {"event": event, **fields}
        line = json.dumps(record, sort_keys=True, separators=(",", ":"))
        if "\n" in line:  # pragma: no cover - json.dumps never emits raw newlines
            raise ValueError("ledger lines must be single-line JSON")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a torn line from a killed writer: start afresh
                    fh.write(b"\n")
            fh.write(line.encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def events(self) -> list[dict[str, Any]]:
        """All readable events in order. Unreadable lines are skipped with a warning.

        The file is append-only, so what was parsed before is kept (per process) and only the
        lines added since are read: N submissions in one process cost O(N), not O(N^2).
        """
        if not self.path.exists():
            return []
        with _CACHE_LOCK:
            stat = self.path.stat()
            key = str(self.path.resolve())
            cached = _CACHE.get(key)
            if cached is None or cached.inode != stat.st_ino or cached.offset > stat.st_size:
                cached = _CACHE[key] = _Parsed(inode=stat.st_ino)
            if cached.offset < stat.st_size:
                with open(self.path, "rb") as fh:
                    fh.seek(cached.offset)
                    chunk = fh.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]  # a torn last line waits for its newline
                for line in complete.decode().splitlines():
                    cached.lines += 1
                    record = _parse(line, self.path, cached.lines)
                    if record is not None:
                        cached.events.append(record)
                cached.offset += len(complete)
            return list(cached.events)

    def history(self, run_key: str, events: list[dict[str, Any]] | None = None) -> RunHistory:
        """The intents, last accepted submission and errors recorded for ``run_key``."""
        events = self.events() if events is None else events
        return LedgerView([e for e in events if run_key in _runs_of(e)]).history(run_key)

    def view(self) -> LedgerView:
        """An index over every event; kept per process and extended with new lines only, so N
        submissions asking it N times cost O(N), not O(N^2). Callers must not modify it."""
        events = self.events()
        key = str(self.path.resolve())
        with _CACHE_LOCK:
            view = _VIEWS.get(key)
            if view is None or len(view.events) > len(events) or (view.events and events and view.events[0] is not events[0]):
                view = _VIEWS[key] = LedgerView([])
            return view.extend(events[len(view.events):])

    def accepted_markers(self) -> list[dict[str, Any]]:
        """The marker each run is recorded with now (its latest accepted line: a run whose job
        was replaced by a duplicate further along points at that one)."""
        return [e["marker"] for e in self.view().accepted.values()]

    def duplicates(self) -> list[dict[str, Any]]:
        """The latest record of every duplicate job (one per job ID)."""
        return list(self.view().duplicates.values())
