"""Transpilation to a Clifford ISA circuit, and the checks on the result.

What this module guarantees about a circuit it returns from :func:`transpile_isa`:

* it only uses couplers whose two-qubit error is below 0.5 (FakeFez, like real devices,
  reports a few dead couplers with error 1.0 that the preset pass managers happily route
  through);
* it only contains sx, rz (multiples of pi/2), cz, x, id, reset, measure, delay and barrier,
  so it can be simulated exactly and fast by stim (:mod:`qpuflow.stim_noise`);
* its metadata still holds the measurement map of the logical circuit, plus how it was
  transpiled.

Backends live in :mod:`qpuflow.backends`, chain selection in :mod:`qpuflow.chains`, and the
circuit's fingerprint and calibration snapshot in :mod:`qpuflow.circuit_identity`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Literal

import qiskit
from qiskit.circuit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager

from qpuflow.backends import excluded_couplers, usable_target

__all__ = ["NonCliffordError", "CLIFFORD_ISA_GATES", "transpile_isa", "check_clifford_isa", "physical_layout",
           "active_qubits"]

CLIFFORD_ISA_GATES = frozenset({"sx", "rz", "cz", "x", "id", "reset", "measure", "delay", "barrier"})


class NonCliffordError(ValueError):
    """The ISA circuit holds an instruction stim cannot simulate (or a non-Clifford angle)."""


def rz_angle(param: Any) -> float | None:
    try:
        return float(param)
    except (TypeError, ValueError):
        return None


def check_clifford_isa(isa: QuantumCircuit) -> None:
    """Check that ``isa`` is a Clifford circuit in the ISA stim simulates.

    Args:
        isa: a transpiled circuit.

    Raises:
        NonCliffordError: the first instruction that is not one of
            :data:`CLIFFORD_ISA_GATES`, or an rz whose angle is not a multiple of pi/2
            within 1e-9, or an unbound parameter.
    """
    for i, inst in enumerate(isa.data):
        name = inst.operation.name
        qubits = [isa.find_bit(q).index for q in inst.qubits]
        if name not in CLIFFORD_ISA_GATES:
            raise NonCliffordError(
                f"instruction {i} is {name} on qubits {qubits}, which is not in the Clifford ISA "
                f"({', '.join(sorted(CLIFFORD_ISA_GATES))}); transpile with transpile_isa "
                "against the backend's target, or simulate with the Aer fallback"
            )
        if name == "rz":
            angle = rz_angle(inst.operation.params[0])
            if angle is None:
                raise NonCliffordError(
                    f"instruction {i} is rz({inst.operation.params[0]}) on qubit {qubits[0]} "
                    "with an unbound parameter; bind parameters before transpiling"
                )
            k = angle / (math.pi / 2)
            if abs(angle - round(k) * (math.pi / 2)) > 1e-9:
                raise NonCliffordError(
                    f"instruction {i} is rz({angle!r}) on qubit {qubits[0]}: the angle is not a "
                    "multiple of pi/2, so the circuit is not Clifford; add barriers between "
                    "layers or use optimization_level=1"
                )


def transpile_isa(
    circuit: QuantumCircuit,
    backend,
    *,
    seed: int,
    optimization_level: int = 1,
    initial_layout: Sequence[int] | None = None,
) -> QuantumCircuit:
    """Transpile a logical circuit for ``backend`` into a checked Clifford ISA circuit.

    The preset pass manager runs against :func:`usable_target`, so dead couplers are never
    used. The logical circuit's metadata (measurement map, stim text) is carried over and a
    ``"transpile"`` entry is added with the backend, seed, level, requested layout, the
    resulting initial/final layouts, the estimated duration and the qiskit version.

    Args:
        circuit: logical circuit, e.g. from :func:`qpuflow.circuits.memory_experiment`.
        backend: a ``BackendV2``.
        seed: transpiler seed; same seed + same inputs -> same circuit.
        optimization_level: 0-3. Levels above 1 are allowed but checked like the rest.
        initial_layout: physical qubit for each logical qubit (e.g. from :func:`select_chain`).

    Returns:
        The ISA circuit.

    Raises:
        NonCliffordError: the transpiled circuit is not Clifford (see :func:`check_clifford_isa`).
        ValueError: bad seed, level or layout.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"transpiler seed must be an int >= 0, got {seed!r}")
    if optimization_level not in (0, 1, 2, 3):
        raise ValueError(f"optimization_level must be 0, 1, 2 or 3, got {optimization_level!r}")
    layout = None
    if initial_layout is not None:
        layout = [int(q) for q in initial_layout]
        if len(layout) != circuit.num_qubits:
            raise ValueError(
                f"initial_layout has {len(layout)} qubits but the circuit has {circuit.num_qubits}"
            )
        if len(set(layout)) != len(layout):
            raise ValueError(f"initial_layout {layout} repeats a physical qubit")
    target = usable_target(backend)
    pm = generate_preset_pass_manager(
        optimization_level=optimization_level,
        target=target,
        seed_transpiler=seed,
        initial_layout=layout,
    )
    isa = pm.run(circuit)
    check_clifford_isa(isa)
    try:
        duration = float(isa.estimate_duration(target, unit="s"))
    except (qiskit.exceptions.QiskitError, KeyError, TypeError):
        duration = None
    meta = copy.deepcopy(dict(circuit.metadata or {}))
    meta["transpile"] = {
        "backend": getattr(backend, "name", None),
        "seed": seed,
        "optimization_level": optimization_level,
        "requested_initial_layout": layout,
        "initial_layout": physical_layout(isa, at="initial"),
        "final_layout": physical_layout(isa, at="final"),
        "duration_seconds": duration,
        "excluded_couplers": [list(c) for c in excluded_couplers(backend)],
        "qiskit_version": qiskit.__version__,
    }
    isa.metadata = meta
    return isa


def physical_layout(isa: QuantumCircuit, *, at: Literal["final", "initial"] = "final") -> list[int]:
    """Physical qubit of each logical (virtual) qubit of the transpiled circuit.

    Args:
        isa: a circuit returned by the transpiler (it must carry ``isa.layout``).
        at: ``"final"`` (default) — where each logical qubit is at the end of the circuit,
            after the SWAPs routing inserted; this is where its final measurement happened.
            ``"initial"`` — where each logical qubit starts. Without routing SWAPs the two
            are equal.

    Returns:
        ``layout[v]`` = physical qubit of logical qubit ``v`` (ancillas the transpiler added
        are left out).

    Raises:
        ValueError: the circuit has no layout (was not transpiled), or ``at`` is unknown.
    """
    if isa.layout is None:
        raise ValueError(
            f"circuit {isa.name!r} has no layout; physical_layout needs a transpiled circuit "
            "(use transpile_isa)"
        )
    if at == "final":
        return [int(q) for q in isa.layout.final_index_layout(filter_ancillas=True)]
    if at == "initial":
        return [int(q) for q in isa.layout.initial_index_layout(filter_ancillas=True)]
    raise ValueError(f"at must be 'final' or 'initial', got {at!r}")


def active_qubits(isa: QuantumCircuit) -> list[int]:
    """Sorted physical qubits touched by any instruction other than a barrier."""
    used = {
        isa.find_bit(q).index
        for inst in isa.data
        if inst.operation.name != "barrier"
        for q in inst.qubits
    }
    return sorted(used)


