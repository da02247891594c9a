"""The backends qpuflow knows: IBM's fake backends (the local simulator's devices), the
synthetic uniform-noise backends for science checks, a device at its median calibration, and
the couplers a circuit may use (never a dead one).
"""

from __future__ import annotations

import difflib
import functools
import math
import warnings
from typing import Any

import numpy as np
from qiskit.circuit import Delay, Measure, Parameter, Reset
from qiskit.circuit.library import CZGate, RZGate, SXGate, XGate
from qiskit.providers import BackendV2, Options, QubitProperties
from qiskit.transpiler import InstructionProperties, Target
from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

from qpuflow.backend_names import fake_backend_names, median_backend_base, synthetic_backend_spec
from qpuflow.errors import QpuflowError

# stim's DEPOLARIZE1(p)/DEPOLARIZE2(p) apply a non-identity Pauli with total probability p,
# whose average gate infidelity is r = p * d / (d + 1) (d = 2, 4). The Target reports r,
# hence p = 1.5 r and p = 1.25 r: the same channel Aer builds from the same numbers.
ONE_QUBIT_DEPOLARIZING_FACTOR = 1.5
TWO_QUBIT_DEPOLARIZING_FACTOR = 1.25

# A coupler whose reported two-qubit error is at least this is treated as broken: an error
# of 0.5 already randomises the pair, and IBM marks dead couplers with exactly 1.0.
DEAD_COUPLER_ERROR = 0.5


class UnknownBackendError(QpuflowError, ValueError):
    """The backend name is not one of the fake backends shipped with qiskit-ibm-runtime."""


@functools.lru_cache(maxsize=1)
def _fake_backend_names() -> tuple[str, ...]:
    # One source of truth with config validation: read from the package's data folders.
    return tuple(fake_backend_names())


def available_backends() -> list[str]:
    """Names of the fake backends of ``qiskit_ibm_runtime.fake_provider``, sorted.

    >>> "fake_fez" in available_backends()
    True
    """
    return list(_fake_backend_names())


