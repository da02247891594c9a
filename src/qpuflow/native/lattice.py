"""The grid both native heavy-hex templates are drawn on, and the gadget they share.

Data qubit ``(i, j)`` of a distance-``d`` patch sits at template coordinates
``(2i, 2j + 1)``: heavy-hex row ``2i``. Between two data rows, the node at ``(2i, 2j)`` is a
bridge (or a measured qubit) and ``(2i + 1, 2j)`` the qubit between rows. A *tree* check at
column ``j`` between data rows ``i`` and ``i + 1`` reads the four data around it (two at the
patch's left or right edge) through the two bridges into the qubit between the rows: the
surface code uses it for its plaquettes and side checks, the subsystem code for its gauges.
"""

from __future__ import annotations

from collections.abc import Iterable

from qpuflow.native.template import Gadget, dual

__all__ = ["Grid", "check_code", "make_gadget"]

Gates = tuple[tuple[int, int, int], ...]


def check_code(distance: int, basis: str) -> int:
    """``distance`` as an int after checking it is odd and at least 3, and ``basis`` is Z or X."""
    d = int(distance)
    if d < 3 or d % 2 == 0:
        raise ValueError(f"distance must be odd and >= 3, not {distance}")
    if basis not in ("Z", "X"):
        raise ValueError(f"basis must be 'Z' or 'X', not {basis!r}")
    return d


def make_gadget(check_type: str, phases: tuple[str, str], support: Iterable[int], measure: int,
                helpers: Iterable[tuple[int, str]], z_gates: Gates, windows: Iterable[tuple[int, int, int]] = ()) -> Gadget:
    """A gadget written as its Z-type CX network, dualised when ``check_type`` is X; it runs in
    the phase of its type."""
    g = Gadget(basis="Z", phase=phases.index(check_type), support=tuple(sorted(support)), measure=measure,
               measure_basis="Z", helpers=tuple(helpers), gates=tuple(z_gates), windows=tuple(windows))
    return g if check_type == "Z" else dual(g)


class Grid:
    """The nodes of one template by coordinate, numbered in the order they are first named."""

    def __init__(self, distance: int) -> None:
        self.distance = distance
        self.coords: list[tuple[int, int]] = []
        self.roles: list[str] = []
        self._index: dict[tuple[int, int], int] = {}
        self.data = {(i, j): self.node((2 * i, 2 * j + 1), "data") for i in range(distance) for j in range(distance)}

    def node(self, rc: tuple[int, int], role: str) -> int:
        """The node at ``rc`` (made with ``role`` if new; a bridge named as measured becomes so)."""
        if rc not in self._index:
            self._index[rc] = len(self.coords)
            self.coords.append(rc)
            self.roles.append(role)
        elif role == "measure" and self.roles[self._index[rc]] == "bridge":
            self.roles[self._index[rc]] = "measure"
        return self._index[rc]

    @property
    def data_nodes(self) -> frozenset[int]:
        return frozenset(self.data.values())

    def tree(self, i: int, j: int, check_type: str, phases: tuple[str, str]) -> Gadget:
        """The tree check at column ``j`` between data rows ``i`` and ``i + 1``."""
        d, D = self.distance, self.data
        v, vb = self.node((2 * i, 2 * j), "bridge"), self.node((2 * i + 2, 2 * j), "bridge")
        b = self.node((2 * i + 1, 2 * j), "measure")
        helpers = ((v, "X"), (vb, "X"))
        if 1 <= j <= d - 1:
            a, bb, e, f = D[i, j - 1], D[i, j], D[i + 1, j - 1], D[i + 1, j]
            gates = ((1, v, b), (2, vb, b), (2, a, v), (3, bb, v), (3, f, vb), (4, v, b), (4, e, vb), (5, vb, b))
            return make_gadget(check_type, phases, (a, bb, e, f), b, helpers, gates)
        d1, d2 = (D[i, 0], D[i + 1, 0]) if j == 0 else (D[i, d - 1], D[i + 1, d - 1])
        # Left edge: D(i+1, 0) is read at layer 2 by the tree below; right edge: both data
        # are read at layer 3 by their other trees.
        if j == 0:
            gates = ((1, v, b), (2, vb, b), (2, d1, v), (3, d2, vb), (3, v, b), (4, vb, b))
        else:
            gates = ((1, v, b), (2, vb, b), (2, d1, v), (3, v, b), (4, d2, vb), (5, vb, b))
        return make_gadget(check_type, phases, (d1, d2), b, helpers, gates)
