"""The bridge between a stim memory experiment and its Qiskit circuit: :class:`MeasurementMap`
says where each stim measurement-record entry lands in the Qiskit classical registers. Results
coming back per register are turned back into stim's record order with
:func:`records_from_registers`, and detection events and logical observables are computed from
that record.

Conventions (shared with the simulator and the analysis code):

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


def measurement_map_of(isa: Any) -> MeasurementMap:
    """The measurement map a circuit from :func:`qpuflow.stim_qiskit.stim_to_qiskit` carries in its
    metadata (kept through transpilation)."""
    meta = isa.metadata or {}
    if "measurement_map" not in meta:
        raise ValueError(
            f"circuit {isa.name!r} has no 'measurement_map' in its metadata; build it with "
            "qpuflow.stim_qiskit.stim_to_qiskit / qpuflow.circuits.memory_experiment and transpile with transpile_isa"
        )
    return MeasurementMap.from_json(meta["measurement_map"])
