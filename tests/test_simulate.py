"""Tests for qpuflow.simulate: stim translation and noise model, Aer fallback, preflight."""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pytest
from qiskit.circuit import CircuitInstruction, ClassicalRegister, Clbit, Delay, Parameter, QuantumCircuit, QuantumRegister
from qiskit.circuit.library import CXGate, CZGate, HGate, IGate, Measure, Reset, RZGate, SXGate, XGate
from qiskit.providers import QubitProperties
from qiskit.transpiler import InstructionProperties, Target
from qiskit.quantum_info import Statevector

from qpuflow.circuits import memory_experiment
from qpuflow.measurement_map import detection_events, observable_flips
from qpuflow.preflight import preflight_check
from qpuflow.simulate import sample_aer as _sample_aer, sample_isa
from qpuflow.stim_noise import stim_translation
from qpuflow.backends import readout_pairs
from qpuflow.chains import select_chain
from qpuflow.transpile import transpile_isa


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


@pytest.mark.parametrize("scale, n_gates", [(1.0, 40), (8.0, 0)])
def test_x_gate_and_readout_error_rates(fez, scale, n_gates):
    # (At scale 8 with gates, T1/8 makes amplitude damping, not depolarizing, most of each
    # gate's error on the Aer path, which the closed form below does not model.)
    q = 20
    shots = 20000
    qc = wide(fez, 1)
    for _ in range(n_gates):
        qc.x(q)
    qc.measure(q, 0)
    p = min(1.5 * fez.target["x"][(q,)].error * scale, 0.75)
    p10, p01 = (min(e * scale, 0.5) for e in readout_pairs(fez)[q])  # the device's asymmetric readout
    gate_flip = (1 - (1 - 4 * p / 3) ** n_gates) / 2  # X or Y of DEPOLARIZE1 flip a Z readout
    expected = gate_flip * (1 - p01) + (1 - gate_flip) * p10
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
    p10, p01 = (min(e * 4, 0.5) for e in readout_pairs(fez)[a])
    flip = (1 - (1 - 2 * (8 * p / 15)) ** n_gates) / 2  # 8 of the 15 Paulis have X/Y on a
    expected = flip * (1 - p01) + (1 - flip) * p10
    got = sample_isa(qc, fez, shots=shots, seed=4, noise_scale=4)["c"][:, 0].mean()
    assert z_score(got, expected, shots) < 5, (got, expected)


def test_readout_error_flips_the_record_not_the_qubit(fez):
    q = max(range(fez.num_qubits), key=lambda i: readout_pairs(fez)[i][0])
    m = readout_pairs(fez)[q][0]  # P(1|0)
    assert m > 0.05
    qc = wide(fez, 2)
    qc.measure(q, 0)
    qc.measure(q, 1)
    bits = sample_isa(qc, fez, shots=20000, seed=2)["c"]
    first, second = bits[:, 0], bits[:, 1]
    # Independent flips: P(second | first) = P(1|0); a flipped qubit would give ~1.
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
    # The stim path's twirled idle noise (a one-qubit circuit would go qubit by qubit through Aer).
    plain = sample_isa(qc, fez, shots=shots, seed=1, noise_scale=0.0, idle_noise=True, method="stim")["c"][:, 0]
    assert plain.all()
    base = sample_isa(qc, fez, shots=shots, seed=1, method="stim")["c"][:, 0].mean()
    idle = sample_isa(qc, fez, shots=shots, seed=1, idle_noise=True, method="stim")["c"][:, 0].mean()
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
    # noise_scale other than 0 and 1 scales the Target of Aer's noise model.
    doubled = sample_isa(qc, fez, shots=shots, seed=1, noise_scale=2.0)["c"][:, 0].mean()
    with_double_readout = ideal * (1 - 2 * m) + (1 - ideal) * 2 * m
    assert abs(doubled - with_double_readout) < 0.02, (doubled, with_double_readout)


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


# --------------------------------------------------------------------------------------
# product path: circuits without two-qubit gates, one qubit at a time with full noise
# --------------------------------------------------------------------------------------


def _decay_circuit(fez, qubits, delays_s):
    """Per qubit: measure |0> ('ro0'), X + measure ('ro1'), then reset, X, delay(t), measure per t."""
    from qpuflow.transpile import transpile_isa

    n = len(qubits)
    qc = QuantumCircuit(n)
    names = ["ro0", "ro1"] + [f"d{k}" for k in range(len(delays_s))]
    for name in names:
        qc.add_register(ClassicalRegister(n, name))
    qc.measure(range(n), qc.cregs[0])
    qc.barrier()
    qc.reset(range(n))
    qc.x(range(n))
    qc.measure(range(n), qc.cregs[1])
    for k, per_qubit in enumerate(delays_s):
        qc.barrier()
        qc.reset(range(n))
        qc.x(range(n))
        for i, t in enumerate(per_qubit):
            if t > 0:
                qc.delay(round(t / fez.target.dt), i, unit="dt")
        qc.measure(range(n), qc.cregs[2 + k])
    return transpile_isa(qc, fez, seed=1, initial_layout=list(qubits))


