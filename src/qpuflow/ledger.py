"""The submission ledger: an append-only journal that makes submission exactly-once.

Snakemake deletes a rule's outputs before rerunning it, so a marker cannot protect its own
rule. The ledger can: before the provider is called an ``intent`` line is flushed to disk,
after it returns an ``accepted`` line holding the job ID and the whole marker. A rerun finds
``accepted`` and rewrites the marker instead of submitting; a dangling ``intent`` (the process
died between the two) is resolved by asking the provider for the run's deterministic tag.

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

EVENTS = ("intent", "accepted", "submit_error", "duplicate")


@dataclasses.dataclass
class _Parsed:
    """What this process has parsed of one ledger file."""

    inode: int
    offset: int = 0
    lines: int = 0
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)


_CACHE: dict[str, _Parsed] = {}
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


class Ledger:
    """Append-only JSON-lines journal with an inter-process lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator["Ledger"]:
        """Hold the ledger lock: one submitting process at a time decides and records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
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
        mine = [e for e in events if e.get("run_key") == run_key]
        accepted = [e for e in mine if e["event"] == "accepted"]
        return RunHistory(
            intents=tuple(e for e in mine if e["event"] == "intent"),
            accepted=accepted[-1] if accepted else None,
            errors=tuple(e for e in mine if e["event"] == "submit_error"),
        )

    def accepted_markers(self) -> list[dict[str, Any]]:
        """The marker of every accepted submission, in order."""
        return [e["marker"] for e in self.events() if e["event"] == "accepted"]
