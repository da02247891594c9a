"""Abstract patch templates: the qubits of a native code patch, their couplers and its schedule.

A :class:`Template` is written in its own grid coordinates ``(row, column)``: heavy-hex rows
are even template rows, the bridge qubits between two rows sit on the odd template row in
between. It says nothing about a device; :func:`qpuflow.native.device.embeddings` finds
where its coupler graph sits inside a device's coupling graph, and a
:class:`~qpuflow.native.patches.Patch` is one such placement.

The schedule is a list of *phases* (e.g. all Z checks, then all X checks). A phase resets
its ancillas, runs layers of CX gates and ends with one measurement layer. A
:class:`Gadget` measures one check (a stabilizer, or a gauge operator of a subsystem code)
into one measured qubit, with any number of helper qubits that come back to their initial
state when nothing goes wrong (their measurements are flags: deterministic detectors).
Gadgets are written as CX networks; the X-type version of a Z-type gadget is its Hadamard
dual (:func:`dual`: every CX reversed, every basis swapped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

__all__ = ["Gadget", "Stabilizer", "Template", "dual", "place_rigid"]

Coord = tuple[int, int]
_INF = 10**9


@dataclasses.dataclass(frozen=True)
class Gadget:
    """The gates that measure one check, in one phase.

    Attributes:
        basis: ``"X"`` or ``"Z"``: the Pauli type of the measured check.
        phase: index of the phase (in :attr:`Template.phases`) the gadget runs in.
        support: template nodes of the data qubits of the check.
        measure: the node whose measurement is the check's value.
        measure_basis: basis ``measure`` is reset in and measured in.
        helpers: ``(node, basis)``: ancillas prepared in ``basis`` and restored to it.
        gates: ``(layer, control, target)`` CX gates, ``layer`` counted from 1 in the phase.
        windows: ``(node, first, last)``: the gadget temporarily changes data ``node``
            during layers ``first..last``; no other gadget may touch it then.
    """

    basis: str
    phase: int
    support: tuple[int, ...]
    measure: int
    measure_basis: str
    helpers: tuple[tuple[int, str], ...]
    gates: tuple[tuple[int, int, int], ...]
    windows: tuple[tuple[int, int, int], ...] = ()

    @property
    def ancillas(self) -> tuple[int, ...]:
        return (self.measure, *(h for h, _ in self.helpers))

    def ancilla_basis(self, node: int) -> str:
        if node == self.measure:
            return self.measure_basis
        return dict(self.helpers)[node]

    @property
    def num_layers(self) -> int:
        return max((g[0] for g in self.gates), default=0)

    def shifted(self, offset: int) -> Gadget:
        return dataclasses.replace(
            self,
            gates=tuple((layer + offset, c, t) for layer, c, t in self.gates),
            windows=tuple((n, a + offset, b + offset) for n, a, b in self.windows),
        )


def dual(g: Gadget) -> Gadget:
    """The Hadamard dual of a gadget: X checks from Z checks and back."""
    swap = {"X": "Z", "Z": "X"}
    return dataclasses.replace(
        g,
        basis=swap[g.basis],
        measure_basis=swap[g.measure_basis],
        helpers=tuple((h, swap[b]) for h, b in g.helpers),
        gates=tuple((layer, t, c) for layer, c, t in g.gates),
    )


@dataclasses.dataclass(frozen=True)
class Stabilizer:
    """A stabilizer as the product of the values of one or more gadgets of the same round."""

    basis: str
    gadgets: tuple[int, ...]
    support: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Template:
    """A native code patch in its own coordinates, with its syndrome-extraction schedule.

    Attributes:
        kind: the construction (``"surface"``, ``"surface-relay"``, ``"subsystem"``).
        distance: code distance.
        basis: the memory basis the patch is oriented for (``"Z"`` or ``"X"``).
        coords: ``(row, column)`` of every node; the node index is the position.
        roles: ``"data"``, ``"measure"`` or ``"bridge"`` per node.
        edges: couplers as node pairs ``(i, j)``, ``i < j``; every gate acts on one.
        phases: the check type measured in each phase of a round.
        gadgets: every check measurement of one round.
        stabilizers: the stabilizers whose round-to-round changes are detectors.
        logicals: ``(basis, nodes)`` pairs: support of the logical operators.
    """

    kind: str
    distance: int
    basis: str
    coords: tuple[Coord, ...]
    roles: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    phases: tuple[str, ...]
    gadgets: tuple[Gadget, ...]
    stabilizers: tuple[Stabilizer, ...]
    logicals: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def num_nodes(self) -> int:
        return len(self.coords)

    def nodes_with_role(self, role: str) -> tuple[int, ...]:
        return tuple(i for i, r in enumerate(self.roles) if r == role)

    def logical(self, basis: str) -> tuple[int, ...]:
        return dict(self.logicals)[basis]

    @property
    def two_qubit_gates_per_round(self) -> int:
        """CX (on hardware: CZ) gates in one round of syndrome extraction."""
        return sum(len(g.gates) for g in self.gadgets)

    def phase_layers(self, phase: int) -> int:
        return max((g.num_layers for g in self.gadgets if g.phase == phase), default=0)


class _Occupancy:
    """Which qubit is busy at which layer of a phase, for placing gadgets."""

    def __init__(self, data: frozenset[int]):
        self.data = data
        self.gate_at: dict[int, set[int]] = {}  # layer -> qubits with a gate
        self.held: dict[int, list[tuple[int, int]]] = {}  # qubit -> [first, last] intervals held
        self.window: dict[int, list[tuple[int, int]]] = {}  # data qubit -> windows

    @staticmethod
    def _overlap(intervals, a, b) -> bool:
        return any(not (b < x or y < a) for x, y in intervals)

    def fits(self, g: Gadget) -> bool:
        own_windows = {n: (a, b) for n, a, b in g.windows}
        for layer, c, t in g.gates:
            for q in (c, t):
                if q in self.gate_at.get(layer, ()):
                    return False
                if q in self.data and self._overlap(self.window.get(q, []), layer, layer):
                    return False
        for q in g.ancillas:
            layers = [layer for layer, c, t in g.gates if q in (c, t)]
            first, last = min(layers), max(layers)
            if q == g.measure:
                last = _INF
            if self._overlap(self.held.get(q, []), first, last):
                return False
        for n, (a, b) in own_windows.items():
            for layer in range(a, b + 1):
                if n in self.gate_at.get(layer, ()):
                    return False
            if self._overlap(self.window.get(n, []), a, b):
                return False
        return True

    def add(self, g: Gadget) -> None:
        for layer, c, t in g.gates:
            self.gate_at.setdefault(layer, set()).update((c, t))
        for q in g.ancillas:
            layers = [layer for layer, c, t in g.gates if q in (c, t)]
            first, last = min(layers), max(layers)
            if q == g.measure:
                last = _INF
            self.held.setdefault(q, []).append((first, last))
        for n, a, b in g.windows:
            self.window.setdefault(n, []).append((a, b))


def place_rigid(gadgets: Sequence[Gadget], data: frozenset[int]) -> list[Gadget]:
    """Shift each gadget (in order, as a rigid block) to the earliest layers where it fits.

    A gadget fits when none of its gates shares a layer with another gate on the same
    qubit, none of its ancillas is held by another gadget meanwhile (a helper from its
    first to its last gate, a measured qubit from its first gate to the end of the phase),
    and no data qubit is touched by one gadget while another has it folded (windows).
    """
    occ = _Occupancy(data)
    out = []
    for g in gadgets:
        offset = 0
        while not occ.fits(g.shifted(offset)):
            offset += 1
            if offset > 1000:
                raise RuntimeError("could not place gadget")
        placed = g.shifted(offset)
        occ.add(placed)
        out.append(placed)
    return out
