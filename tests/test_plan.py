from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from qpuflow.config import load_config
from qpuflow.plan import RunSpec, plan_runs, select_experiments
from tests.conftest import REPO


def test_default_study_runs():
    runs = plan_runs(load_config(REPO / "config.yaml"))
    keys = [r.key for r in runs]
    # 2 round counts x 2 states x 2 repetitions + 21 sessions x (probe + 2 arms)
    assert len(keys) == len(set(keys)) == 8 + 21 * 3
    assert "surface_code/Lplus_r6_rep1" in keys and "deployment/session020_drift_aware" in keys
    sc = [r for r in runs if r.kind == "surface_code"]
    assert {r.logical_state for r in sc} == {"0", "+"} and all(r.shots == 4096 for r in sc)
    assert {r.rounds for r in sc} == {2, 6} and {r.layout for r in sc} == {"native"}
    assert len(select_experiments(runs, "deployment")) == 21 * 3
    assert len(select_experiments(runs, "both")) == 8 + 21 * 3
    probe = next(r for r in runs if r.key == "deployment/session000_probe")
    assert probe.is_probe and probe.shots == 2000 and probe.probe_qubits == 26 and probe.probe_delays_us == (50, 100, 200)


def test_arm_order_is_random_per_session_but_reproducible():
    from qpuflow.plan import arm_order

    arms = ["calibration", "drift_aware"]
    orders = [tuple(arm_order("dep", s, arms, 0)) for s in range(40)]
    assert orders == [tuple(arm_order("dep", s, arms, 0)) for s in range(40)]
    assert 10 < sum(o[0] == "calibration" for o in orders) < 30  # both orders occur
    assert orders != [tuple(arm_order("dep", s, arms, 1)) for s in range(40)]


def test_run_id_is_stable_across_processes_and_sensitive_to_content():
    spec = plan_runs(load_config(REPO / "config.yaml"))[0]
    code = ("from qpuflow.config import load_config; from qpuflow.plan import plan_runs; "
            f"print(plan_runs(load_config({str(REPO / 'config.yaml')!r}))[0].run_id())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == spec.run_id()
    for change in ({"shots": 4097}, {"transpiler_seed": 1}, {"backend": "fake_torino"}, {"repetition": 9},
                   {"logical_state": "1"}, {"rounds": 5}, {"layout": None}):
        assert dataclasses.replace(spec, **change).run_id() != spec.run_id(), change
    assert spec.job_tag().startswith("qpuflow-run-") and spec.run_id()[:24] in spec.job_tag()


def test_spec_round_trip_and_validation():
    spec = plan_runs(load_config(REPO / "config.yaml"))[-1]
    assert RunSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="distance"):
        dataclasses.replace(spec, distance=4)
    with pytest.raises(ValueError, match="unknown RunSpec fields"):
        RunSpec.from_json({**spec.to_json(), "token": "x"})
