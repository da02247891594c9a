"""Noisy and noiseless simulation of ISA circuits, with noise taken from a backend's calibration.

Three paths produce the same output format (register name -> ``(shots, num_bits)`` bools,
column ``i`` = clbit ``i``, like SamplerV2's ``BitArray.to_bool_array(order="little")``):

* **product** (noisy circuits without any instruction on two or more qubits, barriers
  aside, e.g. readout and T1 probes): every measured qubit is simulated on its own with
  Aer and the backend's full noise model restricted to that qubit (depolarizing plus
  thermal relaxation on gates, thermal relaxation on ``delay`` through Aer's
  ``RelaxationNoisePass``, readout error), and the per-qubit samples are put back into the
  registers. Without two-qubit gates (and with no crosstalk in the model) the qubits are
  independent, so this is exact in distribution, and a qubit left waiting in |1> really
  decays to |0> (stim's Pauli twirl of the same decay would go to 1/2).
* **stim** (other Clifford ISA circuits, the default): the circuit is written as one stim
  program with a Pauli noise model derived from ``backend.target``. Target errors are
  average gate infidelities ``r``; the depolarizing probability with the same infidelity is
  ``1.5 r`` for one-qubit gates and ``1.25 r`` for two-qubit gates (this matches Aer's
  model). Readout error flips the recorded bit only. Sampling 4096 shots of a d=3 surface
  code takes milliseconds.
* **Aer** (anything else, e.g. rz(0.3) next to a cz): ``NoiseModel.from_backend`` on the
  qubits the circuit uses. It includes thermal relaxation, is exact for any circuit and
  far slower.

``noise_scale`` multiplies error probabilities on the stim path; on the Aer and product
paths it scales the Target instead (:func:`scaled_target`: errors times the scale, T1 and
T2 divided by it), which is the same to first order.

:func:`drifted_target` gives the calibration a device has *now* rather than the one it
reported: per qubit and per time period, T1/T2 shorter or longer and errors larger or
smaller by a random factor. The local provider samples with it when drift is configured
(see :mod:`qpuflow.providers.local`); the backend's reported calibration stays the static
one, so the drift is what a probe job measures and a calibration-based choice cannot see.

:func:`preflight_check` runs the noiseless stim translation with the circuit's detectors
and observables attached and reports, exactly, every detector that is not deterministically
0 and every observable that is not deterministically its expected value.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import stim
from qiskit.circuit import ClassicalRegister, ControlFlowOp, QuantumCircuit
from qiskit.providers import QubitProperties
from qiskit.transpiler import InstructionProperties, PassManager, Target
from qiskit.transpiler.passes import ALAPScheduleAnalysis, PadDelay

from qpuflow.circuits import (MeasurementMap, detection_events, memory_circuit, observable_flips,
                              records_from_registers, registers_from_records)
from qpuflow.transpile import (
    CLIFFORD_ISA_GATES,
    NonCliffordError,
    TargetBackend,
    active_qubits,
    check_clifford_isa,
    readout_pairs,
)

__all__ = [
    "sample_isa",
    "is_product_circuit",
    "drifted_target",
    "drifted_target_at",
    "drift_factors",
    "scaled_target",
    "preflight_check",
    "stim_translation",
    "StimTranslation",
    "ONE_QUBIT_DEPOLARIZING_FACTOR",
    "TWO_QUBIT_DEPOLARIZING_FACTOR",
]

# stim's DEPOLARIZE1(p)/DEPOLARIZE2(p) apply a non-identity Pauli with total probability p,
# whose average gate infidelity is r = p * d / (d + 1) (d = 2, 4). The Target reports r,
# hence p = 1.5 r and p = 1.25 r: the same channel Aer builds from the same numbers.
ONE_QUBIT_DEPOLARIZING_FACTOR = 1.5
TWO_QUBIT_DEPOLARIZING_FACTOR = 1.25

_PREFLIGHT_SHOTS = 256


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


def _schedule(isa: QuantumCircuit, target: Target) -> QuantumCircuit:
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
        isa = _schedule(isa, target)
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


def _registers_from_samples(
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


# --------------------------------------------------------------------------------------
# Target copies: restricted, scaled, drifted
# --------------------------------------------------------------------------------------

# Largest meaningful errors: a readout error of 1/2 is a coin toss, and no channel on
# d-dimensional states has an average gate infidelity above d / (d + 1).
_MAX_READOUT_ERROR = 0.5


def _scaled_error(name: str, err: float | None, factor: float, num_qubits: int) -> float | None:
    if err is None or factor == 1.0:
        return err
    dim = 2**num_qubits
    cap = _MAX_READOUT_ERROR if name == "measure" else dim / (dim + 1)
    # An error already at or above the cap (a dead coupler reported as 1.0) stays as reported.
    return min(float(err) * factor, max(cap, float(err)))


def _scaled_qubit(qp, factor: float):
    if qp is None or factor == 1.0:
        return qp
    t1 = getattr(qp, "t1", None)
    t2 = getattr(qp, "t2", None)
    # T1 and T2 are divided by the same factor, so T2 <= 2 T1 holds wherever it was reported.
    return QubitProperties(
        t1=None if t1 is None else t1 / factor,
        t2=None if t2 is None else t2 / factor,
        frequency=getattr(qp, "frequency", None),
    )


def _sub_target(
    target: Target,
    physical: tuple[int, ...] | None = None,
    factors: Mapping[int, float] | None = None,
    t1_factors: Mapping[int, float] | None = None,
) -> Target:
    """Copy ``target`` onto ``physical`` (renumbered 0, 1, ...), with per-qubit noise factors.

    ``physical=None`` keeps every qubit and its number. A qubit with factor ``f`` gets T1
    and T2 divided by ``f``; an instruction on qubits ``q_1..q_k`` gets its error multiplied
    by the geometric mean of their factors (``f`` for one qubit, ``sqrt(f_a f_b)`` for two),
    clipped to 1/2 for readout and to ``d / (d + 1)`` for gates. Missing factors are 1.
    ``t1_factors``, if given, divide T1 and T2 instead of ``factors`` (a defect event takes
    a qubit's T1 without touching its gate errors).
    """
    whole = physical is None
    if whole:
        physical = tuple(range(target.num_qubits))
    factors = factors or {}
    index = {p: i for i, p in enumerate(physical)}
    qps = target.qubit_properties
    sub = Target(
        description=target.description,
        num_qubits=len(physical),
        dt=target.dt,
        granularity=target.granularity,
        min_length=target.min_length,
        pulse_alignment=target.pulse_alignment,
        acquire_alignment=target.acquire_alignment,
        qubit_properties=[_scaled_qubit(qps[p], (t1_factors if t1_factors is not None else factors).get(p, 1.0))
                          for p in physical] if qps else None,
        concurrent_measurements=target.concurrent_measurements if whole else None,
    )
    for name in target.operation_names:
        op = target.operation_from_name(name)
        if isinstance(op, type):  # control flow: kept in a full copy, useless to a noise model
            if whole:
                sub.add_instruction(op, name=name)
            continue
        props = target[name]
        if props is None or None in props:
            sub.add_instruction(op, props, name=name)
            continue
        kept = {}
        for qargs, prop in props.items():
            if not all(q in index for q in qargs):
                continue
            if prop is not None and factors:
                factor = math.prod(factors.get(q, 1.0) for q in qargs) ** (1.0 / len(qargs))
                error = _scaled_error(name, prop.error, factor, len(qargs))
                if error != prop.error:
                    prop = InstructionProperties(duration=prop.duration, error=error)
            kept[tuple(index[q] for q in qargs)] = prop
        if kept:
            sub.add_instruction(op, kept, name=name)
    return sub


def _check_factor(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def scaled_target(target: Target, scale: float) -> Target:
    """A copy of ``target`` with every error ``scale`` times larger and T1, T2 ``scale`` times shorter.

    Errors are clipped (readout to 1/2, gates to ``d / (d + 1)``); scale 1 copies the
    Target unchanged. This is how ``noise_scale`` reaches Aer's noise model, which is built
    from a Target rather than from probabilities.

    >>> from qpuflow.transpile import load_backend
    >>> t = load_backend("fake_fez").target
    >>> s = scaled_target(t, 2.0)
    >>> s["sx"][(3,)].error == 2 * t["sx"][(3,)].error
    True
    >>> s.qubit_properties[3].t1 == t.qubit_properties[3].t1 / 2
    True

    Raises:
        ValueError: ``scale`` is not a finite number > 0.
    """
    scale = _check_factor("scale", scale)
    if scale == 0:
        raise ValueError("scale must be > 0: a noiseless circuit needs no Target (use noise_scale=0)")
    return _sub_target(target, None, {q: scale for q in range(target.num_qubits)})


def drift_factors(num_qubits: int, *, sigma: float, seed: int, bucket: int) -> np.ndarray:
    """Per-qubit drift factors ``f_q = exp(sigma z_q)``, ``z_q ~ N(0, 1)`` seeded by ``(seed, bucket, q)``.

    Qubit ``q``'s factor depends on ``(seed, bucket, q)`` only, not on how many are asked for.

    >>> f = drift_factors(3, sigma=0.2, seed=1, bucket=5)
    >>> bool((f == drift_factors(5, sigma=0.2, seed=1, bucket=5)[:3]).all())
    True
    >>> drift_factors(2, sigma=0.0, seed=1, bucket=5).tolist()
    [1.0, 1.0]
    """
    sigma = _check_factor("drift sigma", sigma)
    for name, value in (("drift seed", seed), ("drift bucket", bucket)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if sigma == 0:
        return np.ones(num_qubits)
    z = np.array([np.random.default_rng([int(seed), int(bucket), q]).standard_normal() for q in range(num_qubits)])
    return np.exp(sigma * z)


def drifted_target(target: Target, *, sigma: float, seed: int, bucket: int) -> Target:
    """The calibration a device has in time period ``bucket``, drifted from the reported ``target``.

    Each qubit ``q`` gets a factor ``f_q`` (:func:`drift_factors`): T1 and T2 divided by
    ``f_q``, readout and one-qubit gate errors multiplied by it (clipped to 1/2 for readout,
    ``2/3`` for gates), two-qubit gate errors multiplied by ``sqrt(f_a f_b)`` (clipped to
    ``4/5``; a coupler reported dead stays dead). Durations are unchanged. ``sigma = 0``
    gives an equal copy. Pure: the same ``(target, sigma, seed, bucket)`` gives the same
    result in any process.

    This is what a job *experiences*; the calibration the backend *reports* stays ``target``.

    >>> from qpuflow.transpile import load_backend
    >>> t = load_backend("fake_fez").target
    >>> d = drifted_target(t, sigma=0.3, seed=0, bucket=7)
    >>> f = drift_factors(t.num_qubits, sigma=0.3, seed=0, bucket=7)
    >>> bool(abs(d.qubit_properties[5].t1 * f[5] - t.qubit_properties[5].t1) < 1e-15)
    True
    >>> bool(abs(d["measure"][(5,)].error - t["measure"][(5,)].error * f[5]) < 1e-15)
    True

    Args:
        target: the reported calibration.
        sigma: spread of ``log f_q``; 0 means no drift.
        seed: drift seed (an int >= 0).
        bucket: time period (an int >= 0), e.g. ``floor(epoch / period)``.

    Raises:
        ValueError: negative or non-finite sigma, or a negative seed or bucket.
    """
    f = drift_factors(target.num_qubits, sigma=sigma, seed=seed, bucket=bucket)
    return _sub_target(target, None, {q: float(v) for q, v in enumerate(f) if v != 1.0})


def drifted_target_at(target: Target, model: Any, epoch: float,
                      readout_pairs: tuple[tuple[float, float], ...] | None = None,
                      ) -> tuple[Target, tuple[tuple[float, float], ...] | None]:
    """The device a job at ``epoch`` runs on, under a :class:`qpuflow.drift.DriftModel`: slow
    factors on every error (T1, T2 divided by them), defect events dividing T1 and T2 further
    and raising P(0|1) through decay during readout. Returns the Target and the per-qubit
    ``(P(1|0), P(0|1))`` pairs (drifted the same way), if the device reports them.

    >>> from qpuflow.drift import DriftModel
    >>> from qpuflow.transpile import load_backend
    >>> t = load_backend("fake_fez").target
    >>> d, _ = drifted_target_at(t, DriftModel(), 1e9)
    >>> d.qubit_properties[5].t1 == t.qubit_properties[5].t1
    True
    """
    from qpuflow.drift import readout_decay_increase

    n = target.num_qubits
    slow = model.slow_factors(n, epoch)
    deep = model.defect_factors(n, epoch)
    factors = {q: float(v) for q, v in enumerate(slow) if v != 1.0}
    t1 = {q: float(slow[q] * deep[q]) for q in range(n) if slow[q] * deep[q] != 1.0}
    out = _sub_target(target, None, factors, t1)
    qps = target.qubit_properties or [None] * n
    extra = {}
    for q in np.flatnonzero(deep > 1):
        q = int(q)
        before = getattr(qps[q], "t1", None)
        measure = target["measure"].get((q,)) if "measure" in target.operation_names else None
        duration = getattr(measure, "duration", None)
        if before and duration:
            extra[q] = readout_decay_increase(duration, before / slow[q], before / (slow[q] * deep[q]))
            prop = out["measure"][(q,)]
            if prop is not None and prop.error is not None:
                out.update_instruction_properties("measure", (q,), InstructionProperties(
                    duration=prop.duration, error=min(_MAX_READOUT_ERROR, prop.error + extra[q] / 2)))
    pairs = None
    if readout_pairs is not None:
        pairs = tuple((min(0.5, a * slow[q]), min(0.5, b * slow[q] + extra.get(q, 0.0)))
                      for q, (a, b) in enumerate(readout_pairs))
    return out, pairs


# --------------------------------------------------------------------------------------
# Aer: whole circuit, or one qubit at a time
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _noise_model(backend, physical: tuple[int, ...], scale: float = 1.0, readout: bool = True):
    from qiskit_aer.noise import NoiseModel

    # NoiseModel.from_backend on all 156 FakeFez qubits takes ~7 s and makes every run slow;
    # restricted to the qubits the circuit touches it is immediate.
    factors = {p: scale for p in physical} if scale != 1.0 else None
    sub = TargetBackend(_sub_target(backend.target, physical, factors), f"{backend.name}-sub")
    return NoiseModel.from_backend(sub, readout_error=readout)


def _compact_circuit(isa: QuantumCircuit, physical: tuple[int, ...]) -> QuantumCircuit:
    index = {p: i for i, p in enumerate(physical)}
    qidx = {q: i for i, q in enumerate(isa.qubits)}
    out = QuantumCircuit(len(physical), name=isa.name)
    for creg in isa.cregs:
        out.add_register(creg)
    for inst in isa.data:
        qs = [qidx[q] for q in inst.qubits]
        if inst.operation.name == "barrier":
            qs = [q for q in qs if q in index]
            if not qs:
                continue
        elif any(q not in index for q in qs):
            continue  # delays on idle qubits
        out.append(inst.operation, [out.qubits[index[q]] for q in qs], inst.clbits)
    return out


def _need_backend(backend) -> None:
    if backend is None:
        raise ValueError("a backend is needed for noise; pass one or use noise_scale=0")


def _sample_aer(
    isa: QuantumCircuit, backend, *, shots: int, seed: int | None, noise_scale: float
) -> dict[str, np.ndarray]:
    from qiskit_aer.primitives import SamplerV2

    physical = tuple(active_qubits(isa)) or (0,)
    small = _compact_circuit(isa, physical)
    options: dict[str, Any] = {}
    if noise_scale > 0:
        _need_backend(backend)
        options["backend_options"] = {"noise_model": _noise_model(backend, physical, float(noise_scale))}
    result = SamplerV2(seed=seed, options=options).run([small], shots=shots).result()
    data = result[0].data
    return {creg.name: np.asarray(data[creg.name].to_bool_array(order="little"), dtype=bool) for creg in isa.cregs}


def is_product_circuit(circuit: QuantumCircuit) -> bool:
    """True if no instruction but a barrier acts on two or more qubits (and there is no control flow).

    Such a circuit's qubits evolve independently, so they can be simulated one at a time.

    >>> qc = QuantumCircuit(2, 2)
    >>> _ = qc.x(0), qc.barrier(), qc.measure([0, 1], [0, 1])
    >>> is_product_circuit(qc)
    True
    >>> _ = qc.cz(0, 1)
    >>> is_product_circuit(qc)
    False
    """
    for inst in circuit.data:
        op = inst.operation
        if op.name == "barrier":
            continue
        if isinstance(op, ControlFlowOp) or len(inst.qubits) != 1:
            return False
    return True


def _qubit_seed(seed: int | None, physical: int) -> int | None:
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed) % 2**63, physical]).generate_state(1)[0] >> 1)


def _sample_product(
    isa: QuantumCircuit, backend, *, shots: int, seed: int | None, noise_scale: float, idle_noise: bool
) -> dict[str, np.ndarray]:
    from qiskit_aer.primitives import SamplerV2

    _need_backend(backend)
    pairs = readout_pairs(backend)
    if idle_noise and not any(i.operation.name == "delay" for i in isa.data):
        isa = _schedule(isa, backend.target)
    qidx = {q: i for i, q in enumerate(isa.qubits)}
    # One single-qubit circuit per measured qubit; measurement k of a qubit goes to its bit k.
    ops: dict[int, list] = {}
    meas_count: dict[int, int] = {}
    writer: dict[Any, tuple[int, int]] = {}  # clbit -> (qubit, k) of its last measurement
    for inst in isa.data:
        if inst.operation.name == "barrier":
            continue
        p = qidx[inst.qubits[0]]
        ops.setdefault(p, []).append(inst.operation)
        if inst.operation.name == "measure":
            k = meas_count.get(p, 0)
            meas_count[p] = k + 1
            writer[inst.clbits[0]] = (p, k)
    samples: dict[int, np.ndarray] = {}
    for p in sorted(meas_count):
        creg = ClassicalRegister(meas_count[p], "m")
        qc = QuantumCircuit(1, name=f"{isa.name}-q{p}")
        qc.add_register(creg)
        k = 0
        for op in ops[p]:
            if op.name == "measure":
                qc.append(op, [0], [creg[k]])
                k += 1
            else:
                qc.append(op, [0])
        # Density matrix: a 1-qubit state, no per-shot trajectories of the noise (~3x faster
        # than statevector here). Shot branching is off: it dropped readout errors when tried.
        options = {"backend_options": {
            "noise_model": _noise_model(backend, (p,), float(noise_scale), readout=pairs is None),
            "method": "density_matrix",
        }}
        result = SamplerV2(seed=_qubit_seed(seed, p), options=options).run([qc], shots=shots).result()
        samples[p] = np.asarray(result[0].data["m"].to_bool_array(order="little"), dtype=bool)
        if pairs is not None:  # the qubit's asymmetric readout, on the recorded bits
            seed_p = None if seed is None else _qubit_seed(seed, p)
            samples[p] = apply_readout(samples[p], (p,) * meas_count[p], pairs, scale=noise_scale, seed=seed_p)
    out = {}
    for creg in isa.cregs:
        arr = np.zeros((shots, creg.size), dtype=bool)
        for b, clbit in enumerate(creg):
            if clbit in writer:
                p, k = writer[clbit]
                arr[:, b] = samples[p][:, k]
        out[creg.name] = arr
    return out


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def _check_shots(shots: int) -> None:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be an int >= 1, got {shots!r}")


_METHODS = ("auto", "product", "stim", "aer")


def sample_isa(
    isa: QuantumCircuit,
    backend,
    *,
    shots: int,
    seed: int | None = None,
    noise_scale: float = 1.0,
    idle_noise: bool = False,
    method: str = "auto",
) -> dict[str, np.ndarray]:
    """Sample an ISA circuit with the backend's noise.

    With ``method="auto"``: a noisy circuit without multi-qubit instructions
    (:func:`is_product_circuit`) is sampled qubit by qubit with Aer and the full noise
    model (thermal relaxation on gates and on every ``delay``, so a waiting |1> decays to
    |0>); other Clifford circuits go through stim (see :func:`stim_translation` for the
    noise model); anything else through Aer with ``NoiseModel.from_backend`` restricted to
    the used qubits. A noiseless circuit is never sampled qubit by qubit.

    Args:
        isa: transpiled circuit.
        backend: ``BackendV2`` whose ``target`` supplies the noise (may be ``None`` when
            ``noise_scale == 0``). To simulate a drifted device, pass a
            :class:`~qpuflow.transpile.TargetBackend` around :func:`drifted_target`.
        shots: number of shots.
        seed: makes the result reproducible (same versions and machine).
        noise_scale: multiplies every error probability (stim), or scales the Target
            (Aer and product paths, :func:`scaled_target`); 0 is noiseless.
        idle_noise: add T1/T2 noise on idle periods: the circuit is scheduled ALAP if it
            has no delays. On the stim path delays are noiseless without it; on the product
            path explicit delays always relax; the whole-circuit Aer path ignores it.
        method: ``"auto"``, or force ``"product"`` (needs a product circuit and noise),
            ``"stim"`` (needs a Clifford circuit) or ``"aer"``.

    Returns:
        Register name -> bool array ``(shots, num_bits)``, column ``i`` = clbit ``i``;
        clbits never measured read 0, as on hardware.

    Raises:
        ValueError: bad shots, noise_scale or method, noise asked for without a backend, or
            a forced method that does not apply.
        NonCliffordError: ``method="stim"`` on a non-Clifford circuit.
    """
    _check_shots(shots)
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}; got {method!r}")
    shots = int(shots)
    uniform = uniform_model_circuit(isa, backend, noise_scale=noise_scale) if method == "auto" else None
    if uniform is not None:
        records = _compile_and_sample(uniform, seed=seed, shots=shots)
        return registers_from_records(records, _mmap_of(isa))
    if method == "product" or (method == "auto" and noise_scale > 0 and is_product_circuit(isa)):
        if not is_product_circuit(isa):
            raise ValueError("method='product' needs a circuit without multi-qubit instructions or control flow")
        if noise_scale == 0:
            raise ValueError("method='product' is for noisy sampling; use noise_scale > 0")
        return _sample_product(isa, backend, shots=shots, seed=seed, noise_scale=noise_scale, idle_noise=idle_noise)
    if method == "aer":
        return _sample_aer(isa, backend, shots=shots, seed=seed, noise_scale=noise_scale)
    # The device's asymmetric readout (P(0|1) about 3x P(1|0) on Heron) instead of the Target's
    # mean, when the backend reports it: sampled with noiseless readout, recorded bits flipped.
    pairs = readout_pairs(backend) if backend is not None and noise_scale > 0 else None
    flips = pairs is None
    if method == "auto":
        # stim_translation checks the circuit while it walks it (a separate
        # check_clifford_isa would cost as much as the translation); only idle noise without
        # a backend is refused before the circuit is looked at, so check first there.
        try:
            if idle_noise and backend is None:
                check_clifford_isa(isa)
            tr = stim_translation(isa, backend, noise_scale=noise_scale, idle_noise=idle_noise, readout_flips=flips)
        except NonCliffordError:
            try:
                check_clifford_isa(isa)
            except NonCliffordError:
                return _sample_aer(isa, backend, shots=shots, seed=seed, noise_scale=noise_scale)
            raise  # a Clifford ISA instruction stim_translation cannot write
    else:
        tr = stim_translation(isa, backend, noise_scale=noise_scale, idle_noise=idle_noise, readout_flips=flips)
    samples = _compile_and_sample(tr.circuit(), seed=seed, shots=shots)
    if pairs is not None:
        samples = apply_readout(samples, tr.measured_qubits, pairs, scale=noise_scale, seed=seed)
    return _registers_from_samples(isa, samples, tr.clbit_records)


def uniform_model_circuit(isa: QuantumCircuit, backend, *, noise_scale: float = 1.0) -> stim.Circuit | None:
    """stim's uniform circuit-level model of ``isa``'s memory experiment, for a
    :class:`~qpuflow.transpile.UniformNoiseBackend` (see there); None for any other backend,
    for a noiseless run, and for circuits that are not a generated memory experiment.

    The measurement record of the returned circuit is the logical circuit's, so
    :func:`~qpuflow.circuits.registers_from_records` turns its samples into the ISA circuit's
    registers. Idle noise is part of the model (data depolarization before each round).
    """
    from qpuflow.transpile import UniformNoiseBackend

    experiment = (isa.metadata or {}).get("experiment")
    if not isinstance(backend, UniformNoiseBackend) or noise_scale == 0 or backend.p == 0 or not experiment:
        return None
    model = uniform_model_from(experiment, backend.p * noise_scale)
    if model is None or not _is_unaltered_experiment(isa, model):
        return None
    return model


def _is_unaltered_experiment(isa: QuantumCircuit, model: stim.Circuit) -> bool:
    """True when ``isa`` is its experiment's circuit without SWAPs and, run without noise,
    fires no detector and reads the prepared logical value, so that the uniform model
    describes it (a circuit with an injected fault, or a routed one, is simulated as it is)."""
    cx = model.num_measurements and sum(len(i.targets_copy()) // 2 for i in model.flattened() if i.name == "CX")
    if isa.count_ops().get("cz", 0) != cx:
        return False
    mmap = _mmap_of(isa)
    tr = stim_translation(isa, None, noise_scale=0)
    reference = _registers_from_samples(isa, tr.circuit().reference_sample()[None, :], tr.clbit_records)
    return not detection_events(reference, mmap).any() and not observable_flips(reference, mmap).any()


def uniform_model_from(experiment: Mapping[str, Any], p: float) -> stim.Circuit | None:
    """The noisy generated circuit of an ISA's ``metadata["experiment"]`` at uniform ``p``
    (None for experiments stim does not generate, such as native heavy-hex layouts)."""
    if experiment.get("kind") not in ("surface_code", "repetition_code") or experiment.get("layout", "routed") != "routed":
        return None
    return memory_circuit(experiment["kind"], distance=int(experiment["distance"]), rounds=int(experiment["rounds"]),
                          logical_state=str(experiment["logical_state"]), uniform_p=min(p, 0.5))


_STIM_FIRST_USE = threading.Lock()
_stim_ready = False


def _compile_and_sample(circuit: Any, *, seed: int, shots: int) -> np.ndarray:
    """``circuit.compile_sampler(seed).sample(shots)``, the process's first call alone.

    stim imports Python modules lazily from inside its C++ code on first use; two threads doing
    that at once (two `simulate_local_job` rules in one Snakemake process with --cores 2)
    deadlock, one holding the GIL and the other the import. After the first call it is safe.
    """
    global _stim_ready
    if not _stim_ready:
        with _STIM_FIRST_USE:
            if not _stim_ready:
                samples = circuit.compile_sampler(seed=seed).sample(shots)
                _stim_ready = True
                return samples
    return circuit.compile_sampler(seed=seed).sample(shots)


def _mmap_of(isa: QuantumCircuit) -> MeasurementMap:
    meta = isa.metadata or {}
    if "measurement_map" not in meta:
        raise ValueError(
            f"circuit {isa.name!r} has no 'measurement_map' in its metadata; build it with "
            "qpuflow.circuits.stim_to_qiskit / memory_experiment and transpile with transpile_isa"
        )
    return MeasurementMap.from_json(meta["measurement_map"])


def _describe(kind: str, j: int, indices, mmap: MeasurementMap) -> str:
    return f"{kind} {j} (records {mmap.describe_records(indices)})"


def preflight_check(isa: QuantumCircuit, backend=None) -> list[str]:
    """Check that the noiseless circuit gives every detector 0 and every observable its ideal value.

    For Clifford circuits the check is exact: the noiseless stim translation gets the
    detectors and observables of ``isa.metadata["measurement_map"]`` attached (through the
    classical bits, so a reordered measurement is handled), stim's error analysis lists every
    detector or observable that a random measurement outcome can flip (non-deterministic),
    and stim's reference sample gives the value of the deterministic ones. Non-Clifford
    circuits are sampled noiselessly with Aer (256 shots) instead.

    Args:
        isa: transpiled circuit whose metadata holds the measurement map.
        backend: unused for Clifford circuits; accepted so callers need not care.

    Returns:
        Human-readable problems; empty means the circuit may be submitted.
    """
    try:
        mmap = _mmap_of(isa)
    except ValueError as exc:
        return [str(exc)]
    problems = _register_problems(isa, mmap)
    if problems:
        return problems

    try:
        tr = stim_translation(isa, None, noise_scale=0.0)
    except NonCliffordError:
        return _preflight_sampled(isa, mmap)

    rec = []
    for k, (name, bit) in enumerate(mmap.record):
        if (name, bit) not in tr.clbit_records:
            problems.append(f"record {k} ({name}[{bit}]) is never measured in the circuit")
        rec.append(tr.clbit_records.get((name, bit)))
    if problems:
        return problems

    n = tr.num_measurements
    lines = [tr.text]
    groups = [("detector", j, d) for j, d in enumerate(mmap.detectors)] + [
        ("observable", j, o) for j, o in enumerate(mmap.observables)
    ]
    # Observables are attached as extra detectors: stim refuses to analyse a circuit with a
    # non-deterministic observable, but reports gauge detectors when asked to.
    for _, _, idx in groups:
        lines.append("DETECTOR " + " ".join(f"rec[{rec[i] - n}]" for i in idx))
    circuit = stim.Circuit("\n".join(lines))
    dem = circuit.detector_error_model(allow_gauge_detectors=True)
    random = set()
    for inst in dem.flattened():
        if inst.type == "error":
            for t in inst.targets_copy():
                if t.is_relative_detector_id():
                    random.add(t.val)
    ref = circuit.reference_sample()
    for d, (kind, j, idx) in enumerate(groups):
        label = _describe(kind, j, idx, mmap)
        if d in random:
            problems.append(f"{label} is not deterministic")
            continue
        value = int(np.bitwise_xor.reduce(ref[[rec[i] for i in idx]])) if idx else 0
        want = 0 if kind == "detector" else mmap.expected_observables[j]
        if value != want:
            if kind == "detector":
                problems.append(f"{label} is always 1 but must be 0")
            else:
                problems.append(f"{label} is {value} but the prepared state needs {want}")
    return problems



def _register_problems(isa: QuantumCircuit, mmap: MeasurementMap) -> list[str]:
    """The measurement map's registers that the circuit lacks or has at another size."""
    regs = {c.name: c.size for c in isa.cregs}
    return [f"register {name!r} of the measurement map ({size} bits) is "
            f"{'missing' if name not in regs else f'{regs[name]} bits'} in the circuit"
            for name, size in mmap.registers if regs.get(name) != size]

def _preflight_sampled(isa: QuantumCircuit, mmap: MeasurementMap) -> list[str]:
    # Aer gives samples, not an analysis: a random detector is caught with probability
    # 1 - 2^-(shots-1), which is certainty for practical purposes.
    regs = _sample_aer(isa, None, shots=_PREFLIGHT_SHOTS, seed=1234, noise_scale=0)
    dets = detection_events(regs, mmap)
    problems = []
    for j, d in enumerate(mmap.detectors):
        col = dets[:, j]
        if col.any():
            what = "is not deterministic" if not col.all() else "is always 1 but must be 0"
            problems.append(f"{_describe('detector', j, d, mmap)} {what}")
    records = records_from_registers(regs, mmap)
    for j, o in enumerate(mmap.observables):
        col = np.bitwise_xor.reduce(records[:, list(o)], axis=1) if o else np.zeros(len(records), bool)
        want = mmap.expected_observables[j]
        if not (col == want).all():
            got = "random" if col.any() and not col.all() else str(int(col[0]))
            problems.append(
                f"{_describe('observable', j, o, mmap)} is {got} but the prepared state needs {want}"
            )
    return problems
