"""Probe jobs: the circuit, the estimates (known answers), and choosing a chain from them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qpuflow.plan import RunSpec
from qpuflow.probe import candidate_qubits, estimate, probe_circuit, probe_problems, probe_registers
from qpuflow.backends import usable_target
from qpuflow.chains import select_chain
from qpuflow.transpile import physical_layout, transpile_isa


def probe_spec(qubits: int = 6, delays=(50.0, 100.0, 200.0)) -> RunSpec:
    return RunSpec(experiment="dep", run="session000_probe", kind="probe", distance=3, rounds=1,
                   logical_state="0", shots=500, backend="fake_fez", provider="local", transpiler_seed=1,
                   optimization_level=1, session=0, probe_delays_us=delays, probe_qubits=qubits)


def column(p_one: float, shots: int) -> np.ndarray:
    """A column with exactly round(p_one * shots) ones: a known answer without sampling noise."""
    ones = int(round(p_one * shots))
    return np.array([True] * ones + [False] * (shots - ones))


def test_probe_identity_includes_its_parameters():
    assert probe_spec().run_id() != probe_spec(delays=(50.0, 100.0)).run_id()
    assert probe_spec().run_id() != probe_spec(qubits=7).run_id()


def test_memory_run_identity_is_unchanged_by_the_probe_fields():
    # The id a surface-code run had before probe fields existed (regression: changing it would
    # make every submitted run look new and be refused).
    spec = RunSpec(experiment="e", run="L0_rep0", kind="surface_code", distance=3, rounds=3,
                   logical_state="0", shots=100, backend="fake_fez", provider="local",
                   transpiler_seed=1, optimization_level=1)
    # Computed with the plan.py of commit 5292c02, before the probe fields were added.
    assert spec.run_id() == "1f549652f8ff53e8089a18d206463ab8800970aa89cad7a2e86c7854514a6246"


def test_probe_circuit_layers_and_noiseless_check(fez):
    spec = probe_spec()
    circuit = probe_circuit(spec)
    assert [c.name for c in circuit.cregs] == ["ro0", "ro1", "t1_0", "t1_1", "t1_2"]
    layout = candidate_qubits(fez, spec.chain_length, spec.probe_qubits)
    isa = transpile_isa(circuit, fez, seed=1, initial_layout=layout)
    assert physical_layout(isa) == layout  # the fixed layout is kept
    assert isa.count_ops()["delay"] >= 3 * spec.probe_qubits
    assert probe_problems(isa) == []


def test_a_broken_probe_fails_the_noiseless_check(fez):
    spec = probe_spec(qubits=3)
    circuit = probe_circuit(spec)
    circuit.data = [inst for inst in circuit.data if inst.operation.name != "x"]  # never prepares |1>
    isa = transpile_isa(circuit, fez, seed=1, initial_layout=[0, 1, 2])
    problems = probe_problems(isa)
    assert problems and "ro1" in problems[0]


def test_candidates_grow_connected_around_the_calibration_best_chain(fez):
    chain = select_chain(fez, 5)
    candidates = candidate_qubits(fez, 5, 12)
    assert candidates[:5] == chain and len(set(candidates)) == 12
    target = usable_target(fez)
    edges = {tuple(sorted(q)) for q in target["cz"] if q is not None}
    for q in candidates[5:]:  # every added qubit touches an earlier one
        assert any(tuple(sorted((q, p))) in edges for p in candidates[: candidates.index(q)])


def test_estimates_recover_known_readout_errors_and_t1():
    shots, delays = 200_000, (50.0, 100.0, 200.0)
    truth = {7: (0.02, 0.05, 100e-6), 9: (0.01, 0.03, 250e-6)}  # physical: (e0, e1, T1)
    registers = {name: np.zeros((shots, 2), dtype=bool) for name, _, _ in probe_registers(delays)}
    for logical, (e0, e1, t1) in enumerate(truth.values()):
        registers["ro0"][:, logical] = column(e0, shots)
        registers["ro1"][:, logical] = column(1 - e1, shots)
        for k, t in enumerate(delays):
            registers[f"t1_{k}"][:, logical] = column(e0 + (1 - e0 - e1) * math.exp(-t * 1e-6 / t1), shots)
    found = estimate(registers, list(truth), probe_registers(delays))
    for q, (e0, e1, t1) in truth.items():
        assert found[q]["prob_meas1_prep0"] == pytest.approx(e0, abs=1e-4)
        assert found[q]["prob_meas0_prep1"] == pytest.approx(e1, abs=1e-4)
        assert found[q]["readout_error"] == pytest.approx((e0 + e1) / 2, abs=1e-4)
        assert found[q]["t1"] == pytest.approx(t1, rel=0.01)


def test_no_visible_decay_leaves_t1_unestimated():
    delays = (50.0,)
    registers = {name: np.zeros((100, 1), dtype=bool) for name, _, _ in probe_registers(delays)}
    registers["ro1"][:] = True
    registers["t1_0"][:] = True
    assert estimate(registers, [3], probe_registers(delays))[3]["t1"] is None


def test_measured_values_steer_the_chain_away_from_a_qubit_that_got_worse(fez):
    chain = select_chain(fez, 5)
    candidates = candidate_qubits(fez, 5, 12)
    bad = chain[2]  # the middle of the calibration-best chain decayed since calibration
    measured = {q: {"readout_error": 0.4 if q == bad else 0.01} for q in candidates}
    drift_aware = select_chain(fez, 5, only=candidates, measured=measured)
    assert bad not in drift_aware and set(drift_aware) <= set(candidates)
    # Measurements that agree with calibration keep the choice within the probed region.
    assert set(select_chain(fez, 5, only=candidates)) <= set(candidates)


@pytest.mark.slow
def test_the_probe_recovers_the_backends_t1_end_to_end(tmp_path, monkeypatch):
    """Submit a probe on the drift-free local backend, collect it, select the session's chains:
    the probe's T1 estimates are the simulated device's T1 (QPY once turned 50 us into 50 dt,
    0.2 us, and the estimates came out ~200x too large)."""
    import json

    from qpuflow.config import validate_config
    from qpuflow.paths import Paths
    from qpuflow.pipeline import collect, submit_pending
    from qpuflow.plan import plan_runs
    from qpuflow.backends import load_backend

    config = validate_config({
        "provider": {"name": "local", "backend": "fake_fez", "pubs_per_job": 1},
        "experiments": {"dep": {"kind": "deployment", "distance": 3, "rounds": 1, "sessions": 1, "shots": 64,
                                "arms": ["calibration", "drift_aware"],
                                "probe": {"shots": 2000, "delays_us": [50, 100, 200]}}},
    })
    monkeypatch.chdir(tmp_path)
    paths = Paths.from_config(config, base=tmp_path)
    submit_pending(plan_runs(config), config, paths)
    collect(config, paths)
    submit_pending(plan_runs(config), config, paths)
    estimates = json.loads(paths.selection("dep", 0).read_text())["arms"]["drift_aware"]["estimates"]
    target = load_backend("fake_fez").target
    ratios = np.array([m["t1"] / target.qubit_properties[int(q)].t1 for q, m in estimates.items()])
    assert len(ratios) == 10
    assert abs(np.median(ratios) - 1) < 0.1 and ratios.min() > 0.8 and ratios.max() < 1.25, ratios
