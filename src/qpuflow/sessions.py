"""Which deployment sessions `submit` sends now, and what waits.

A deployment session has two async boundaries: the probe job (for the drift-aware arm) must
be collected before the session's qubits can be chosen, and only then are both arms
submitted together. This module decides, from the ledger and the collected results on disk,
which runs the submit target asks for in this Snakemake run and writes one line per thing
that waits (a probe still queued, a session not due yet), so that `submit` can exit 0 and
say what the next run will do.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime
from typing import Any, Iterable, Mapping

from qpuflow.paths import Paths
from qpuflow.plan import RunSpec, configured_arm_order
from qpuflow.provenance import parse_time
from qpuflow.records import CorruptRecordError, Marker, Result
from qpuflow.schedule import Schedule


@dataclasses.dataclass(frozen=True)
class SubmissionPlan:
    keys: tuple[str, ...]  # runs the submit target asks for, in plan order
    notes: tuple[str, ...]  # one line per thing that waits, for the user


def session_starts(experiment: str, runs: Mapping[str, RunSpec],
                   events: Iterable[dict[str, Any]]) -> dict[int, datetime]:
    """When each session of ``experiment`` started: its first accepted submission."""
    starts: dict[int, datetime] = {}
    for event in events:
        spec = runs.get(event.get("run_key", "")) if event.get("event") == "accepted" else None
        if spec is None or spec.experiment != experiment or spec.session is None:
            continue
        when = parse_time(event["marker"]["submission_time"])
        starts[spec.session] = min(when, starts.get(spec.session, when))
    return starts


def _probe_status(probe: RunSpec, paths: Paths) -> tuple[str, str]:
    """(status, job description) of a probe run: unsubmitted, pending, completed, failed, cancelled."""
    marker_path = paths.marker(probe.key)
    if not marker_path.exists():
        return "unsubmitted", "submitted in this run"
    job = f"job {Marker.read(marker_path).job_id}"
    result_path = paths.result(probe.key)
    if not result_path.exists():
        return "pending", job
    try:
        result = Result.read(result_path)
    except CorruptRecordError:
        return "pending", job
    return result.status, f"{job}: {result.error}" if result.error else job


def completed_probe(parts: Iterable[RunSpec], paths: Paths) -> RunSpec | None:
    """The session's latest probe attempt if it completed (its result exists on disk)."""
    probes = sorted((p for p in parts if p.is_probe), key=lambda p: p.attempt)
    if probes and _probe_status(probes[-1], paths)[0] == "completed":
        return probes[-1]
    return None


def plan_submissions(runs: Mapping[str, RunSpec], config: dict[str, Any], paths: Paths,
                     events: list[dict[str, Any]], at: datetime) -> SubmissionPlan:
    """The runs to ask for now: every non-session run plus the due parts of due sessions."""
    keys = [key for key, spec in runs.items() if spec.session is None]
    notes: list[str] = []
    parts: dict[tuple[str, int], list[RunSpec]] = defaultdict(list)
    for spec in runs.values():
        if spec.session is not None:
            parts[(spec.experiment, spec.session)].append(spec)
    planned = {spec.experiment for spec in runs.values()}
    for name, exp in config["experiments"].items():
        if exp["kind"] != "deployment" or name not in planned:
            continue
        schedule = Schedule.from_config(exp)
        started = session_starts(name, runs, events)
        due = range(exp["sessions"]) if schedule is None else schedule.due_sessions(started, at)
        for session in due:
            session_parts = parts[(name, session)]
            probes = sorted((p for p in session_parts if p.is_probe), key=lambda p: p.attempt)
            keys.extend(p.key for p in probes)
            if probes:
                status, job = _probe_status(probes[-1], paths)
                if status != "completed":
                    notes.append(_waiting_note(name, session, probes[-1], status, job))
                    continue
            order = configured_arm_order(config, name, session)
            arms = sorted((p for p in session_parts if not p.is_probe), key=lambda p: (p.attempt, order.index(p.arm)))
            keys.extend(p.key for p in arms)
        if schedule is not None:
            starting = {**started, **{s: at for s in due if s not in started}}
            notes.append(_schedule_note(name, schedule, starting, at))
    return SubmissionPlan(keys=tuple(keys), notes=tuple(notes))


def _waiting_note(name: str, session: int, probe: RunSpec, status: str, job: str) -> str:
    if status in ("unsubmitted", "pending"):
        return (f"{name} session {session:03d}: the arms wait for probe {probe.run} ({job}); "
                f"run `snakemake --cores 1 collect` once it is done, then submit again")
    return (f"{name} session {session:03d}: probe {probe.run} {status} ({job}); the session's arms are "
            f"not submitted. Raise provider.retries to submit the probe again")


def _schedule_note(name: str, schedule: Schedule, started: Mapping[int, datetime], at: datetime) -> str:
    upcoming = schedule.next_due(started, at)
    if upcoming is None:
        return f"{name}: all {schedule.sessions} sessions have started"
    session, due = upcoming
    if due is None or due <= at:
        return f"{name}: session {session:03d} is due now; it starts with the next submit"
    return (f"{name}: {len(started)} of {schedule.sessions} sessions started; session {session:03d} "
            f"is due at {due.isoformat(timespec='minutes')} (run submit from cron; see README)")
