"""Tests for qpuflow.circuits: stim generation, stim -> Qiskit conversion, measurement map."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import stim
from qiskit.circuit import CircuitInstruction, QuantumCircuit
from qiskit.circuit.library import XGate
from qiskit_aer.primitives import SamplerV2

from qpuflow.circuits import LOGICAL_STATES, memory_circuit, memory_experiment
from qpuflow.measurement_map import (MeasurementMap, detection_events, observable_flips, records_from_registers,
                                     registers_from_records)
from qpuflow.stim_qiskit import UnsupportedStimInstructionError, stim_to_qiskit

SURFACE_STATES = LOGICAL_STATES
REPETITION_STATES = ("0", "1")


def aer_registers(qc: QuantumCircuit, shots: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Noiseless stabilizer simulation of a logical circuit, as register -> (shots, bits)."""
    sampler = SamplerV2(seed=seed, options={"backend_options": {"method": "stabilizer"}})
    data = sampler.run([qc], shots=shots).result()[0].data
    return {c.name: data[c.name].to_bool_array(order="little") for c in qc.cregs}


def stim_data_qubits(circuit: stim.Circuit) -> list[int]:
    last = [i for i in circuit.flattened() if i.name in ("M", "MX")][-1]
    return [t.value for t in last.targets_copy()]


# --------------------------------------------------------------------------------------
# memory_circuit
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(kind="surface_code", distance=4, rounds=1, logical_state="0"), "odd"),
        (dict(kind="surface_code", distance=1, rounds=1, logical_state="0"), ">= 3"),
        (dict(kind="repetition_code", distance=3, rounds=0, logical_state="0"), "rounds"),
        (dict(kind="color_code", distance=3, rounds=1, logical_state="0"), "color_code"),
        (dict(kind="surface_code", distance=3, rounds=1, logical_state="i"), "'i'"),
        (dict(kind="repetition_code", distance=3, rounds=1, logical_state="+"), "'+'"),
    ],
)
def test_memory_circuit_rejects_bad_arguments(kwargs, fragment):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=fragment.replace("+", r"\+")):
        memory_circuit(kind, **kwargs)


def test_state_zero_is_stims_own_circuit_and_state_one_adds_one_layer():
    base = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=2)
    assert memory_circuit("surface_code", distance=3, rounds=2, logical_state="0") == base
    one = memory_circuit("surface_code", distance=3, rounds=2, logical_state="1")
    assert len(one.flattened()) == len(base.flattened()) + 1
    minus = memory_circuit("surface_code", distance=3, rounds=2, logical_state="-")
    z_layers = [i for i in minus.flattened() if i.name == "Z"]
    assert len(z_layers) == 1
    assert sorted(t.value for t in z_layers[0].targets_copy()) == sorted(stim_data_qubits(minus))


@pytest.mark.parametrize("kind,states", [("surface_code", SURFACE_STATES), ("repetition_code", REPETITION_STATES)])
@pytest.mark.parametrize("distance", [3, 5])
def test_stim_reference_observable_matches_prepared_state(kind, states, distance):
    for state in states:
        c = memory_circuit(kind, distance=distance, rounds=2, logical_state=state)
        c.detector_error_model()  # raises if any detector or observable is not deterministic
        ref = c.reference_sample()
        # Compute the raw parities by hand from the record (not via stim's converters, which
        # report values relative to this same reference).
        qc, mmap = stim_to_qiskit(c, expected_observables=[0])
        obs = int(np.bitwise_xor.reduce(ref[list(mmap.observables[0])]))
        assert obs == (1 if state in ("1", "-") else 0), state
        assert all(int(np.bitwise_xor.reduce(ref[list(d)])) == 0 for d in mmap.detectors)


# --------------------------------------------------------------------------------------
# conversion structure
# --------------------------------------------------------------------------------------


