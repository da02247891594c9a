"""Noisy and noiseless simulation of ISA circuits, with noise taken from a backend's calibration.

Two paths produce the same output format (register name -> ``(shots, num_bits)`` bools,
column ``i`` = clbit ``i``, like SamplerV2's ``BitArray.to_bool_array(order="little")``):

* **stim** (Clifford ISA circuits, the default): the circuit is written as one stim program
  with a Pauli noise model derived from ``backend.target``. Target errors are average gate
  infidelities ``r``; the depolarizing probability with the same infidelity is ``1.5 r`` for
  one-qubit gates and ``1.25 r`` for two-qubit gates (this matches Aer's model). Readout
  error flips the recorded bit only. Sampling 4096 shots of a d=3 surface code takes
  milliseconds.
* **Aer** (anything else, e.g. rz(0.3)): ``NoiseModel.from_backend`` on the qubits the
  circuit uses. It includes thermal relaxation, is exact for any circuit and far slower.

:func:`preflight_check` runs the noiseless stim translation with the circuit's detectors
and observables attached and reports, exactly, every detector that is not deterministically
0 and every observable that is not deterministically its expected value.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import stim
from qiskit.circuit import QuantumCircuit
from qiskit.transpiler import PassManager, Target
from qiskit.transpiler.passes import ALAPScheduleAnalysis, PadDelay

from qpuflow.circuits import MeasurementMap, detection_events, records_from_registers
from qpuflow.transpile import NonCliffordError, TargetBackend, active_qubits, check_clifford_isa

__all__ = [
    "sample_isa",
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
    """

    text: str
    physical_qubits: tuple[int, ...]
    clbit_records: Mapping[tuple[str, int], int]
    num_measurements: int

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


def _delay_seconds(op, dt: float | None) -> float:
    unit = getattr(op, "unit", "dt")
    value = float(op.params[0])
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