@functools.lru_cache(maxsize=None)
def load_backend(name: str):
    """Return the backend called ``name`` (cached per process).

    Args:
        name: a fake backend, e.g. ``"fake_fez"`` (see :func:`available_backends`), or a
            synthetic uniform-noise backend ``uniform_grid_p<digits>`` /
            ``uniform_line_p<digits>`` with ``p = 0.<digits>`` (see :class:`UniformNoiseBackend`).

    Returns:
        A ``BackendV2`` with the device's calibration data.

    Raises:
        UnknownBackendError: no backend has that name; the message lists close and
            available names.
    """
    try:
        spec = synthetic_backend_spec(name)
    except ValueError as exc:
        raise UnknownBackendError(str(exc)) from None
    if spec is not None:
        return UniformNoiseBackend(name, topology=spec[0], p=spec[1])
    base = median_backend_base(name)
    if base is not None:
        return median_backend(load_backend(base))
    names = _fake_backend_names()
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownBackendError(
            f"unknown backend {name!r}; {hint}available fake backends include "
            f"{', '.join(names[:6])}, ... ({len(names)} in total, see "
            "qpuflow.backends.available_backends()), or a synthetic uniform-noise backend "
            "uniform_grid_p<digits> / uniform_line_p<digits> (p = 0.<digits>, e.g. uniform_grid_p001)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FakeProviderForBackendV2().backend(name)


# --------------------------------------------------------------------------------------
# synthetic uniform-noise backends
# --------------------------------------------------------------------------------------

# A 15 x 15 square lattice holds the rotated surface code up to d = 7 (a diamond 2d + 1 = 15
# wide once the code's diagonal couplings are turned into lattice edges), so VF2Layout finds
# a perfect layout and no SWAP is inserted. A 61-qubit line holds repetition codes to d = 31.
SYNTHETIC_GRID_SIZE = 15
SYNTHETIC_LINE_LENGTH = 61

# Durations typical of IBM Heron devices; only used for scheduling and idle noise.
_SYNTHETIC_DT = 4e-9
_SYNTHETIC_DURATIONS = {"sx": 32e-9, "x": 32e-9, "cz": 68e-9, "measure": 1.56e-6, "reset": 1.56e-6}
_SYNTHETIC_T1 = _SYNTHETIC_T2 = 300e-6


def _synthetic_couplers(topology: str) -> tuple[int, list[tuple[int, int]]]:
    if topology == "line":
        n = SYNTHETIC_LINE_LENGTH
        return n, [(q, q + 1) for q in range(n - 1)]
    if topology == "grid":
        w = SYNTHETIC_GRID_SIZE
        edges = []
        for r in range(w):
            for c in range(w):
                q = r * w + c
                if c + 1 < w:
                    edges.append((q, q + 1))
                if r + 1 < w:
                    edges.append((q, q + w))
        return w * w, edges
    raise ValueError(f"unknown synthetic topology {topology!r}; use 'grid' or 'line'")


def _error_for_channel(p: float, factor: float) -> float:
    # factor * (p / factor) can be one ulp off p (e.g. p = 0.0007); use a neighbouring float
    # that gives p exactly when one exists (for some p none does: then it stays one ulp off).
    r = p / factor
    for cand in (r, math.nextafter(r, math.inf), math.nextafter(r, -math.inf)):
        if cand * factor == p:
            return cand
    return r


def _uniform_target(topology: str, p: float) -> Target:
    n, edges = _synthetic_couplers(topology)
    target = Target(
        description=f"uniform noise p={p} on a {topology}",
        num_qubits=n,
        dt=_SYNTHETIC_DT,
        qubit_properties=[QubitProperties(t1=_SYNTHETIC_T1, t2=_SYNTHETIC_T2) for _ in range(n)],
    )
    # qpuflow.stim_noise turns a Target error r into DEPOLARIZE1(1.5 r) after sx/x and
    # DEPOLARIZE2(1.25 r) after cz; dividing by these factors makes every simulated channel
    # exactly p.
    d = _SYNTHETIC_DURATIONS
    r1 = _error_for_channel(p, ONE_QUBIT_DEPOLARIZING_FACTOR)
    r2 = _error_for_channel(p, TWO_QUBIT_DEPOLARIZING_FACTOR)
    target.add_instruction(SXGate(), {(q,): InstructionProperties(d["sx"], r1) for q in range(n)})
    target.add_instruction(XGate(), {(q,): InstructionProperties(d["x"], r1) for q in range(n)})
    target.add_instruction(
        RZGate(Parameter("theta")), {(q,): InstructionProperties(0.0, 0.0) for q in range(n)}
    )
    # Both directions of every coupler, so the transpiler never flips a cz for direction.
    target.add_instruction(
        CZGate(),
        {qa: InstructionProperties(d["cz"], r2) for a, b in edges for qa in ((a, b), (b, a))},
    )
    target.add_instruction(Measure(), {(q,): InstructionProperties(d["measure"], p) for q in range(n)})
    target.add_instruction(Reset(), {(q,): InstructionProperties(d["reset"], 0.0) for q in range(n)})
    target.add_instruction(Delay(Parameter("t")), {(q,): None for q in range(n)})
    return target


class TargetBackend(BackendV2):
    """A BackendV2 that is only a Target: enough to transpile against or build a noise model from.

    ``run`` is not implemented: circuits for these backends are simulated with
    :func:`qpuflow.simulate.sample_isa`.
    """

    def __init__(self, target: Target, name: str, *, description: str = "",
                 readout_pairs: tuple[tuple[float, float], ...] | None = None):
        super().__init__(name=name, description=description or name, backend_version="1")
        self._target = target
        self.readout_pairs = readout_pairs  # per qubit (P(1|0), P(0|1)), if the device has them

    @property
    def target(self) -> Target:
        return self._target

    @property
    def max_circuits(self) -> None:
        return None

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=4096)

    def run(self, run_input, **options):
        raise NotImplementedError(
            f"{self.name} is a synthetic backend of qpuflow's local simulator; sample its "
            "circuits with qpuflow.simulate.sample_isa (provider 'local'), not backend.run()"
        )


