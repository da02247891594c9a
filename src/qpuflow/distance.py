"""Circuit-level distance: how many faults flip the logical observable without any detector.

A code's distance ``d`` is a promise about the circuit only if the circuit keeps it: on
heavy-hex, the transpiler's SWAP routing of a rotated surface code lets 2 faults of the d=3
code (3 of d=5) flip the logical unnoticed. The distance is computed on the noisy ISA circuit
as the simulator runs it (calibration noise, idle noise included), with stim:

* ``graphlike``: the shortest set of graphlike errors (each firing at most two detectors)
  that flips an observable and no detector (``shortest_graphlike_error``);
* ``searched``: stim's search for undetectable logical errors among hyperedges too, with
  bounded detection-event sets (``search_for_undetectable_logical_errors``); it takes
  milliseconds for d <= 5 and is skipped (None) for DEMs above :data:`SEARCH_LIMIT` errors.

The distance is the smaller of the two. Preflight refuses to submit a circuit whose distance
is below the experiment's, unless the experiment sets ``accept_distance_loss: true``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qpuflow.errors import Refusal

SEARCH_LIMIT = 200_000  # DEM errors above which the hyperedge search is skipped


class DistanceLoss(Refusal):
    """A circuit whose circuit-level distance is below the code's; it is not submitted."""


@dataclasses.dataclass(frozen=True)
class CircuitDistance:
    graphlike: int
    searched: int | None
    dem_errors: int
    example: str  # the fault set that achieves the distance, in stim's words

    @property
    def distance(self) -> int:
        return min(self.graphlike, self.searched) if self.searched is not None else self.graphlike

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "distance": self.distance}


def circuit_distance(isa: Any, backend: Any, *, idle_noise: bool = True) -> CircuitDistance:
    """The ISA circuit's circuit-level distance under ``backend``'s noise (a backend or a
    calibration snapshot), detectors and observables from its measurement map."""
    from qpuflow.dem import isa_detector_circuit

    circuit = isa_detector_circuit(isa, backend, idle_noise=idle_noise)
    dem = circuit.detector_error_model(decompose_errors=True, ignore_decomposition_failures=True,
                                       approximate_disjoint_errors=True)
    graphlike = dem.shortest_graphlike_error(ignore_ungraphlike_errors=True)
    searched = None
    if dem.num_errors <= SEARCH_LIMIT:
        found = circuit.search_for_undetectable_logical_errors(
            dont_explore_detection_event_sets_with_size_above=4, dont_explore_edges_with_degree_above=4,
            dont_explore_edges_increasing_symptom_degree=False)
        searched = len(found)
    shortest = graphlike if searched is None or len(graphlike) <= searched else found
    return CircuitDistance(graphlike=len(graphlike), searched=searched, dem_errors=dem.num_errors,
                           example=_explain(circuit, shortest))


def _explain(circuit: Any, errors: Any) -> str:
    """Where the faults of a shortest logical error sit in the circuit (first locations)."""
    try:
        explained = circuit.explain_detector_error_model_errors(dem_filter=errors, reduce_to_one_representative_error=True)
    except Exception:  # stim could not map it back: the DEM terms still say what they are
        return "; ".join(str(e) for e in errors)[:400]
    where = {"DEPOLARIZE1": "after a 1-qubit gate", "DEPOLARIZE2": "after a CZ", "PAULI_CHANNEL_1": "while idle",
             "X_ERROR": "after a reset", "M": "in a readout"}
    parts = []
    for item in explained:
        location = item.circuit_error_locations[0] if item.circuit_error_locations else None
        if location is None:
            continue
        paulis = " ".join(f"{t.gate_target.pauli_type}{t.gate_target.value}" for t in location.flipped_pauli_product)
        if not paulis and location.flipped_measurement is not None:
            paulis = f"a flipped record of qubit {location.flipped_measurement.measured_observable[0].gate_target.value}"
        gate = location.instruction_targets.gate
        parts.append(f"{paulis} {where.get(gate, 'at ' + gate)}".strip())
    return "; ".join(parts)[:400]


def require_distance(run_key: str, code_distance: int, measured: CircuitDistance | dict[str, Any], *,
                     accepted: bool, cause: str = "") -> None:
    """Refuse a circuit that does not keep the experiment's distance (unless accepted).

    Raises:
        DistanceLoss: naming the run, both distances, the cause and the ways out.
    """
    distance = measured.distance if isinstance(measured, CircuitDistance) else int(measured["distance"])
    if distance >= code_distance or accepted:
        return
    example = measured.example if isinstance(measured, CircuitDistance) else measured.get("example", "")
    experiment = run_key.split("/", 1)[0]
    raise DistanceLoss(
        f"{run_key}: the transpiled circuit has circuit-level distance {distance}, below the code distance "
        f"{code_distance}: {distance} fault(s) flip the logical observable without firing a detector"
        + (f" (e.g. {example})" if example else "") + (f"; {cause}" if cause else "")
        + f". It was not submitted. Lay the code out natively (experiments.{experiment}.layout: native) or, to "
        f"submit it anyway, set experiments.{experiment}.accept_distance_loss: true."
    )
