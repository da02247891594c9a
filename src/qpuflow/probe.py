"""Probe jobs of the drift-aware arm: measure the candidate qubits now, then choose a chain.

A backend's reported calibration is hours old when a job runs. The drift-aware arm of the
deployment study therefore first submits a short probe job on a region of candidate qubits
(the calibration-best chain and its neighbourhood) at a fixed physical layout, and chooses
its chain from what the probe measured:

* readout: every qubit is measured in |0> (register ``ro0``) and, after an X, in |1> (``ro1``);
* T1: per configured delay ``t``, reset, X, wait ``t``, measure (register ``t1_<k>``).

From these, per qubit: P(1|0) = e0 and P(0|1) = e1 (readout error = their mean, as IBM
reports it) and T1 from the decay ``P(1 | t) = e0 + (1 - e0 - e1) exp(-t / T1)``, fitted by
least squares on the log through the origin. T2 and two-qubit errors are not probed; the
chain cost uses the reported values for those.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only: no import of a higher layer at run time
    from qpuflow.plan import RunSpec


# Without visible decay (a qubit far better than the delays can resolve) T1 is not
# estimated and the reported value stays in use.
_MIN_DECAY = 1e-3


def probe_registers(delays_us: Sequence[float]) -> list[tuple[str, int, float]]:
    """(register, prepared state, delay in us) of each measurement layer of a probe.

    >>> probe_registers([50, 100])
    [('ro0', 0, 0.0), ('ro1', 1, 0.0), ('t1_0', 1, 50.0), ('t1_1', 1, 100.0)]
    """
    return [("ro0", 0, 0.0), ("ro1", 1, 0.0)] + [(f"t1_{k}", 1, float(t)) for k, t in enumerate(delays_us)]


def probe_circuit(spec: RunSpec):
    """The logical probe circuit of a probe run: ``spec.probe_qubits`` independent qubits."""
    from qiskit import ClassicalRegister, QuantumCircuit

    if not spec.is_probe or spec.probe_delays_us is None or not spec.probe_qubits:
        raise ValueError(f"{spec.key} is not a probe run")
    n = spec.probe_qubits
    layers = probe_registers(spec.probe_delays_us)
    circuit = QuantumCircuit(n, name=spec.run)
    for name, _, _ in layers:
        circuit.add_register(ClassicalRegister(n, name))
    for index, (name, prepared, delay_us) in enumerate(layers):
        creg = circuit.cregs[index]
        if index:
            circuit.reset(range(n))
        if prepared:
            circuit.x(range(n))
        if delay_us > 0:
            circuit.delay(delay_us, range(n), unit="us")
        circuit.measure(range(n), creg)
        circuit.barrier()
    circuit.metadata = {"probe": {"delays_us": list(spec.probe_delays_us),
                                  "layers": [list(layer) for layer in layers]}}
    return circuit


def probe_problems(isa) -> list[str]:
    """Noiseless check of a transpiled probe: every layer must read its prepared state."""
    from qpuflow.simulate import sample_isa

    layers = isa.metadata["probe"]["layers"]
    registers = sample_isa(isa, None, shots=8, noise_scale=0.0)
    problems = []
    for name, prepared, _ in layers:
        bits = registers[name]
        wrong = np.flatnonzero((bits != bool(prepared)).any(axis=0))
        if wrong.size:
            problems.append(f"register {name} reads {1 - prepared} on qubit(s) {wrong.tolist()} "
                            f"where {prepared} was prepared")
    return problems


def candidate_qubits(backend, chain_length: int, count: int, *,
                     weights: Mapping[str, float] | None = None) -> list[int]:
    """Qubits a probe measures: the calibration-best chain grown breadth-first to ``count``.

    Growing around the best chain keeps the candidates connected, so every chain the
    drift-aware arm can pick is a path the probe measured. Ties in one BFS layer are broken
    by qubit index, so the answer is deterministic.
    """
    from qpuflow.backends import two_qubit_ops, usable_target
    from qpuflow.chains import select_chain

    chain = select_chain(backend, chain_length, weights=weights)
    target = usable_target(backend)
    neighbours: dict[int, set[int]] = {}
    for name in two_qubit_ops(target):
        for qargs in target[name]:
            if qargs is not None:
                a, b = qargs
                neighbours.setdefault(a, set()).add(b)
                neighbours.setdefault(b, set()).add(a)
    chosen = list(chain)
    frontier = sorted(chain)
    while len(chosen) < count and frontier:
        layer = sorted({n for q in frontier for n in neighbours.get(q, ()) if n not in chosen})
        chosen.extend(layer[: count - len(chosen)])
        frontier = layer
    return chosen


def estimate(registers: Mapping[str, np.ndarray], layout: Sequence[int],
             layers: Sequence[Sequence[Any]]) -> dict[int, dict[str, Any]]:
    """Per physical qubit: readout errors and T1 (seconds, or ``None`` if no decay was seen).

    Args:
        registers: the probe job's registers (shots x qubits, column i = logical qubit i).
        layout: physical qubit of each logical qubit (the ISA layout).
        layers: :func:`probe_registers` of the probe.
    """
    out: dict[int, dict[str, Any]] = {}
    for logical, physical in enumerate(layout):
        p1 = {name: float(np.mean(registers[name][:, logical])) for name, _, _ in layers}
        e0, e1 = p1["ro0"], 1.0 - p1["ro1"]
        contrast = 1.0 - e0 - e1
        points = [(float(t) * 1e-6, p1[name]) for name, _, t in layers if name.startswith("t1_")]
        t1 = None
        if contrast > 0.1 and points:
            ratios = [(t, min(max((p - e0) / contrast, 1e-6), 1.0)) for t, p in points]
            rate = -sum(t * math.log(r) for t, r in ratios) / sum(t * t for t, _ in ratios)
            t1 = 1.0 / rate if rate > _MIN_DECAY / max(t for t, _ in ratios) else None
        out[int(physical)] = {
            "prob_meas1_prep0": e0, "prob_meas0_prep1": e1, "readout_error": (e0 + e1) / 2,
            "t1": t1, "p1_after_delay": {f"{t * 1e6:g}us": p for t, p in points},
        }
    return out
