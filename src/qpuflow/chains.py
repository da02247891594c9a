"""Choosing a chain of qubits for a repetition code: the cheapest simple path in the usable
coupling graph, by calibrated (or probed) readout, two-qubit, T1 and T2 errors.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from qiskit.transpiler import Target

from qpuflow.backends import finite_or_none, two_qubit_ops, usable_target

# Weights of select_chain's cost. The decoherence terms are t_ref/T with t_ref = 1 us,
# roughly the idle error accumulated per syndrome round, so all four terms are error
# probabilities of similar size and equal weights are a sensible default.
DEFAULT_CHAIN_WEIGHTS: Mapping[str, float] = {"readout": 1.0, "two_qubit": 1.0, "t1": 1.0, "t2": 1.0}
_DECOHERENCE_TIME_REF = 1e-6


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
            err = finite_or_none(p.error) if p is not None else None
            readout[q] = err
            usable[q] = err is None or err < 0.5
    inv_t1: list[float | None] = [None] * n
    inv_t2: list[float | None] = [None] * n
    for q, qp in enumerate(target.qubit_properties or []):
        if qp is None:
            continue
        t1, t2 = finite_or_none(getattr(qp, "t1", None)), finite_or_none(getattr(qp, "t2", None))
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
    for name in two_qubit_ops(target):
        for qargs, p in target[name].items():
            if qargs is None:
                continue
            key = tuple(sorted(qargs))
            err = finite_or_none(p.error) if p is not None else None
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


