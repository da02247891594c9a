"""Tests for qpuflow.decode (DEMs, PyMatching on registers) and the synthetic uniform backends."""

from __future__ import annotations

import copy
import json
import math
from collections import Counter

import numpy as np
import pytest
import stim
from qiskit.circuit import CircuitInstruction
from qiskit.circuit.library import XGate, ZGate

from qpuflow.circuits import memory_experiment
from qpuflow.config import ConfigError, is_synthetic_backend, synthetic_backend_spec, validate_config
from qpuflow.decode import DecodedRun, decode_registers, detector_rounds
from qpuflow.dem import calibration_dem, isa_detector_circuit
from qpuflow.uniform_noise import uniform_dem, with_uniform_noise
from qpuflow.simulate import sample_isa
from qpuflow.stim_noise import stim_translation
from qpuflow.backends import UnknownBackendError, load_backend
from qpuflow.circuit_identity import calibration_snapshot
from qpuflow.transpile import transpile_isa
from tests.conftest import SMALL_CONFIG


def run_local(qc, mmap, backend, *, shots, seed=3, noise_scale=1.0, dem=None, p=1e-3):
    """The local path: transpile -> sample_isa -> decode_registers."""
    isa = transpile_isa(qc, backend, seed=7)
    regs = sample_isa(isa, backend, shots=shots, seed=seed, noise_scale=noise_scale)
    text = qc.metadata["stim_circuit"]
    dem = dem if dem is not None else uniform_dem(text, p)
    return decode_registers(regs, mmap, dem, stim_circuit_text=text), isa, regs


def observable_qubit(qc, mmap):
    """The logical qubit whose final measurement is the first record of observable 0."""
    reg, bit = mmap.record[mmap.observables[0][0]]
    clbit = next(c for c in qc.cregs if c.name == reg)[bit]
    return next(i.qubits[0] for i in qc.data if i.operation.name == "measure" and i.clbits[0] == clbit)


# --------------------------------------------------------------------------------------
# noiseless: nothing fires, nothing is wrong
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend, noise_scale, kind, distance, state",
    [
        ("uniform_grid_p0", 1.0, "surface_code", 3, "0"),
        ("uniform_grid_p0", 1.0, "surface_code", 3, "1"),
        ("uniform_grid_p0", 1.0, "surface_code", 3, "+"),
        ("uniform_grid_p0", 1.0, "surface_code", 3, "-"),
        ("uniform_line_p0", 1.0, "repetition_code", 3, "0"),
        ("uniform_line_p0", 1.0, "repetition_code", 3, "1"),
        ("uniform_line_p0", 1.0, "repetition_code", 5, "0"),
        ("uniform_line_p0", 1.0, "repetition_code", 5, "1"),
        ("fake_fez", 0.0, "surface_code", 3, "1"),
        ("fake_fez", 0.0, "surface_code", 3, "-"),
        ("fake_fez", 0.0, "repetition_code", 5, "1"),
    ],
)
def test_noiseless_run_has_no_errors(backend, noise_scale, kind, distance, state):
    qc, mmap = memory_experiment(kind, distance=distance, rounds=3, logical_state=state)
    run, _, _ = run_local(qc, mmap, load_backend(backend), shots=500, noise_scale=noise_scale)
    assert run.shots == 500
    assert run.raw_errors == 0 and run.decoded_errors == 0
    assert sum(run.detection_events_per_round) == 0
    assert sum(run.detectors_per_round) == mmap.num_detectors


# --------------------------------------------------------------------------------------
# rounds
# --------------------------------------------------------------------------------------


def test_detector_rounds_of_d3_surface_code():
    qc, mmap = memory_experiment("surface_code", distance=3, rounds=3, logical_state="0")
    text = qc.metadata["stim_circuit"]
    rounds = detector_rounds(text)
    assert rounds.tolist()[:4] == [0, 0, 0, 0]
    # Z memory: the first round has only the 4 Z-stabilizer detectors (X ones are random),
    # rounds 1-2 compare all 8 stabilizers, round 3 checks the Z stabilizers against the data.
    assert sorted(Counter(rounds.tolist()).items()) == [(0, 4), (1, 8), (2, 8), (3, 4)]
    coords = stim.Circuit(text).get_detector_coordinates()
    assert rounds.tolist() == [int(coords[k][-1]) for k in range(len(rounds))]
    run, _, _ = run_local(qc, mmap, load_backend("uniform_grid_p0"), shots=10)
    assert run.detectors_per_round == (4, 8, 8, 4)


