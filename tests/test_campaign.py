"""Campaign budget plans: rolling 28-day windows, per account, and when a misfit would fit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from qpuflow.budget import BudgetExceeded
from qpuflow.campaign import CostEstimator, check_campaign_start, plan_campaign
from qpuflow.config import validate_config
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec, plan_runs

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


class FixedCost(CostEstimator):
    """Every job costs the same: the window arithmetic is what these tests are about."""

    def __init__(self, seconds: float) -> None:
        self.fixed = seconds

    def job_seconds(self, specs) -> float:
        return self.fixed


def campaign_config(*, sessions=10, budget=100.0, accounts=1, window_days=28, every_hours=24, pubs_per_job=1) -> dict:
    # One run per job unless asked: a session is then three jobs (probe and two arms).
    config = {
        "provider": {"name": "local", "backend": "fake_fez", "pubs_per_job": pubs_per_job},
        "accounts": [{"name": f"acct{i}", "budget_seconds": budget} for i in range(accounts)],
        "budget": {"window_days": window_days, "reserve_seconds": 0},
        "experiments": {"dep": {"kind": "deployment", "distance": 3, "rounds": 1, "sessions": sessions,
                                "shots": 100, "arms": ["calibration", "drift_aware"],
                                "schedule": {"every_hours": every_hours, "start": T0.isoformat()}}},
    }
    return validate_config(config)


def runs_of(config):
    return {spec.key: spec for spec in plan_runs(config)}


def test_a_session_s_arms_are_planned_as_one_job_when_runs_are_packed(tmp_path):
    config = campaign_config(sessions=4, pubs_per_job=8)  # probe alone, both arms in one job
    plan = plan_campaign(runs_of(config), config, Paths.from_config(config, tmp_path), [], T0,
                         estimator=FixedCost(5.0))
    assert len(plan.jobs) == 8 and plan.total_seconds == 40
    assert sum(j.run_key.endswith("_calibration-2") for j in plan.jobs) == 4


def test_a_campaign_within_budget_fits_and_says_when_it_ends(tmp_path):
    config = campaign_config(sessions=4)  # 4 sessions x 3 jobs x 5 s = 60 s of 100
    plan = plan_campaign(runs_of(config), config, Paths.from_config(config, tmp_path), [], T0,
                         estimator=FixedCost(5.0))
    assert plan.fits and plan.total_seconds == 60
    assert plan.finishes == T0 + 3 * DAY
    assert "fits" in plan.verdict()


def test_the_first_session_that_does_not_fit_is_named_with_when_it_would(tmp_path):
    config = campaign_config(sessions=10)  # 150 s of jobs, 100 s per 28 days
    plan = plan_campaign(runs_of(config), config, Paths.from_config(config, tmp_path), [], T0,
                         estimator=FixedCost(5.0))
    assert not plan.fits
    # 100 s pays for 20 jobs: sessions 0-5 (18 jobs) and two jobs of session 6.
    assert plan.first_unfit.run_key.startswith("dep/session006_")
    # Session 0's usage leaves the window 28 days after it was spent.
    assert plan.unfit_fits_at == T0 + 28 * DAY
    assert "does NOT fit" in plan.verdict()


def test_a_short_window_lets_usage_roll_off(tmp_path):
    config = campaign_config(sessions=10, window_days=3)
    plan = plan_campaign(runs_of(config), config, Paths.from_config(config, tmp_path), [], T0,
                         estimator=FixedCost(5.0))
    assert plan.fits


def test_a_second_account_carries_the_rest(tmp_path):
    config = campaign_config(sessions=10, accounts=2)
    plan = plan_campaign(runs_of(config), config, Paths.from_config(config, tmp_path), [], T0,
                         estimator=FixedCost(5.0))
    assert plan.fits
    assert {a.account: a.planned_seconds for a in plan.accounts} == {"acct0": 75.0, "acct1": 75.0}


def test_a_job_larger_than_any_budget_never_fits(tmp_path):
    config = campaign_config(sessions=1, budget=4)
    plan = plan_campaign(runs_of(config), config, Paths.from_config(config, tmp_path), [], T0,
                         estimator=FixedCost(5.0))
    assert not plan.fits and plan.unfit_fits_at is None
    assert "no account can ever pay" in plan.verdict()


def test_usage_already_spent_counts_and_submitted_runs_are_not_planned_again(tmp_path):
    config = campaign_config(sessions=2)
    runs = runs_of(config)
    key = "dep/session000_probe"
    events = [{"event": "accepted", "run_key": key,
               "marker": {"account": "acct0", "submission_time": T0.isoformat(), "estimated_qpu_seconds": 90.0,
                          "job_id": "j1"}}]
    plan = plan_campaign(runs, config, Paths.from_config(config, tmp_path), events, T0 + timedelta(hours=1),
                         estimator=FixedCost(5.0))
    assert key not in {j.run_key for j in plan.jobs}
    assert plan.accounts[0].used_now == 90.0
    assert not plan.fits  # 10 s left, 25 s to go


def test_submit_refuses_to_start_a_campaign_that_does_not_fit_unless_told(tmp_path):
    config = campaign_config(sessions=42, budget=60)  # real estimate: ~3 s per job, 126 jobs
    paths = Paths.from_config(config, tmp_path)
    with pytest.raises(BudgetExceeded, match="not starting the campaign.*allow_campaign_overrun"):
        check_campaign_start(config, paths, [], T0)
    config["budget"]["allow_campaign_overrun"] = True
    plan = check_campaign_start(config, paths, [], T0)
    assert plan is not None and not plan.fits


def test_no_check_once_the_campaign_has_started(tmp_path):
    config = campaign_config(sessions=42, budget=60)
    events = [{"event": "accepted", "run_key": "dep/session000_probe",
               "marker": {"account": "acct0", "submission_time": T0.isoformat(), "estimated_qpu_seconds": 3.0,
                          "job_id": "j1"}}]
    assert check_campaign_start(config, Paths.from_config(config, tmp_path), events, T0) is None
