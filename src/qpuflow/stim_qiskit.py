"""A noiseless stim circuit as a Qiskit circuit plus its :class:`~qpuflow.measurement_map.MeasurementMap`
(:func:`stim_to_qiskit`): stim defines the experiment, Qiskit carries it to the hardware.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import stim
from qiskit.circuit import ClassicalRegister, QuantumCircuit, QuantumRegister

from qpuflow.measurement_map import MeasurementMap

# Version tag of the metadata layout written by stim_to_qiskit; readers can refuse what
# they do not understand instead of misreading it.
METADATA_FORMAT = "qpuflow.circuits/1"

MEASURE_OPS = frozenset({"M", "MR", "MX"})
_ANNOTATIONS = frozenset({"DETECTOR", "OBSERVABLE_INCLUDE", "QUBIT_COORDS", "SHIFT_COORDS"})
_GATES = frozenset({"R", "RX", "H", "CX", "CZ", "X", "Z"})
_SUPPORTED = MEASURE_OPS | _ANNOTATIONS | _GATES | {"TICK"}


class UnsupportedStimInstructionError(ValueError):
    """A stim instruction has no faithful translation to the Qiskit circuit."""


@dataclasses.dataclass
class _Layer:
    op: str  # "MR" or "M"/"MX": a reset-measurement never shares a layer with a plain one
    records: list[int]


def _parity(indices: list[int]) -> tuple[int, ...]:
    # stim XORs repeated record targets, so a record listed twice cancels out.
    counts: dict[int, int] = {}
    for i in indices:
        counts[i] = counts.get(i, 0) ^ 1
    return tuple(sorted(i for i, c in counts.items() if c))


def _check_instruction(inst: stim.CircuitInstruction, position: int) -> None:
    if inst.name not in _SUPPORTED:
        raise UnsupportedStimInstructionError(
            f"stim instruction {position} ({inst}) is not supported by stim_to_qiskit; supported: "
            f"{', '.join(sorted(_SUPPORTED))}. Generate the circuit without noise and without "
            "other gate types."
        )
    if inst.name in _GATES | MEASURE_OPS:
        if inst.gate_args_copy():
            raise UnsupportedStimInstructionError(
                f"stim instruction {position} ({inst}) carries a noise argument; convert the "
                "noiseless circuit (noise belongs to the simulator, not the hardware circuit)"
            )
        for t in inst.targets_copy():
            if not t.is_qubit_target or t.is_inverted_result_target:
                raise UnsupportedStimInstructionError(
                    f"stim instruction {position} ({inst}) has target {t!r}; only plain qubit "
                    "targets are supported"
                )


def stim_to_qiskit(
    circuit: stim.Circuit,
    *,
    expected_observables: Sequence[int] | None = None,
    name: str = "qec",
) -> tuple[QuantumCircuit, MeasurementMap]:
    """Convert a noiseless stim circuit into a Qiskit circuit plus its measurement map.

    stim qubit indices are compacted in increasing order (stim's generators leave gaps).
    Measurements are grouped into layers: consecutive measurement instructions of the same
    kind with no TICK and no gate between them. Each layer gets one classical register;
    syndrome layers are named ``m0, m1, ...`` and the last layer is named ``data`` when it is
    a plain (non-reset) readout of qubits no other layer measures and nothing but
    annotations follows it. Every TICK becomes a full-width barrier, so the transpiler
    cannot move gates across stim's layers (which also keeps rz angles Clifford at higher
    optimisation levels).

    ``MX`` is ``h; measure; h`` and ``MR`` is ``measure; reset``, except that the trailing
    ``h``/``reset`` is left out after a qubit's last use: the post-measurement state no
    longer matters there and the operation would only cost QPU time. ``RX`` is ``reset; h``.

    Args:
        circuit: stim circuit using only R, RX, H, CX, CZ, X, Z, M, MR, MX, DETECTOR,
            OBSERVABLE_INCLUDE, TICK, QUBIT_COORDS, SHIFT_COORDS (REPEAT blocks are flattened).
        expected_observables: ideal value of each observable. ``None`` takes it from stim's
            noiseless reference sample, which is only meaningful for deterministic observables;
            pass the physically intended values when you know them.
        name: name of the Qiskit circuit.

    Returns:
        ``(qc, mmap)``. ``qc.metadata`` holds ``measurement_map`` (``mmap.to_json()``),
        ``stim_circuit`` (text of ``circuit``), ``stim_qubits`` (stim index of each Qiskit
        qubit) and ``format``.

    Raises:
        UnsupportedStimInstructionError: an instruction, noise argument or target type that
            cannot be translated.
        ValueError: ``expected_observables`` has the wrong length or values.
    """
    flat = circuit.flattened()
    for pos, inst in enumerate(flat):
        _check_instruction(inst, pos)
    used = sorted({t.value for inst in flat if inst.name in _GATES | MEASURE_OPS for t in inst.targets_copy()})
    mmap = _measurement_map(circuit, flat, expected_observables)
    qc = _qiskit_circuit(flat, used, mmap, name)
    qc.metadata = {
        "format": METADATA_FORMAT,
        "measurement_map": mmap.to_json(),
        "stim_circuit": str(circuit),
        "stim_qubits": list(used),
    }
    return qc, mmap


def _measurement_map(circuit: stim.Circuit, flat: stim.Circuit,
                     expected_observables: Sequence[int] | None) -> MeasurementMap:
    """Pass 1 of :func:`stim_to_qiskit`: measurements grouped into layers (one register each),
    detectors and observables resolved to absolute records, the ideal observable values."""
    layers, detectors, observables, gates_after_last_layer = _measurement_layers(flat)
    if not layers:
        raise ValueError("the stim circuit has no measurements; nothing to convert")
    if observables and sorted(observables) != list(range(len(observables))):
        raise ValueError(f"observable indices {sorted(observables)} are not 0..n-1")
    obs = tuple(_parity(observables[i]) for i in range(len(observables)))

    measured_qubits: list[int] = [
        t.value for inst in flat if inst.name in MEASURE_OPS for t in inst.targets_copy()
    ]
    last = layers[-1]
    last_qubits = {measured_qubits[r] for r in last.records}
    other_qubits = {measured_qubits[r] for lay in layers[:-1] for r in lay.records}
    is_data = (
        len(layers) >= 2
        and last.op == "M"
        and not gates_after_last_layer
        and not (last_qubits & other_qubits)
    )
    reg_names = [f"m{k}" for k in range(len(layers))]
    if is_data:
        reg_names[-1] = "data"
    bit_in_layer = {}
    for k, lay in enumerate(layers):
        for b, r in enumerate(lay.records):
            bit_in_layer[r] = (k, b)
    record = tuple((reg_names[bit_in_layer[r][0]], bit_in_layer[r][1]) for r in range(len(measured_qubits)))

    if expected_observables is None:
        ref = circuit.reference_sample()
        expected = tuple(int(np.bitwise_xor.reduce(ref[list(o)])) if o else 0 for o in obs)
    else:
        expected = tuple(int(v) for v in expected_observables)
        if len(expected) != len(obs):
            raise ValueError(
                f"expected_observables has {len(expected)} entries but the circuit defines "
                f"{len(obs)} observables"
            )
    return MeasurementMap(
        registers=tuple((reg_names[k], len(lay.records)) for k, lay in enumerate(layers)),
        record=record,
        detectors=tuple(detectors),
        observables=obs,
        expected_observables=expected,
    )


def _measurement_layers(flat: stim.Circuit) -> tuple[list[_Layer], list[tuple[int, ...]], dict[int, list[int]], bool]:
    """(measurement layers, detectors, observable index -> records, whether gates follow the
    last layer): consecutive measurements of one kind with no TICK or gate between them form a
    layer; rec[-k] targets become absolute record numbers."""
    layers: list[_Layer] = []
    detectors: list[tuple[int, ...]] = []
    observables: dict[int, list[int]] = {}
    open_layer = False
    gates_after_last_layer = False
    n_rec = 0
    for inst in flat:
        nm = inst.name
        if nm == "TICK":
            open_layer = False
        elif nm in MEASURE_OPS:
            kind = "MR" if nm == "MR" else "M"
            if not open_layer or layers[-1].op != kind:
                layers.append(_Layer(op=kind, records=[]))
                open_layer = True
            for _ in inst.targets_copy():
                layers[-1].records.append(n_rec)
                n_rec += 1
            gates_after_last_layer = False
        elif nm in _GATES:
            open_layer = False
            gates_after_last_layer = True
        elif nm in ("DETECTOR", "OBSERVABLE_INCLUDE"):
            recs = []
            for t in inst.targets_copy():
                if not t.is_measurement_record_target:
                    raise UnsupportedStimInstructionError(
                        f"{inst} has target {t!r}; only rec[-k] targets are supported"
                    )
                recs.append(n_rec + t.value)
            if nm == "DETECTOR":
                detectors.append(_parity(recs))
            else:
                observables.setdefault(int(inst.gate_args_copy()[0]), []).extend(recs)
    return layers, detectors, observables, gates_after_last_layer


def _qiskit_circuit(flat: stim.Circuit, used: list[int], mmap: MeasurementMap, name: str) -> QuantumCircuit:
    """Pass 2 of :func:`stim_to_qiskit`: the gates, one barrier per TICK, each measurement into
    its (register, bit); MX's trailing H and MR's reset only where the qubit is used again."""
    index = {s: i for i, s in enumerate(used)}
    # Position of the last gate/measurement touching each qubit: MX only needs its trailing
    # H if the qubit is touched again.
    last_touch: dict[int, int] = {}
    for pos, inst in enumerate(flat):
        if inst.name in _GATES | MEASURE_OPS:
            for t in inst.targets_copy():
                last_touch[t.value] = pos
    record = mmap.record
    qreg = QuantumRegister(len(used), "q")
    cregs = {nm: ClassicalRegister(size, nm) for nm, size in mmap.registers}
    qc = QuantumCircuit(qreg, *cregs.values(), name=name)
    r = 0
    for pos, inst in enumerate(flat):
        nm = inst.name
        if nm == "TICK":
            qc.barrier()
            continue
        if nm in _ANNOTATIONS:
            continue
        targets = [index[t.value] for t in inst.targets_copy()]
        if nm in ("CX", "CZ"):
            gate = qc.cx if nm == "CX" else qc.cz
            for c, t in zip(targets[::2], targets[1::2]):
                gate(c, t)
            continue
        for stim_q, q in zip((t.value for t in inst.targets_copy()), targets):
            if nm == "R":
                qc.reset(q)
            elif nm == "RX":
                qc.reset(q)
                qc.h(q)
            elif nm == "H":
                qc.h(q)
            elif nm == "X":
                qc.x(q)
            elif nm == "Z":
                qc.z(q)
            else:  # measurement
                reg, bit = record[r]
                r += 1
                if nm == "MX":
                    qc.h(q)
                qc.measure(q, cregs[reg][bit])
                used_later = last_touch[stim_q] > pos
                if nm == "MR" and used_later:
                    qc.reset(q)
                elif nm == "MX" and used_later:
                    qc.h(q)
    return qc
