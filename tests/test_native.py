"""Heavy-hex-native memory circuits (qpuflow.native) on FakeFez's coupling graph.

Correctness (noiseless detectors and observable), placement (every gate on a coupler of
the patch, excluded couplers avoided, "nothing fits" reported as data), circuit distance
under uniform circuit-level noise, CZ count per round, and the per-round logical error
with FakeFez median noise and correlated matching.
"""

from __future__ import annotations

import functools

import numpy as np
import pymatching
import pytest
import stim

from qpuflow.native import (
    KINDS,
    fez_coupling,
    find_patches,
    median_fez_noise,
    native_memory_circuit,
    patch_cost,
    per_round_error,
    uniform_noise,
)

ALLOWED = {"R", "RX", "H", "CZ", "CX", "X", "Z", "M", "MX", "MR", "TICK",
           "DETECTOR", "OBSERVABLE_INCLUDE", "QUBIT_COORDS"}
# Two-qubit gates per round claimed in qpuflow.native.surface / .subsystem.
CZ_PER_ROUND = {("surface", 3): 60, ("surface", 5): 208, ("subsystem", 3): 40, ("subsystem", 5): 128}


@functools.lru_cache(maxsize=None)
def fez():
    edges, n, dead = fez_coupling()
    return tuple(edges), n, tuple(dead)


@functools.lru_cache(maxsize=None)
def search(kind: str, d: int, basis: str, exclude_dead: bool = False):
    edges, n, dead = fez()
    return find_patches(edges, n, distance=d, kind=kind, basis=basis, excluded=dead if exclude_dead else ())


def noiseless_values(circuit: stim.Circuit) -> tuple[np.ndarray, bool]:
    """Absolute detector and observable values of the noiseless circuit."""
    ref = circuit.reference_sample()
    conv = circuit.compile_m2d_converter(skip_reference_sample=True)
    out = conv.convert(measurements=ref[None, :], append_observables=True)[0]
    return out[:-1], bool(out[-1])


def two_qubit_pairs(circuit: stim.Circuit) -> list[tuple[int, int]]:
    pairs = []
    for inst in circuit.flattened():
        if inst.name in ("CZ", "CX"):
            t = inst.targets_copy()
            assert all(x.is_qubit_target for x in t), "no classically controlled gates"
            v = [x.value for x in t]
            pairs += [(min(a, b), max(a, b)) for a, b in zip(v[::2], v[1::2])]
    return pairs


def cz_count(circuit: stim.Circuit) -> int:
    return len(two_qubit_pairs(circuit))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", [3, 5])
@pytest.mark.parametrize("basis", ["Z", "X"])
def test_noiseless_detectors_and_observable(kind, d, basis):
    patch = search(kind, d, basis)[0]
    for state in ("0", "1", "+", "-"):
        for rounds in (1, 3):
            c = native_memory_circuit(patch, rounds=rounds, logical_state=state)
            assert {inst.name for inst in c.flattened()} <= ALLOWED
            assert c.num_observables == 1
            assert c.num_detectors > 0
            # Raises if any detector or the observable is not deterministic.
            assert c.detector_error_model().num_errors == 0
            dets, obs = noiseless_values(c)
            assert not dets.any(), (state, rounds, np.flatnonzero(dets))
            assert obs == (state in "1-"), (state, rounds)
            assert not c.compile_detector_sampler(seed=5).sample(16).any()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flags, reset", [(False, True), ("all", True), (True, False)])
def test_noiseless_variants(kind, flags, reset):
    # Without flags, with every helper flagged, and without ancilla resets.
    patch = search(kind, 3, "Z")[0]
    for state in ("0", "1", "+", "-"):
        c = native_memory_circuit(patch, rounds=3, logical_state=state, flags=flags, reset=reset)
        assert {inst.name for inst in c.flattened()} <= ALLOWED
        dets, obs = noiseless_values(c)
        assert not dets.any() and obs == (state in "1-")
    if not reset:
        # Each ancilla is reset once (its first use), never again.
        c = native_memory_circuit(patch, rounds=3, logical_state="0", reset=False)
        resets = [q.value for inst in c.flattened() if inst.name in ("R", "RX") for q in inst.targets_copy()]
        assert len(resets) == len(set(resets))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", [3, 5])
def test_gates_stay_on_the_patch(kind, d):
    edges, _, _ = fez()
    device = set(edges)
    for basis in ("Z", "X"):
        patch = search(kind, d, basis)[0]
        assert set(patch.couplers) <= device
        assert len(set(patch.qubits)) == len(patch.qubits)
        assert set(patch.data) | set(patch.measure) | set(patch.bridge) == set(patch.qubits)
        assert len(patch.data) == d * d
        c = native_memory_circuit(patch, rounds=2, logical_state="0" if basis == "Z" else "+")
        assert set(two_qubit_pairs(c)) == set(patch.couplers)
        touched = {t.value for inst in c.flattened() if inst.name not in ("DETECTOR", "OBSERVABLE_INCLUDE", "TICK")
                   for t in inst.targets_copy() if t.is_qubit_target}
        assert touched == set(patch.qubits)
        assert set(c.get_final_qubit_coordinates()) == set(patch.qubits)