def test_delays_survive_transpilation_and_make_a_product_circuit(fez):
    from qpuflow.simulate import is_product_circuit

    isa = _decay_circuit(fez, [30, 12], [[100e-6, 50e-6]])
    delays = [i for i in isa.data if i.operation.name == "delay"]
    assert len(delays) == 2 and {isa.find_bit(i.qubits[0]).index for i in delays} == {30, 12}
    assert is_product_circuit(isa)
    code, _ = memory_experiment("repetition_code", distance=3, rounds=1, logical_state="0")
    assert not is_product_circuit(transpile_isa(code, fez, seed=1))


def test_aer_applies_thermal_relaxation_on_delays(fez):
    """NoiseModel.from_backend adds Aer's RelaxationNoisePass, which puts T1/T2 decay on delays."""
    from qiskit_aer.noise import RelaxationNoisePass

    from qpuflow.simulate import _noise_model

    q = 30
    model = _noise_model(fez, (q,))
    assert any(isinstance(p, RelaxationNoisePass) for p in model._custom_noise_passes)
    t1 = fez.target.qubit_properties[q].t1
    qc = wide(fez, 1)
    qc.x(q)
    qc.delay(round(t1 / fez.target.dt), q, unit="dt")
    qc.measure(q, 0)
    shots = 8000
    m = fez.target["measure"][(q,)].error
    expected = m + (1 - 2 * m) * math.exp(-1)
    # Both Aer paths: the whole circuit on its used qubits, and the qubit on its own.
    for method in ("aer", "product"):
        got = sample_isa(qc, fez, shots=shots, seed=3, method=method)["c"][:, 0].mean()
        assert z_score(got, expected, shots) < 5, (method, got, expected)


def test_product_path_t1_decays_to_zero_and_readout_matches_target(fez):
    qubits = [30, 12]  # T1 ~177 us and ~84 us; readout errors ~0.4% and ~2.4%
    t1 = [fez.target.qubit_properties[q].t1 for q in qubits]
    pairs = [readout_pairs(fez)[q] for q in qubits]  # (P(1|0), P(0|1)): asymmetric, as reported
    isa = _decay_circuit(fez, qubits, [[0.0, 0.0], t1, [3 * t for t in t1]])
    shots = 20000
    start = time.perf_counter()
    regs = sample_isa(isa, fez, shots=shots, seed=11)
    print(f"\n2-qubit decay circuit, {shots} shots, product path: {time.perf_counter() - start:.2f} s")
    for i in range(2):
        # Readout: P(1|0) and P(0|1) as the device reports them (plus a tiny X gate error on |1>).
        p10, p01 = pairs[i]
        assert z_score(regs["ro0"][:, i].mean(), p10, shots) < 5, (i, regs["ro0"][:, i].mean(), p10)
        assert z_score(1 - regs["ro1"][:, i].mean(), p01, shots) < 5, (i, regs["ro1"][:, i].mean(), p01)
        assert z_score(regs["d0"][:, i].mean(), 1 - p01, shots) < 5
        for k, n_t1 in ((1, 1), (2, 3)):
            expected = p10 + (1 - p10 - p01) * math.exp(-n_t1)
            got = regs[f"d{k}"][:, i].mean()
            assert z_score(got, expected, shots) < 5, (i, k, got, expected)
        # Amplitude damping ends in |0>; stim's Pauli twirl of it would end at 1/2.
        assert regs["d2"][:, i].mean() < 0.1


def test_product_path_scales_the_target(fez):
    q = 12
    t1 = fez.target.qubit_properties[q].t1
    p10, p01 = (2 * e for e in readout_pairs(fez)[q])
    isa = _decay_circuit(fez, [q], [[t1]])
    shots = 20000
    regs = sample_isa(isa, fez, shots=shots, seed=5, noise_scale=2.0)
    assert z_score(regs["ro0"][:, 0].mean(), p10, shots) < 5
    # T1 / 2: the decay over the reported T1 is exp(-2).
    expected = p10 + (1 - p10 - p01) * math.exp(-2)
    assert z_score(regs["d0"][:, 0].mean(), expected, shots) < 5, (regs["d0"][:, 0].mean(), expected)


def test_product_path_matches_whole_circuit_aer(fez):
    """Independent per-qubit sampling has the joint distribution of the whole circuit."""
    qc = wide(fez, 2)
    for q in (12, 30):
        qc.sx(q)
        qc.delay(round(60e-6 / fez.target.dt), q, unit="dt")
        qc.sx(q)
    qc.measure(12, 0)
    qc.measure(30, 1)
    shots = 8000
    product = sample_isa(qc, fez, shots=shots, seed=2)["c"]
    whole = sample_isa(qc, fez, shots=shots, seed=2, method="aer")["c"]
    for outcome in ([0, 0], [0, 1], [1, 0], [1, 1]):
        pp = (product == outcome).all(axis=1).mean()
        pw = (whole == outcome).all(axis=1).mean()
        assert abs(pp - pw) < 0.03, (outcome, pp, pw)