def readout_pairs(backend) -> tuple[tuple[float, float], ...] | None:
    """Per qubit ``(P(1|0), P(0|1))``: the asymmetric readout errors the device reports.

    IBM's calibration carries both (``prob_meas1_prep0``, ``prob_meas0_prep1``; on FakeFez
    the median P(0|1) is about 3x P(1|0)), while the Target holds only their mean. From a
    fake backend's properties, from a :class:`TargetBackend`'s ``readout_pairs``, or None
    when the device reports only the mean. Cached on the backend object.
    """
    cached = getattr(backend, "_qpuflow_readout_pairs", "unset")
    if cached != "unset":
        return cached
    pairs = getattr(backend, "readout_pairs", None)
    if pairs is None and hasattr(backend, "properties"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                props = backend.properties()
        except Exception:  # a backend without properties reports only the Target's mean
            props = None
        if props is not None:
            found = []
            for q in range(backend.num_qubits):
                values = props.qubit_property(q)
                p10, p01 = values.get("prob_meas1_prep0", (None,))[0], values.get("prob_meas0_prep1", (None,))[0]
                if p10 is None or p01 is None:
                    found = None
                    break
                found.append((float(p10), float(p01)))
            pairs = tuple(found) if found else None
    try:
        backend._qpuflow_readout_pairs = pairs
    except AttributeError:  # pragma: no cover - a backend object that takes no attributes
        pass
    return pairs


class UniformNoiseBackend(TargetBackend):
    """A synthetic device with the literature's uniform circuit-level noise ``p``, for the
    local simulator.

    ``uniform_grid_p<digits>`` is a :data:`SYNTHETIC_GRID_SIZE` square lattice (large enough
    for a d = 7 rotated surface code without routing), ``uniform_line_p<digits>`` a
    :data:`SYNTHETIC_LINE_LENGTH`-qubit chain for repetition codes, with
    ``p = float("0." + digits)``.

    Memory experiments on it are sampled (and decoded, by the calibration decoder) with
    stim's own uniform model at ``p`` (:func:`qpuflow.circuits.uniform_model_noise`: every
    CX and H, the data qubits before each round, every measurement and reset), applied to
    the logical circuit, so its rates are the published ones (d = 3/5/7 at p = 1e-3:
    about 0.0008/0.00014/0.00002 per shot at rounds = d). Other circuits (probes, drifted
    copies) use the Target: sx/x error ``p / 1.5`` (-> DEPOLARIZE1(p)), cz ``p / 1.25``
    (-> DEPOLARIZE2(p)), readout ``p``; T1 = T2 = 300 us only matter with idle noise.
    ``run`` is not implemented: these backends are simulated by
    :func:`qpuflow.simulate.sample_isa` only.
    """

    def __init__(self, name: str, *, topology: str, p: float):
        super().__init__(_uniform_target(topology, float(p)), name,
                         description=f"synthetic uniform noise p={p} ({topology})")
        self.topology = topology
        self.p = float(p)


def median_backend(backend) -> TargetBackend:
    """``backend``'s coupling map with every qubit and coupler at its median calibration.

    The medians are over the qubits (T1, T2, sx/x error and duration, the readout pair
    P(1|0), P(0|1), readout and reset duration) and over the working couplers (two-qubit
    error and duration; dead couplers are left out of the median and revived). The result
    is the device as a benchmark wants it: the same lattice and typical noise, with no
    defect to route or place around. Named ``<backend>_median``.
    """
    target: Target = backend.target
    n = target.num_qubits
    edges = sorted({tuple(sorted(q)) for name in two_qubit_ops(target) for q in target[name] if q is not None})
    two_qubit = two_qubit_ops(target)[0]
    live = [props for q, props in target[two_qubit].items()
            if props is not None and props.error is not None and props.error < DEAD_COUPLER_ERROR]

    def median(values) -> float | None:
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.median(values)) if values else None

    def per_qubit(op: str, field: str) -> float | None:
        return median(getattr(target[op].get((q,)), field, None) for q in range(n)) if op in target else None

    qprops = target.qubit_properties or []
    t1, t2 = median(getattr(p, "t1", None) for p in qprops), median(getattr(p, "t2", None) for p in qprops)
    pairs = readout_pairs(backend)
    pair = (median(p[0] for p in pairs), median(p[1] for p in pairs)) if pairs else None
    out = Target(description=f"{backend.name} at its median calibration, every coupler alive", num_qubits=n,
                 dt=target.dt, qubit_properties=[QubitProperties(t1=t1, t2=t2) for _ in range(n)])
    for op, gate in (("sx", SXGate()), ("x", XGate())):
        props = InstructionProperties(per_qubit(op, "duration"), per_qubit(op, "error"))
        out.add_instruction(gate, {(q,): props for q in range(n)})
    out.add_instruction(RZGate(Parameter("theta")), {(q,): InstructionProperties(0.0, 0.0) for q in range(n)})
    cz = InstructionProperties(median(p.duration for p in live), median(p.error for p in live))
    out.add_instruction(CZGate(), {qa: cz for a, b in edges for qa in ((a, b), (b, a))})
    readout = pair and (pair[0] + pair[1]) / 2
    out.add_instruction(Measure(), {(q,): InstructionProperties(per_qubit("measure", "duration"),
                                                                readout or per_qubit("measure", "error"))
                                    for q in range(n)})
    out.add_instruction(Reset(), {(q,): InstructionProperties(per_qubit("reset", "duration"), 0.0) for q in range(n)})
    out.add_instruction(Delay(Parameter("t")), {(q,): None for q in range(n)})
    return TargetBackend(out, f"{backend.name}_median", description=out.description,
                         readout_pairs=tuple(pair for _ in range(n)) if pair else None)


