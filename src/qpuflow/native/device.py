"""A device's coupling graph and the places a template's coupler graph fits in it.

:class:`DeviceGraph` is built from a coupling list (undirected pairs of physical qubits).
:func:`embeddings` lists every injective map from a template's nodes to physical qubits
that sends every template coupler onto a device coupler (a subgraph monomorphism: extra
device couplers between chosen qubits are allowed and simply unused). The search is a
plain backtracking over a breadth-first order of the template, which is fast on
degree-3 graphs like heavy-hex.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = ["DeviceGraph", "embeddings", "coupling_from_target", "fez_coupling"]


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


@dataclasses.dataclass(frozen=True)
class DeviceGraph:
    """Undirected coupling graph of a device.

    Attributes:
        num_qubits: qubits ``0..num_qubits-1``.
        edges: couplers as sorted pairs ``(a, b)``, ``a < b``, without duplicates.
    """

    num_qubits: int
    edges: tuple[tuple[int, int], ...]

    @classmethod
    def from_coupling(cls, edges: Iterable[Sequence[int]], num_qubits: int | None = None) -> DeviceGraph:
        pairs = set()
        top = -1
        for e in edges:
            a, b = int(e[0]), int(e[1])
            if a == b:
                continue
            pairs.add(_pair(a, b))
            top = max(top, a, b)
        n = top + 1 if num_qubits is None else int(num_qubits)
        if top >= n:
            raise ValueError(f"coupler on qubit {top} but num_qubits is {n}")
        return cls(num_qubits=n, edges=tuple(sorted(pairs)))

    def adjacency(self) -> list[frozenset[int]]:
        adj: list[set[int]] = [set() for _ in range(self.num_qubits)]
        for a, b in self.edges:
            adj[a].add(b)
            adj[b].add(a)
        return [frozenset(s) for s in adj]

    def degree_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for s in self.adjacency():
            counts[len(s)] = counts.get(len(s), 0) + 1
        return counts


def embeddings(
    template_edges: Sequence[tuple[int, int]],
    num_nodes: int,
    device: DeviceGraph,
    *,
    excluded: Iterable[Sequence[int]] = (),
) -> Iterator[tuple[int, ...]]:
    """Every ``qubits`` tuple (``qubits[node]`` = physical qubit) placing the template.

    Couplers in ``excluded`` are treated as absent, so no returned placement uses one.
    """
    tadj: list[set[int]] = [set() for _ in range(num_nodes)]
    for a, b in template_edges:
        tadj[a].add(b)
        tadj[b].add(a)
    banned = {_pair(int(e[0]), int(e[1])) for e in excluded}
    dadj = [set(s) for s in device.adjacency()]
    for a, b in banned:
        if a < device.num_qubits and b < device.num_qubits:
            dadj[a].discard(b)
            dadj[b].discard(a)
    if num_nodes == 0:
        return
    # Breadth-first order from a node of highest degree; each later node has a parent.
    root = max(range(num_nodes), key=lambda u: (len(tadj[u]), -u))
    order, parent, seen = [root], {root: -1}, {root}
    for u in order:
        for v in sorted(tadj[u]):
            if v not in seen:
                seen.add(v)
                parent[v] = u
                order.append(v)
    if len(order) != num_nodes:
        raise ValueError("template coupler graph is not connected")
    back = [[w for w in tadj[u] if order.index(w) < k] for k, u in enumerate(order)]
    deg = [len(tadj[u]) for u in range(num_nodes)]
    ddeg = [len(s) for s in dadj]
    image = [-1] * num_nodes
    used: set[int] = set()

    def extend(k: int) -> Iterator[tuple[int, ...]]:
        if k == len(order):
            yield tuple(image)
            return
        u = order[k]
        p = parent[u]
        candidates = range(device.num_qubits) if p < 0 else sorted(dadj[image[p]])
        for q in candidates:
            if q in used or ddeg[q] < deg[u]:
                continue
            if any(image[w] not in dadj[q] for w in back[k]):
                continue
            image[u] = q
            used.add(q)
            yield from extend(k + 1)
            used.discard(q)
            image[u] = -1

    yield from extend(0)


def coupling_from_target(
    target: Any, gate: str = "cz"
) -> tuple[list[tuple[int, int]], int, dict[tuple[int, int], float]]:
    """``(couplers, num_qubits, errors)`` of a Qiskit ``Target``'s two-qubit ``gate``.

    ``errors`` maps each sorted coupler to the largest reported error of its two
    directions (``nan`` when none is reported).
    """
    errors: dict[tuple[int, int], float] = {}
    for qargs, props in target[gate].items():
        if qargs is None or len(qargs) != 2:
            continue
        key = _pair(int(qargs[0]), int(qargs[1]))
        err = props.error if props is not None and props.error is not None else float("nan")
        old = errors.get(key)
        errors[key] = err if old is None or old != old else max(old, err)  # noqa: PLR0124 (nan)
    return sorted(errors), int(target.num_qubits), errors


def fez_coupling(dead_threshold: float = 0.5) -> tuple[list[tuple[int, int]], int, list[tuple[int, int]]]:
    """FakeFez: ``(couplers, num_qubits, dead)``; ``dead`` = couplers with CZ error >= threshold."""
    from qiskit_ibm_runtime.fake_provider import FakeFez

    edges, n, errors = coupling_from_target(FakeFez().target, "cz")
    dead = sorted(e for e, err in errors.items() if err == err and err >= dead_threshold)
    return edges, n, dead