def _asymmetric_circuit(fez) -> QuantumCircuit:
    a, b = ClassicalRegister(3, "a"), ClassicalRegister(2, "b")
    qc = QuantumCircuit(QuantumRegister(fez.num_qubits, "q"), a, b)
    p0, p1, p2 = 4, 10, 23  # low readout error qubits
    qc.x(p1)
    qc.measure(p2, b[1])  # 0, overwritten below by a measurement of another qubit
    qc.measure(p0, a[2])  # 0
    qc.measure(p1, a[0])  # 1
    qc.barrier()
    qc.x(p2)
    qc.measure(p2, a[1])  # 1
    qc.measure(p1, b[1])  # 1: last write wins across qubits too
    return qc  # a = [1, 1, 0]; b = [0 (never measured), 1]


@pytest.mark.parametrize("noise_scale", [0.0, 1.0])
def test_register_assembly_puts_bits_in_their_columns(fez, noise_scale):
    from qpuflow.simulate import is_product_circuit

    qc = _asymmetric_circuit(fez)
    assert is_product_circuit(qc)
    shots = 2000
    regs = sample_isa(qc, fez, shots=shots, seed=4, noise_scale=noise_scale)
    assert set(regs) == {"a", "b"} and regs["a"].shape == (shots, 3) and regs["b"].shape == (shots, 2)
    assert not regs["b"][:, 0].any()  # never measured: reads 0 on every path
    means = np.concatenate([regs["a"].mean(axis=0), regs["b"][:, 1:].mean(axis=0)])
    expected = np.array([1, 1, 0, 1], dtype=float)
    if noise_scale == 0:
        assert (means == expected).all(), means
    else:
        assert (np.abs(means - expected) < 0.05).all(), means
        assert ((means > 0) & (means < 1)).any()  # noise is really on


def test_product_path_is_reproducible_and_fast_on_a_probe_sized_circuit(fez):
    qubits = list(range(20, 36))
    delays = [[t * 1e-6] * len(qubits) for t in (25, 50, 100, 200, 400)]
    isa = _decay_circuit(fez, qubits, delays)
    sample_isa(isa, fez, shots=10, seed=1)  # noise models built and cached
    start = time.perf_counter()
    regs = sample_isa(isa, fez, shots=2000, seed=7)
    elapsed = time.perf_counter() - start
    print(f"\n16-qubit probe-like circuit (7 layers), 2000 shots, product path: {elapsed:.2f} s")
    assert elapsed < 10  # measured ~0.6-1 s on 2 cores; only catches a pathological slowdown
    again = sample_isa(isa, fez, shots=2000, seed=7)
    assert all((regs[k] == again[k]).all() for k in regs)
    other = sample_isa(isa, fez, shots=2000, seed=8)
    assert any((regs[k] != other[k]).any() for k in regs)
    # Every qubit decays monotonically over the delays (2000 shots resolve these steps).
    curve = np.array([regs[f"d{k}"].mean(axis=0) for k in range(5)])
    assert (curve[-1] < curve[0]).all()


def test_forced_methods_are_checked(fez):
    qc = _asymmetric_circuit(fez)
    with pytest.raises(ValueError, match="method must be one of"):
        sample_isa(qc, fez, shots=10, method="fast")
    with pytest.raises(ValueError, match="noisy sampling"):
        sample_isa(qc, fez, shots=10, noise_scale=0, method="product")
    a, b = usable_pair(fez)
    qc.cz(a, b)
    with pytest.raises(ValueError, match="without multi-qubit"):
        sample_isa(qc, fez, shots=10, method="product")
    with pytest.raises(ValueError, match="backend is needed"):
        sample_isa(_asymmetric_circuit(fez), None, shots=10)


# --------------------------------------------------------------------------------------
# drifted and scaled targets
# --------------------------------------------------------------------------------------


def _values(target):
    ops = {
        (name, qargs): (p.duration, p.error)
        for name in target.operation_names
        if target[name] is not None and None not in target[name]
        for qargs, p in target[name].items()
        if p is not None
    }
    qps = [(p.t1, p.t2) for p in target.qubit_properties]
    return ops, qps, sorted(target.operation_names), target.dt


