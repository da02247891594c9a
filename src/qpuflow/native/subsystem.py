"""The heavy-hex subsystem code (Chamberland et al., PRX 10, 011022 (2020)), ``kind="subsystem"``.

Same grid as :mod:`qpuflow.native.surface`: data ``D(i, j)`` on the degree-2 row qubits
(``(2i, 2j+1)``), ``V(i, j)`` on the degree-3 row qubits (``(2i, 2j)``), rungs
``B(i, j)`` at ``(2i+1, 2j)`` on the tree positions (``i + j`` even here).

For a Z memory (``basis="Z"``):

* X gauges: every tree position ``(i, j)`` -- the weight-4 plaquette on data
  ``D(i, j-1), D(i, j), D(i+1, j-1), D(i+1, j)`` (weight 2 on the left/right edge) --
  measured by the three-qubit cat on ``V(i, j) - B(i, j) - V(i+1, j)`` (8 CX, or 6 at the
  edges; see the surface module);
* Z gauges: every horizontal pair ``Z D(i, j-1) Z D(i, j)``, read by ``V(i, j)`` which sits
  between the two (2 CX);
* Z stabilizers: the rotated surface code's Z plaquettes at the other positions, products
  of the two Z gauges above each other, and the single Z gauges at the top and bottom;
* X stabilizers (Bacon-Shor type): the product of all X gauges of a gap, i.e. X on two
  whole data rows.

The logical Z is a column of Z, the logical X a row of X. Two phases per round (X gauges,
then Z gauges), 40 / 128 CX per round for d = 3 / 5. ``basis="X"`` is the Hadamard dual
(Z gauges on the trees, X gauges on the pairs), so that the stored basis is always the one
protected by the surface-code-like stabilizers.
"""

from __future__ import annotations

import functools

from qpuflow.native.lattice import Grid, check_code, make_gadget
from qpuflow.native.template import Gadget, Stabilizer, Template, place_rigid

__all__ = ["subsystem_template"]


@functools.lru_cache(maxsize=None)
def subsystem_template(distance: int, basis: str) -> Template:
    """The heavy-hex subsystem code of odd ``distance`` for a ``basis`` memory."""
    d = check_code(distance, basis)
    pair_type = basis  # gauges on horizontal pairs; their products protect the memory
    tree_type = "X" if basis == "Z" else "Z"

    def is_tree(i: int, j: int) -> bool:
        return (i + j) % 2 == 0

    grid = Grid(d)
    D = grid.data
    phases = (tree_type, pair_type)
    trees: list[Gadget] = []
    strips: dict[int, list[int]] = {}
    for i in range(d - 1):
        for j in range(d + 1):
            if is_tree(i, j):
                strips.setdefault(i, []).append(len(trees))
                trees.append(grid.tree(i, j, tree_type, phases))

    pairs: list[Gadget] = []
    pair_at: dict[tuple[int, int], int] = {}
    for i in range(d):
        for j in range(1, d):
            v = grid.node((2 * i, 2 * j), "measure")
            pair_at[i, j] = len(pairs)
            pairs.append(make_gadget(pair_type, phases, (D[i, j - 1], D[i, j]), v, (),
                                     ((1, D[i, j - 1], v), (2, D[i, j], v))))

    gadgets = place_rigid(trees, grid.data_nodes) + place_rigid(pairs, grid.data_nodes)
    offset = len(trees)
    stabilizers: list[Stabilizer] = []
    for i in range(d - 1):  # Bacon-Shor strips of tree gauges
        members = tuple(strips[i])
        support = tuple(sorted({q for k in members for q in gadgets[k].support}))
        stabilizers.append(Stabilizer(tree_type, members, support))
    for i in range(-1, d):  # surface-code plaquettes from pair gauges (and edge pairs)
        for j in range(1, d):
            if is_tree(i, j):
                continue
            members = tuple(offset + pair_at[r, j] for r in (i, i + 1) if 0 <= r < d)
            support = tuple(sorted({q for k in members for q in gadgets[k].support}))
            stabilizers.append(Stabilizer(pair_type, members, support))
    edges = sorted({tuple(sorted((c, x))) for g in gadgets for _, c, x in g.gates})
    col0 = tuple(D[i, 0] for i in range(d))
    row0 = tuple(D[0, j] for j in range(d))
    return Template(
        kind="subsystem", distance=d, basis=basis, coords=tuple(grid.coords), roles=tuple(grid.roles),
        edges=tuple(edges), phases=phases, gadgets=tuple(gadgets), stabilizers=tuple(stabilizers),
        logicals=((pair_type, col0), (tree_type, row0)),
    )