def test_registers_are_one_per_layer_with_data_last():
    qc, mmap = memory_experiment("surface_code", distance=3, rounds=3, logical_state="0")
    assert mmap.registers == (("m0", 8), ("m1", 8), ("m2", 8), ("data", 9))
    assert [c.name for c in qc.cregs] == ["m0", "m1", "m2", "data"]
    assert qc.num_qubits == 17  # 26 sparse stim indices compacted to the 17 used
    assert mmap.num_measurements == 33
    assert mmap.num_detectors == 8 * 3  # 4 + 8 + 8 + 4 for a Z memory
    assert mmap.expected_observables == (0,)
    # One barrier per stim TICK.
    ticks = sum(1 for i in stim.Circuit(qc.metadata["stim_circuit"]).flattened() if i.name == "TICK")
    assert qc.count_ops()["barrier"] == ticks

    _, rep = memory_experiment("repetition_code", distance=5, rounds=3, logical_state="1")
    assert rep.registers == (("m0", 4), ("m1", 4), ("m2", 4), ("data", 5))
    assert rep.expected_observables == (1,)


def test_relative_targets_become_absolute_record_indices():
    _, mmap = memory_experiment("repetition_code", distance=3, rounds=2, logical_state="0")
    # Hand-derived from stim's repetition_code:memory d=3 r=2 (records: m0=0,1 m1=2,3 data=4,5,6).
    assert mmap.detectors == ((0,), (1,), (0, 2), (1, 3), (2, 4, 5), (3, 5, 6))
    assert mmap.observables == ((6,),)
    assert mmap.record == (("m0", 0), ("m0", 1), ("m1", 0), ("m1", 1), ("data", 0), ("data", 1), ("data", 2))


def test_metadata_is_json_safe_and_round_trips():
    qc, mmap = memory_experiment("surface_code", distance=3, rounds=2, logical_state="-")
    text = json.dumps(qc.metadata)
    meta = json.loads(text)
    assert MeasurementMap.from_json(meta["measurement_map"]) == mmap
    assert stim.Circuit(meta["stim_circuit"]) == memory_circuit(
        "surface_code", distance=3, rounds=2, logical_state="-"
    )
    assert meta["experiment"] == {"kind": "surface_code", "distance": 3, "rounds": 2, "logical_state": "-"}
    assert len(meta["stim_qubits"]) == qc.num_qubits


def test_measurement_map_rejects_inconsistent_content():
    good = MeasurementMap(
        registers=(("m0", 2),), record=(("m0", 0), ("m0", 1)), detectors=((0, 1),),
        observables=((1,),), expected_observables=(0,),
    )
    assert MeasurementMap.from_json(json.loads(json.dumps(good.to_json()))) == good
    assert MeasurementMap(**good.to_json()) == good  # lists are normalised to tuples
    hash(good)
    with pytest.raises(ValueError, match="reuses m0\\[0\\]"):
        MeasurementMap(registers=(("m0", 2),), record=(("m0", 0), ("m0", 0)), detectors=(),
                       observables=(), expected_observables=())
    with pytest.raises(ValueError, match="detector 0 refers to record indices \\[5\\]"):
        MeasurementMap(registers=(("m0", 1),), record=(("m0", 0),), detectors=((5,),),
                       observables=(), expected_observables=())
    with pytest.raises(ValueError, match="expected_observables"):
        MeasurementMap(registers=(("m0", 1),), record=(("m0", 0),), detectors=(),
                       observables=((0,),), expected_observables=(2,))
    with pytest.raises(ValueError, match="missing keys \\['record'\\]"):
        d = good.to_json()
        del d["record"]
        MeasurementMap.from_json(d)


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("R 0 1\nSWAP 0 1\nM 0 1", "SWAP"),
        ("R 0\nX_ERROR(0.1) 0\nM 0", "X_ERROR"),
        ("R 0\nM(0.01) 0", "noise argument"),
        ("R 0\nM !0", "target"),
    ],
)
def test_unsupported_stim_instructions_fail_loudly(text, fragment):
    with pytest.raises(UnsupportedStimInstructionError, match=fragment):
        stim_to_qiskit(stim.Circuit(text))


