"""QEC memory circuits: stim generation and conversion to Qiskit with a measurement map.

The experiment is defined in stim (its generators are the reference for detector and
observable definitions); Qiskit is only the vehicle to the hardware. The bridge between
the two is :class:`MeasurementMap`, which says where each stim measurement-record entry
lands in the Qiskit classical registers. Results coming back per register are turned
back into stim's record order with :func:`records_from_registers`, and detection events
and logical observables are computed from that record.

Conventions (shared with :mod:`qpuflow.simulate` and the analysis code):

* one :class:`~qiskit.circuit.ClassicalRegister` per measurement layer, ``m0, m1, ...``
  for syndrome layers and ``data`` for the final data-qubit readout;
* register arrays are ``(shots, num_bits)`` booleans whose column ``i`` is clbit ``i`` of
  the register (``BitArray.to_bool_array(order="little")``), never the printed bitstring
  whose bit 0 is rightmost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import stim
from qiskit.circuit import ClassicalRegister, QuantumCircuit, QuantumRegister

__all__ = [
    "LOGICAL_STATES",
    "CODE_KINDS",
    "MeasurementMap",
    "UnsupportedStimInstructionError",
    "memory_circuit",
    "stim_to_qiskit",
    "memory_experiment",
    "records_from_registers",
    "registers_from_records",
    "detection_events",
    "observable_flips",
    "expected_observables_for_state",
]

LOGICAL_STATES = ("0", "1", "+", "-")
CODE_KINDS = ("surface_code", "repetition_code")

# Version tag of the metadata layout written by stim_to_qiskit; readers can refuse what
# they do not understand instead of misreading it.
METADATA_FORMAT = "qpuflow.circuits/1"

_MEASURE_OPS = frozenset({"M", "MR", "MX"})
_ANNOTATIONS = frozenset({"DETECTOR", "OBSERVABLE_INCLUDE", "QUBIT_COORDS", "SHIFT_COORDS"})
_GATES = frozenset({"R", "RX", "H", "CX", "CZ", "X", "Z"})
_SUPPORTED = _MEASURE_OPS | _ANNOTATIONS | _GATES | {"TICK"}


class UnsupportedStimInstructionError(ValueError):
    """A stim instruction has no faithful translation to the Qiskit circuit."""


# --------------------------------------------------------------------------------------
# stim circuit generation
# --------------------------------------------------------------------------------------


def _check_memory_args(kind: str, distance: int, rounds: int, logical_state: str) -> None:
    if kind not in CODE_KINDS:
        raise ValueError(f"unknown code kind {kind!r}; use one of {', '.join(CODE_KINDS)}")
    if logical_state not in LOGICAL_STATES:
        raise ValueError(
            f"unknown logical state {logical_state!r}; use one of {', '.join(LOGICAL_STATES)}"
        )
    if kind == "repetition_code" and logical_state not in ("0", "1"):
        raise ValueError(
            f"logical state {logical_state!r} is not available for repetition_code: it only "
            "protects against bit flips, so only '0' and '1' are meaningful; use surface_code "
            "for '+' and '-'"
        )
    if isinstance(distance, bool) or not isinstance(distance, int):
        raise ValueError(f"distance must be an int, got {distance!r}")
    if distance < 3 or distance % 2 == 0:
        raise ValueError(
            f"distance must be odd and >= 3, got {distance}: the logical state is prepared "
            "with a transversal X/Z, which flips the logical observable only for odd distance"
        )
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")


def expected_observables_for_state(logical_state: str) -> tuple[int, ...]:
    """Ideal value of the (single) logical observable for a prepared state.

    Args:
        logical_state: one of :data:`LOGICAL_STATES`.

    Returns:
        ``(0,)`` for ``"0"`` and ``"+"``, ``(1,)`` for ``"1"`` and ``"-"``.

    >>> expected_observables_for_state("-")
    (1,)
    """
    if logical_state not in LOGICAL_STATES:
        raise ValueError(
            f"unknown logical state {logical_state!r}; use one of {', '.join(LOGICAL_STATES)}"
        )
    return (1,) if logical_state in ("1", "-") else (0,)


def _last_measurement(flat: stim.Circuit) -> stim.CircuitInstruction:
    for inst in reversed(flat):
        if inst.name in _MEASURE_OPS:
            return inst
    raise ValueError("circuit has no measurement")


def uniform_model_noise(p: float) -> dict[str, float]:
    """stim's uniform circuit-level depolarizing model at ``p``, as ``stim.Circuit.generated``
    arguments: DEPOLARIZE2(p) after every CX and DEPOLARIZE1(p) after every H, DEPOLARIZE1(p)
    on the data qubits before every round, X_ERROR(p) before measurements and after resets.
    The literature's "uniform p" (e.g. the d = 3/5/7 rates 0.0008/0.00014/0.00002 at p = 1e-3)."""
    return dict(after_clifford_depolarization=p, before_round_data_depolarization=p,
                before_measure_flip_probability=p, after_reset_flip_probability=p)


