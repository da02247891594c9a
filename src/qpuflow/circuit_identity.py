"""What identifies a transpiled circuit and what it was compiled against:
:func:`circuit_fingerprint` identifies an ISA circuit by its content (not by QPY bytes, which
are not byte-stable across versions), :func:`calibration_snapshot` records the device numbers
it was compiled against, and :func:`isa_summary` its size and duration.
"""

from __future__ import annotations

import hashlib
from typing import Any

import qiskit
from qiskit.circuit import QuantumCircuit
from qiskit.transpiler import Target

from qpuflow.backends import UniformNoiseBackend, excluded_couplers, finite_or_none, readout_pairs, two_qubit_ops
from qpuflow.transpile import physical_layout, rz_angle

_FINGERPRINT_VERSION = "qpuflow-isa-fingerprint/1"


def _param_text(p: Any) -> str:
    value = rz_angle(p)
    if value is None:
        return str(p)
    # +0.0 turns -0.0 into 0.0 so the sign of a zero cannot change the hash.
    return repr(round(value, 12) + 0.0)


def _clbit_text(isa: QuantumCircuit, clbit) -> str:
    loc = isa.find_bit(clbit)
    if loc.registers:
        reg, idx = loc.registers[0]
        return f"{reg.name}[{idx}]"
    return f"_[{loc.index}]"


def _fingerprint_text(isa: QuantumCircuit) -> str:
    lines = [
        _FINGERPRINT_VERSION,
        f"num_qubits {isa.num_qubits}",
        "qregs " + " ".join(f"{r.name}:{r.size}" for r in isa.qregs),
        "cregs " + " ".join(f"{r.name}:{r.size}" for r in isa.cregs),
    ]
    for inst in isa.data:
        op = inst.operation
        qubits = ",".join(str(isa.find_bit(q).index) for q in inst.qubits)
        clbits = ",".join(_clbit_text(isa, c) for c in inst.clbits)
        params = ",".join(_param_text(p) for p in op.params)
        unit = f" unit={op.unit}" if op.name == "delay" else ""
        lines.append(f"{op.name} q[{qubits}] c[{clbits}] p[{params}]{unit}")
    if isa.layout is not None:
        lines.append("initial_layout " + ",".join(map(str, physical_layout(isa, at="initial"))))
        lines.append("final_layout " + ",".join(map(str, physical_layout(isa, at="final"))))
    else:
        lines.append("layout none")
    return "\n".join(lines) + "\n"


def circuit_fingerprint(isa: QuantumCircuit) -> str:
    """SHA-256 of a canonical text of the circuit, stable across processes and reruns.

    Included: number of qubits, register names and sizes, every instruction in order (name,
    physical qubit indices, clbits as ``register[index]``, parameters as ``repr`` of the
    float rounded to 12 digits, delay unit) and the initial and final layouts.
    Not included: metadata, the circuit name and the global phase (no effect on outcomes).
    QPY bytes are deliberately not used: they are not byte-stable across versions.

    Returns:
        64 hex characters.
    """
    return hashlib.sha256(_fingerprint_text(isa).encode()).hexdigest()


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    iso = getattr(value, "isoformat", None)
    return iso() if iso else str(value)


def _properties_last_update(backend) -> str | None:
    props = getattr(backend, "properties", None)
    if not callable(props):
        return None
    try:
        p = props()
    except (NotImplementedError, AttributeError, TypeError):
        return None
    return _iso(getattr(p, "last_update_date", None)) if p is not None else None


def _props(target: Target, name: str, qargs: tuple[int, ...]) -> tuple[float | None, float | None]:
    if name not in target.operation_names:
        return None, None
    p = target[name].get(qargs)
    if p is None:
        return None, None
    return finite_or_none(p.error), finite_or_none(p.duration)


