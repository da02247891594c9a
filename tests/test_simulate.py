"""Tests for qpuflow.simulate: stim translation and noise model, Aer fallback, preflight."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from qiskit.circuit import CircuitInstruction, ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit.library import CXGate, HGate, XGate
from qiskit.quantum_info import Statevector

from qpuflow.circuits import detection_events, memory_experiment, observable_flips
from qpuflow.simulate import _sample_aer, preflight_check, sample_isa, stim_translation
from qpuflow.transpile import select_chain, transpile_isa


@pytest.fixture(scope="module")
def surface3(fez):
    qc, mmap = memory_experiment("surface_code", distance=3, rounds=3, logical_state="1")
    return qc, mmap, transpile_isa(qc, fez, seed=5)


def wide(fez, n_clbits: int = 0) -> QuantumCircuit:
    """An empty circuit over all physical qubits, as the transpiler returns them."""
    return QuantumCircuit(QuantumRegister(fez.num_qubits, "q"), ClassicalRegister(n_clbits, "c"))


def z_score(observed: float, expected: float, shots: int) -> float:
    return abs(observed - expected) / math.sqrt(max(expected * (1 - expected), 1e-12) / shots)


def usable_pair(fez) -> tuple[int, int]:
    return next(q for q, p in sorted(fez.target["cz"].items()) if p.error < 0.05)


# --------------------------------------------------------------------------------------
# translation correctness (noiseless)
# --------------------------------------------------------------------------------------


def test_random_clifford_isa_circuits_match_statevector(fez):
    """Gate by gate (sx, x, rz(k pi/2), cz) the stim program has Qiskit's outcome distribution."""
    rng = np.random.default_rng(3)
    a, b = usable_pair(fez)
    c = next(q for q in range(fez.num_qubits) if q not in (a, b) and (b, q) in fez.target["cz"])
    phys = [a, b, c]
    for trial in range(6):
        qc = wide(fez, 3)
        small = QuantumCircuit(3)
        for _ in range(25):
            kind = rng.integers(4)
            q = int(rng.integers(3))
            if kind == 0:
                qc.sx(phys[q]), small.sx(q)
            elif kind == 1:
                qc.x(phys[q]), small.x(q)
            elif kind == 2:
                k = int(rng.integers(-3, 4))
                qc.rz(k * math.pi / 2, phys[q]), small.rz(k * math.pi / 2, q)
            else:
                pair = [(0, 1), (1, 2)][int(rng.integers(2))]
                qc.cz(phys[pair[0]], phys[pair[1]]), small.cz(*pair)
        for q in range(3):
            qc.measure(phys[q], q)
        probs = Statevector(small).probabilities_dict()
        shots = 4000
        bits = sample_isa(qc, fez, shots=shots, seed=trial, noise_scale=0)["c"]
        keys = ["".join("1" if v else "0" for v in row[::-1]) for row in bits]
        values, counts = np.unique(keys, return_counts=True)
        for key, n in zip(values, counts):
            assert probs.get(key, 0) > 1e-9, f"trial {trial}: outcome {key} is impossible"
            assert z_score(n / shots, probs[key], shots) < 5, (trial, key, n, probs[key])
        assert sum(1 for p in probs.values() if p > 1e-9) == len(values)


def test_registers_are_filled_by_clbit_not_by_measurement_order(fez):
    creg_a, creg_b = ClassicalRegister(2, "a"), ClassicalRegister(3, "b")
    qc = QuantumCircuit(QuantumRegister(fez.num_qubits, "q"), creg_a, creg_b)
    qc.x(10)
    qc.x(12)
    qc.measure(12, creg_b[2])  # measured first, last bit
    qc.measure(11, creg_b[0])
    qc.measure(10, creg_a[1])
    qc.measure(11, creg_a[0])  # overwritten below: last write wins, as on hardware
    qc.x(11)
    qc.measure(11, creg_a[0])
    regs = sample_isa(qc, fez, shots=50, seed=1, noise_scale=0)
    assert set(regs) == {"a", "b"}
    assert regs["a"].shape == (50, 2) and regs["b"].shape == (50, 3)
    assert (regs["a"] == [True, True]).all()
    assert (regs["b"] == [False, False, True]).all()  # b[1] never measured: reads 0