def memory_circuit(kind: str, *, distance: int, rounds: int, logical_state: str,
                   uniform_p: float | None = None) -> stim.Circuit:
    """Stim memory experiment for one logical basis state, noiseless unless ``uniform_p``.

    Args:
        kind: ``"surface_code"`` (rotated, Z memory for ``0``/``1``, X memory for ``+``/``-``)
            or ``"repetition_code"`` (only ``0``/``1``).
        distance: code distance, odd and at least 3.
        rounds: number of syndrome-extraction rounds, at least 1.
        logical_state: one of :data:`LOGICAL_STATES`.
        uniform_p: add stim's uniform circuit-level noise at this p (:func:`uniform_model_noise`).

    Returns:
        The stim circuit with detectors and one observable whose ideal value is 1 for
        ``"1"``/``"-"`` and 0 otherwise. No noise instructions unless ``uniform_p`` is given.

    Raises:
        ValueError: unknown kind or state, even or too-small distance, rounds < 1.
    """
    _check_memory_args(kind, distance, rounds, logical_state)
    if kind == "surface_code":
        basis = "z" if logical_state in ("0", "1") else "x"
        task = f"surface_code:rotated_memory_{basis}"
    else:
        task = "repetition_code:memory"
    noise = uniform_model_noise(uniform_p) if uniform_p else {}
    base = stim.Circuit.generated(task, distance=distance, rounds=rounds, **noise)
    flip = {"1": "X", "-": "Z"}.get(logical_state)
    if flip is None:
        return base

    # X (Z) on every data qubit is a transversal logical X (Z): every stabilizer of the
    # opposite type overlaps the data qubits an even number of times, so no detector changes,
    # while the logical observable (weight d along a boundary) flips because d is odd.
    # Applying it right after the reset layer prepares |1> (|->) from stim's |0> (|+>).
    data = sorted(t.value for t in _last_measurement(base.flattened()).targets_copy())
    out = stim.Circuit()
    inserted = False
    for inst in base:
        # (the reset layer includes the X_ERROR after the resets of the noisy model)
        in_reset_layer = isinstance(inst, stim.CircuitInstruction) and inst.name in (
            "QUBIT_COORDS",
            "R",
            "RX",
            "X_ERROR",
            "Z_ERROR",
        )
        if not inserted and not in_reset_layer:
            out.append(flip, data)
            inserted = True
        out.append(inst)
    if not inserted:
        raise ValueError(f"stim's {task} circuit has no gates after its reset layer")
    return out


# --------------------------------------------------------------------------------------
# measurement map
# --------------------------------------------------------------------------------------


def _pairs(value: Any, what: str) -> tuple[tuple[str, int], ...]:
    try:
        return tuple((str(name), int(size)) for name, size in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"measurement map field {what!r} must be a list of [name, int] pairs") from exc


def _int_tuples(value: Any, what: str) -> tuple[tuple[int, ...], ...]:
    try:
        return tuple(tuple(int(i) for i in item) for item in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"measurement map field {what!r} must be a list of lists of ints") from exc