def test_drifted_target_is_deterministic_per_seed_and_bucket(fez):
    from qpuflow.device_state import drift_factors, drifted_target

    t = fez.target
    one = drifted_target(t, sigma=0.4, seed=3, bucket=100)
    assert _values(one) == _values(drifted_target(t, sigma=0.4, seed=3, bucket=100))
    assert _values(one) != _values(drifted_target(t, sigma=0.4, seed=3, bucket=101))
    assert _values(one) != _values(drifted_target(t, sigma=0.4, seed=4, bucket=100))
    assert _values(drifted_target(t, sigma=0.0, seed=3, bucket=100)) == _values(t)
    # A qubit's factor does not depend on how many qubits are asked for.
    f = drift_factors(t.num_qubits, sigma=0.4, seed=3, bucket=100)
    assert (f[:10] == drift_factors(10, sigma=0.4, seed=3, bucket=100)).all()
    assert f.min() < 0.8 and f.max() > 1.25 and f.std() > 0.2  # really spread over qubits
    assert abs(np.log(f).mean()) < 0.15  # lognormal around 1 (156 draws)


def test_drifted_target_scales_as_documented(fez):
    from qpuflow.device_state import drift_factors, drifted_target
    from qpuflow.backends import excluded_couplers

    t = fez.target
    d = drifted_target(t, sigma=0.5, seed=1, bucket=7)
    f = drift_factors(t.num_qubits, sigma=0.5, seed=1, bucket=7)
    for q in (0, 30, 77):
        assert d.qubit_properties[q].t1 == pytest.approx(t.qubit_properties[q].t1 / f[q], rel=1e-12)
        assert d.qubit_properties[q].t2 == pytest.approx(t.qubit_properties[q].t2 / f[q], rel=1e-12)
        assert d["measure"][(q,)].error == pytest.approx(min(t["measure"][(q,)].error * f[q], 0.5), rel=1e-12)
        assert d["sx"][(q,)].error == pytest.approx(t["sx"][(q,)].error * f[q], rel=1e-12)
        assert d["x"][(q,)].duration == t["x"][(q,)].duration
    a, b = usable_pair(fez)
    assert d["cz"][(a, b)].error == pytest.approx(t["cz"][(a, b)].error * math.sqrt(f[a] * f[b]), rel=1e-12)
    assert excluded_couplers(d) == excluded_couplers(t)  # a dead coupler stays dead
    # Clipping: an enormous sigma cannot make readout worse than a coin or a gate error >= 1.
    wild = drifted_target(t, sigma=6.0, seed=1, bucket=7)
    assert max(wild["measure"][(q,)].error for q in range(t.num_qubits)) <= 0.5
    assert max(wild["sx"][(q,)].error for q in range(t.num_qubits)) <= 2 / 3
    with pytest.raises(ValueError, match="sigma"):
        drifted_target(t, sigma=-0.1, seed=1, bucket=7)
    with pytest.raises(ValueError, match="bucket"):
        drifted_target(t, sigma=0.1, seed=1, bucket=-1)


def test_scaled_target(fez):
    from qpuflow.device_state import scaled_target

    t = fez.target
    assert _values(scaled_target(t, 1.0)) == _values(t)
    s = scaled_target(t, 3.0)
    assert s["measure"][(30,)].error == pytest.approx(3 * t["measure"][(30,)].error)
    assert s.qubit_properties[30].t1 == pytest.approx(t.qubit_properties[30].t1 / 3)
    with pytest.raises(ValueError, match="scale"):
        scaled_target(t, 0.0)


@pytest.mark.parametrize("method", ["stim", "product"])
def test_sampling_uses_a_drifted_backend(fez, method):
    """Both the stim and the product path take their noise from the backend they are given."""
    from qpuflow.device_state import drift_factors, drifted_target
    from qpuflow.backends import TargetBackend

    d = drifted_target(fez.target, sigma=1.0, seed=2, bucket=0)
    f = drift_factors(fez.num_qubits, sigma=1.0, seed=2, bucket=0)
    q = max(range(20, 60), key=lambda i: abs(math.log(f[i])))
    qc = wide(fez, 1)
    qc.measure(q, 0)
    shots = 20000
    m = d["measure"][(q,)].error
    got = sample_isa(qc, TargetBackend(d, "drifted"), shots=shots, seed=1, method=method)["c"][:, 0].mean()
    assert z_score(got, m, shots) < 5, (got, m, f[q])
    reported = fez.target["measure"][(q,)].error
    assert z_score(got, reported, shots) > 5, (got, reported, f[q])