# --------------------------------------------------------------------------------------
# noise model known answers
# --------------------------------------------------------------------------------------


def test_translation_uses_calibrated_probabilities(fez):
    a, b = usable_pair(fez)
    qc = wide(fez, 1)
    qc.sx(a)
    qc.cz(a, b)
    qc.rz(math.pi / 2, b)
    qc.measure(a, 0)
    text = stim_translation(qc, fez, noise_scale=2.0).text
    r_sx = fez.target["sx"][(a,)].error
    r_cz = fez.target["cz"][(a, b)].error
    m = fez.target["measure"][(a,)].error
    # Only the two used qubits, compacted to 0 and 1 in physical order.
    assert text.splitlines() == [
        "SQRT_X 0",
        f"DEPOLARIZE1({2 * 1.5 * r_sx!r}) 0",
        "CZ 0 1",
        f"DEPOLARIZE2({2 * 1.25 * r_cz!r}) 0 1",
        "S 1",
        f"M({2 * m!r}) 0",
    ]
    assert stim_translation(qc, fez, noise_scale=0).text.splitlines() == ["SQRT_X 0", "CZ 0 1", "S 1", "M 0"]


@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_x_gate_and_readout_error_rates(fez, scale):
    q = 20
    n_gates, shots = 40, 20000
    qc = wide(fez, 1)
    for _ in range(n_gates):
        qc.x(q)
    qc.measure(q, 0)
    p = min(1.5 * fez.target["x"][(q,)].error * scale, 0.75)
    m = min(fez.target["measure"][(q,)].error * scale, 1.0)
    gate_flip = (1 - (1 - 4 * p / 3) ** n_gates) / 2  # X or Y of DEPOLARIZE1 flip a Z readout
    expected = gate_flip * (1 - m) + (1 - gate_flip) * m
    got = sample_isa(qc, fez, shots=shots, seed=9, noise_scale=scale)["c"][:, 0].mean()
    assert z_score(got, expected, shots) < 5, (got, expected)


def test_cz_error_rate(fez):
    a, b = usable_pair(fez)
    n_gates, shots = 20, 20000
    qc = wide(fez, 1)
    for _ in range(n_gates):
        qc.cz(a, b)
    qc.measure(a, 0)
    p = 1.25 * fez.target["cz"][(a, b)].error * 4
    m = fez.target["measure"][(a,)].error * 4
    flip = (1 - (1 - 2 * (8 * p / 15)) ** n_gates) / 2  # 8 of the 15 Paulis have X/Y on a
    expected = flip * (1 - m) + (1 - flip) * m
    got = sample_isa(qc, fez, shots=shots, seed=4, noise_scale=4)["c"][:, 0].mean()
    assert z_score(got, expected, shots) < 5, (got, expected)


def test_readout_error_flips_the_record_not_the_qubit(fez):
    q = max(range(fez.num_qubits), key=lambda i: fez.target["measure"][(i,)].error)
    m = fez.target["measure"][(q,)].error
    assert m > 0.05
    qc = wide(fez, 2)
    qc.measure(q, 0)
    qc.measure(q, 1)
    bits = sample_isa(qc, fez, shots=20000, seed=2)["c"]
    first, second = bits[:, 0], bits[:, 1]
    # Independent flips: P(second | first) = m; a flipped qubit would give ~1.
    assert abs(first.mean() - m) < 0.02
    assert abs(second[first].mean() - m) < 0.05


def test_idle_noise_on_delays(fez):
    q = 30
    t1, t2 = fez.target.qubit_properties[q].t1, fez.target.qubit_properties[q].t2
    duration = 20e-6
    qc = wide(fez, 1)
    qc.x(q)
    qc.delay(round(duration / fez.target.dt), q, unit="dt")
    qc.measure(q, 0)
    shots = 20000
    plain = sample_isa(qc, fez, shots=shots, seed=1, noise_scale=0.0, idle_noise=True)["c"][:, 0]
    assert plain.all()
    base = sample_isa(qc, fez, shots=shots, seed=1)["c"][:, 0].mean()
    idle = sample_isa(qc, fez, shots=shots, seed=1, idle_noise=True)["c"][:, 0].mean()
    idle_flip = (1 - math.exp(-duration / t1)) / 2  # X and Y of the twirled channel, 1/4 each
    gate_flip = fez.target["x"][(q,)].error  # 2/3 of DEPOLARIZE1(1.5 r)
    flip = idle_flip + gate_flip - 2 * idle_flip * gate_flip
    m = fez.target["measure"][(q,)].error
    expected = (1 - flip) * (1 - m) + flip * m
    assert z_score(idle, expected, shots) < 5, (idle, expected, t1, t2)
    assert base - idle > 0.01


