"""Native heavy-hex layouts: the logical circuit of a native run, and where it goes on the device.

A native run's logical circuit (:func:`native_logical_circuit`) is the patch's memory
experiment on the patch's own node numbers (:mod:`qpuflow.native`), so it does not depend on
the calibration. Transpiling lays node ``i`` on a physical qubit chosen by
:func:`place_patch`: every placement of the patch that uses no excluded (dead) coupler is
ranked by its expected faults per round on the current calibration, and the best
:data:`SCORED` are scored by sampling the very ISA circuit under the calibration's noise model
(idle noise included) and decoding it as the analysis will. The lowest predicted logical
error wins; the placement, its prediction and the search's counts go into the transpile
record. When no placement avoids the excluded couplers (FakeFez at d = 5), :class:`NoCleanRegion`
says so instead of placing a patch on a dead coupler.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import numpy as np
from qiskit.circuit import QuantumCircuit

from qpuflow.errors import Refusal

# The layouts an experiment can ask for, and the native code each one builds.
NATIVE_CODES = {"native": "surface", "native_subsystem": "subsystem"}
LAYOUTS = ("routed", *NATIVE_CODES)
SCORED = 4  # placements (cheapest by expected faults) that are scored by sampling
SCORE_SHOTS = 20_000
SCORE_SEED = 2024


class NoCleanRegion(Refusal):
    """No placement of a native patch avoids the device's excluded couplers."""


class NativeLayoutLost(Refusal):
    """A native circuit needed SWAPs at its placement (it is not the circuit it claims to be)."""


def basis_of(logical_state: str) -> str:
    """The memory basis of a prepared state: Z for 0/1, X for +/-."""
    return "Z" if logical_state in ("0", "1") else "X"


def is_native(layout: str | None) -> bool:
    return layout in NATIVE_CODES


@functools.lru_cache(maxsize=None)
def _template_patch(code: str, distance: int, basis: str) -> Any:
    from qpuflow.native import Patch, template_for

    t = template_for(code, distance, basis)
    nodes = tuple(range(t.num_nodes))
    return Patch(kind=code, distance=t.distance, basis=basis, qubits=nodes,
                 data=t.nodes_with_role("data"), measure=t.nodes_with_role("measure"),
                 bridge=t.nodes_with_role("bridge"), couplers=tuple(sorted(t.edges)))