# --------------------------------------------------------------------------------------
# golden translations: optimising stim_translation must not change a single character
# --------------------------------------------------------------------------------------
#
# The SHA-256 digests below were recorded from the straightforward implementation of
# stim_translation (one Python walk per instruction with isa.find_bit-free dict lookups,
# qiskit 2.6.2, stim 1.16) before it was optimised. A digest covers the stim text, the
# physical qubits, the clbit records (in insertion order) and the number of measurements.
#
# Inputs come in two kinds:
# * "random" and "tiny": circuits built here from a fixed integer generator, independent of
#   qpuflow.circuits and qpuflow.transpile, on FakeFez's calibration (including dead couplers
#   with error 1.0 and noise scales that hit every clipping branch) and on a hand-made Target
#   with a reset error, a missing error and missing T1/T2. Their ISA fingerprint must match
#   (a mismatch means this file's generator changed, not the translation).
# * "surface"/"repetition": memory experiments transpiled with qpuflow.transpile_isa. If the
#   transpiler or circuit builder changes, the ISA circuit changes and its digests no longer
#   apply: such a case is skipped (the reason names the fingerprint), never silently passed.

# (noise_scale, idle_noise) variants translated for every golden circuit.
GOLDEN_VARIANTS = ((0, False), (1, False), (2, False), (2.0, True), (0, True), (1.0, True), (1000.0, True))


def _lcg(seed: int):
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        yield state >> 33


def _golden_random_isa(fez, n_instructions: int, seed: int) -> QuantumCircuit:
    """Every instruction kind of the ISA, on FakeFez qubits 20-39 (three dead couplers)."""
    rng = _lcg(seed)
    pairs = sorted(q for q in fez.target["cz"] if 20 <= min(q) and max(q) < 40)
    qubits = sorted({q for p in pairs for q in p})
    qc = QuantumCircuit(QuantumRegister(fez.num_qubits, "q"), ClassicalRegister(8, "c"), ClassicalRegister(4, "m"))
    qc.add_bits([Clbit()])  # a clbit in no register
    qc.add_register(ClassicalRegister(name="alias", bits=[qc.clbits[3], qc.clbits[9]]))  # aliases c[3], m[1]
    units = ("dt", "ns", "us", "s", "ms")
    for _ in range(n_instructions):
        kind = next(rng) % 100
        q = qubits[next(rng) % len(qubits)]
        if kind < 22:
            qc.sx(q)
        elif kind < 30:
            qc.x(q)
        elif kind < 33:
            qc.id(q)
        elif kind < 50:
            k = int(next(rng) % 13) - 6
            qc.rz(k * math.pi / 2 + (1e-12 if k == 5 else 0.0), q)
        elif kind < 70:
            a, b = pairs[next(rng) % len(pairs)]
            qc.cz(a, b) if next(rng) % 2 else qc.cz(b, a)
        elif kind < 72:
            qc.cz(20, 39)  # not a coupler: no calibrated error
        elif kind < 82:
            qc.measure(q, qc.clbits[next(rng) % len(qc.clbits)])
        elif kind < 87:
            qc.reset(q)
        elif kind < 92:
            qc.barrier() if next(rng) % 2 else qc.barrier(q, qubits[0])
        else:
            unit = units[next(rng) % len(units)]
            value = {"dt": next(rng) % 5000, "ns": 10.0 * (next(rng) % 500), "us": 0.5 * (next(rng) % 40),
                     "s": 1e-7 * (next(rng) % 9), "ms": 1e-5 * (next(rng) % 9)}[unit]
            qc.delay(value, 150 if next(rng) % 7 == 0 else q, unit=unit)  # qubit 150 only idles
    return qc


class _TinyBackend:
    """Four qubits with a reset error, a gate without an error and qubits without T1/T2."""

    name = "tiny"

    def __init__(self):
        target = Target(num_qubits=4, dt=1e-9, qubit_properties=[
            QubitProperties(t1=100e-6, t2=80e-6), QubitProperties(t1=50e-6, t2=None),
            QubitProperties(t1=None, t2=None), QubitProperties(t1=30e-6, t2=60e-6)])
        one = {(q,): InstructionProperties(duration=3e-8, error=1e-3 * (q + 1)) for q in range(4)}
        target.add_instruction(SXGate(), one)
        target.add_instruction(XGate(), {**one, (2,): InstructionProperties(duration=3e-8, error=None)})
        target.add_instruction(IGate(), {(q,): InstructionProperties(duration=3e-8) for q in range(4)})
        target.add_instruction(RZGate(Parameter("t")), {(q,): InstructionProperties(duration=0, error=0) for q in range(4)})
        target.add_instruction(CZGate(), {(0, 1): InstructionProperties(duration=8e-8, error=0.02),
                                          (1, 2): InstructionProperties(duration=8e-8, error=0.6),
                                          (2, 3): None})
        target.add_instruction(Measure(), {(q,): InstructionProperties(duration=1e-6, error=0.01 * (q + 1)) for q in range(4)})
        target.add_instruction(Reset(), {(q,): InstructionProperties(duration=1e-6, error=0.005) for q in (0, 1, 3)})
        target.add_instruction(Delay(Parameter("d")), {(q,): None for q in range(4)})
        self.target = target