def test_detector_rounds_of_repetition_code():
    qc, _ = memory_experiment("repetition_code", distance=5, rounds=2, logical_state="1")
    assert Counter(detector_rounds(qc.metadata["stim_circuit"]).tolist()) == {0: 4, 1: 4, 2: 4}


def test_detector_rounds_needs_coordinates():
    with pytest.raises(ValueError, match="no coordinates"):
        detector_rounds("M 0\nDETECTOR rec[-1]\n")


# --------------------------------------------------------------------------------------
# one fault is corrected
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend, kind, state, gate",
    [
        ("uniform_line_p0", "repetition_code", "0", XGate()),
        ("uniform_line_p0", "repetition_code", "1", XGate()),
        ("uniform_grid_p0", "surface_code", "0", XGate()),
        ("uniform_grid_p0", "surface_code", "1", XGate()),
        ("uniform_grid_p0", "surface_code", "+", ZGate()),
    ],
)
def test_single_injected_error_is_corrected(backend, kind, state, gate):
    """An X (Z) on a data qubit of the observable, mid-circuit, before transpiling: every shot
    reads the wrong logical value, and the decoder fixes every shot."""
    qc, mmap = memory_experiment(kind, distance=3, rounds=3, logical_state=state)
    faulty = qc.copy()
    barriers = [i for i, inst in enumerate(faulty.data) if inst.operation.name == "barrier"]
    faulty.data.insert(barriers[len(barriers) // 2] + 1, CircuitInstruction(gate, (observable_qubit(qc, mmap),)))
    run, _, _ = run_local(faulty, mmap, load_backend(backend), shots=200)
    assert run.raw_errors == 200
    assert sum(run.detection_events_per_round) > 0
    assert run.decoded_errors == 0


@pytest.mark.parametrize("kind, state", [("repetition_code", "1"), ("surface_code", "0"), ("surface_code", "-")])
def test_single_readout_flip_is_corrected(kind, state):
    """A wrong data-qubit readout, made by flipping one bit of the returned data register."""
    qc, mmap = memory_experiment(kind, distance=3, rounds=3, logical_state=state)
    backend = load_backend("uniform_grid_p0")
    isa = transpile_isa(qc, backend, seed=7)
    regs = sample_isa(isa, backend, shots=100, seed=1)
    reg, bit = mmap.record[mmap.observables[0][-1]]
    assert reg == "data"
    regs[reg][:, bit] ^= True
    text = qc.metadata["stim_circuit"]
    run = decode_registers(regs, mmap, uniform_dem(text, 1e-3), stim_circuit_text=text)
    assert (run.raw_errors, run.decoded_errors) == (100, 0)
    assert run.detection_events_per_round[-1] > 0 and sum(run.detection_events_per_round[:-1]) == 0


# --------------------------------------------------------------------------------------
# calibration DEM from the saved snapshot
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fez_snapshot(fez):
    # As stored on disk and read back: the decoder never sees the live backend.
    return json.loads(json.dumps(calibration_snapshot(fez)))


@pytest.mark.parametrize("backend_name", ["fake_fez", "uniform_grid_p003"])
def test_snapshot_circuit_is_the_simulated_circuit(backend_name):
    """The DEM's circuit from a saved snapshot is the stim program sample_isa runs, noise line for line."""
    backend = load_backend(backend_name)
    snap = json.loads(json.dumps(calibration_snapshot(backend)))
    qc, mmap = memory_experiment("surface_code", distance=5, rounds=2, logical_state="-")
    isa = transpile_isa(qc, backend, seed=7)
    from_snapshot = isa_detector_circuit(isa, snap)
    assert str(from_snapshot) == str(isa_detector_circuit(isa, backend))
    # Idle noise included: the snapshot carries the durations the circuit is scheduled with.
    assert str(from_snapshot).startswith(str(stim_translation(isa, backend, idle_noise=True).circuit()))
    assert "PAULI_CHANNEL_1" in str(from_snapshot)
    # Half the noise is half the noise, and the detectors stay those of the measurement map.
    half = calibration_dem(isa, snap, noise_scale=0.5)
    assert (half.num_detectors, half.num_observables) == (mmap.num_detectors, 1)


def test_calibration_dem_decodes_fez_data_at_least_as_well_as_uniform(fez, fez_snapshot):
    shots = 20000
    results = {}
    for kind in ("surface_code", "repetition_code"):
        qc, mmap = memory_experiment(kind, distance=3, rounds=3, logical_state="1")
        isa = transpile_isa(qc, fez, seed=7)
        regs = sample_isa(isa, fez, shots=shots, seed=21)
        text = qc.metadata["stim_circuit"]
        uni = decode_registers(regs, mmap, uniform_dem(text, 1e-3), stim_circuit_text=text)
        cal = decode_registers(regs, mmap, calibration_dem(isa, fez_snapshot), stim_circuit_text=text)
        results[kind] = (uni, cal)
        print(f"\nfake_fez {kind} d=3 r=3, {shots} shots: raw {uni.raw_error_rate:.4f}, "
              f"uniform DEM {uni.decoded_error_rate:.4f}, calibration DEM {cal.decoded_error_rate:.4f}")
        assert uni.raw_errors == cal.raw_errors
        # Same shots, two decoders: the calibration model is the exact one, so it may only
        # lose by chance; 3 sigma of the uniform count is generous for a paired comparison.
        assert cal.decoded_errors <= uni.decoded_errors + 3 * math.sqrt(uni.decoded_errors) + 3
    uni, cal = results["repetition_code"]
    assert 2 * uni.decoded_errors < uni.raw_errors and 2 * cal.decoded_errors < cal.raw_errors
    uni, cal = results["surface_code"]
    assert uni.decoded_errors < uni.raw_errors and cal.decoded_errors < cal.raw_errors


def test_calibration_dem_refuses_a_snapshot_of_another_device(fez):
    qc, _ = memory_experiment("surface_code", distance=3, rounds=1, logical_state="0")
    isa = transpile_isa(qc, fez, seed=7)
    other = json.loads(json.dumps(calibration_snapshot(load_backend("fake_torino"))))
    with pytest.raises(ValueError, match="transpiled for 'fake_fez'|has 156 qubits"):
        calibration_dem(isa, other)
    with pytest.raises(ValueError, match="calibration snapshot"):
        calibration_dem(isa, fez)  # a live backend is not a snapshot
    broken = calibration_snapshot(fez)
    del broken["two_qubit"]
    with pytest.raises(ValueError, match="two_qubit"):
        calibration_dem(isa, broken)


# --------------------------------------------------------------------------------------
# the uniform model
# --------------------------------------------------------------------------------------


def test_with_uniform_noise_places_every_channel():
    c = stim.Circuit("R 0 1 2\nTICK\nH 0\nTICK\nCX 0 1\nTICK\nMR 1\nTICK\nMX 0\nM 2\nDETECTOR rec[-2]")
    expected = stim.Circuit(
        """
        R 0 1 2
        X_ERROR(0.01) 0 1 2
        TICK
        H 0
        DEPOLARIZE1(0.01) 0
        DEPOLARIZE1(0.01) 1 2
        TICK
        CX 0 1
        DEPOLARIZE2(0.01) 0 1
        DEPOLARIZE1(0.01) 2
        TICK
        X_ERROR(0.01) 1
        MR 1
        X_ERROR(0.01) 1
        DEPOLARIZE1(0.01) 0 2
        TICK
        Z_ERROR(0.01) 0
        MX 0
        X_ERROR(0.01) 2
        M 2
        DETECTOR rec[-2]
        DEPOLARIZE1(0.01) 1
        """
    )
    original = c.copy()
    assert with_uniform_noise(c, 0.01) == expected
    assert c == original  # the argument is not modified
    assert with_uniform_noise(c, 0) == c
    with pytest.raises(ValueError, match="p must be"):
        with_uniform_noise(c, 0.7)
    with pytest.raises(ValueError, match="no noise rule"):
        with_uniform_noise(stim.Circuit("MPP X0*X1"), 0.01)


def test_with_uniform_noise_on_a_memory_circuit():
    qc, _ = memory_experiment("surface_code", distance=3, rounds=4, logical_state="1")
    logical = stim.Circuit(qc.metadata["stim_circuit"])
    noisy = with_uniform_noise(logical, 2e-3)
    assert noisy.num_detectors == logical.num_detectors
    assert noisy.without_noise() == logical.flattened()
    assert with_uniform_noise(logical, 0) == logical
    # stim's generator measures the data in the same layer as the last ancillas (after the
    # REPEAT block, no TICK): no qubit idles there, so the last idle channel is the one of
    # the layer before.
    lines = str(noisy).splitlines()
    last_mr = max(i for i, line in enumerate(lines) if line.startswith("MR "))
    assert not any(line.startswith("DEPOLARIZE1") for line in lines[last_mr:])


def test_uniform_dem_is_graphlike():
    qc, mmap = memory_experiment("surface_code", distance=5, rounds=5, logical_state="+")
    dem = uniform_dem(qc.metadata["stim_circuit"], 3e-3)
    assert (dem.num_detectors, dem.num_observables) == (mmap.num_detectors, 1)
    for inst in dem.flattened():
        if inst.type == "error":
            piece = 0
            for t in inst.targets_copy():
                if t.is_separator():
                    piece = 0
                elif t.is_relative_detector_id():
                    piece += 1
                    assert piece <= 2
    with pytest.raises(ValueError, match="p > 0"):
        uniform_dem(qc.metadata["stim_circuit"], 0)


def test_decode_registers_rejects_a_dem_of_another_circuit():
    qc3, mmap3 = memory_experiment("surface_code", distance=3, rounds=3, logical_state="0")
    qc5, _ = memory_experiment("surface_code", distance=5, rounds=3, logical_state="0")
    regs = {name: np.zeros((4, size), bool) for name, size in mmap3.registers}
    with pytest.raises(ValueError, match="same circuit"):
        decode_registers(regs, mmap3, uniform_dem(qc5.metadata["stim_circuit"]),
                         stim_circuit_text=qc3.metadata["stim_circuit"])


def test_decoded_run_json_round_trip():
    run = DecodedRun(shots=10, raw_errors=3, decoded_errors=1,
                     detection_events_per_round=(1, 2), detectors_per_round=(4, 8))
    d = json.loads(json.dumps(run.to_json()))
    assert DecodedRun.from_json(d) == run
    assert run.decoded_error_rate == 0.1
    assert run.detection_fraction_per_round() == (1 / 40, 2 / 80)
    with pytest.raises(ValueError, match="missing keys"):
        DecodedRun.from_json({k: v for k, v in d.items() if k != "shots"})
    with pytest.raises(ValueError, match="shots"):
        DecodedRun(shots=1, raw_errors=2, decoded_errors=0, detection_events_per_round=(),
                   detectors_per_round=())


# --------------------------------------------------------------------------------------
# synthetic uniform-noise backends
# --------------------------------------------------------------------------------------


def test_synthetic_backend_names():
    assert synthetic_backend_spec("uniform_grid_p001") == ("grid", 0.001)
    assert synthetic_backend_spec("uniform_line_p05") == ("line", 0.05)
    assert synthetic_backend_spec("uniform_grid_p0") == ("grid", 0.0)
    assert synthetic_backend_spec("fake_fez") is None
    assert not is_synthetic_backend("uniform_grid_p9")  # p = 0.9
    assert not is_synthetic_backend("uniform_ring_p001")
    with pytest.raises(UnknownBackendError, match="0.9"):
        load_backend("uniform_grid_p9")
    assert load_backend("uniform_grid_p001") is load_backend("uniform_grid_p001")


@pytest.mark.parametrize("p_digits", ["004", "0007"])
def test_synthetic_backend_channels_are_exactly_p(p_digits):
    p = float("0." + p_digits)
    backend = load_backend(f"uniform_grid_p{p_digits}")
    qc, _ = memory_experiment("surface_code", distance=3, rounds=2, logical_state="+")
    text = stim_translation(transpile_isa(qc, backend, seed=7), backend).text
    probs = {}
    for line in text.splitlines():
        if "(" in line:
            name, value = line.split(")")[0].split("(")
            probs.setdefault(name, set()).add(float(value))
    assert sorted(probs) == ["DEPOLARIZE1", "DEPOLARIZE2", "M"]
    for values in probs.values():
        (value,) = values
        # Exact where a float r with factor * r == p exists (0.004); one ulp off otherwise.
        assert value == p if p_digits == "004" else math.isclose(value, p, rel_tol=1e-15)
    assert "X_ERROR" not in text  # reset is error free
    snap = calibration_snapshot(backend)
    assert snap["backend"] == f"uniform_grid_p{p_digits}" and snap["excluded_couplers"] == []
    assert {q["readout_error"] for q in snap["qubits"]} == {p}
    assert {q["t1"] for q in snap["qubits"]} == {300e-6}


@pytest.mark.parametrize(
    "name, kind, distance", [("uniform_grid_p001", "surface_code", 3), ("uniform_grid_p001", "surface_code", 5),
                             ("uniform_grid_p001", "surface_code", 7), ("uniform_line_p001", "repetition_code", 15)]
)
def test_synthetic_backend_needs_no_routing(name, kind, distance):
    backend = load_backend(name)
    qc, _ = memory_experiment(kind, distance=distance, rounds=2, logical_state="0")
    isa = transpile_isa(qc, backend, seed=7)
    assert isa.count_ops()["cz"] == qc.count_ops()["cx"]  # one cz per CX: no SWAP was inserted
    assert isa.layout.initial_index_layout(filter_ancillas=True) == isa.layout.final_index_layout(filter_ancillas=True)


def test_synthetic_backend_in_config():
    config = copy.deepcopy(SMALL_CONFIG)
    config["provider"]["backend"] = "uniform_grid_p001"
    validate_config(copy.deepcopy(config), source="study.yaml")
    too_noisy = copy.deepcopy(config)
    too_noisy["provider"]["backend"] = "uniform_grid_p9"
    with pytest.raises(ConfigError, match="provider.backend"):
        validate_config(too_noisy, source="study.yaml")
    ibm_local = copy.deepcopy(config)
    ibm_local["provider"] = {"name": "ibm", "backend": "uniform_grid_p001", "ibm": {"local_mode": True}}
    with pytest.raises(ConfigError, match="only work with provider 'local'"):
        validate_config(ibm_local, source="study.yaml")


def test_a_noiseless_dem_cannot_explain_detection_events():
    backend = load_backend("uniform_grid_p0")
    qc, mmap = memory_experiment("surface_code", distance=3, rounds=2, logical_state="0")
    isa = transpile_isa(qc, backend, seed=7)
    dem = calibration_dem(isa, calibration_snapshot(backend), idle_noise=False)  # p = 0 and no idle: no errors
    regs = sample_isa(isa, backend, shots=5, seed=1)
    text = qc.metadata["stim_circuit"]
    assert decode_registers(regs, mmap, dem, stim_circuit_text=text).decoded_errors == 0
    regs["data"][:, 0] ^= True
    with pytest.raises(ValueError, match="no errors that explain"):
        decode_registers(regs, mmap, dem, stim_circuit_text=text)


def test_routed_circuit_calibration_dem_resolves_conflicting_parallel_edges():
    """Regression: on FakeFez, d=3, 1 round, seed 7, SWAP routing makes detector D1 fire both
    with and without a logical flip. Keeping the wrong parallel edge doubled the decoded
    rate (0.077 vs 0.036 for the uniform model); resolving to the likelier flip fixes it."""
    import json

    from qpuflow.circuits import memory_experiment
    from qpuflow.measurement_map import MeasurementMap
    from qpuflow.decode import decode_registers
    from qpuflow.dem import calibration_dem, resolve_parallel_edges
    from qpuflow.uniform_noise import uniform_dem
    from qpuflow.simulate import sample_isa
    from qpuflow.backends import load_backend
    from qpuflow.circuit_identity import calibration_snapshot
    from qpuflow.transpile import transpile_isa

    backend = load_backend("fake_fez")
    snapshot = json.loads(json.dumps(calibration_snapshot(backend)))
    circuit, _ = memory_experiment("surface_code", distance=3, rounds=1, logical_state="0")
    isa = transpile_isa(circuit, backend, seed=7)
    dem = calibration_dem(isa, snapshot, correlated=False)  # the plain-matching DEM
    seen = {}
    for inst in dem.flattened():
        if inst.type == "error":
            dets = tuple(t.val for t in inst.targets_copy() if t.is_relative_detector_id())
            assert dets not in seen, f"parallel edges left for {dets}"
            seen[dets] = True
    mmap = MeasurementMap.from_json(isa.metadata["measurement_map"])
    text = isa.metadata["stim_circuit"]
    registers = sample_isa(isa, backend, shots=20000, seed=3)
    uniform = decode_registers(registers, mmap, uniform_dem(text, 1e-3), stim_circuit_text=text)
    calibrated = decode_registers(registers, mmap, dem, stim_circuit_text=text)
    assert calibrated.decoded_errors <= uniform.decoded_errors * 1.1
    assert resolve_parallel_edges(dem) == dem  # idempotent