def test_excluded_couplers_are_avoided():
    _, _, dead = fez()
    assert len(dead) == 7
    for kind in KINDS:
        result = search(kind, 3, "Z", exclude_dead=True)
        assert len(result) > 0 and result.total == len(search(kind, 3, "Z"))
        assert result.blocked == result.total - len(result)
        for patch in result:
            assert not set(patch.couplers) & set(dead)
        c = native_memory_circuit(result[0], rounds=2, logical_state="0")
        assert not set(two_qubit_pairs(c)) & set(dead)


def test_placements_on_fez():
    # The numbers quoted in the report.
    assert (len(search("surface", 3, "Z")), len(search("surface", 3, "Z", True))) == (148, 32)
    assert (len(search("surface", 5, "Z")), len(search("surface", 5, "Z", True))) == (24, 0)
    assert search("surface", 3, "Z").distinct_qubit_sets == 74


def test_no_placement_is_reported_as_data():
    result = search("surface", 5, "Z", exclude_dead=True)  # every 5-row patch crosses a dead coupler
    assert len(result) == 0 and not list(result)
    assert result.total == 24 and result.blocked == 24
    assert "excluded" in result.summary
    # A graph too small for any patch: no placement at all, still no exception.
    tiny = find_patches([(0, 1), (1, 2)], 3, distance=3, kind="surface", basis="Z")
    assert len(tiny) == 0 and tiny.total == 0 and "no placement" in tiny.summary


def test_patch_cost_ranks_dead_couplers_last():
    from qiskit_ibm_runtime.fake_provider import FakeFez

    target = FakeFez().target
    result = search("surface", 3, "Z")
    _, _, dead = fez()
    costs = sorted((patch_cost(p, target), bool(set(p.couplers) & set(dead))) for p in result)
    clean = [c for c, hit in costs if not hit]
    assert len(clean) == len(search("surface", 3, "Z", True))
    assert costs[: len(clean)] == [(c, False) for c in clean]  # every clean placement ranks first
    assert all(c >= 1.0 for c, hit in costs if hit)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", [3, 5])
def test_cz_per_round(kind, d):
    patch = search(kind, d, "Z")[0]
    per_round = cz_count(native_memory_circuit(patch, rounds=3, logical_state="0")) - cz_count(
        native_memory_circuit(patch, rounds=2, logical_state="0"))
    assert per_round == CZ_PER_ROUND[kind, d] == patch.cz_per_round
    assert cz_count(native_memory_circuit(patch, rounds=1, logical_state="0")) == per_round
    # CZ only: no CX on hardware-costly single-qubit wrappers.
    assert "CX" not in {inst.name for inst in native_memory_circuit(patch, rounds=1, logical_state="0").flattened()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", [3, 5])
@pytest.mark.parametrize("basis", ["Z", "X"])
def test_circuit_distance(kind, d, basis):
    patch = search(kind, d, basis)[0]
    c = native_memory_circuit(patch, rounds=3, logical_state="0" if basis == "Z" else "+")
    noisy = uniform_noise(c, 1e-3)
    assert len(noisy.shortest_graphlike_error()) == d
    if d == 3:
        found = noisy.search_for_undetectable_logical_errors(
            dont_explore_detection_event_sets_with_size_above=4,
            dont_explore_edges_with_degree_above=4,
            dont_explore_edges_increasing_symptom_degree=False,
        )
        assert len(found) >= 3


def _logical_errors(circuit: stim.Circuit, shots: int, seed: int) -> float:
    # The plain recipe: stim's decomposed DEM, PyMatching with correlations.
    dem = circuit.detector_error_model(decompose_errors=True)
    matching = pymatching.Matching.from_detector_error_model(dem, enable_correlations=True)
    det, obs = circuit.compile_detector_sampler(seed=seed).sample(shots, separate_observables=True)
    pred = matching.decode_batch(det, enable_correlations=True)
    return float(np.mean(pred[:, 0] != obs[:, 0]))


@pytest.mark.slow
def test_per_round_rate_with_fez_median_noise():
    shots, r1, r2 = 100_000, 2, 6
    eps = {}
    for d in (3, 5):
        patch = search("surface", d, "Z")[0]
        p = [_logical_errors(median_fez_noise(native_memory_circuit(patch, rounds=r, logical_state="0")), shots, seed=r)
             for r in (r1, r2)]
        eps[d] = per_round_error(p[0], p[1], r1, r2)
    # With 1M shots per point: 0.390% (d=3) and 0.288% (d=5) per round; plain matching
    # gives 0.640% and 0.585%.
    assert eps[3] < 0.02
    assert eps[5] < eps[3]
    assert 0.002 < eps[3] < 0.006 and 0.0015 < eps[5] < 0.0045