def test_final_h_and_reset_only_where_the_qubit_is_used_again():
    qc, _ = stim_to_qiskit(stim.Circuit("RX 0\nR 1\nTICK\nMX 0\nMR 1\nTICK\nH 0\nMX 0\nMR 1"))
    ops = [(i.operation.name, qc.find_bit(i.qubits[0]).index) for i in qc.data if i.operation.name != "barrier"]
    # q0: reset h | h measure h (used again) | h h measure (no trailing h)
    assert [o for o, q in ops if q == 0] == ["reset", "h", "h", "measure", "h", "h", "h", "measure"]
    # q1: reset | measure reset (used again) | measure (no trailing reset)
    assert [o for o, q in ops if q == 1] == ["reset", "measure", "reset", "measure"]


def test_layers_split_on_tick_and_on_measurement_kind():
    # MR then M with no TICK between: two layers (syndrome, data), as in stim's generators.
    _, mmap = stim_to_qiskit(stim.Circuit("R 0 1 2\nMR 1\nMR 2\nM 0\nDETECTOR rec[-2]"))
    assert mmap.registers == (("m0", 2), ("data", 1))
    # A gate after the last measurement: not a clean data readout, so no "data" name.
    _, mmap = stim_to_qiskit(stim.Circuit("R 0 1\nMR 1\nTICK\nM 0\nX 0"))
    assert mmap.registers == (("m0", 1), ("m1", 1))


# --------------------------------------------------------------------------------------
# noiseless behaviour of the Qiskit circuits
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,distance,state",
    [("surface_code", 3, s) for s in SURFACE_STATES] + [("repetition_code", 5, s) for s in REPETITION_STATES],
)
def test_noiseless_qiskit_circuit_has_zero_detectors_and_expected_observable(kind, distance, state):
    qc, mmap = memory_experiment(kind, distance=distance, rounds=3, logical_state=state)
    regs = aer_registers(qc, shots=64)
    assert detection_events(regs, mmap).shape == (64, mmap.num_detectors)
    assert not detection_events(regs, mmap).any()
    assert not observable_flips(regs, mmap).any()
    records = records_from_registers(regs, mmap)
    measured = np.bitwise_xor.reduce(records[:, list(mmap.observables[0])], axis=1)
    assert (measured == mmap.expected_observables[0]).all()


def test_random_instances_reproduce_stims_reference_sample():
    rng = random.Random(20240611)
    instances = [("repetition_code", d, r, s) for d in (3, 5) for r in (1, 2, 3) for s in REPETITION_STATES]
    instances += [("surface_code", d, r, s) for d in (3, 5) for r in (1, 2, 3) for s in SURFACE_STATES]
    for kind, d, r, state in rng.sample(instances, 8):
        qc, mmap = memory_experiment(kind, distance=d, rounds=r, logical_state=state)
        c = stim.Circuit(qc.metadata["stim_circuit"])
        ref = c.reference_sample()
        stim_samples = c.compile_sampler(seed=1).sample(64)
        deterministic = (stim_samples == stim_samples[0]).all(axis=0)
        assert deterministic.sum() >= mmap.num_measurements // 3
        records = records_from_registers(aer_registers(qc, shots=32), mmap)
        assert (records[:, deterministic] == ref[deterministic]).all(), (kind, d, r, state)
        # Measurements stim finds random must not be frozen in Qiskit either.
        if (~deterministic).any():
            assert not (records[:, ~deterministic] == records[0, ~deterministic]).all()


# --------------------------------------------------------------------------------------
# bit order: an injected X error must land on the right bit and fire the right detectors
# --------------------------------------------------------------------------------------


def _inject_before_data_readout(qc: QuantumCircuit, qubit: int) -> QuantumCircuit:
    out = qc.copy()
    data = out.cregs[-1]
    assert data.name == "data"
    target = out.qubits[qubit]
    # Right before this qubit's own readout (after the h of an X-basis readout, so it flips
    # the recorded bit in either basis).
    k = next(
        k for k, inst in enumerate(out.data)
        if inst.operation.name == "measure" and inst.qubits[0] == target and inst.clbits[0] in data
    )
    out.data.insert(k, CircuitInstruction(XGate(), (target,), ()))
    return out


def _stim_expected_events(c: stim.Circuit, stim_qubit: int) -> tuple[np.ndarray, np.ndarray]:
    flat = c.flattened()
    last_m = max(k for k, inst in enumerate(flat) if inst.name in ("M", "MX"))
    error = "X_ERROR" if flat[last_m].name == "M" else "Z_ERROR"
    noisy = flat[:last_m] + stim.Circuit(f"{error}(1) {stim_qubit}") + flat[last_m:]
    det, obs = noisy.compile_detector_sampler(seed=1).sample(1, separate_observables=True)
    return det[0], obs[0]