def native_logical_circuit(layout: str, *, distance: int, rounds: int, logical_state: str,
                           ancilla_reset: bool = False, name: str = "qec") -> QuantumCircuit:
    """The native memory experiment on the patch's node numbers, as a Qiskit circuit with its
    measurement map (qubit ``j`` is node ``metadata["stim_qubits"][j]``).

    ``ancilla_reset=False`` measures the syndrome and bridge qubits without resetting them
    (the detectors compare successive outcomes): each round then spends two readouts less
    time idle, which costs the data qubits less than the reset saves (FakeFez, idle noise on,
    d=3: 2.9% against 3.9% per round at the median calibration)."""
    from qpuflow.circuits import expected_observables_for_state
    from qpuflow.stim_qiskit import stim_to_qiskit
    from qpuflow.native import native_memory_circuit

    code = NATIVE_CODES[layout]
    patch = _template_patch(code, distance, basis_of(logical_state))
    stim_circuit = native_memory_circuit(patch, rounds=rounds, logical_state=logical_state, reset=ancilla_reset)
    qc, _ = stim_to_qiskit(stim_circuit, expected_observables=expected_observables_for_state(logical_state),
                           name=name)
    qc.metadata["experiment"] = {"kind": "surface_code", "distance": distance, "rounds": rounds,
                                 "logical_state": logical_state, "layout": layout, "native_code": code,
                                 "ancilla_reset": ancilla_reset}
    return qc


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a native patch was put, and why there."""

    layout: str
    basis: str
    nodes: tuple[int, ...]  # physical qubit of every patch node
    predicted_error: float  # per shot, at ``score_rounds`` rounds, decoded
    score_rounds: int
    score_shots: int
    clean: int  # placements avoiding every excluded coupler
    blocked: int  # placements rejected for an excluded coupler
    scored: tuple[tuple[tuple[int, ...], float], ...]  # (nodes, predicted error) of each scored one

    def layout_for(self, circuit: QuantumCircuit) -> list[int]:
        """The initial layout of a native logical circuit: its qubit ``j`` is patch node
        ``stim_qubits[j]``."""
        return [self.nodes[int(node)] for node in circuit.metadata["stim_qubits"]]

    def to_json(self) -> dict[str, Any]:
        return {"layout": self.layout, "basis": self.basis, "qubits": list(self.nodes),
                "predicted_error": self.predicted_error, "score_rounds": self.score_rounds,
                "score_shots": self.score_shots, "clean_placements": self.clean,
                "blocked_placements": self.blocked,
                "scored": [{"qubits": list(q), "predicted_error": e} for q, e in self.scored]}


_PLACEMENTS: dict[tuple[Any, ...], Placement] = {}


def place_patch(layout: str, *, distance: int, logical_state: str, backend: Any, snapshot: Mapping[str, Any],
                snapshot_key: str, seed: int, optimization_level: int, ancilla_reset: bool = False) -> Placement:
    """The best clean placement of a native patch on the backend's current calibration.

    Cached per process for each (layout, distance, basis, calibration): every run of an
    experiment in one basis goes on the same qubits, whatever its round count or state.

    Raises:
        NoCleanRegion: every placement uses an excluded coupler (named with the counts).
    """
    basis = basis_of(logical_state)
    key = (layout, distance, basis, snapshot_key, seed, optimization_level, ancilla_reset)
    if key not in _PLACEMENTS:
        _PLACEMENTS[key] = _place(layout, distance, basis, backend, snapshot, seed, optimization_level, ancilla_reset)
    return _PLACEMENTS[key]


def _place(layout: str, distance: int, basis: str, backend: Any, snapshot: Mapping[str, Any], seed: int,
           optimization_level: int, ancilla_reset: bool) -> Placement:
    from qpuflow.native import coupling_from_target, find_patches, patch_cost
    from qpuflow.backends import excluded_couplers

    target = backend.target
    edges, num_qubits, _ = coupling_from_target(target)
    excluded = excluded_couplers(target)
    search = find_patches(edges, num_qubits, distance=distance, kind=NATIVE_CODES[layout], basis=basis,
                          excluded=excluded)
    if not len(search):
        raise NoCleanRegion(
            f"no native layout fits {backend.name}: {search.summary}. Excluded couplers (error >= 0.5): "
            f"{', '.join(f'{a}-{b}' for a, b in excluded) or 'none'}. Choose a smaller distance, the "
            "routed layout (experiments.<name>.layout: routed, with accept_distance_loss: true), or a "
            "calibration without these defects (for rehearsal: fake_fez_median)."
        )
    ranked = sorted(search, key=lambda p: (patch_cost(p, target), p.qubits))[:SCORED]
    state = "0" if basis == "Z" else "+"
    circuit = native_logical_circuit(layout, distance=distance, rounds=distance, logical_state=state,
                                     ancilla_reset=ancilla_reset)
    scored = []
    for patch in ranked:
        candidate = Placement(layout, basis, patch.qubits, float("nan"), distance, SCORE_SHOTS, len(search),
                              search.blocked, ())
        isa = native_isa(circuit, candidate, backend, seed=seed, optimization_level=optimization_level)
        scored.append((patch.qubits, predicted_error(isa, snapshot)))
    nodes, best = min(scored, key=lambda item: item[1])
    return Placement(layout, basis, nodes, best, distance, SCORE_SHOTS, len(search), search.blocked, tuple(scored))


def native_isa(circuit: QuantumCircuit, placement: Placement, backend: Any, *, seed: int,
               optimization_level: int) -> QuantumCircuit:
    """Transpile a native logical circuit onto its placement; refuse if a SWAP was needed."""
    from qpuflow.transpile import physical_layout, transpile_isa

    layout = placement.layout_for(circuit)
    isa = transpile_isa(circuit, backend, seed=seed, optimization_level=optimization_level, initial_layout=layout)
    ops = circuit.count_ops()
    cz, wanted = isa.count_ops().get("cz", 0), ops.get("cz", 0) + ops.get("cx", 0)
    if physical_layout(isa) != layout or cz != wanted:
        raise NativeLayoutLost(f"the native circuit {circuit.name!r} did not keep its placement: {cz} CZ for its "
                               f"{wanted} two-qubit gates, qubits {physical_layout(isa)} for {layout}; the "
                               "transpiler routed it, so it is not submitted")
    return isa


def predicted_error(isa: QuantumCircuit, snapshot: Mapping[str, Any], *, shots: int = SCORE_SHOTS) -> float:
    """Decoded logical error per shot of ``isa`` under the snapshot's noise (idle included),
    sampled with stim and decoded as the analysis decodes (calibration DEM, correlated)."""
    from qpuflow.decode import build_matching
    from qpuflow.dem import decoder_for, isa_detector_circuit

    noisy = isa_detector_circuit(isa, snapshot, idle_noise=True)
    events, flips = noisy.compile_detector_sampler(seed=SCORE_SEED).sample(shots, separate_observables=True)
    dem, correlated = decoder_for(noisy, correlated=True)
    predicted = build_matching(dem, correlated=correlated).decode_batch(events, enable_correlations=correlated)
    return float(np.mean((predicted.astype(bool) ^ flips).any(axis=1)))