@dataclasses.dataclass(frozen=True)
class MeasurementMap:
    """Where each stim measurement-record entry lands in the Qiskit classical registers.

    Attributes:
        registers: ``(name, size)`` of each classical register, in circuit order (one per
            measurement layer).
        record: for stim record index ``k``, the ``(register name, bit index)`` it is stored in.
        detectors: for each detector, the absolute record indices whose parity it is.
        observables: for each logical observable, the absolute record indices whose parity it is.
        expected_observables: the ideal (noiseless) value of each observable.
    """

    registers: tuple[tuple[str, int], ...]
    record: tuple[tuple[str, int], ...]
    detectors: tuple[tuple[int, ...], ...]
    observables: tuple[tuple[int, ...], ...]
    expected_observables: tuple[int, ...]

    def __post_init__(self) -> None:
        # Normalise lists (e.g. straight from JSON) to tuples so equal maps compare equal
        # and the record stays hashable and immutable.
        object.__setattr__(self, "registers", _pairs(self.registers, "registers"))
        object.__setattr__(self, "record", _pairs(self.record, "record"))
        object.__setattr__(self, "detectors", _int_tuples(self.detectors, "detectors"))
        object.__setattr__(self, "observables", _int_tuples(self.observables, "observables"))
        try:
            expected = tuple(int(v) for v in self.expected_observables)
        except (TypeError, ValueError) as exc:
            raise ValueError("measurement map field 'expected_observables' must be a list of ints") from exc
        object.__setattr__(self, "expected_observables", expected)
        sizes: dict[str, int] = {}
        for name, size in self.registers:
            if not name or name in sizes:
                raise ValueError(f"register name {name!r} is empty or repeated in the measurement map")
            if size < 1:
                raise ValueError(f"register {name!r} has size {size}; sizes must be >= 1")
            sizes[name] = size
        seen: set[tuple[str, int]] = set()
        for k, (name, bit) in enumerate(self.record):
            if name not in sizes:
                raise ValueError(f"record {k} points at register {name!r}, which is not in registers")
            if not 0 <= bit < sizes[name]:
                raise ValueError(
                    f"record {k} points at bit {bit} of register {name!r}, which has {sizes[name]} bits"
                )
            if (name, bit) in seen:
                raise ValueError(f"record {k} reuses {name}[{bit}]; each bit must hold one record entry")
            seen.add((name, bit))
        if len(seen) != sum(sizes.values()):
            raise ValueError(
                f"the record covers {len(seen)} bits but the registers hold {sum(sizes.values())}; "
                "every register bit must hold exactly one record entry"
            )
        n = len(self.record)
        for what, groups in (("detector", self.detectors), ("observable", self.observables)):
            for j, group in enumerate(groups):
                bad = [i for i in group if not 0 <= i < n]
                if bad:
                    raise ValueError(
                        f"{what} {j} refers to record indices {bad}, outside the {n} measurements"
                    )
        if len(self.expected_observables) != len(self.observables):
            raise ValueError(
                f"expected_observables has {len(self.expected_observables)} entries for "
                f"{len(self.observables)} observables"
            )
        if any(v not in (0, 1) for v in self.expected_observables):
            raise ValueError(f"expected_observables must be 0 or 1, got {self.expected_observables}")

    @property
    def num_measurements(self) -> int:
        """Number of entries in stim's measurement record."""
        return len(self.record)

    @property
    def num_detectors(self) -> int:
        """Number of detectors."""
        return len(self.detectors)

    @property
    def num_observables(self) -> int:
        """Number of logical observables."""
        return len(self.observables)

    def register_sizes(self) -> dict[str, int]:
        """Register name -> number of bits."""
        return dict(self.registers)

    def describe_records(self, indices: Sequence[int]) -> str:
        """Human-readable ``"3 = m0[3], 11 = m1[3]"`` for error messages."""
        return ", ".join(f"{i} = {self.record[i][0]}[{self.record[i][1]}]" for i in indices)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (lists only) that :meth:`from_json` reads back."""
        return {
            "registers": [[name, size] for name, size in self.registers],
            "record": [[name, bit] for name, bit in self.record],
            "detectors": [list(d) for d in self.detectors],
            "observables": [list(o) for o in self.observables],
            "expected_observables": list(self.expected_observables),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MeasurementMap:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: a key is missing or unknown, or the content is inconsistent.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"measurement map must be a JSON object, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(d))
        extra = sorted(set(d) - fields)
        if missing or extra:
            raise ValueError(
                f"measurement map JSON has missing keys {missing} and unknown keys {extra}; "
                f"expected exactly {sorted(fields)}"
            )
        return cls(**{f: d[f] for f in fields})


# --------------------------------------------------------------------------------------
# stim -> Qiskit
# --------------------------------------------------------------------------------------


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
    if inst.name in _GATES | _MEASURE_OPS:
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
    used = sorted({t.value for inst in flat if inst.name in _GATES | _MEASURE_OPS for t in inst.targets_copy()})
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
        t.value for inst in flat if inst.name in _MEASURE_OPS for t in inst.targets_copy()
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
        elif nm in _MEASURE_OPS:
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
        if inst.name in _GATES | _MEASURE_OPS:
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


def memory_experiment(
    kind: str, *, distance: int, rounds: int, logical_state: str, name: str = "qec"
) -> tuple[QuantumCircuit, MeasurementMap]:
    """Build a memory experiment as a Qiskit circuit with its measurement map.

    Args:
        kind: see :func:`memory_circuit`.
        distance: see :func:`memory_circuit`.
        rounds: see :func:`memory_circuit`.
        logical_state: see :func:`memory_circuit`.
        name: name of the Qiskit circuit.

    Returns:
        ``(qc, mmap)`` as from :func:`stim_to_qiskit`, with ``expected_observables`` set from
        the prepared state and ``qc.metadata["experiment"]`` describing the experiment.

    Raises:
        ValueError: bad arguments, or stim's noiseless reference disagrees with the prepared
            state (a bug in the state preparation, never silently accepted).
    """
    stim_circuit = memory_circuit(kind, distance=distance, rounds=rounds, logical_state=logical_state)
    expected = expected_observables_for_state(logical_state)
    qc, mmap = stim_to_qiskit(stim_circuit, expected_observables=expected, name=name)
    ref = stim_circuit.reference_sample()
    got = tuple(int(np.bitwise_xor.reduce(ref[list(o)])) for o in mmap.observables)
    if got != expected:
        raise ValueError(
            f"{kind} d={distance} state {logical_state!r}: stim's noiseless observable is {got} "
            f"but the state needs {expected}; the state preparation is wrong"
        )
    qc.metadata["experiment"] = {
        "kind": kind,
        "distance": distance,
        "rounds": rounds,
        "logical_state": logical_state,
    }
    return qc, mmap


# --------------------------------------------------------------------------------------
# results -> stim record, detectors, observables
# --------------------------------------------------------------------------------------


def records_from_registers(registers: Mapping[str, np.ndarray], mmap: MeasurementMap) -> np.ndarray:
    """Rebuild stim's measurement record from per-register bit arrays.

    Args:
        registers: register name -> bool array ``(shots, num_bits)`` whose column ``i`` is
            clbit ``i`` of that register. Extra registers are ignored.
        mmap: the measurement map of the circuit that produced them.

    Returns:
        Bool array ``(shots, num_measurements)`` in stim record order.

    Raises:
        ValueError: a register is missing or has the wrong shape.
    """
    arrays = []
    shots = None
    for name, size in mmap.registers:
        if name not in registers:
            raise ValueError(
                f"register {name!r} is missing from the results (have {sorted(registers)}); "
                "results must come from the circuit this measurement map belongs to"
            )
        a = np.asarray(registers[name]).astype(bool, copy=False)
        if a.ndim != 2 or a.shape[1] != size:
            raise ValueError(
                f"register {name!r} has shape {a.shape}, expected (shots, {size})"
            )
        if shots is None:
            shots = a.shape[0]
        elif a.shape[0] != shots:
            raise ValueError(f"register {name!r} has {a.shape[0]} shots, others have {shots}")
        arrays.append(a)
    offsets = {}
    total = 0
    for name, size in mmap.registers:
        offsets[name] = total
        total += size
    columns = np.fromiter((offsets[n] + b for n, b in mmap.record), dtype=np.intp, count=len(mmap.record))
    return np.concatenate(arrays, axis=1)[:, columns]


def registers_from_records(records: np.ndarray, mmap: MeasurementMap) -> dict[str, np.ndarray]:
    """Inverse of :func:`records_from_registers`: split a stim record into register arrays.

    Useful to feed samples of the stim circuit itself through the same path as hardware
    results.

    Args:
        records: bool array ``(shots, num_measurements)`` in stim record order.
        mmap: the measurement map.

    Returns:
        Register name -> bool array ``(shots, size)``, column ``i`` = clbit ``i``.
    """
    records = np.asarray(records).astype(bool, copy=False)
    if records.ndim != 2 or records.shape[1] != mmap.num_measurements:
        raise ValueError(
            f"records have shape {records.shape}, expected (shots, {mmap.num_measurements})"
        )
    out = {name: np.zeros((records.shape[0], size), dtype=bool) for name, size in mmap.registers}
    for k, (name, bit) in enumerate(mmap.record):
        out[name][:, bit] = records[:, k]
    return out


def _parities(records: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    out = np.zeros((records.shape[0], len(groups)), dtype=bool)
    for j, group in enumerate(groups):
        if group:
            out[:, j] = np.bitwise_xor.reduce(records[:, list(group)], axis=1)
    return out


def detection_events(registers: Mapping[str, np.ndarray], mmap: MeasurementMap) -> np.ndarray:
    """Detection events ``(shots, num_detectors)``: the parity of each detector's records.

    The generated circuits' detectors are 0 in the absence of errors, so a raw parity of 1
    is a detection event (the same as stim's ``compile_m2d_converter``).
    """
    return _parities(records_from_registers(registers, mmap), mmap.detectors)


def observable_flips(registers: Mapping[str, np.ndarray], mmap: MeasurementMap) -> np.ndarray:
    """Logical errors ``(shots, num_observables)``: measured observable XOR its ideal value."""
    measured = _parities(records_from_registers(registers, mmap), mmap.observables)
    return measured ^ np.asarray(mmap.expected_observables, dtype=bool)[np.newaxis, :]
