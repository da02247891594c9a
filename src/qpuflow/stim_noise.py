"""ISA circuits as stim programs with noise derived from a backend's calibration: the
simulator's default path (:func:`qpuflow.simulate.sample_isa`) and the source of decoders'
detector error models.

Target errors are average gate infidelities ``r``; the depolarizing probability with the same
infidelity is ``1.5 r`` for one-qubit gates and ``1.25 r`` for two-qubit gates (this matches
Aer's model). Readout error flips the recorded bit only, or, with the device's asymmetric
readout, is applied to the samples afterwards (:func:`apply_readout`). ``rz(k pi/2)`` is
virtual and error-free; with idle noise, each delay becomes the Pauli twirl of T1/T2 decay.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import stim
from qiskit.circuit import QuantumCircuit
from qiskit.transpiler import PassManager, Target
from qiskit.transpiler.passes import ALAPScheduleAnalysis, PadDelay

from qpuflow.backends import ONE_QUBIT_DEPOLARIZING_FACTOR, TWO_QUBIT_DEPOLARIZING_FACTOR
from qpuflow.transpile import CLIFFORD_ISA_GATES, NonCliffordError, check_clifford_isa



@dataclasses.dataclass(frozen=True)
class StimTranslation:
    """A Clifford ISA circuit written as a stim program.

    Attributes:
        text: the stim program.
        physical_qubits: physical qubit of each stim qubit (stim qubit ``i`` is
            ``physical_qubits[i]``; unused backend qubits are left out).
        clbit_records: ``(register name, bit)`` -> index in the stim measurement record of
            the last measurement written into that clbit.
        num_measurements: length of the stim measurement record.
        measured_qubits: physical qubit of each entry of the measurement record.
    """

    text: str
    physical_qubits: tuple[int, ...]
    clbit_records: Mapping[tuple[str, int], int]
    num_measurements: int
    measured_qubits: tuple[int, ...] = ()

    def circuit(self) -> stim.Circuit:
        """Parse the program (one ``stim.Circuit(text)`` call: 80x faster than appending)."""
        return stim.Circuit(self.text)


def _clip(p: float, high: float) -> float:
    if not math.isfinite(p) or p <= 0.0:
        return 0.0
    return min(p, high)


class _ErrorTable:
    """Per-instruction error and duration lookups on a Target, memoised."""

    def __init__(self, target: Target | None):
        self.target = target
        self._err: dict[tuple[str, tuple[int, ...]], float] = {}

    def error(self, name: str, qargs: tuple[int, ...]) -> float:
        key = (name, qargs)
        if key not in self._err:
            err = 0.0
            if self.target is not None and name in self.target.operation_names:
                props = self.target[name].get(qargs)
                if props is not None and props.error is not None:
                    err = float(props.error)
            self._err[key] = err
        return self._err[key]

    def relaxation(self, qubit: int) -> tuple[float | None, float | None]:
        qps = self.target.qubit_properties if self.target is not None else None
        if not qps or qubit >= len(qps) or qps[qubit] is None:
            return None, None
        return getattr(qps[qubit], "t1", None), getattr(qps[qubit], "t2", None)


def _idle_channel(t: float, t1: float | None, t2: float | None) -> tuple[float, float, float]:
    # Pauli twirl of amplitude damping + dephasing: the twirled channel keeps the decay
    # rates of <Z> (T1) and <X>,<Y> (T2) but drops the non-unital part (decay towards |0>).
    if t <= 0:
        return 0.0, 0.0, 0.0
    a = 1.0 - math.exp(-t / t1) if t1 and t1 > 0 else 0.0
    b = 1.0 - math.exp(-t / t2) if t2 and t2 > 0 else 0.0
    px = py = a / 4.0
    pz = max(b / 2.0 - a / 4.0, 0.0)
    return px, py, pz


def _delay_seconds(value, unit: str, dt: float | None) -> float:
    value = float(value)
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12}
    if unit == "dt":
        if not dt:
            raise ValueError("delay is given in dt but the backend target has no dt")
        return value * dt
    if unit not in scale:
        raise ValueError(f"delay unit {unit!r} is not supported; use dt or s/ms/us/ns/ps")
    return value * scale[unit]


def schedule_alap(isa: QuantumCircuit, target: Target) -> QuantumCircuit:
    # Idle noise only exists where the circuit says the qubit waits, i.e. on delays; an
    # unscheduled ISA circuit has none, so schedule it ALAP (as IBM's runtime would run it).
    return PassManager([ALAPScheduleAnalysis(target=target), PadDelay(target=target)]).run(isa)


# What stim_translation writes for each instruction is decided once per distinct key
# (instruction name, circuit qubit indices and, for rz, the multiple of pi/2): a d=3 surface
# code has 1310 instructions but only 103 distinct keys (d=5: 5497 and 325).
_HALF_PI = math.pi / 2
_RZ_GATE = ("", "S", "Z", "S_DAG")
_TICK = ("barrier",)
_NO_QUBITS_USED = frozenset({"barrier", "delay"})


def _walk(isa: QuantumCircuit, keep_delays: bool) -> tuple[list[tuple], list, bool]:
    """One pass over the ISA circuit, checking it as :func:`check_clifford_isa` does.

    Returns ``(keys, measured, has_delay)``: a hashable key per instruction in order
    (``("barrier",)``, ``(name, qubits)``, ``("rz", qubits, k)`` with ``k`` in 0..3, or
    ``("delay", qubits, unit, duration)``; qubits are circuit indices; delays only with
    ``keep_delays``), the clbit of each measurement in order, and whether there is a delay.

    The inline check accepts exactly what :func:`check_clifford_isa` accepts (the same
    names and the same rz test, without an ``isa.find_bit`` per instruction); on anything
    else it runs :func:`check_clifford_isa` on the whole circuit, which raises the error
    for the first offending instruction.
    """
    qidx = {q: i for i, q in enumerate(isa.qubits)}
    qcache: dict = {}  # inst.qubits (one tuple object per instruction) -> circuit indices
    qcache_get = qcache.get
    plain = CLIFFORD_ISA_GATES.intersection(("sx", "x", "id", "cz", "reset"))
    allowed = CLIFFORD_ISA_GATES
    keys: list[tuple] = []
    append = keys.append
    measured: list = []
    has_delay = False
    for inst in isa.data:
        name = inst.name
        qs = inst.qubits
        qubits = qcache_get(qs)
        if qubits is None:
            qubits = qcache[qs] = tuple([qidx[q] for q in qs])
        if name in plain:
            append((name, qubits))
        elif name == "rz" and "rz" in allowed:
            try:
                angle = float(inst.params[0])
                k = round(angle / _HALF_PI)
                ok = abs(angle - k * _HALF_PI) <= 1e-9
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                check_clifford_isa(isa)  # raises for this instruction or an earlier one
                k = round(float(inst.params[0]) / _HALF_PI)
            append(("rz", qubits, k % 4))
        elif name == "measure" and name in allowed:
            append(("measure", qubits))
            measured.append(inst.clbits[0])
        elif name == "barrier" and name in allowed:
            append(_TICK)
        elif name == "delay" and name in allowed:
            has_delay = True
            if keep_delays:
                op = inst.operation
                append(("delay", qubits, getattr(op, "unit", "dt"), op.params[0]))
        else:
            check_clifford_isa(isa)  # raises, naming the first instruction outside the ISA
            raise NonCliffordError(f"instruction {name} has no stim translation")
    return keys, measured, has_delay


def stim_translation(
    isa: QuantumCircuit,
    backend=None,
    *,
    noise_scale: float = 1.0,
    idle_noise: bool = False,
    readout_flips: bool = True,
) -> StimTranslation:
    """Write a Clifford ISA circuit as a stim program with calibration-derived noise.

    Noise (each probability multiplied by ``noise_scale`` and clipped to its valid range):
    ``DEPOLARIZE1(1.5 r)`` after sx, x and id; ``DEPOLARIZE2(1.25 r)`` after cz; ``M(p)`` for
    measurement with readout error ``p`` (flips the recorded bit, not the qubit);
    ``X_ERROR`` after reset only if the target reports a reset error (IBM's do not).
    ``rz(k pi/2)`` is I/S/Z/S_DAG without error (it is virtual on IBM hardware). With
    ``idle_noise``, every delay of duration ``t`` on a qubit becomes the Pauli twirl of
    T1/T2 decay over ``t`` (``PAULI_CHANNEL_1``); an unscheduled circuit is scheduled ALAP
    first. Barriers become TICKs.

    Args:
        isa: Clifford ISA circuit (see :func:`qpuflow.transpile.check_clifford_isa`).
        backend: source of the calibration (``backend.target``); may be ``None`` only with
            ``noise_scale == 0``.
        noise_scale: multiplies every error probability; 0 gives the noiseless circuit.
        idle_noise: add T1/T2 noise on delays.
        readout_flips: write readout error as ``M(p)`` with the Target's (mean) error; False
            writes plain ``M`` (the caller applies asymmetric flips to the samples, see
            :func:`apply_readout`).

    Returns:
        The translation.

    Raises:
        NonCliffordError: the circuit is not a Clifford ISA circuit.
        ValueError: bad noise_scale, or noise requested without a backend.

    >>> qc = QuantumCircuit(3, 1)
    >>> _ = qc.sx(2), qc.rz(-math.pi / 2, 2), qc.cz(2, 0), qc.barrier(), qc.measure(0, 0)
    >>> tr = stim_translation(qc, noise_scale=0)
    >>> print(tr.text, end="")
    SQRT_X 1
    S_DAG 1
    CZ 1 0
    TICK
    M 0
    >>> tr.physical_qubits, dict(tr.clbit_records), tr.num_measurements
    ((0, 2), {('c', 0): 0}, 1)
    """
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
    noisy = noise_scale > 0
    if (noisy or idle_noise) and backend is None:
        raise ValueError("a backend is needed for noise; pass one or use noise_scale=0")
    idle = idle_noise and noisy
    keys, measured, has_delay = _walk(isa, idle)
    target = backend.target if backend is not None else None
    if idle and not has_delay:
        isa = schedule_alap(isa, target)
        keys, measured, _ = _walk(isa, idle)
    errors = _ErrorTable(target if noisy else None)

    # Each distinct key once, in order of first use (so an error is raised where the
    # instruction-by-instruction walk would raise it first).
    distinct = dict.fromkeys(keys)
    # Qubits that only ever see delays or barriers are not part of the experiment.
    used = sorted({p for key in distinct if key[0] not in _NO_QUBITS_USED for p in key[1]})
    compact = {p: str(i) for i, p in enumerate(used)}

    dt = target.dt if target is not None else None
    for key in distinct:
        distinct[key] = _stim_line(key, compact, errors, noise_scale, dt, readout_flips)
    clbit_records = _clbit_records(isa, measured)
    # Keys that write nothing (rz(0), a noiseless id, a noiseless delay) map to "".
    return StimTranslation(
        text="\n".join(filter(None, map(distinct.__getitem__, keys))) + "\n",
        physical_qubits=tuple(used),
        clbit_records=clbit_records,
        num_measurements=len(measured),
        measured_qubits=tuple(key[1][0] for key in keys if key[0] == "measure"),
    )


def _stim_line(key: tuple, compact: dict[int, str], errors: "_ErrorTable", noise_scale: float, dt: float | None,
               readout_flips: bool) -> str:
    """The stim text of one distinct instruction key (see :func:`stim_translation`); "" when
    it writes nothing (rz(0), a noiseless id or delay)."""
    name = key[0]
    if name == "barrier":
        return "TICK"
    phys = key[1]
    if name == "delay":
        return _idle_line(key, compact, errors, noise_scale, dt)
    qs = " ".join([compact[p] for p in phys])
    if name == "rz":
        k = key[2]
        return f"{_RZ_GATE[k]} {qs}" if k else ""
    if name in ("sx", "x", "id"):
        line = f"{'SQRT_X' if name == 'sx' else 'X'} {qs}" if name != "id" else ""
        p = _clip(ONE_QUBIT_DEPOLARIZING_FACTOR * noise_scale * errors.error(name, phys), 0.75)
        if p > 0:
            line = f"{line}\nDEPOLARIZE1({p!r}) {qs}" if line else f"DEPOLARIZE1({p!r}) {qs}"
        return line
    if name == "cz":
        p = _clip(TWO_QUBIT_DEPOLARIZING_FACTOR * noise_scale * errors.error(name, phys), 15 / 16)
        return f"CZ {qs}\nDEPOLARIZE2({p!r}) {qs}" if p > 0 else f"CZ {qs}"
    if name == "measure":
        p = _clip(noise_scale * errors.error(name, phys), 1.0) if readout_flips else 0.0
        return f"M({p!r}) {qs}" if p > 0 else f"M {qs}"
    p = _clip(noise_scale * errors.error(name, phys), 1.0)  # reset
    return f"R {qs}\nX_ERROR({p!r}) {qs}" if p > 0 else f"R {qs}"


def _idle_line(key: tuple, compact: dict[int, str], errors: "_ErrorTable", noise_scale: float,
               dt: float | None) -> str:
    """The Pauli twirl of T1/T2 decay over one delay, or "" (a qubit outside the experiment)."""
    p = key[1][0]
    if p not in compact:
        return ""
    t1, t2 = errors.relaxation(p)
    px, py, pz = (_clip(v * noise_scale, 1.0) for v in _idle_channel(_delay_seconds(key[3], key[2], dt), t1, t2))
    total = px + py + pz
    if total > 1.0:
        px, py, pz = px / total, py / total, pz / total
    return f"PAULI_CHANNEL_1({px!r},{py!r},{pz!r}) {compact[p]}" if total > 0 else ""


def _clbit_records(isa: QuantumCircuit, measured: list) -> dict[tuple[str, int], int]:
    """(register, bit) -> index of the measurement record that writes it."""
    clbit_name = {}
    for creg in isa.cregs:
        for b, cb in enumerate(creg):
            clbit_name.setdefault(cb, (creg.name, b))
    return {clbit_name[clbit]: n for n, clbit in enumerate(measured) if clbit in clbit_name}


def apply_readout(samples: np.ndarray, measured_qubits: tuple[int, ...], pairs, *, scale: float,
                  seed: int | None) -> np.ndarray:
    """Asymmetric readout error on sampled records: a true 0 reads 1 with P(1|0), a true 1
    reads 0 with P(0|1), per qubit (``pairs[q] = (P(1|0), P(0|1))``, times ``scale``).

    Readout error corrupts the recorded bit, not the qubit, so flipping the recorded bits of
    a noiseless-readout sample is exactly the device's channel; stim's ``M(p)`` can only flip
    both ways with the same probability.
    """
    if not measured_qubits:
        return samples
    p10 = np.array([min(0.5, pairs[q][0] * scale) for q in measured_qubits])
    p01 = np.array([min(0.5, pairs[q][1] * scale) for q in measured_qubits])
    rng = np.random.default_rng(None if seed is None else [int(seed) % 2**63, 7919])
    draws = rng.random(samples.shape)
    flip = np.where(samples, draws < p01, draws < p10)
    return samples ^ flip


def registers_from_samples(
    isa: QuantumCircuit, samples: np.ndarray, clbit_records: Mapping[tuple[str, int], int]
) -> dict[str, np.ndarray]:
    out = {}
    shots = samples.shape[0]
    for creg in isa.cregs:
        arr = np.zeros((shots, creg.size), dtype=bool)
        bits = [b for b in range(creg.size) if (creg.name, b) in clbit_records]
        if bits:
            arr[:, bits] = samples[:, [clbit_records[(creg.name, b)] for b in bits]]
        out[creg.name] = arr
    return out
