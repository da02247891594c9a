"""When the sessions of a deployment campaign are due.

Sessions measure drift, so they must be spread in time, not sent back to back. A schedule
is a start time and an interval (``every_hours`` or ``per_day``); session ``k``'s slot is
``start + k * interval``. ``snakemake --cores 1 submit`` run from cron submits the sessions
whose slot has come and says when the next one is due.

Missed slots (the machine was off, cron did not run) are not caught up in a burst: a session
is never started less than ``min_gap`` (default half the interval) after the previous one, so
an overdue session is submitted once, now, and the ones after it follow at least
``min_gap`` apart until the campaign is back on its slots.

Without a ``start`` the campaign starts with the first submission of session 0 (so the first
``submit`` starts it). The clock is the system clock, or ``QPUFLOW_NOW`` (ISO-8601) for
rehearsals and tests.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, Mapping

from qpuflow.provenance import clock, parse_time


def now() -> datetime:
    """The current time in UTC, or ``QPUFLOW_NOW`` if set (for rehearsals and tests)."""
    return clock()


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Slots of a campaign of ``sessions`` sessions."""

    sessions: int
    interval: timedelta
    min_gap: timedelta
    start: datetime | None = None

    @classmethod
    def from_config(cls, experiment: Mapping[str, Any]) -> "Schedule | None":
        """The schedule of a deployment experiment, or ``None`` if all sessions are due at once."""
        section = experiment.get("schedule")
        if not section:
            return None
        if "every_hours" in section:
            interval = timedelta(hours=float(section["every_hours"]))
        else:
            interval = timedelta(days=1) / float(section["per_day"])
        gap = section.get("min_gap_hours")
        min_gap = interval / 2 if gap is None else timedelta(hours=float(gap))
        start = parse_time(section["start"]) if section.get("start") else None
        return cls(sessions=int(experiment["sessions"]), interval=interval, min_gap=min_gap, start=start)

    def slot(self, session: int, started: Mapping[int, datetime]) -> datetime | None:
        """Nominal time of ``session``; ``None`` before the campaign has a start."""
        origin = self.start or started.get(0)
        return None if origin is None else origin + session * self.interval

    def due_time(self, session: int, started: Mapping[int, datetime]) -> datetime | None:
        """Earliest time ``session`` may start, given when earlier sessions started.

        ``None`` means "not before the previous session has started" (or, for session 0
        without a configured start: now).
        """
        if session == 0:
            return self.start
        previous = started.get(session - 1)
        if previous is None:
            return None
        slot = self.slot(session, started)
        assert slot is not None  # session 0 started, so the campaign has an origin
        return max(slot, previous + self.min_gap)

    def is_due(self, session: int, started: Mapping[int, datetime], at: datetime) -> bool:
        if session in started:
            return True
        if session > 0 and (session - 1) not in started:
            return False
        due = self.due_time(session, started)
        return due is None or due <= at

    def due_sessions(self, started: Mapping[int, datetime], at: datetime) -> list[int]:
        """Sessions to include now: those already started plus at most one new one.

        At most one new session per call: a cron job that missed several slots submits one
        overdue session, not one per missed slot.
        """
        out = sorted(s for s in started if s < self.sessions)
        new = next((s for s in range(self.sessions) if s not in started), None)
        if new is not None and self.is_due(new, started, at):
            out.append(new)
        return sorted(out)

    def next_due(self, started: Mapping[int, datetime], at: datetime) -> tuple[int, datetime | None] | None:
        """The first session not started yet and when it becomes due (``None``: all started)."""
        new = next((s for s in range(self.sessions) if s not in started), None)
        if new is None:
            return None
        due = self.due_time(new, started)
        if due is None and new > 0 and (new - 1) in started:
            due = at
        return new, due

    def planned_times(self, started: Mapping[int, datetime], at: datetime) -> list[datetime]:
        """When each session starts if from now on everything runs on time (for budget plans)."""
        times: dict[int, datetime] = dict(started)
        for session in range(self.sessions):
            if session in times:
                continue
            due = self.due_time(session, times)
            times[session] = max(due, at) if due is not None else at
        return [times[s] for s in range(self.sessions)]