def _golden_tiny_isa() -> QuantumCircuit:
    qc = QuantumCircuit(QuantumRegister(4, "q"), ClassicalRegister(4, "c"))
    for layer in range(3):
        qc.reset([0, 1, 2, 3])
        qc.sx([0, 1, 2, 3])
        qc.x([1, 2])
        qc.id([0, 3])
        qc.rz(-math.pi / 2 * (layer + 1), [0, 2])
        qc.cz(0, 1), qc.cz(2, 1), qc.cz(1, 2), qc.cz(2, 3), qc.cz(3, 0)
        qc.delay(150 * (layer + 1), [0, 1, 2, 3])
        qc.delay(2.5, 3, unit="us")
        qc.barrier()
        qc.measure([0, 1, 2, 3], [3, 2, 1, 0])
    return qc


def _golden_memory_isa(fez, kind: str, distance: int, rounds: int, state: str, seed: int) -> QuantumCircuit:
    qc, _ = memory_experiment(kind, distance=distance, rounds=rounds, logical_state=state)
    return transpile_isa(qc, fez, seed=seed)


# name -> (builder(fez), uses the tiny backend, built by qpuflow's transpiler)
GOLDEN_CIRCUITS = {
    "random_a": (lambda fez: _golden_random_isa(fez, 1500, 1), False, False),
    "random_b": (lambda fez: _golden_random_isa(fez, 400, 2), False, False),
    "tiny": (lambda fez: _golden_tiny_isa(), True, False),
    "surface_d3_state1_seed5": (lambda fez: _golden_memory_isa(fez, "surface_code", 3, 3, "1", 5), False, True),
    "surface_d3_bench": (lambda fez: _golden_memory_isa(fez, "surface_code", 3, 3, "0", 1234), False, True),
    "surface_d5_bench": (lambda fez: _golden_memory_isa(fez, "surface_code", 5, 3, "0", 1234), False, True),
    "repetition_d5": (lambda fez: _golden_memory_isa(fez, "repetition_code", 5, 2, "1", 7), False, True),
}

