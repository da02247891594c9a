"""When deployment sessions are due: spread in time, overdue ones once, never in a burst."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from qpuflow.schedule import Schedule, now

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


def schedule(**section) -> Schedule:
    return Schedule.from_config({"sessions": 6, "schedule": section})


def test_no_schedule_means_none():
    assert Schedule.from_config({"sessions": 3}) is None


def test_per_day_is_an_even_interval_and_gap_defaults_to_half():
    s = schedule(per_day=3)
    assert s.interval == 8 * H and s.min_gap == 4 * H


def test_without_start_the_first_submit_starts_the_campaign():
    s = schedule(every_hours=8)
    assert s.due_sessions({}, T0) == [0]
    # Session 1 is due one interval after session 0 actually started, not before.
    started = {0: T0}
    assert s.due_sessions(started, T0 + 7 * H) == [0]
    assert s.due_sessions(started, T0 + 8 * H) == [0, 1]
    assert s.next_due(started, T0 + H) == (1, T0 + 8 * H)


def test_a_configured_start_in_the_future_holds_everything_back():
    s = schedule(every_hours=8, start=(T0 + 2 * H).isoformat())
    assert s.due_sessions({}, T0) == []
    assert s.next_due({}, T0) == (0, T0 + 2 * H)
    assert s.due_sessions({}, T0 + 2 * H) == [0]


def test_missed_slots_give_one_overdue_session_then_min_gap_spacing():
    s = schedule(every_hours=8)
    started = {0: T0}
    late = T0 + 50 * H  # slots 1..6 all passed while the machine was off
    assert s.due_sessions(started, late) == [0, 1]  # one new session, not five
    started[1] = late
    # The next one waits at least min_gap (4 h) after the overdue one, though its slot is past.
    assert s.due_sessions(started, late + 3 * H) == [0, 1]
    assert s.due_sessions(started, late + 4 * H) == [0, 1, 2]


def test_on_time_sessions_follow_their_slots_not_the_cron_jitter():
    s = schedule(every_hours=8)
    started = {0: T0, 1: T0 + 8 * H + 50 * timedelta(minutes=1)}  # cron ran 50 min late
    assert s.next_due(started, T0 + 9 * H) == (2, T0 + 16 * H)  # slot 2 unchanged


def test_planned_times_run_on_schedule_from_now():
    s = schedule(every_hours=8)
    times = s.planned_times({0: T0}, T0 + H)
    assert times[:3] == [T0, T0 + 8 * H, T0 + 16 * H]
    assert len(times) == 6


def test_all_sessions_started():
    s = schedule(every_hours=1)
    assert s.next_due({k: T0 + k * H for k in range(6)}, T0 + 10 * H) is None


def test_now_can_be_set_for_rehearsals(monkeypatch):
    monkeypatch.setenv("QPUFLOW_NOW", "2027-01-02T03:04:05Z")
    assert now() == datetime(2027, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    monkeypatch.delenv("QPUFLOW_NOW")
    assert abs((now() - datetime.now(timezone.utc)).total_seconds()) < 5


@pytest.mark.parametrize("section", [{"every_hours": 8, "min_gap_hours": 0}])
def test_zero_min_gap_allows_catch_up_on_slots(section):
    s = schedule(**section)
    started = {0: T0, 1: T0 + 50 * H}
    assert s.due_sessions(started, T0 + 50 * H) == [0, 1, 2]
