"""Tests for qpuflow.transpile on FakeFez: usable target, chains, ISA checks, fingerprints."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import pytest
from qiskit import qpy
from qiskit.circuit import CircuitInstruction, QuantumCircuit
from qiskit.circuit.library import RZGate, SXGate

from qpuflow.circuits import memory_experiment
from qpuflow.preflight import preflight_check
from qpuflow.backends import UnknownBackendError, available_backends, excluded_couplers, load_backend, usable_target
from qpuflow.chains import select_chain
from qpuflow.circuit_identity import calibration_snapshot, circuit_fingerprint, isa_summary
from qpuflow.transpile import CLIFFORD_ISA_GATES, NonCliffordError, check_clifford_isa, physical_layout, transpile_isa

FEZ_DEAD = [(27, 28), (31, 32), (32, 33), (68, 69), (80, 81), (106, 107), (139, 155)]


@pytest.fixture(scope="module")
def surface_isa(fez):
    qc, _ = memory_experiment("surface_code", distance=3, rounds=3, logical_state="1")
    return qc, transpile_isa(qc, fez, seed=11)


def cz_pairs(isa: QuantumCircuit) -> set[tuple[int, int]]:
    return {
        tuple(sorted(isa.find_bit(q).index for q in inst.qubits))
        for inst in isa.data
        if inst.operation.name == "cz"
    }


# --------------------------------------------------------------------------------------
# backends and targets
# --------------------------------------------------------------------------------------


def test_backend_lookup(fez):
    names = available_backends()
    assert "fake_fez" in names and "fake_torino" in names
    assert names == sorted(names)
    assert load_backend("fake_fez") is fez  # cached per process
    assert fez.num_qubits == 156
    with pytest.raises(UnknownBackendError, match="'fake_fzz'.*fake_fez.*available_backends") as info:
        load_backend("fake_fzz")
    assert isinstance(info.value, ValueError)


def test_usable_target_drops_exactly_the_dead_couplers(fez):
    assert excluded_couplers(fez) == FEZ_DEAD
    target = usable_target(fez)
    full = fez.target
    for a, b in FEZ_DEAD:
        assert (a, b) not in target["cz"] and (b, a) not in target["cz"]
        assert full["cz"][(a, b)].error == 1.0  # the backend itself is untouched
    assert len(target["cz"]) == len(full["cz"]) - 2 * len(FEZ_DEAD)
    assert set(target.operation_names) == set(full.operation_names)
    assert target["measure"][(3,)].error == full["measure"][(3,)].error
    assert target.qubit_properties[7].t1 == full.qubit_properties[7].t1
    assert target.dt == full.dt


# --------------------------------------------------------------------------------------
# chain selection
# --------------------------------------------------------------------------------------


def _brute_force_best_chain(backend, length):
    """Exhaustive search with the same cost, for a known answer."""
    target = backend.target
    dead = set(excluded_couplers(backend))
    node = {}
    for q in range(target.num_qubits):
        qp = target.qubit_properties[q]
        node[q] = target["measure"][(q,)].error + 1e-6 / qp.t1 + 1e-6 / qp.t2
    edge = {}
    for (a, b), p in target["cz"].items():
        key = (min(a, b), max(a, b))
        if key not in dead:
            edge[key] = max(edge.get(key, 0.0), p.error)
    adj = {q: [] for q in node}
    for a, b in edge:
        adj[a].append(b)
        adj[b].append(a)
    best = (math.inf, None)

    def walk(path, cost):
        nonlocal best
        if len(path) == length:
            canon = tuple(path) if path[0] <= path[-1] else tuple(reversed(path))
            best = min(best, (round(cost, 12), canon))
            return
        for nxt in adj[path[-1]]:
            if nxt not in path:
                walk(path + [nxt], cost + node[nxt] + edge[(min(path[-1], nxt), max(path[-1], nxt))])

    for q in node:
        walk([q], node[q])
    return list(best[1])


@pytest.mark.parametrize("length", [1, 2, 4])
def test_select_chain_is_the_exact_optimum(fez, length):
    assert select_chain(fez, length) == _brute_force_best_chain(fez, length)


def test_select_chain_of_nine_is_a_usable_path(fez):
    start = time.perf_counter()
    chain = select_chain(fez, 9)
    elapsed = time.perf_counter() - start
    print(f"select_chain(fake_fez, 9) = {chain} in {elapsed * 1e3:.1f} ms")
    assert elapsed < 1.0
    assert len(chain) == 9 == len(set(chain))
    cz = usable_target(fez)["cz"]
    for a, b in zip(chain, chain[1:]):
        assert (a, b) in cz, (a, b)
    assert chain[0] < chain[-1]
    assert select_chain(fez, 9) == chain  # deterministic


def test_select_chain_follows_the_weights(fez):
    readout_only = select_chain(fez, 3, weights={"readout": 1.0, "two_qubit": 0.0, "t1": 0.0, "t2": 0.0})
    best = sum(fez.target["measure"][(q,)].error for q in readout_only)
    other = select_chain(fez, 3, weights={"readout": 0.0, "two_qubit": 1.0, "t1": 0.0, "t2": 0.0})
    assert best <= sum(fez.target["measure"][(q,)].error for q in other)
    with pytest.raises(ValueError, match="unknown chain weight"):
        select_chain(fez, 3, weights={"readuot": 1.0})
    with pytest.raises(ValueError, match="exceeds"):
        select_chain(fez, 500)


# --------------------------------------------------------------------------------------
# transpilation
# --------------------------------------------------------------------------------------


def test_surface_code_isa_is_clifford_uses_no_dead_coupler_and_passes_preflight(fez, surface_isa):
    qc, isa = surface_isa
    names = set(isa.count_ops())
    assert names <= CLIFFORD_ISA_GATES, names
    for inst in isa.data:
        if inst.operation.name == "rz":
            k = float(inst.operation.params[0]) / (math.pi / 2)
            assert abs(k - round(k)) < 1e-9
    assert not cz_pairs(isa) & set(FEZ_DEAD)
    assert isa.metadata["measurement_map"] == qc.metadata["measurement_map"]
    assert isa.metadata["transpile"]["seed"] == 11
    assert isa.metadata["transpile"]["backend"] == "fake_fez"
    assert preflight_check(isa, fez) == []
    json.dumps(isa.metadata)


def test_same_seed_same_fingerprint_and_one_gate_changes_it(fez, surface_isa):
    qc, isa = surface_isa
    again = transpile_isa(qc, fez, seed=11)
    assert circuit_fingerprint(again) == circuit_fingerprint(isa)
    changed = isa.copy()
    k = next(k for k, inst in enumerate(changed.data) if inst.operation.name == "sx")
    q = changed.data[k].qubits
    changed.data.insert(k, CircuitInstruction(SXGate(), q, ()))
    assert circuit_fingerprint(changed) != circuit_fingerprint(isa)
    moved = isa.copy()
    k = next(k for k, inst in enumerate(moved.data) if inst.operation.name == "rz")
    inst = moved.data[k]
    moved.data[k] = inst.replace(operation=RZGate(float(inst.operation.params[0]) + math.pi / 2))
    assert circuit_fingerprint(moved) != circuit_fingerprint(isa)
    renamed = isa.copy(name="other")
    renamed.metadata = {}
    assert circuit_fingerprint(renamed) == circuit_fingerprint(isa)  # metadata/name not in it


_FINGERPRINT_SCRIPT = textwrap.dedent(
    """
    from qpuflow.circuits import memory_experiment
    from qpuflow.backends import load_backend
    from qpuflow.circuit_identity import circuit_fingerprint
    from qpuflow.transpile import transpile_isa
    qc, _ = memory_experiment("surface_code", distance=3, rounds=3, logical_state="1")
    print(circuit_fingerprint(transpile_isa(qc, load_backend("fake_fez"), seed=11)))
    """
)


def test_fingerprint_is_stable_across_processes(surface_isa):
    _, isa = surface_isa
    env = dict(os.environ, PYTHONHASHSEED="random")
    # Two fresh interpreters with different hash seeds, run side by side.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FINGERPRINT_SCRIPT],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    assert outputs[0] == outputs[1] == circuit_fingerprint(isa)


def test_qpy_round_trip_keeps_fingerprint_layout_and_metadata(surface_isa):
    _, isa = surface_isa
    buffer = io.BytesIO()
    qpy.dump(isa, buffer)
    buffer.seek(0)
    (loaded,) = qpy.load(buffer)
    assert circuit_fingerprint(loaded) == circuit_fingerprint(isa)
    assert physical_layout(loaded) == physical_layout(isa)
    assert physical_layout(loaded, at="initial") == physical_layout(isa, at="initial")
    assert isa_summary(loaded) == isa_summary(isa)
    assert loaded.metadata["measurement_map"] == isa.metadata["measurement_map"]
    assert preflight_check(loaded) == []


def test_repetition_code_on_selected_chain_needs_no_swaps(fez):
    qc, mmap = memory_experiment("repetition_code", distance=5, rounds=3, logical_state="1")
    chain = select_chain(fez, qc.num_qubits)
    assert qc.num_qubits == 9
    isa = transpile_isa(qc, fez, seed=3, initial_layout=chain)
    assert physical_layout(isa) == chain
    assert physical_layout(isa, at="initial") == chain
    # Each logical CX becomes exactly one CZ: no SWAP (3 CZ each) was inserted.
    assert isa.count_ops()["cz"] == qc.count_ops()["cx"] == 2 * 4 * 3
    assert cz_pairs(isa) <= {tuple(sorted(p)) for p in zip(chain, chain[1:])}
    assert preflight_check(isa) == []
    summary = isa_summary(isa)
    assert summary["gate_counts"]["cz"] == 24
    assert summary["num_gates"] == sum(v for k, v in summary["gate_counts"].items() if k != "barrier")
    assert summary["depth"] > 0
    assert 1e-6 < summary["duration_seconds"] < 1e-3
    assert isa_summary(isa, fez)["duration_seconds"] == pytest.approx(summary["duration_seconds"])


def _data_readout_qubits(circuit: QuantumCircuit) -> list[int]:
    """Qubit index measured into each bit of the 'data' register."""
    data = next(c for c in circuit.cregs if c.name == "data")
    out = [None] * data.size
    for inst in circuit.data:
        if inst.operation.name == "measure" and inst.clbits[0] in data:
            out[data.index(inst.clbits[0])] = circuit.find_bit(inst.qubits[0]).index
    return out


def test_physical_layout_final_accounts_for_routing(surface_isa):
    qc, isa = surface_isa
    initial = physical_layout(isa, at="initial")
    final = physical_layout(isa, at="final")
    assert len(initial) == len(final) == 17
    # The surface code does not fit heavy-hex without SWAPs, so logical qubits move ...
    assert initial != final
    # ... and the final layout is where each one's last measurement happened.
    logical = _data_readout_qubits(qc)
    physical = _data_readout_qubits(isa)
    assert physical == [final[v] for v in logical]
    assert physical != [initial[v] for v in logical]
    with pytest.raises(ValueError, match="no layout"):
        physical_layout(QuantumCircuit(2))


def test_check_clifford_isa_names_the_offender():
    qc = QuantumCircuit(2)
    qc.sx(0)
    qc.rz(math.pi, 1)
    qc.rz(-math.pi / 2, 0)
    check_clifford_isa(qc)
    qc.rz(0.3, 1)
    with pytest.raises(NonCliffordError, match="instruction 3 is rz\\(0.3\\) on qubit 1"):
        check_clifford_isa(qc)
    h = QuantumCircuit(1)
    h.h(0)
    with pytest.raises(NonCliffordError, match="instruction 0 is h on qubits \\[0\\]"):
        check_clifford_isa(h)


def test_transpile_rejects_non_clifford_and_bad_arguments(fez):
    qc = QuantumCircuit(1, 1)
    qc.rx(0.3, 0)
    qc.measure(0, 0)
    with pytest.raises(NonCliffordError, match="rz"):
        transpile_isa(qc, fez, seed=1)
    with pytest.raises(ValueError, match="seed"):
        transpile_isa(qc, fez, seed=-1)
    with pytest.raises(ValueError, match="initial_layout has 2 qubits"):
        transpile_isa(qc, fez, seed=1, initial_layout=[1, 2])


def test_calibration_snapshot_is_json_safe_and_deterministic(fez):
    snap = calibration_snapshot(fez)
    assert json.loads(json.dumps(snap, allow_nan=False)) == snap
    assert snap == calibration_snapshot(load_backend("fake_fez"))
    assert snap["backend"] == "fake_fez" and snap["num_qubits"] == 156
    assert snap["properties_last_update"].startswith("2025-02-26")
    q5 = snap["qubits"][5]
    assert q5["t1"] == fez.target.qubit_properties[5].t1
    assert q5["readout_error"] == fez.target["measure"][(5,)].error
    assert q5["sx_error"] == fez.target["sx"][(5,)].error
    cz = {tuple(c["qubits"]): c["error"] for c in snap["two_qubit"] if c["gate"] == "cz"}
    assert cz[(27, 28)] == 1.0 and len(cz) == len(fez.target["cz"])
    assert snap["excluded_couplers"] == [list(c) for c in FEZ_DEAD]


def test_median_backend_is_the_device_at_its_median_with_every_coupler_alive():
    import numpy as np

    from qpuflow.backends import excluded_couplers, readout_pairs

    fez, median = load_backend("fake_fez"), load_backend("fake_fez_median")
    assert median.name == "fake_fez_median" and median.num_qubits == fez.num_qubits
    assert set(median.coupling_map.get_edges()) == set(fez.coupling_map.get_edges())
    assert excluded_couplers(fez) and not excluded_couplers(median)
    live = [p.error for p in fez.target["cz"].values() if p.error < 0.5]
    assert {p.error for p in median.target["cz"].values()} == {float(np.median(live))}
    assert median.target.qubit_properties[5].t1 == float(np.median([q.t1 for q in fez.target.qubit_properties]))
    p10, p01 = readout_pairs(median)[0]
    assert p01 > 2 * p10  # the device's asymmetric readout is kept, not averaged away