# --------------------------------------------------------------------------------------
# surface code behaviour
# --------------------------------------------------------------------------------------


def test_noiseless_surface_code_has_no_detection_events(fez, surface3):
    _, mmap, isa = surface3
    regs = sample_isa(isa, None, shots=512, seed=1, noise_scale=0)
    assert not detection_events(regs, mmap).any()
    assert not observable_flips(regs, mmap).any()


def test_noisy_sampling_is_fast_reproducible_and_scales(fez, surface3):
    _, mmap, isa = surface3
    start = time.perf_counter()
    regs = sample_isa(isa, fez, shots=4096, seed=7)
    elapsed = time.perf_counter() - start
    print(f"\n4096 shots d=3 r=3 surface code on fake_fez: {elapsed * 1e3:.0f} ms")
    assert elapsed < 10  # generous: measured ~15 ms; only catches a pathological slowdown
    again = sample_isa(isa, fez, shots=4096, seed=7)
    assert all((regs[k] == again[k]).all() for k in regs)
    other = sample_isa(isa, fez, shots=4096, seed=8)
    assert any((regs[k] != other[k]).any() for k in regs)

    fractions = {}
    for scale in (0.25, 0.5, 1.0, 2.0):
        r = regs if scale == 1.0 else sample_isa(isa, fez, shots=4096, seed=7, noise_scale=scale)
        fractions[scale] = detection_events(r, mmap).mean()
    print("detection fraction by noise scale:", {k: round(v, 4) for k, v in fractions.items()})
    # FakeFez numbers with SWAP routing: about 12% of detectors fire at scale 1.
    assert 0.03 < fractions[1.0] < 0.3
    # Each doubling of the noise adds far more than the sampling error (~0.002).
    values = [fractions[s] for s in sorted(fractions)]
    assert all(b - a > 0.02 for a, b in zip(values, values[1:])), values
    flips = observable_flips(regs, mmap).mean()
    assert 0.02 < flips < 0.5


def test_idle_noise_increases_surface_code_errors(fez, surface3):
    _, mmap, isa = surface3
    base = detection_events(sample_isa(isa, fez, shots=2048, seed=3), mmap).mean()
    idle = detection_events(sample_isa(isa, fez, shots=2048, seed=3, idle_noise=True), mmap).mean()
    assert idle - base > 0.02, (base, idle)


def test_d5_sampling_time(fez):
    qc, mmap = memory_experiment("surface_code", distance=5, rounds=3, logical_state="0")
    isa = transpile_isa(qc, fez, seed=1)
    start = time.perf_counter()
    regs = sample_isa(isa, fez, shots=4096, seed=1)
    elapsed = time.perf_counter() - start
    print(f"\n4096 shots d=5 r=3 surface code on fake_fez: {elapsed * 1e3:.0f} ms")
    assert elapsed < 20
    assert 0.05 < detection_events(regs, mmap).mean() < 0.4


# --------------------------------------------------------------------------------------
# Aer fallback
# --------------------------------------------------------------------------------------


def test_aer_fallback_for_non_clifford_angle(fez):
    q = 40
    qc = wide(fez, 1)
    qc.sx(q)
    qc.rz(0.6, q)
    qc.sx(q)
    qc.measure(q, 0)
    shots = 8000
    # sx rz(t) sx = (up to phase) a rotation with P(1) = cos^2(t/2).
    ideal = math.cos(0.3) ** 2
    noiseless = sample_isa(qc, fez, shots=shots, seed=1, noise_scale=0)["c"][:, 0].mean()
    assert z_score(noiseless, ideal, shots) < 5
    m = fez.target["measure"][(q,)].error
    with_readout = ideal * (1 - m) + (1 - ideal) * m
    noisy = sample_isa(qc, fez, shots=shots, seed=1)["c"][:, 0].mean()
    # Loose: gate and relaxation errors add ~1e-3 on top of the readout error.
    assert abs(noisy - with_readout) < 0.02, (noisy, with_readout)
    with pytest.raises(ValueError, match="only supported on the stim path"):
        sample_isa(qc, fez, shots=10, noise_scale=2.0)


