"""Backend lookup, transpilation to a Clifford ISA circuit, and provenance of the result.

What this module guarantees about a circuit it returns from :func:`transpile_isa`:

* it only uses couplers whose two-qubit error is below 0.5 (FakeFez, like real devices,
  reports a few dead couplers with error 1.0 that the preset pass managers happily route
  through);
* it only contains sx, rz (multiples of pi/2), cz, x, id, reset, measure, delay and barrier,
  so it can be simulated exactly and fast by stim (:mod:`qpuflow.simulate`);
* its metadata still holds the measurement map of the logical circuit, plus how it was
  transpiled.

:func:`circuit_fingerprint` identifies an ISA circuit by its content (not by QPY bytes,
which are not byte-stable across versions) and :func:`calibration_snapshot` records the
device numbers the circuit was compiled against.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import qiskit
from qiskit.circuit import Delay, Measure, Parameter, QuantumCircuit, Reset
from qiskit.circuit.library import CZGate, RZGate, SXGate, XGate
from qiskit.providers import BackendV2, Options, QubitProperties
from qiskit.transpiler import InstructionProperties, Target, generate_preset_pass_manager
from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

from qpuflow.backend_names import fake_backend_names, median_backend_base, synthetic_backend_spec
from qpuflow.errors import QpuflowError

__all__ = [
    "UnknownBackendError",
    "NonCliffordError",
    "CLIFFORD_ISA_GATES",
    "DEFAULT_CHAIN_WEIGHTS",
    "DEAD_COUPLER_ERROR",
    "available_backends",
    "load_backend",
    "UniformNoiseBackend",
    "SYNTHETIC_GRID_SIZE",
    "SYNTHETIC_LINE_LENGTH",
    "usable_target",
    "excluded_couplers",
    "select_chain",
    "transpile_isa",
    "check_clifford_isa",
    "physical_layout",
    "active_qubits",
    "circuit_fingerprint",
    "calibration_snapshot",
    "isa_summary",
]

CLIFFORD_ISA_GATES = frozenset({"sx", "rz", "cz", "x", "id", "reset", "measure", "delay", "barrier"})

# A coupler whose reported two-qubit error is at least this is treated as broken: an error
# of 0.5 already randomises the pair, and IBM marks dead couplers with exactly 1.0.
DEAD_COUPLER_ERROR = 0.5

# Weights of select_chain's cost. The decoherence terms are t_ref/T with t_ref = 1 us,
# roughly the idle error accumulated per syndrome round, so all four terms are error
# probabilities of similar size and equal weights are a sensible default.
DEFAULT_CHAIN_WEIGHTS: Mapping[str, float] = {"readout": 1.0, "two_qubit": 1.0, "t1": 1.0, "t2": 1.0}
_DECOHERENCE_TIME_REF = 1e-6

_FINGERPRINT_VERSION = "qpuflow-isa-fingerprint/1"


class UnknownBackendError(QpuflowError, ValueError):
    """The backend name is not one of the fake backends shipped with qiskit-ibm-runtime."""


class NonCliffordError(ValueError):
    """The ISA circuit holds an instruction stim cannot simulate (or a non-Clifford angle)."""


# --------------------------------------------------------------------------------------
# backends and targets
# --------------------------------------------------------------------------------------


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
            "qpuflow.transpile.available_backends()), or a synthetic uniform-noise backend "
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
    # DEPOLARIZE2(1.25 r) after cz; dividing by its factors makes every simulated channel
    # exactly p. Imported here because qpuflow.stim_noise imports this module.
    from qpuflow.stim_noise import ONE_QUBIT_DEPOLARIZING_FACTOR, TWO_QUBIT_DEPOLARIZING_FACTOR

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
    edges = sorted({tuple(sorted(q)) for name in _two_qubit_ops(target) for q in target[name] if q is not None})
    two_qubit = _two_qubit_ops(target)[0]
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


def _two_qubit_ops(target: Target) -> list[str]:
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
    for name in _two_qubit_ops(target):
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


# --------------------------------------------------------------------------------------
# chain selection
# --------------------------------------------------------------------------------------


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _fill_worst(values: list[float | None], worst_is_max: bool = True) -> list[float]:
    # Missing calibration is treated as the worst value seen on the device: an
    # uncalibrated qubit should not look attractive.
    known = [v for v in values if v is not None]
    fill = (max(known) if worst_is_max else min(known)) if known else 0.0
    return [fill if v is None else v for v in values]


def _chain_costs(
    target: Target, weights: Mapping[str, float], measured: Mapping[int, Mapping[str, float]] | None = None,
) -> tuple[list[float | None], dict[tuple[int, int], float]]:
    n = target.num_qubits
    readout: list[float | None] = [None] * n
    per_qubit = "measure" in target.operation_names and any(q is not None for q in target["measure"])
    # With per-qubit measurement entries, a qubit without one cannot be read out at all.
    usable = [not per_qubit] * n
    if per_qubit:
        for qargs, p in target["measure"].items():
            if qargs is None:
                continue
            q = qargs[0]
            err = _finite(p.error) if p is not None else None
            readout[q] = err
            usable[q] = err is None or err < 0.5
    inv_t1: list[float | None] = [None] * n
    inv_t2: list[float | None] = [None] * n
    for q, qp in enumerate(target.qubit_properties or []):
        if qp is None:
            continue
        t1, t2 = _finite(getattr(qp, "t1", None)), _finite(getattr(qp, "t2", None))
        inv_t1[q] = _DECOHERENCE_TIME_REF / t1 if t1 else None
        inv_t2[q] = _DECOHERENCE_TIME_REF / t2 if t2 else None
    for q, values in (measured or {}).items():
        # Fresh measurements (a probe job) replace what the backend reported.
        if "readout_error" in values:
            readout[q] = float(values["readout_error"])
            usable[q] = readout[q] < 0.5
        if values.get("t1"):
            inv_t1[q] = _DECOHERENCE_TIME_REF / float(values["t1"])
        if values.get("t2"):
            inv_t2[q] = _DECOHERENCE_TIME_REF / float(values["t2"])
    ro, it1, it2 = _fill_worst(readout), _fill_worst(inv_t1), _fill_worst(inv_t2)
    node = [
        (weights["readout"] * ro[q] + weights["t1"] * it1[q] + weights["t2"] * it2[q]) if usable[q] else None
        for q in range(n)
    ]
    edge_err: dict[tuple[int, int], float | None] = {}
    for name in _two_qubit_ops(target):
        for qargs, p in target[name].items():
            if qargs is None:
                continue
            key = tuple(sorted(qargs))
            err = _finite(p.error) if p is not None else None
            prev = edge_err.get(key)
            # Of several gates/directions on one coupler, the worst one decides.
            edge_err[key] = err if prev is None else (prev if err is None else max(prev, err))
    keys = sorted(edge_err)
    filled = _fill_worst([edge_err[k] for k in keys])
    edges = {k: weights["two_qubit"] * e for k, e in zip(keys, filled)}
    return node, edges


def select_chain(
    backend, length: int, *, weights: Mapping[str, float] | None = None,
    only: Collection[int] | None = None, measured: Mapping[int, Mapping[str, float]] | None = None,
) -> list[int]:
    """Best simple path of ``length`` physical qubits in the usable coupling graph.

    The cost of a path is the sum over its qubits of
    ``w_readout * readout_error + w_t1 * (1 us / T1) + w_t2 * (1 us / T2)`` plus the sum
    over its couplers of ``w_two_qubit * two_qubit_error``. It is minimised exactly by a
    depth-first search with branch-and-bound. Qubits with readout error >= 0.5 and couplers
    removed by :func:`usable_target` are never used; missing calibration values count as
    the worst value on the device.

    Args:
        backend: a ``BackendV2`` (or a ``Target``).
        length: number of qubits in the chain (for a repetition code of distance d: 2d - 1).
        weights: override some of :data:`DEFAULT_CHAIN_WEIGHTS` (keys ``readout``,
            ``two_qubit``, ``t1``, ``t2``; non-negative).
        only: choose among these physical qubits only (e.g. the qubits a probe measured).
        measured: per qubit, values that replace the reported calibration (keys
            ``readout_error``, ``t1``, ``t2`` in seconds), e.g. a probe job's estimates.

    Returns:
        Physical qubits in path order, oriented so the first is smaller than the last.
        Equal costs (within 1e-12) are broken by the lexicographically smallest path, so the
        answer is deterministic.

    Raises:
        ValueError: bad length or weights, or no such path exists.
    """
    w = dict(DEFAULT_CHAIN_WEIGHTS)
    if weights:
        unknown = sorted(set(weights) - set(w))
        if unknown:
            raise ValueError(f"unknown chain weight(s) {unknown}; allowed keys are {sorted(w)}")
        for k, v in weights.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"chain weight {k!r} must be a finite number >= 0, got {v!r}")
            w[k] = float(v)
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"chain length must be an int >= 1, got {length!r}")
    target = usable_target(backend)
    node, edges = _chain_costs(target, w, measured)
    if only is not None:
        allowed = set(only)
        node = [c if q in allowed else None for q, c in enumerate(node)]
    nodes = [q for q, c in enumerate(node) if c is not None]
    if length > len(nodes):
        raise ValueError(f"chain length {length} exceeds the {len(nodes)} usable qubits of the backend")

    best_path = _cheapest_path(node, edges, nodes, length, target.num_qubits)
    if best_path is None:
        raise ValueError(
            f"the usable coupling graph of {getattr(backend, 'name', 'the backend')} has no "
            f"simple path of {length} qubits; choose a shorter chain or another backend"
        )
    return list(best_path)


def _cheapest_path(node: list[float | None], edges: Mapping[tuple[int, int], float], nodes: list[int], length: int,
                   num_qubits: int) -> tuple[int, ...] | None:
    """The simple path of ``length`` nodes with the least summed node and edge cost (depth
    first, branch and bound; ties broken by the lexicographically smallest path), or None."""
    adj: dict[int, list[tuple[int, float]]] = {q: [] for q in nodes}
    for (a, b), c in edges.items():
        if node[a] is not None and node[b] is not None:
            adj[a].append((b, c))
            adj[b].append((a, c))
    for q in adj:
        adj[q].sort()
    min_node = min(node[q] for q in nodes)
    min_edge = min(edges.values()) if edges else 0.0
    tol = 1e-12

    best_cost = math.inf
    best_path: tuple[int, ...] | None = None
    path: list[int] = []
    on_path = [False] * num_qubits

    def consider(cost: float) -> None:
        nonlocal best_cost, best_path
        cand = tuple(path) if path[0] <= path[-1] else tuple(reversed(path))
        if cost < best_cost - tol or (abs(cost - best_cost) <= tol and (best_path is None or cand < best_path)):
            best_cost, best_path = min(cost, best_cost), cand

    def extend(cost: float) -> None:
        remaining = length - len(path)
        if remaining == 0:
            consider(cost)
            return
        if cost + remaining * (min_node + min_edge) > best_cost + tol:
            return
        for nxt, ec in adj[path[-1]]:
            if not on_path[nxt]:
                path.append(nxt)
                on_path[nxt] = True
                extend(cost + ec + node[nxt])
                on_path[nxt] = False
                path.pop()

    # Start from the cheapest qubits so a good bound is found early.
    for start in sorted(nodes, key=lambda q: (node[q], q)):
        if node[start] + (length - 1) * (min_node + min_edge) > best_cost + tol:
            break
        path.append(start)
        on_path[start] = True
        extend(node[start])
        on_path[start] = False
        path.pop()
    return best_path


# --------------------------------------------------------------------------------------
# transpilation and checks
# --------------------------------------------------------------------------------------


def _angle(param: Any) -> float | None:
    try:
        return float(param)
    except (TypeError, ValueError):
        return None


def check_clifford_isa(isa: QuantumCircuit) -> None:
    """Check that ``isa`` is a Clifford circuit in the ISA stim simulates.

    Args:
        isa: a transpiled circuit.

    Raises:
        NonCliffordError: the first instruction that is not one of
            :data:`CLIFFORD_ISA_GATES`, or an rz whose angle is not a multiple of pi/2
            within 1e-9, or an unbound parameter.
    """
    for i, inst in enumerate(isa.data):
        name = inst.operation.name
        qubits = [isa.find_bit(q).index for q in inst.qubits]
        if name not in CLIFFORD_ISA_GATES:
            raise NonCliffordError(
                f"instruction {i} is {name} on qubits {qubits}, which is not in the Clifford ISA "
                f"({', '.join(sorted(CLIFFORD_ISA_GATES))}); transpile with transpile_isa "
                "against the backend's target, or simulate with the Aer fallback"
            )
        if name == "rz":
            angle = _angle(inst.operation.params[0])
            if angle is None:
                raise NonCliffordError(
                    f"instruction {i} is rz({inst.operation.params[0]}) on qubit {qubits[0]} "
                    "with an unbound parameter; bind parameters before transpiling"
                )
            k = angle / (math.pi / 2)
            if abs(angle - round(k) * (math.pi / 2)) > 1e-9:
                raise NonCliffordError(
                    f"instruction {i} is rz({angle!r}) on qubit {qubits[0]}: the angle is not a "
                    "multiple of pi/2, so the circuit is not Clifford; add barriers between "
                    "layers or use optimization_level=1"
                )


def transpile_isa(
    circuit: QuantumCircuit,
    backend,
    *,
    seed: int,
    optimization_level: int = 1,
    initial_layout: Sequence[int] | None = None,
) -> QuantumCircuit:
    """Transpile a logical circuit for ``backend`` into a checked Clifford ISA circuit.

    The preset pass manager runs against :func:`usable_target`, so dead couplers are never
    used. The logical circuit's metadata (measurement map, stim text) is carried over and a
    ``"transpile"`` entry is added with the backend, seed, level, requested layout, the
    resulting initial/final layouts, the estimated duration and the qiskit version.

    Args:
        circuit: logical circuit, e.g. from :func:`qpuflow.circuits.memory_experiment`.
        backend: a ``BackendV2``.
        seed: transpiler seed; same seed + same inputs -> same circuit.
        optimization_level: 0-3. Levels above 1 are allowed but checked like the rest.
        initial_layout: physical qubit for each logical qubit (e.g. from :func:`select_chain`).

    Returns:
        The ISA circuit.

    Raises:
        NonCliffordError: the transpiled circuit is not Clifford (see :func:`check_clifford_isa`).
        ValueError: bad seed, level or layout.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"transpiler seed must be an int >= 0, got {seed!r}")
    if optimization_level not in (0, 1, 2, 3):
        raise ValueError(f"optimization_level must be 0, 1, 2 or 3, got {optimization_level!r}")
    layout = None
    if initial_layout is not None:
        layout = [int(q) for q in initial_layout]
        if len(layout) != circuit.num_qubits:
            raise ValueError(
                f"initial_layout has {len(layout)} qubits but the circuit has {circuit.num_qubits}"
            )
        if len(set(layout)) != len(layout):
            raise ValueError(f"initial_layout {layout} repeats a physical qubit")
    target = usable_target(backend)
    pm = generate_preset_pass_manager(
        optimization_level=optimization_level,
        target=target,
        seed_transpiler=seed,
        initial_layout=layout,
    )
    isa = pm.run(circuit)
    check_clifford_isa(isa)
    try:
        duration = float(isa.estimate_duration(target, unit="s"))
    except (qiskit.exceptions.QiskitError, KeyError, TypeError):
        duration = None
    meta = copy.deepcopy(dict(circuit.metadata or {}))
    meta["transpile"] = {
        "backend": getattr(backend, "name", None),
        "seed": seed,
        "optimization_level": optimization_level,
        "requested_initial_layout": layout,
        "initial_layout": physical_layout(isa, at="initial"),
        "final_layout": physical_layout(isa, at="final"),
        "duration_seconds": duration,
        "excluded_couplers": [list(c) for c in excluded_couplers(backend)],
        "qiskit_version": qiskit.__version__,
    }
    isa.metadata = meta
    return isa


