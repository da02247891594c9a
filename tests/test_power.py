"""Prospective power of the deployment study (issue 15): the campaign simulation against
closed-form cases, the choice of design per QPU-second, and the refusal below a power floor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from qpuflow.power import Design, PowerEstimate, StatePool, best_per_second, campaign_power, candidate_designs


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


def test_the_recommended_design_is_the_cheapest_reaching_the_floor_within_budget():
    def e(sessions, seconds, power):
        return PowerEstimate(Design(sessions, 4096), power, 200, seconds, -0.05, 0.05)

    options = [e(21, 200, 0.5), e(42, 400, 0.82), e(63, 550, 0.9), e(84, 800, 0.97)]
    assert best_per_second(options, 600, 0.8).design.sessions == 42
    assert best_per_second(options, 300, 0.8).design.sessions == 21  # none reaches: the most power that fits
    assert best_per_second(options, 100, 0.8) is None
    assert Design(42, 4096) in candidate_designs(42, 4096) and Design(84, 1024) in candidate_designs(42, 4096)


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