# Recorded from the unoptimised stim_translation: circuit -> ISA fingerprint.
GOLDEN_ISA = {
    "random_a": "f06dc7f4243cbab06d6488cfaa6106570cae490c3342ca97c4117b3551c0edf9",
    "random_b": "5818f6c9660976fdddf4f6ae36066d6b1fcfc4fbb23ce2c811ebcf9e4048f355",
    "repetition_d5": "bf8a12fc35da7a13d286faae82b726e683320f5f916b80aae79b3aec19983bd2",
    "surface_d3_bench": "0529fdc1a4248754c2c5f2b6f1e235f84f4bbe61a92560c657a1add1101577f1",
    "surface_d3_state1_seed5": "118b8755532a3704e70e3d89cd0c2cc24c09424824ab0666bbbf3edb15eebb54",
    "surface_d5_bench": "b40da2fc62ddf532d3984bf81692352146c88e224ee1422ef2df3546b2863dbf",
    "tiny": "d820aaf4c55e9dd8bb9843476a5595a3b436d40971ec687857875e6a01f411c9",
}
# Recorded from the unoptimised stim_translation: circuit -> {"scale/idle": digest}.
GOLDEN_TRANSLATIONS = {
    "random_a": {
        "0/False": "81928319cea98c6b9acc7d9363616ba664efdfb372dea2933aa2da5c688f58ef",
        "1/False": "801931c8f7d85084620d2c7990cbe9c9bd7406075c595ace26a7436fe1fdb66b",
        "2/False": "b8b429d02ceb7168e1403ebc6c0905ea632d8b333b0f8208f55e200da7fc844c",
        "2.0/True": "9f8ec2536bafddb8ab15eb500b89789896c10e621fbf61e744d398b10b7041e4",
        "0/True": "81928319cea98c6b9acc7d9363616ba664efdfb372dea2933aa2da5c688f58ef",
        "1.0/True": "8a8bb066b8c6570d97552d43e8acb6a9cee0bce7811138b08e79d5ee4ef588ec",
        "1000.0/True": "8e553796910f1ae649d3e61048c9514d65873d483bca471d9b7febae1de03adf",
    },
    "random_b": {
        "0/False": "18787a204a7b1c6339522364bcd41fd4b434950dc50c21cf3ae32be604f4037f",
        "1/False": "2ef756c53c8a66702d75f012bae8b59a078ddbacac44e90f0672921e8847b17a",
        "2/False": "789a1d5da17cb0d69e7056e626b925f97db021b800f4ce34042d616d7ce7fe8d",
        "2.0/True": "3385916a7f85dbe45a59123f3df6315affa277e1da6258da8088694a702d2531",
        "0/True": "18787a204a7b1c6339522364bcd41fd4b434950dc50c21cf3ae32be604f4037f",
        "1.0/True": "5e8de3d274c3f8325e2adc4421ef5e08f9fcb25144df3814c37568efff108083",
        "1000.0/True": "bc0404b993affa8a6d29f65f56d629fc5a23f75722c4be517b6b8abc690020f8",
    },
    "repetition_d5": {
        "0/False": "e4ac416c1ee718b66f70a52a4095a69ba344ebceccc1dcc715957dc0aaca3dbb",
        "1/False": "33bf19e7b745c64967fa9b14ce8f5551dbdfd2fe413029af91965721fe4d78da",
        "2/False": "cf7603d9ba2bb8e97e1602a353505404d3ee57f5f0a61ea1cd2b3876ff0f55b0",
        "2.0/True": "2e37b2aeb24913e62a0e64f479d8e183b02d283aaf526c8f1bc186537db0d7e9",
        "0/True": "e4ac416c1ee718b66f70a52a4095a69ba344ebceccc1dcc715957dc0aaca3dbb",
        "1.0/True": "56f596df068e6c071c2c3d45c72c18afc00d1f3460bc313f3c8bbf914e0459a2",
        "1000.0/True": "b1a68c0f3d913e81bfd878c79e61fe5fc47eeebd52ab43a224fbf9377844fa97",
    },
    "surface_d3_bench": {
        "0/False": "0c2e3aac412dbf60ac83ac03404dbbf21aa9e4f7d0ba952d2665a431340b1acd",
        "1/False": "2d1319e39337a1c46164e9d617f5c746fb0e52575eb238681e91f8bc49559585",
        "2/False": "ab8ded41840b47e752ac8fc7013015dec9bbd63cb9c2cf8a1bb92094b9a8b94a",
        "2.0/True": "2a88fd0e4c9bc6fbfb49d1538b0047dac3e1b759e6464d91391f4f22a028b3af",
        "0/True": "0c2e3aac412dbf60ac83ac03404dbbf21aa9e4f7d0ba952d2665a431340b1acd",
        "1.0/True": "185e70a57c6bf18861e07bd9a4f0533310e012ee820bc1ee9869d7d850b7e219",
        "1000.0/True": "48b87fe73aa02be5dac54ad8eed0af0fe7565ad138eaffe6216b3bcdcc6affe9",
    },
    "surface_d3_state1_seed5": {
        "0/False": "e21eabdf4980b847c85fa8f5db9a59165d768270c3c9dfe5a8b2002327f73f7e",
        "1/False": "ee550a1c6a935d4ef1fc115e11840141d9bb9b8923872726899dbac04355f464",
        "2/False": "57d8110bff4c34173b067bf0e337649725777767f83d7f06ccbe654bfbcc2707",
        "2.0/True": "0df4c39136422a226fb99045351ef2b00f453d54bab0aba604c2a4314a354883",
        "0/True": "e21eabdf4980b847c85fa8f5db9a59165d768270c3c9dfe5a8b2002327f73f7e",
        "1.0/True": "016b399506b3716524efacaadeed0d9ec8201422b27b3dbfa4c25245f06f03c8",
        "1000.0/True": "deb0c0fd9cdc63ff731b904e0861b41077fe5c8914d3baa7daa3ffb0cb116697",
    },
    "surface_d5_bench": {
        "0/False": "7564059b0a2ada251c81cf33f25233f3a134abb4ed04779935a58bb3cb451d5d",
        "1/False": "1deaacd72a4e8a1b6e47205cc65c6a38d6745468cccdc6cf20cd61f55c605d6c",
        "2/False": "9fd17a56c1b67ac1e4bf0437310e16e9a243d60a956f5dd86a4e1c8e5fb99ea8",
        "2.0/True": "5a541e5fcfa807f65bf7ffcdecd9393bd422292605c25678b55523478c6b0108",
        "0/True": "7564059b0a2ada251c81cf33f25233f3a134abb4ed04779935a58bb3cb451d5d",
        "1.0/True": "3024e12e1a23063dfd6a5e0765cba89972596976283d0556248c2f026e08b925",
        "1000.0/True": "dbb08e6c0bbf961a8088f3cbb0381d3fe75f473341efc3c1df1e7354723dc58d",
    },
    "tiny": {
        "0/False": "1c168eb60b28474318836edc218ad3be9d90a39c989c02d8785e650dc3a108bb",
        "1/False": "5e0ef89f2f29d76a61eaefb55d22253f4cca9d14251089b9df149c2ad698fc32",
        "2/False": "368d3e323e9581854e61de6d45b16aca33ff90c0d484d894bf27341df8a578d9",
        "2.0/True": "e14b2b6d2f450819a123185c372aaaf690346198a34863c6fabc851c31f8b5a1",
        "0/True": "1c168eb60b28474318836edc218ad3be9d90a39c989c02d8785e650dc3a108bb",
        "1.0/True": "2ed998944cb60f7f97207554428de526bb4f79b5b784dac9e3eee181328eb431",
        "1000.0/True": "cfea8c98cfd8ee4a6fa6caa0bc7fdb8d7fa73df4400422cd58102429eaeea7ae",
    },
}