@pytest.mark.parametrize("position", [0, 3, 4])
def test_injected_x_flips_exactly_that_data_bit_repetition_code(position):
    qc, mmap = memory_experiment("repetition_code", distance=5, rounds=2, logical_state="0")
    c = stim.Circuit(qc.metadata["stim_circuit"])
    stim_q = stim_data_qubits(c)[position]
    qiskit_q = qc.metadata["stim_qubits"].index(stim_q)
    regs = aer_registers(_inject_before_data_readout(qc, qiskit_q), shots=16)
    expected_data = np.zeros(5, dtype=bool)
    expected_data[position] = True
    assert (regs["data"] == expected_data).all()
    want_det, want_obs = _stim_expected_events(c, stim_q)
    assert want_det.sum() in (1, 2)
    assert (detection_events(regs, mmap) == want_det).all()
    assert (observable_flips(regs, mmap) == want_obs).all()
    # The same data with the register read in the wrong bit order gives different answers:
    # this is what the test would catch if the map or the column convention were reversed.
    reversed_regs = dict(regs, data=regs["data"][:, ::-1])
    if position != 2:
        assert not (detection_events(reversed_regs, mmap) == want_det).all()


@pytest.mark.parametrize("state,position", [("0", 1), ("+", 5), ("1", 8)])
def test_injected_error_fires_the_right_detectors_surface_code(state, position):
    qc, mmap = memory_experiment("surface_code", distance=3, rounds=2, logical_state=state)
    c = stim.Circuit(qc.metadata["stim_circuit"])
    stim_q = stim_data_qubits(c)[position]
    qiskit_q = qc.metadata["stim_qubits"].index(stim_q)
    # For an X memory the readout is h; measure, so an X right before measure is stim's
    # Z_ERROR right before MX.
    regs = aer_registers(_inject_before_data_readout(qc, qiskit_q), shots=16)
    want_det, want_obs = _stim_expected_events(c, stim_q)
    assert want_det.any()
    assert (detection_events(regs, mmap) == want_det).all()
    assert (observable_flips(regs, mmap) == want_obs).all()
    reversed_regs = dict(regs, data=regs["data"][:, ::-1])
    assert not (detection_events(reversed_regs, mmap) == want_det).all()


# --------------------------------------------------------------------------------------
# agreement with stim's converters
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,distance,state", [("surface_code", 3, "1"), ("surface_code", 5, "-"), ("repetition_code", 5, "1")]
)
def test_detection_events_agree_with_stims_m2d_converter(kind, distance, state):
    qc, mmap = memory_experiment(kind, distance=distance, rounds=3, logical_state=state)
    c = stim.Circuit(qc.metadata["stim_circuit"])
    rng = np.random.default_rng(5)
    # Arbitrary (noisy-looking) records: the converters are linear, so random input is the
    # strongest agreement test.
    records = rng.random((500, mmap.num_measurements)) < 0.2
    regs = registers_from_records(records, mmap)
    assert (records_from_registers(regs, mmap) == records).all()
    det, obs = c.compile_m2d_converter().convert(measurements=records, separate_observables=True)
    assert (detection_events(regs, mmap) == det).all()
    assert (observable_flips(regs, mmap) == obs).all()


def test_records_from_registers_rejects_wrong_shapes():
    _, mmap = memory_experiment("repetition_code", distance=3, rounds=1, logical_state="0")
    regs = {"m0": np.zeros((4, 2), bool), "data": np.zeros((4, 3), bool)}
    assert records_from_registers(regs, mmap).shape == (4, 5)
    with pytest.raises(ValueError, match="register 'data' has shape \\(4, 2\\), expected \\(shots, 3\\)"):
        records_from_registers(dict(regs, data=np.zeros((4, 2), bool)), mmap)
    with pytest.raises(ValueError, match="register 'm0' is missing"):
        records_from_registers({"data": regs["data"]}, mmap)
