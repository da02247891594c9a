"""Circuit-level Pauli noise for the native circuits (for validation: distances and rates).

:func:`add_noise` walks a noiseless circuit layer by layer (layers end at ``TICK``) and adds

* ``DEPOLARIZE2(p2)`` after every CZ/CX,
* ``DEPOLARIZE1(p1)`` after every H and X (Z is IBM's virtual rz: no error, no time),
* a flipped record with probability ``p_meas`` on every M/MX/MR (``M(p)``),
* ``X_ERROR(p_reset)`` after R (``Z_ERROR`` after RX),
* optionally idle noise: in each layer, every qubit of the circuit (its ``QUBIT_COORDS``) that
  is not busy for the whole layer gets the Pauli twirl of amplitude damping and dephasing
  over the time it waits (layer duration = its longest operation): ``PAULI_CHANNEL_1(px, py,
  pz)`` with ``px = py = (1 - exp(-t/T1)) / 4`` and ``pz = (1 - exp(-t/T2)) / 2 - px``.

:func:`uniform_noise` is the textbook model (every probability ``p``). :func:`median_fez_noise`
reads FakeFez's calibration: medians over couplers of the CZ error and over qubits of the
sx and readout errors; depolarizing probability ``1.25 r`` for CZ and ``1.5 r`` for
one-qubit gates (same channel as :mod:`qpuflow.simulate`); reset error (IBM reports none)
0; durations and median T1/T2 from the target when idle noise is on.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from typing import Any

import stim

__all__ = ["NoiseParams", "add_noise", "uniform_noise", "median_fez_noise", "fez_median_params"]

_TWO = {"CZ", "CX"}
_ONE = {"H", "X"}  # Z is a virtual frame change on IBM hardware
_MEAS = {"M", "MX", "MR"}
_RESET = {"R", "RX"}
_ANNOTATIONS = {"QUBIT_COORDS", "DETECTOR", "OBSERVABLE_INCLUDE", "SHIFT_COORDS", "TICK"}


@dataclasses.dataclass(frozen=True)
class NoiseParams:
    """Error probabilities, and (for idle noise) durations in seconds and T1/T2."""

    p2: float
    p1: float
    p_meas: float
    p_reset: float
    idle: bool = False
    t1: float = math.inf
    t2: float = math.inf
    duration_2q: float = 0.0
    duration_1q: float = 0.0
    duration_meas: float = 0.0
    duration_reset: float = 0.0

    def duration(self, name: str) -> float:
        if name in _TWO:
            return self.duration_2q
        if name in _ONE:
            return self.duration_1q
        if name in _MEAS:
            return self.duration_meas + (self.duration_reset if name == "MR" else 0.0)
        if name in _RESET:
            return self.duration_reset
        return 0.0

    def idle_channel(self, t: float) -> tuple[float, float, float]:
        a = 1.0 - math.exp(-t / self.t1) if self.t1 > 0 and math.isfinite(self.t1) else 0.0
        b = 1.0 - math.exp(-t / self.t2) if self.t2 > 0 and math.isfinite(self.t2) else 0.0
        px = py = a / 4.0
        pz = max(b / 2.0 - a / 4.0, 0.0)
        return px, py, pz


def add_noise(circuit: stim.Circuit, params: NoiseParams) -> stim.Circuit:
    """``circuit`` with the noise of ``params`` (see the module docstring)."""
    out = stim.Circuit()
    qubits = sorted(circuit.get_final_qubit_coordinates())
    if not qubits:
        qubits = list(range(circuit.num_qubits))
    busy: dict[int, float] = {}

    def end_layer() -> None:
        if params.idle and busy:
            length = max(busy.values())
            groups: dict[float, list[int]] = {}
            for q in qubits:
                t = length - busy.get(q, 0.0)
                if t > 0:
                    groups.setdefault(round(t, 15), []).append(q)
            for t, qs in sorted(groups.items()):
                ch = params.idle_channel(t)
                if sum(ch) > 0:
                    out.append("PAULI_CHANNEL_1", qs, list(ch))
        busy.clear()

    for inst in circuit.flattened():
        name = inst.name
        targets = inst.targets_copy()
        if name == "TICK":
            end_layer()
            out.append(inst)
            continue
        if name in _ANNOTATIONS:
            out.append(inst)
            continue
        qs = [t.value for t in targets if t.is_qubit_target]
        for q in qs:
            busy[q] = max(busy.get(q, 0.0), params.duration(name))
        if name in _MEAS:
            if params.p_meas > 0:
                out.append(name, targets, params.p_meas)
            else:
                out.append(inst)
            if name == "MR" and params.p_reset > 0:
                out.append("X_ERROR", qs, params.p_reset)
            continue
        out.append(inst)
        if name in _TWO and params.p2 > 0:
            out.append("DEPOLARIZE2", qs, params.p2)
        elif name in _ONE and params.p1 > 0:
            out.append("DEPOLARIZE1", qs, params.p1)
        elif name == "R" and params.p_reset > 0:
            out.append("X_ERROR", qs, params.p_reset)
        elif name == "RX" and params.p_reset > 0:
            out.append("Z_ERROR", qs, params.p_reset)
    end_layer()
    return out


def uniform_noise(circuit: stim.Circuit, p: float) -> stim.Circuit:
    """Uniform circuit-level depolarizing noise: every probability ``p``, no idle noise."""
    return add_noise(circuit, NoiseParams(p2=p, p1=p, p_meas=p, p_reset=p))


@functools.lru_cache(maxsize=4)
def _fez_medians() -> dict[str, float]:
    from qiskit_ibm_runtime.fake_provider import FakeFez

    return _target_medians(FakeFez().target)


def _target_medians(target: Any) -> dict[str, float]:
    def med(name: str, field: str) -> float:
        vals = [getattr(p, field) for p in target[name].values() if p is not None and getattr(p, field) is not None]
        return float(statistics.median(vals)) if vals else 0.0

    qps = [q for q in (target.qubit_properties or []) if q is not None]
    return {
        "cz": med("cz", "error"),
        "sx": med("sx", "error"),
        "measure": med("measure", "error"),
        "reset": med("reset", "error") if "reset" in target.operation_names else 0.0,
        "t_cz": med("cz", "duration"),
        "t_sx": med("sx", "duration"),
        "t_measure": med("measure", "duration"),
        "t_reset": med("reset", "duration") if "reset" in target.operation_names else 0.0,
        "t1": float(statistics.median([q.t1 for q in qps if q.t1])) if qps else math.inf,
        "t2": float(statistics.median([q.t2 for q in qps if q.t2])) if qps else math.inf,
    }


def fez_median_params(*, idle: bool = False, target: Any = None) -> NoiseParams:
    """:class:`NoiseParams` from FakeFez's (or ``target``'s) median calibration."""
    m = _fez_medians() if target is None else _target_medians(target)
    return NoiseParams(
        p2=1.25 * m["cz"], p1=1.5 * m["sx"], p_meas=m["measure"], p_reset=m["reset"],
        idle=idle, t1=m["t1"], t2=m["t2"], duration_2q=m["t_cz"], duration_1q=m["t_sx"],
        duration_meas=m["t_measure"], duration_reset=m["t_reset"],
    )


def median_fez_noise(circuit: stim.Circuit, *, idle: bool = False) -> stim.Circuit:
    """``circuit`` with FakeFez median noise (idle noise only if ``idle``)."""
    return add_noise(circuit, fez_median_params(idle=idle))