def _isa_fingerprint(isa: QuantumCircuit) -> str:
    qidx = {q: i for i, q in enumerate(isa.qubits)}
    cidx = {c: i for i, c in enumerate(isa.clbits)}
    h = hashlib.sha256(repr([(r.name, [cidx[c] for c in r]) for r in isa.cregs]).encode())
    for inst in isa.data:
        op = inst.operation
        h.update(repr((op.name, [qidx[q] for q in inst.qubits], [cidx[c] for c in inst.clbits],
                       [float(p) for p in op.params], getattr(op, "unit", None))).encode())
    return h.hexdigest()


def _translation_digest(tr) -> str:
    blob = "\n".join([tr.text, repr(tr.physical_qubits), repr(list(tr.clbit_records.items())),
                      repr(tr.num_measurements)])
    return hashlib.sha256(blob.encode()).hexdigest()


def _golden_digests(isa: QuantumCircuit, backend) -> dict[str, str]:
    return {f"{scale!r}/{idle}": _translation_digest(stim_translation(isa, backend, noise_scale=scale, idle_noise=idle))
            for scale, idle in GOLDEN_VARIANTS}


@pytest.mark.parametrize("name", sorted(GOLDEN_CIRCUITS))
def test_translation_matches_golden_digests(fez, name):
    """The stim program, qubits and records are exactly those of the reference implementation."""
    build, tiny, transpiled = GOLDEN_CIRCUITS[name]
    isa = build(fez)
    backend = _TinyBackend() if tiny else fez
    fingerprint = _isa_fingerprint(isa)
    if fingerprint != GOLDEN_ISA[name]:
        message = (f"the ISA input {name!r} changed (fingerprint {fingerprint}, recorded {GOLDEN_ISA[name]}), "
                   "so its golden digests do not apply")
        if transpiled:
            pytest.skip(message + ": qpuflow.circuits/transpile changed; re-record with an unchanged translation")
        pytest.fail(message + ": the generator in this file changed")
    assert _golden_digests(isa, backend) == GOLDEN_TRANSLATIONS[name]
    # No backend is needed without noise, and the program is the same.
    assert _translation_digest(stim_translation(isa, None, noise_scale=0)) == GOLDEN_TRANSLATIONS[name]["0/False"]


def _non_clifford_isa(fez, bad: str) -> QuantumCircuit:
    a, b = usable_pair(fez)
    qc = wide(fez, 1)
    qc.sx(a), qc.rz(math.pi, a), qc.cz(a, b), qc.rz(math.pi / 2 + 1e-12, b)
    if bad == "h":
        qc.h(b)
    elif bad == "angle":
        qc.rz(math.pi / 2 + 2e-9, b)  # just outside check_clifford_isa's 1e-9
    elif bad == "unbound":
        qc.rz(Parameter("t"), b)
    elif bad == "cx":
        qc.cx(a, b)
    if bad != "none":
        qc.rz(0.7, a)  # a later offence: the first one is the one reported
    qc.measure(a, 0)
    return qc


@pytest.mark.parametrize("bad", ["h", "angle", "unbound", "cx"])
def test_translation_rejects_exactly_like_check_clifford_isa(fez, bad):
    """The check done while walking raises check_clifford_isa's own error, before any scheduling."""
    from qpuflow.transpile import NonCliffordError, check_clifford_isa

    qc = _non_clifford_isa(fez, bad)
    with pytest.raises(NonCliffordError) as expected:
        check_clifford_isa(qc)
    for backend, kwargs in ((None, {"noise_scale": 0}), (fez, {}), (fez, {"idle_noise": True})):
        with pytest.raises(NonCliffordError) as got:
            stim_translation(qc, backend, **kwargs)
        assert str(got.value) == str(expected.value)
    # A backend is still demanded before the circuit is looked at.
    with pytest.raises(ValueError, match="backend is needed"):
        stim_translation(qc, None, noise_scale=0, idle_noise=True)


def test_auto_method_falls_back_to_aer_without_a_separate_check(fez):
    qc = _non_clifford_isa(fez, "angle")
    bits = sample_isa(qc, fez, shots=64, seed=1, noise_scale=0)["c"]
    assert bits.shape == (64, 1)
    # Idle noise without a backend: a non-Clifford circuit still goes to noiseless Aer
    # (which ignores idle noise), a Clifford one is refused by stim_translation.
    assert sample_isa(qc, None, shots=64, seed=1, noise_scale=0, idle_noise=True)["c"].shape == (64, 1)
    with pytest.raises(ValueError, match="backend is needed"):
        sample_isa(_non_clifford_isa(fez, "none"), None, shots=64, seed=1, noise_scale=0, idle_noise=True)
    with pytest.raises(ValueError, match="backend is needed"):
        sample_isa(qc, None, shots=64, seed=1)