def calibration_snapshot(backend) -> dict[str, Any]:
    """JSON-safe copy of the calibration numbers the circuit is compiled and simulated against.

    Contents: ``backend``, ``backend_version``, ``num_qubits``, ``dt``,
    ``properties_last_update`` (ISO-8601 of the device properties, if the backend has
    them), ``qubits`` (per qubit: t1, t2 in s, frequency in Hz, readout error/duration,
    sx and x errors) and ``two_qubit`` (per gate and directed coupler: error, duration),
    and ``excluded_couplers`` (see :func:`excluded_couplers`). Missing or non-finite
    numbers are ``None``. No wall-clock time is added, so a fake backend always gives the
    same snapshot; the caller records when it was taken.
    """
    target: Target = backend.target
    pairs = readout_pairs(backend)
    qubits = []
    qprops = target.qubit_properties or [None] * target.num_qubits
    for q in range(target.num_qubits):
        qp = qprops[q] if q < len(qprops) else None
        ro_err, ro_dur = _props(target, "measure", (q,))
        pair = pairs[q] if pairs is not None and q < len(pairs) else (None, None)
        qubits.append(
            {
                "qubit": q,
                "t1": finite_or_none(getattr(qp, "t1", None)),
                "t2": finite_or_none(getattr(qp, "t2", None)),
                "frequency": finite_or_none(getattr(qp, "frequency", None)),
                "readout_error": ro_err,
                "prob_meas1_prep0": finite_or_none(pair[0]),
                "prob_meas0_prep1": finite_or_none(pair[1]),
                "readout_duration": ro_dur,
                "sx_error": _props(target, "sx", (q,))[0],
                "x_error": _props(target, "x", (q,))[0],
                # Durations, so that a decoder can schedule the circuit's idle time as the
                # simulator (and the device) does.
                "sx_duration": _props(target, "sx", (q,))[1],
                "x_duration": _props(target, "x", (q,))[1],
                "reset_duration": _props(target, "reset", (q,))[1],
            }
        )
    two_qubit = []
    for name in two_qubit_ops(target):
        for qargs in sorted(q for q in target[name] if q is not None):
            err, dur = _props(target, name, qargs)
            two_qubit.append({"gate": name, "qubits": list(qargs), "error": err, "duration": dur})
    return {
        "backend": getattr(backend, "name", None),
        "backend_version": getattr(backend, "backend_version", None),
        "num_qubits": target.num_qubits,
        "dt": finite_or_none(target.dt),
        "properties_last_update": _properties_last_update(backend),
        "qubits": qubits,
        "two_qubit": two_qubit,
        "excluded_couplers": [list(c) for c in excluded_couplers(target)],
        **({"noise_model": uniform_model_of(backend)} if isinstance(backend, UniformNoiseBackend) else {}),
    }


UNIFORM_MODEL = "stim_uniform_circuit_level"


def uniform_model_of(backend: "UniformNoiseBackend") -> dict[str, Any]:
    """The snapshot entry that tells the simulator and the decoder to use stim's uniform model."""
    return {"name": UNIFORM_MODEL, "p": backend.p}


def isa_summary(isa: QuantumCircuit, backend=None) -> dict[str, Any]:
    """Size of an ISA circuit for markers and budget estimates.

    Args:
        isa: a transpiled circuit.
        backend: optional; when given the duration is estimated from its target, otherwise
            the estimate :func:`transpile_isa` stored in the metadata is used.

    Returns:
        ``{"depth", "gate_counts", "num_gates", "duration_seconds"}``; ``gate_counts``
        includes barriers, ``num_gates`` does not; ``duration_seconds`` is ``None`` when
        unknown.
    """
    counts = {str(k): int(v) for k, v in sorted(isa.count_ops().items())}
    duration = None
    if backend is not None:
        try:
            duration = float(isa.estimate_duration(backend.target, unit="s"))
        except (qiskit.exceptions.QiskitError, KeyError, TypeError):
            duration = None
    else:
        duration = ((isa.metadata or {}).get("transpile") or {}).get("duration_seconds")
    return {
        "depth": int(isa.depth()),
        "gate_counts": counts,
        "num_gates": sum(v for k, v in counts.items() if k != "barrier"),
        "duration_seconds": duration,
    }