def physical_layout(isa: QuantumCircuit, *, at: Literal["final", "initial"] = "final") -> list[int]:
    """Physical qubit of each logical (virtual) qubit of the transpiled circuit.

    Args:
        isa: a circuit returned by the transpiler (it must carry ``isa.layout``).
        at: ``"final"`` (default) — where each logical qubit is at the end of the circuit,
            after the SWAPs routing inserted; this is where its final measurement happened.
            ``"initial"`` — where each logical qubit starts. Without routing SWAPs the two
            are equal.

    Returns:
        ``layout[v]`` = physical qubit of logical qubit ``v`` (ancillas the transpiler added
        are left out).

    Raises:
        ValueError: the circuit has no layout (was not transpiled), or ``at`` is unknown.
    """
    if isa.layout is None:
        raise ValueError(
            f"circuit {isa.name!r} has no layout; physical_layout needs a transpiled circuit "
            "(use transpile_isa)"
        )
    if at == "final":
        return [int(q) for q in isa.layout.final_index_layout(filter_ancillas=True)]
    if at == "initial":
        return [int(q) for q in isa.layout.initial_index_layout(filter_ancillas=True)]
    raise ValueError(f"at must be 'final' or 'initial', got {at!r}")


def active_qubits(isa: QuantumCircuit) -> list[int]:
    """Sorted physical qubits touched by any instruction other than a barrier."""
    used = {
        isa.find_bit(q).index
        for inst in isa.data
        if inst.operation.name != "barrier"
        for q in inst.qubits
    }
    return sorted(used)


# --------------------------------------------------------------------------------------
# identity and provenance
# --------------------------------------------------------------------------------------


def _param_text(p: Any) -> str:
    value = _angle(p)
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
    return _finite(p.error), _finite(p.duration)


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
                "t1": _finite(getattr(qp, "t1", None)),
                "t2": _finite(getattr(qp, "t2", None)),
                "frequency": _finite(getattr(qp, "frequency", None)),
                "readout_error": ro_err,
                "prob_meas1_prep0": _finite(pair[0]),
                "prob_meas0_prep1": _finite(pair[1]),
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
    for name in _two_qubit_ops(target):
        for qargs in sorted(q for q in target[name] if q is not None):
            err, dur = _props(target, name, qargs)
            two_qubit.append({"gate": name, "qubits": list(qargs), "error": err, "duration": dur})
    return {
        "backend": getattr(backend, "name", None),
        "backend_version": getattr(backend, "backend_version", None),
        "num_qubits": target.num_qubits,
        "dt": _finite(target.dt),
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