def test_aer_and_stim_agree_on_a_clifford_circuit(fez):
    a, b = usable_pair(fez)
    qc = wide(fez, 2)
    qc.sx(a)  # |0> -> superposition, then entangle
    qc.cz(a, b)
    qc.sx(b)
    qc.rz(math.pi / 2, b)
    qc.sx(b)
    qc.measure(a, 0)
    qc.measure(b, 1)
    shots = 8000
    stim_bits = sample_isa(qc, fez, shots=shots, seed=1)["c"]
    aer_bits = _sample_aer(qc, fez, shots=shots, seed=1, noise_scale=1)["c"]
    for outcome in ([0, 0], [0, 1], [1, 0], [1, 1]):
        ps = (stim_bits == outcome).all(axis=1).mean()
        pa = (aer_bits == outcome).all(axis=1).mean()
        assert abs(ps - pa) < 0.03, (outcome, ps, pa)


# --------------------------------------------------------------------------------------
# preflight
# --------------------------------------------------------------------------------------


def _data_instruction(qc: QuantumCircuit, bit: int) -> int:
    data = next(c for c in qc.cregs if c.name == "data")
    return next(
        k for k, inst in enumerate(qc.data)
        if inst.operation.name == "measure" and inst.clbits[0] == data[bit]
    )


def test_preflight_passes_good_circuits(fez, surface3):
    qc, _, isa = surface3
    assert preflight_check(isa) == []
    assert preflight_check(isa, fez) == []
    assert preflight_check(qc) == []  # logical circuit (h, cx): Aer path


def test_preflight_catches_a_wrong_basis_measurement(fez):
    qc, mmap = memory_experiment("surface_code", distance=3, rounds=2, logical_state="0")
    bit = next(b for name, b in (mmap.record[i] for i in mmap.observables[0]))
    k = _data_instruction(qc, bit)
    broken = qc.copy()
    broken.data.insert(k, CircuitInstruction(HGate(), qc.data[k].qubits, ()))
    isa = transpile_isa(broken, fez, seed=2)
    problems = preflight_check(isa)
    record = mmap.record.index(("data", bit))
    touched = [j for j, d in enumerate(mmap.detectors) if record in d]
    expected = [f"detector {j} " for j in touched] + ["observable 0 "]
    assert len(problems) == len(expected), problems
    for text, start in zip(problems, expected):
        assert text.startswith(start) and text.endswith("is not deterministic"), text
    assert f"data[{bit}]" in problems[-1]


def test_preflight_catches_a_reversed_cnot(fez):
    qc, mmap = memory_experiment("surface_code", distance=3, rounds=2, logical_state="1")
    broken = qc.copy()
    k = next(k for k, inst in enumerate(broken.data) if inst.operation.name == "cx")
    c, t = broken.data[k].qubits
    broken.data[k] = CircuitInstruction(CXGate(), (t, c), ())
    problems = preflight_check(transpile_isa(broken, fez, seed=2))
    assert problems and all(p.startswith(("detector", "observable")) for p in problems), problems


def test_preflight_reports_deterministic_wrong_values(fez):
    qc, mmap = memory_experiment("repetition_code", distance=5, rounds=2, logical_state="1")
    last = mmap.observables[0][0]
    _, bit = mmap.record[last]
    broken = qc.copy()
    k = _data_instruction(broken, bit)
    broken.data.insert(k, CircuitInstruction(XGate(), broken.data[k].qubits, ()))
    chain = select_chain(fez, qc.num_qubits)
    problems = preflight_check(transpile_isa(broken, fez, seed=1, initial_layout=chain))
    fired = [j for j, d in enumerate(mmap.detectors) if last in d]
    assert problems == [
        f"detector {j} (records {mmap.describe_records(mmap.detectors[j])}) is always 1 but must be 0"
        for j in fired
    ] + [f"observable 0 (records {last} = data[{bit}]) is 0 but the prepared state needs 1"]


def test_preflight_without_measurement_map(fez):
    qc = wide(fez, 1)
    qc.measure(0, 0)
    (problem,) = preflight_check(qc)
    assert "measurement_map" in problem