def stim_translation(
    isa: QuantumCircuit,
    backend=None,
    *,
    noise_scale: float = 1.0,
    idle_noise: bool = False,
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

    Returns:
        The translation.

    Raises:
        NonCliffordError: the circuit is not a Clifford ISA circuit.
        ValueError: bad noise_scale, or noise requested without a backend.
    """
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
    noisy = noise_scale > 0
    if (noisy or idle_noise) and backend is None:
        raise ValueError("a backend is needed for noise; pass one or use noise_scale=0")
    check_clifford_isa(isa)
    target = backend.target if backend is not None else None
    if idle_noise and noisy and not any(i.operation.name == "delay" for i in isa.data):
        isa = _schedule(isa, target)
    errors = _ErrorTable(target if noisy else None)

    qidx = {q: i for i, q in enumerate(isa.qubits)}
    # Qubits that only ever see delays or barriers are not part of the experiment.
    used = sorted(
        {
            qidx[q]
            for inst in isa.data
            if inst.operation.name not in ("barrier", "delay")
            for q in inst.qubits
        }
    )
    compact = {p: i for i, p in enumerate(used)}
    clbit_name = {}
    for creg in isa.cregs:
        for b, cb in enumerate(creg):
            clbit_name.setdefault(cb, (creg.name, b))

    s1 = ONE_QUBIT_DEPOLARIZING_FACTOR * noise_scale
    s2 = TWO_QUBIT_DEPOLARIZING_FACTOR * noise_scale
    rz_gate = {1: "S", 2: "Z", 3: "S_DAG"}
    lines: list[str] = []
    clbit_records: dict[tuple[str, int], int] = {}
    n_meas = 0
    dt = target.dt if target is not None else None
    for inst in isa.data:
        op = inst.operation
        name = op.name
        phys = [qidx[q] for q in inst.qubits]
        if name == "barrier":
            lines.append("TICK")
            continue
        if name == "delay":
            if not (idle_noise and noisy):
                continue
            p = phys[0]
            if p not in compact:
                continue
            t1, t2 = errors.relaxation(p)
            px, py, pz = (
                _clip(v * noise_scale, 1.0) for v in _idle_channel(_delay_seconds(op, dt), t1, t2)
            )
            total = px + py + pz
            if total > 1.0:
                px, py, pz = px / total, py / total, pz / total
            if total > 0:
                lines.append(f"PAULI_CHANNEL_1({px!r},{py!r},{pz!r}) {compact[p]}")
            continue
        qs = " ".join(str(compact[p]) for p in phys)
        if name == "rz":
            k = round(float(op.params[0]) / (math.pi / 2)) % 4
            if k:
                lines.append(f"{rz_gate[k]} {qs}")
        elif name in ("sx", "x", "id"):
            if name != "id":
                lines.append(f"{'SQRT_X' if name == 'sx' else 'X'} {qs}")
            p = _clip(s1 * errors.error(name, tuple(phys)), 0.75)
            if p > 0:
                lines.append(f"DEPOLARIZE1({p!r}) {qs}")
        elif name == "cz":
            lines.append(f"CZ {qs}")
            p = _clip(s2 * errors.error(name, tuple(phys)), 15 / 16)
            if p > 0:
                lines.append(f"DEPOLARIZE2({p!r}) {qs}")
        elif name == "measure":
            p = _clip(noise_scale * errors.error(name, tuple(phys)), 1.0)
            lines.append(f"M({p!r}) {qs}" if p > 0 else f"M {qs}")
            clbit = inst.clbits[0]
            if clbit in clbit_name:
                clbit_records[clbit_name[clbit]] = n_meas
            n_meas += 1
        elif name == "reset":
            lines.append(f"R {qs}")
            p = _clip(noise_scale * errors.error(name, tuple(phys)), 1.0)
            if p > 0:
                lines.append(f"X_ERROR({p!r}) {qs}")
        else:  # pragma: no cover - check_clifford_isa admits nothing else
            raise NonCliffordError(f"instruction {name} has no stim translation")
    return StimTranslation(
        text="\n".join(lines) + "\n",
        physical_qubits=tuple(used),
        clbit_records=clbit_records,
        num_measurements=n_meas,
    )


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
# Aer fallback
# --------------------------------------------------------------------------------------


def _sub_target(target: Target, physical: tuple[int, ...]) -> Target:
    index = {p: i for i, p in enumerate(physical)}
    qps = target.qubit_properties
    sub = Target(
        num_qubits=len(physical),
        dt=target.dt,
        qubit_properties=[qps[p] for p in physical] if qps else None,
    )
    for name in target.operation_names:
        op = target.operation_from_name(name)
        if isinstance(op, type):
            continue
        props = target[name]
        if props is None or None in props:
            sub.add_instruction(op, props, name=name)
            continue
        kept = {
            tuple(index[q] for q in qargs): p
            for qargs, p in props.items()
            if all(q in index for q in qargs)
        }
        if kept:
            sub.add_instruction(op, kept, name=name)
    return sub


@functools.lru_cache(maxsize=32)
def _noise_model(backend, physical: tuple[int, ...]):
    from qiskit_aer.noise import NoiseModel

    # NoiseModel.from_backend on all 156 FakeFez qubits takes ~7 s and makes every run slow;
    # restricted to the qubits the circuit touches it is immediate.
    sub = TargetBackend(_sub_target(backend.target, physical), f"{backend.name}-sub")
    return NoiseModel.from_backend(sub)


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


def _sample_aer(
    isa: QuantumCircuit, backend, *, shots: int, seed: int | None, noise_scale: float
) -> dict[str, np.ndarray]:
    from qiskit_aer.primitives import SamplerV2

    if noise_scale not in (0, 1):
        raise ValueError(
            f"noise_scale={noise_scale} is only supported on the stim path (Clifford circuits); "
            "the Aer fallback uses the backend's noise model as is (1) or none (0)"
        )
    physical = tuple(active_qubits(isa)) or (0,)
    small = _compact_circuit(isa, physical)
    options: dict[str, Any] = {}
    if noise_scale == 1:
        if backend is None:
            raise ValueError("a backend is needed for noise; pass one or use noise_scale=0")
        options["backend_options"] = {"noise_model": _noise_model(backend, physical)}
    result = SamplerV2(seed=seed, options=options).run([small], shots=shots).result()
    data = result[0].data
    return {creg.name: np.asarray(data[creg.name].to_bool_array(order="little"), dtype=bool) for creg in isa.cregs}


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def _check_shots(shots: int) -> None:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be an int >= 1, got {shots!r}")


def sample_isa(
    isa: QuantumCircuit,
    backend,
    *,
    shots: int,
    seed: int | None = None,
    noise_scale: float = 1.0,
    idle_noise: bool = False,
) -> dict[str, np.ndarray]:
    """Sample an ISA circuit with the backend's noise.

    Clifford circuits go through stim (see :func:`stim_translation` for the noise model);
    anything else through Aer with ``NoiseModel.from_backend`` restricted to the used qubits
    (thermal relaxation included there, ``idle_noise`` is ignored and only
    ``noise_scale`` 0 or 1 is possible).

    Args:
        isa: transpiled circuit.
        backend: ``BackendV2`` whose ``target`` supplies the noise (may be ``None`` when
            ``noise_scale == 0``).
        shots: number of shots.
        seed: makes the result reproducible (same versions and machine).
        noise_scale: multiplies every error probability; 0 is noiseless.
        idle_noise: add T1/T2 noise on delays (scheduling the circuit ALAP if it has none).

    Returns:
        Register name -> bool array ``(shots, num_bits)``, column ``i`` = clbit ``i``;
        clbits never measured read 0, as on hardware.

    Raises:
        ValueError: bad shots or noise_scale, or noise asked for without a backend.
    """
    _check_shots(shots)
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
    try:
        check_clifford_isa(isa)
    except NonCliffordError:
        return _sample_aer(isa, backend, shots=int(shots), seed=seed, noise_scale=noise_scale)
    tr = stim_translation(isa, backend, noise_scale=noise_scale, idle_noise=idle_noise)
    sampler = tr.circuit().compile_sampler(seed=seed)
    samples = sampler.sample(int(shots))
    return _registers_from_samples(isa, samples, tr.clbit_records)


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
    regs = {c.name: c.size for c in isa.cregs}
    problems = []
    for name, size in mmap.registers:
        if regs.get(name) != size:
            problems.append(
                f"register {name!r} of the measurement map ({size} bits) is "
                f"{'missing' if name not in regs else f'{regs[name]} bits'} in the circuit"
            )
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
