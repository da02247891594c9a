"""Prospective power of the deployment study (issue 15): the campaign simulation against
closed-form cases, the choice of design per QPU-second, and the refusal below a power floor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from qpuflow.power import Design, PowerEstimate, StatePool, best_per_second, campaign_power
from qpuflow.power_plan import candidate_designs, plan_power, searched_geometries


def _pool(mean_cal, mean_drift, var, trials=10, states=50):
    mean = np.column_stack([np.full(states, mean_cal), np.full(states, mean_drift)])
    return StatePool("detection_fraction", trials, mean, np.full((states, 2), var), arm_seconds=1e-3, probe_seconds=5.0)


def test_without_an_effect_the_test_rejects_at_its_level():
    pool = _pool(0.5, 0.5, 0.5)
    power = campaign_power(pool, Design(20, 1000), campaigns=2000, seed=1)
    assert abs(power - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 2000), power


def test_power_matches_the_wilcoxon_normal_shift_approximation():
    # Per session the arms' counts are normal: difference of means delta (per trial), sd sigma.
    shots, trials, var = 1000, 10, 0.5
    delta_count = 0.015 * shots  # per-shot mean difference 0.015 events
    sigma_count = math.sqrt(2 * shots * var)
    n = 20
    pool = _pool(0.5, 0.515, var, trials=trials)
    power = campaign_power(pool, Design(n, shots), campaigns=2000, seed=2)
    # Wilcoxon's asymptotic relative efficiency against the t test under normal errors is 3/pi:
    # its power is that of a z test with 3n/pi sessions.
    shift = delta_count / sigma_count * math.sqrt(3 * n / math.pi)
    expected = stats.norm.cdf(shift - 1.959964) + stats.norm.cdf(-shift - 1.959964)
    assert 0.3 < expected < 0.9
    assert abs(power - expected) < 0.05, (power, expected)


def test_a_stated_effect_replaces_the_models():
    pool = _pool(0.5, 0.5, 0.5)
    assert campaign_power(pool, Design(20, 1000), campaigns=300, seed=3, effect=-0.1) > 0.9
    assert campaign_power(pool, Design(20, 1000), campaigns=300, seed=3, effect=0.0) < 0.15


def test_the_recommended_design_is_the_cheapest_surely_reaching_the_floor():
    def e(sessions, seconds, power):
        return PowerEstimate(Design(sessions, 4096), power, 200, seconds, -0.05, 0.05)

    # 30 sessions: 0.82 is cheaper, but over 200 campaigns its one-sided 95% lower bound is
    # below 0.8; 42 sessions reach the floor beyond the simulation's noise.
    options = [e(21, 200, 0.5), e(30, 300, 0.82), e(42, 400, 0.9), e(63, 550, 0.95), e(84, 800, 0.99)]
    assert e(30, 300, 0.82).power_low < 0.8 < e(42, 400, 0.9).power_low
    assert best_per_second(options, 600, 0.8).design.sessions == 42
    assert best_per_second(options, 350, 0.8).design.sessions == 30  # none reaches: the most power that fits
    assert best_per_second(options, 100, 0.8) is None
    assert Design(42, 4096) in candidate_designs(42, 4096) and Design(84, 1024) in candidate_designs(42, 4096)


def test_the_lower_bound_is_clopper_pearson_over_the_simulated_campaigns():
    low = PowerEstimate(Design(10, 100), 0.9, 200, 1.0, 0.0, 0.05).power_low
    assert low == pytest.approx(stats.beta.ppf(0.05, 180, 21), abs=1e-9)


def test_the_searched_geometries_start_with_the_configured_one():
    assert searched_geometries(5, 3, None) == [(5, 3), (3, 1), (3, 3), (3, 6), (5, 1), (5, 6), (7, 1), (7, 3), (7, 6)]
    assert searched_geometries(3, 1, None)[0] == (3, 1) and min(d for d, _ in searched_geometries(3, 1, None)) == 3
    assert searched_geometries(5, 3, {"distance": [5, 9], "rounds": [3]}) == [(5, 3), (9, 3)]


def test_the_plan_searches_distance_and_rounds_with_the_real_circuits_costs(small_config: dict):
    from qpuflow.budget import JOB_OVERHEAD_SECONDS

    config = dict(small_config)
    config["experiments"] = {"dep": {
        "kind": "deployment", "distance": 3, "rounds": 1, "sessions": 4, "shots": 256,
        "arms": ["calibration", "drift_aware"], "schedule": {"per_day": 3},
        "power": {"states": 3, "campaigns": 20, "search": {"distance": [3, 5, 81], "rounds": [1, 2]}}}}
    plan = plan_power(config, "dep", budget_seconds=500, start_epoch=1_796_083_200.0, costs=(4.0, 1e-3))
    geometries = {e.design.geometry for e in plan.candidates}
    assert geometries == {(3, 1), (3, 2), (5, 1), (5, 2)}
    assert [g for g, _ in plan.geometries()] == sorted(geometries)
    assert len(plan.skipped) == 2 and all("d=81" in s and "exceeds" in s for s in plan.skipped)
    assert plan.configured.design == Design(4, 256, 3, 1)
    assert plan.configured.qpu_seconds == pytest.approx(4 * (4.0 + JOB_OVERHEAD_SECONDS + 1e-3 * 256))
    # Another geometry costs the configured circuits' cost plus its longer duration: more rounds
    # take longer; a longer chain measures in parallel (same depth).
    same = {e.design.geometry: e.qpu_seconds for e in plan.candidates if (e.design.sessions, e.design.shots) == (4, 256)}
    assert same[(5, 1)] == pytest.approx(same[(3, 1)]) and same[(3, 2)] > same[(3, 1)] and same[(5, 2)] > same[(5, 1)]
    assert plan.recommended in plan.candidates and "d=" in plan.verdict()


@pytest.fixture
def tiny_campaign(small_config: dict) -> dict:
    config = dict(small_config)
    config["provider"] = {**config["provider"], "local": {"drift": {"sigma": 0.3, "defects": {"rate_per_day": 0.15}}}}
    config["experiments"] = {"dep": {
        "kind": "deployment", "distance": 3, "rounds": 1, "sessions": 3, "shots": 256,
        "arms": ["calibration", "drift_aware"], "schedule": {"per_day": 3, "start": "2026-12-01T00:00:00Z"},
        "power": {"floor": 0.8, "states": 3, "campaigns": 40}}}
    return config


def test_a_campaign_below_its_power_floor_is_refused_before_anything_is_sent(tmp_path: Path, tiny_campaign: dict):
    from conftest import provider_jobs, run, write_config, BIN

    write_config(tmp_path, tiny_campaign)
    for name in ("Snakefile", "workflow", "profiles"):
        src = Path(__file__).resolve().parents[1] / name
        import shutil
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    env = {"QPUFLOW_NOW": "2026-12-01T00:10:00Z"}
    plan = run([str(BIN / "qpuflow"), "plan"], tmp_path, env=env, check=False)
    assert plan.returncode == 1 and "Below the power floor 0.8" in plan.all and "prospective power" in plan.all
    submit = run([str(BIN / "snakemake"), "--cores", "1", "submit"], tmp_path, env=env, check=False)
    assert submit.returncode == 1
    assert "not starting the campaign" in submit.all and "accept_low_power" in submit.all
    assert provider_jobs(tmp_path) == []
    tiny_campaign["experiments"]["dep"]["power"]["accept_low_power"] = True
    write_config(tmp_path, tiny_campaign)
    run([str(BIN / "snakemake"), "--cores", "1", "submit"], tmp_path, env=env)
    assert len(provider_jobs(tmp_path)) == 1  # the first session's probe
