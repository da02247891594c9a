"""The seed's export files, derived from markers and results (never the source of truth).

* ``results/ibm_experiments/submitted_jobs_YYYYMMDD_HHMMSS.jsonl``: one line per run
  submitted (or adopted) in one submit run, its marker; runs packed into one job
  (``provider.pubs_per_job``) share its ``job_id`` and differ in ``run_key`` and ``pub_index``.
* ``results/ibm_experiments/collected_results_YYYYMMDD_HHMMSS.json``: one entry per run seen
  by one collect run, with the seed's status words.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from qpuflow.fileio import atomic_file
from qpuflow.ledger import Ledger
from qpuflow.paths import Paths
from qpuflow.provenance import parse_time
from qpuflow.records import Result, write_json_atomic

if TYPE_CHECKING:  # annotations only: no import of a higher layer at run time
    from qpuflow.collect import JobStatusRow


def _stamped(directory: Path, prefix: str, suffix: str, when: datetime) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}_{when.astimezone(timezone.utc):%Y%m%d_%H%M%S}"
    path, n = directory / f"{stem}{suffix}", 1
    while path.exists():  # two runs in one second: keep both files
        path, n = directory / f"{stem}_{n}{suffix}", n + 1
    return path


def export_submissions(paths: Paths, *, since: str) -> Path | None:
    """Write the jobs accepted since ``since`` (ISO time) as the seed's JSONL; None if none."""
    start = parse_time(since)
    markers = [e["marker"] for e in Ledger(paths.ledger).events()
               if e["event"] == "accepted" and parse_time(e["time"]) >= start]
    if not markers:
        return None
    path = _stamped(paths.exports_dir, "submitted_jobs", ".jsonl", start)
    with atomic_file(path) as fh:
        fh.write("".join(json.dumps(m, sort_keys=True) + "\n" for m in markers))
    return path


def seed_status(row: JobStatusRow, result: Result | None) -> str:
    if result is not None:
        return result.status
    return {"ERROR": "failed", "CANCELLED": "cancelled", "UNKNOWN": "error", "?": "unreachable"}.get(
        row.state, row.state.lower())


def export_collection(paths: Paths, rows: Iterable[JobStatusRow], *, when: datetime | None = None) -> Path:
    """Write one collect run's view of every job, in the seed's format."""
    entries: list[dict[str, Any]] = []
    for row in rows:
        result_path = paths.result(row.run_key)
        result = Result.read(result_path) if result_path.exists() else None
        entries.append({
            "job_id": row.job_id,
            "run_key": row.run_key,
            "status": seed_status(row, result),
            "provider_status": row.state,
            "completion_time": result.completion_time if result else None,
            "usage_seconds": result.usage_seconds if result else None,
            "error": (result.error if result else row.error),
            "result_file": str(result_path) if result else None,
        })
    path = _stamped(paths.exports_dir, "collected_results", ".json", when or datetime.now(timezone.utc))
    write_json_atomic(path, {"jobs": entries})
    return path
