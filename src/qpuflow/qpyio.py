"""Circuit files (QPY) whose delays keep their duration.

QPY drops the unit of a ``Delay`` (Qiskit issues #8293 and #10662): a probe's
``delay(50, unit="us")`` comes back from disk as ``delay(50)`` in ``dt``, 0.2 us on Heron
instead of 50 us, and a probe would measure T1 at the wrong time, on the local simulator and
on hardware alike. So every circuit file is written with its delays listed in its metadata
(``qpuflow_delays``: instruction index, duration, unit) and read back with those durations
restored and checked; an ISA circuit's delays must be whole numbers of ``dt`` (what the
hardware runs), which :func:`check_isa_delays` verifies against the durations the logical
circuit asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qpuflow.errors import QpuflowError
from qpuflow.fileio import atomic_file

DELAYS_KEY = "qpuflow_delays"
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12}


class DelayError(QpuflowError):
    """A circuit whose delays do not last what they should; it is not written or sent."""


def delays_of(circuit: Any) -> list[list[Any]]:
    """``[instruction index, duration, unit]`` of every delay, in circuit order."""
    out = []
    for index, inst in enumerate(circuit.data):
        if inst.operation.name == "delay":
            op = inst.operation
            out.append([index, _number(op.params[0]), getattr(op, "unit", "dt") or "dt"])
    return out


def delay_seconds(duration: float, unit: str, dt: float | None) -> float:
    """A delay's duration in seconds (``dt`` needs the backend's dt)."""
    if unit == "dt":
        if not dt:
            raise DelayError("a delay is given in dt but the backend has no dt")
        return float(duration) * dt
    if unit not in _UNIT_SECONDS:
        raise DelayError(f"delay unit {unit!r} is not supported; use dt or s/ms/us/ns/ps")
    return float(duration) * _UNIT_SECONDS[unit]


def dump_circuit(path: Path, circuit: Any) -> None:
    """Write one circuit as QPY, atomically, with its delays recorded in its metadata."""
    from qiskit import qpy

    from qiskit.circuit import Delay

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    delays = delays_of(circuit)
    metadata = {k: v for k, v in (circuit.metadata or {}).items() if k != DELAYS_KEY}
    circuit.metadata = {**metadata, DELAYS_KEY: delays} if delays else metadata
    stored = circuit
    if any(unit != "dt" for _, _, unit in delays):
        # QPY reads every delay back as dt and refuses a fractional dt: store whole picoseconds
        # (exact for any sane duration); load_circuit puts the recorded duration back.
        stored = circuit.copy()
        for index, duration, unit in delays:
            if unit != "dt":
                picoseconds = round(delay_seconds(duration, unit, None) / _UNIT_SECONDS["ps"])
                stored.data[index] = stored.data[index].replace(operation=Delay(picoseconds, unit="ps"))
    with atomic_file(path, "wb") as fh:
        qpy.dump(stored, fh)


def load_circuit(path: Path) -> Any:
    """Read a circuit written by :func:`dump_circuit`, delays restored to their duration and unit.

    Raises:
        DelayError: the file's delays do not match its record (written by another tool, or
            edited): its durations cannot be trusted.
    """
    from qiskit import qpy
    from qiskit.circuit import Delay

    with open(path, "rb") as fh:
        (circuit,) = qpy.load(fh)
    recorded = (circuit.metadata or {}).get(DELAYS_KEY)
    found = delays_of(circuit)
    if recorded is None:
        if any(unit != "dt" for _, _, unit in found):  # pragma: no cover - QPY reads every delay as dt
            raise DelayError(f"{path}: delays without a record of their units")
        return circuit
    if [index for index, _, _ in recorded] != [index for index, _, _ in found]:
        raise DelayError(f"{path}: its delays are not where its record says ({len(found)} found, "
                         f"{len(recorded)} recorded); rebuild the file")
    for (index, duration, unit), (_, stored, _) in zip(recorded, found):
        expected = duration if unit == "dt" else round(delay_seconds(duration, unit, None) / _UNIT_SECONDS["ps"])
        if _number(stored) != _number(expected):
            raise DelayError(f"{path}: delay {index} is stored as {stored}, its record says {duration} {unit}")
        inst = circuit.data[index]
        circuit.data[index] = inst.replace(operation=Delay(duration, unit=unit))
    return circuit


def check_isa_delays(logical: Any, isa: Any, dt: float | None, *, run: str) -> list[float]:
    """Check that the ISA circuit waits as long as the logical one asked: every ISA delay is a
    whole number of ``dt`` and the delays' durations agree (as multisets, to half a dt).
    Returns the ISA's delay durations in seconds, sorted.

    Raises:
        DelayError: naming the run and the durations that differ.
    """
    wanted = sorted(delay_seconds(d, u, dt) for _, d, u in delays_of(logical))
    got = []
    for index, duration, unit in delays_of(isa):
        if unit != "dt" or float(duration) != int(float(duration)):
            raise DelayError(f"{run}: ISA delay {index} is {duration} {unit}, not a whole number of dt; the "
                             f"hardware would not run it as written")
        got.append(delay_seconds(duration, unit, dt))
    got.sort()
    # The transpiler may add delays (scheduling) but must keep every requested one.
    remaining = list(got)
    for seconds in wanted:
        match = next((g for g in remaining if abs(g - seconds) <= (dt or 0) / 2 + 1e-15), None)
        if match is None:
            raise DelayError(f"{run}: a delay of {seconds * 1e6:.3f} us was asked for, but the ISA circuit's "
                             f"delays last {[round(g * 1e6, 3) for g in got]} us")
        remaining.remove(match)
    return got


def _number(value: Any) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() else number
