"""Abstract patch templates: the qubits of a native code patch, their couplers and its schedule.

A :class:`Template` is written in its own grid coordinates ``(row, column)``: heavy-hex rows
are even template rows, the bridge qubits between two rows sit on the odd template row in
between. It says nothing about a device; :func:`qpuflow.native.device.embeddings` finds
where its coupler graph sits inside a device's coupling graph, and a
:class:`~qpuflow.native.patches.Patch` is one such placement.

The schedule is a list of *phases* (e.g. all Z checks, then all X checks). In a phase every
ancilla of the phase is reset, a few layers of CX gates run, then the phase's ancillas are
measured. A :class:`Gadget` measures one check (a stabilizer, or a gauge operator of a
subsystem code) with one measured qubit and any number of helper qubits; the helpers come
back to their initial state when nothing goes wrong, so their measurements are flags
(deterministic detectors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

__all__ = ["Gadget", "Stabilizer", "Template", "schedule_greedy", "dual_gates"]

Coord = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Gadget:
    """The gates that measure one check, in one phase.

    Attributes:
        basis: ``"X"`` or ``"Z"``: the Pauli type of the measured check.
        phase: index of the phase (in :attr:`Template.phases`) the gadget runs in.
        support: template nodes of the data qubits of the check.
        measure: the node whose measurement (in ``basis``) is the check's value.
        helpers: ancilla nodes used on the way and restored; measured in ``basis`` as flags.
        gates: ``(layer, control, target)`` CX gates, ``layer`` counted from 1 in the phase.
        windows: ``(node, first, last)``: the gadget temporarily changes data ``node``
            during layers ``first..last``; no other gadget may touch it then.
    """

    basis: str
    phase: int
    support: tuple[int, ...]
    measure: int
    helpers: tuple[int, ...]
    gates: tuple[tuple[int, int, int], ...]
    windows: tuple[tuple[int, int, int], ...] = ()

    @property
    def ancillas(self) -> tuple[int, ...]:
        return (self.measure, *self.helpers)

    @property
    def num_layers(self) -> int:
        return max((g[0] for g in self.gates), default=0)


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
        kind: ``"surface"`` or ``"subsystem"``.
        distance: code distance.
        basis: the memory basis the patch is oriented for (``"Z"`` or ``"X"``).
        coords: ``(row, column)`` of every node; the node index is the position.
        roles: ``"data"``, ``"measure"`` or ``"bridge"`` per node.
        edges: couplers as node pairs ``(i, j)``, ``i < j``; every gate acts on one.
        phases: the check type measured in each phase of a round.
        gadgets: every check measurement of one round.
        stabilizers: the stabilizers whose round-to-round changes are detectors.
        logicals: ``{"Z": nodes, "X": nodes}``: support of the logical operators.
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


def dual_gates(gates: Sequence[tuple[int, int, int]]) -> tuple[tuple[int, int, int], ...]:
    """The X-type version of a Z-type gadget: every CX reversed (Hadamard duality)."""
    return tuple((layer, t, c) for layer, c, t in gates)


def schedule_greedy(
    fixed: Sequence[Gadget],
    loose: Sequence[tuple[Gadget, Sequence[tuple[int, int]]]],
    data_nodes: frozenset[int],
) -> list[Gadget]:
    """Place the gates of ``loose`` gadgets around the already scheduled ``fixed`` ones.

    ``loose`` holds ``(gadget, program)``: ``program`` is the gadget's CX gates
    ``(control, target)`` in an order that is correct when run one after the other. Each
    gate goes to the earliest layer after the previous gate on any of its qubits (within
    the gadget) where both of its qubits are free and none of them is a data qubit that
    another gadget is temporarily changing (see :attr:`Gadget.windows`). Returns the
    ``fixed`` gadgets followed by the placed ones.
    """
    busy: dict[int, set[int]] = {}
    window: dict[int, set[int]] = {}
    out = list(fixed)
    for g in fixed:
        for layer, c, t in g.gates:
            busy.setdefault(layer, set()).update((c, t))
        for node, first, last in g.windows:
            for layer in range(first, last + 1):
                window.setdefault(layer, set()).add(node)
    for g, program in loose:
        last_on: dict[int, int] = {}
        placed = []
        for c, t in program:
            layer = max(last_on.get(c, 0), last_on.get(t, 0)) + 1
            while True:
                b = busy.get(layer, set())
                w = window.get(layer, set())
                if c not in b and t not in b and not ({c, t} & data_nodes & w):
                    break
                layer += 1
            busy.setdefault(layer, set()).update((c, t))
            last_on[c] = last_on[t] = layer
            placed.append((layer, c, t))
        out.append(dataclasses.replace(g, gates=tuple(placed)))
    return out