def two_qubit_ops(target: Target) -> list[str]:
    names = []
    for name in target.operation_names:
        op = target.operation_from_name(name)
        if not isinstance(op, type) and getattr(op, "num_qubits", 0) == 2:
            names.append(name)
    return sorted(names)


def excluded_couplers(backend_or_target, *, max_error: float = DEAD_COUPLER_ERROR) -> list[tuple[int, int]]:
    """Couplers (sorted qubit pairs) that :func:`usable_target` removes.

    A coupler is removed when any two-qubit gate on it, in either direction, reports an
    error of at least ``max_error``.
    """
    target = getattr(backend_or_target, "target", backend_or_target)
    dead = set()
    for name in two_qubit_ops(target):
        for qargs, props in target[name].items():
            if qargs is not None and props is not None and props.error is not None and props.error >= max_error:
                dead.add(tuple(sorted(qargs)))
    return sorted(dead)


def usable_target(backend, *, max_error: float = DEAD_COUPLER_ERROR) -> Target:
    """Copy of the backend's Target without its broken couplers.

    ``Target`` is add-only, so the copy is rebuilt instruction by instruction with the same
    properties, leaving out every two-qubit gate on a coupler listed by
    :func:`excluded_couplers`. The backend itself is not modified.

    Args:
        backend: a ``BackendV2`` (or a ``Target``).
        max_error: two-qubit error at or above which a coupler is dropped.

    Returns:
        A new Target.
    """
    src: Target = getattr(backend, "target", backend)
    dead = set(excluded_couplers(src, max_error=max_error))
    out = Target(
        description=src.description,
        num_qubits=src.num_qubits,
        dt=src.dt,
        granularity=src.granularity,
        min_length=src.min_length,
        pulse_alignment=src.pulse_alignment,
        acquire_alignment=src.acquire_alignment,
        qubit_properties=src.qubit_properties,
        concurrent_measurements=src.concurrent_measurements,
    )
    for name in src.operation_names:
        op = src.operation_from_name(name)
        if isinstance(op, type):  # control flow: global, no properties
            out.add_instruction(op, name=name)
            continue
        props = src[name]
        if props is None or None in props:
            out.add_instruction(op, props, name=name)
            continue
        kept = {
            qargs: p
            for qargs, p in props.items()
            if not (len(qargs) == 2 and tuple(sorted(qargs)) in dead)
        }
        out.add_instruction(op, kept, name=name)
    return out


def finite_or_none(x: Any) -> float | None:
    """``x`` as a float, or None if it is missing or not finite (NaN, inf)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
