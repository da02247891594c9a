"""The rotated surface code on heavy-hex: bridge trees and fold-unfold (``kind="surface"``).

Layout (template coordinates, see :mod:`qpuflow.native.template`)
-------------------------------------------------------------------
``d`` consecutive heavy-hex rows carry the ``d`` data rows. In row ``i`` (template row
``2i``) the qubits alternate ``V D V D ... D V``: data ``D(i, j)`` at column ``2j+1``
(``j = 0..d-1``, the degree-2 row qubits) and ``V(i, j)`` at column ``2j`` (``j = 0..d``,
the degree-3 row qubits). Every ``V`` has one bridge ("rung") to the row above or below;
rung ``B(i, j)`` at ``(2i+1, 2j)`` joins ``V(i, j)`` and ``V(i+1, j)`` when ``i + j`` has
the parity ``phi``, alternating from one gap to the next as on IBM's heavy-hex devices.

Plaquette ``(i, j)`` holds data ``D(i, j-1), D(i, j), D(i+1, j-1), D(i+1, j)`` (the
rotated code's checkerboard, ``j = 0`` and ``j = d`` being the left and right boundary,
``i = -1`` and ``i = d-1`` the top and bottom). Half of the positions (``i + j = phi`` mod 2)
have a *bridge tree* ``V(i, j) - B(i, j) - V(i+1, j)`` touching all their data; the
checkerboard makes these exactly the positions of one check type, and ``phi`` is chosen
so that this is also the type of the left/right boundary checks, so every side check has a
tree too. The other half (``N`` plaquettes, and the top/bottom checks) have none.

Gadgets (written for Z checks; X checks are the Hadamard duals, every CX reversed)
---------------------------------------------------------------------------------
*Tree plaquette*, 8 CX (4 on data), 5 layers. The tree is a three-qubit cat: ``V``, ``V'``
in |+>, ``B`` in |0>::

    layer 1:  CX V->B
    layer 2:  CX V'->B   CX a->V          (B = v^v')
    layer 3:  CX b->V    CX f->V'
    layer 4:  CX V->B    CX e->V'
    layer 5:  CX V'->B                    B = a^b^e^f (measured); V, V' back in |+> (flags)

(``a, b`` top pair, ``e, f`` bottom pair.) The bottom pair is read right-then-left so that a
data qubit is never read in the same layer by the trees above and below it.

*Side check*, 6 CX (2 on data), 4-5 layers: the same cat with one data qubit per ``V``.

*N plaquette*, 14 CX (10 on data), 5 layers (fold-unfold). ``At = V(i, j)`` and
``Ab = V(i+1, j)`` sit between the top and the bottom pair, the tree of position
``(i, j+1)`` (always a tree position, possibly a side one) touches ``b`` and ``f``::

    layer 1:  CX a->At   CX e->Ab   CX Vt->Bm        copy a, e; start the cat
    layer 2:  CX At->b   CX Ab->f   CX Vb->Bm        fold: b = a^b, f = e^f
    layer 3:  CX b->Vt   CX f->Vb                    the cat reads the folded pair
    layer 4:  CX Vt->Bm  CX At->b   CX Ab->f         unfold
    layer 5:  CX Vb->Bm  CX a->At   CX e->Ab         Bm = a^b^e^f; At, Ab back to |0>

The N plaquettes of neighbouring gaps share ``V`` qubits, so they run in two sub-phases
(even gaps, then odd gaps) inside the same measurement phase.

*Top/bottom check*: ``V(0, j)`` (or ``V(d-1, j)``) sits between its two data: 2 CX.

A round is two phases, each ending in one measurement layer: all tree-type checks (5
layers), then all N-type checks (10-12 layers). Two-qubit gates per round:
``11 (d-1)^2 + 8 (d-1)`` = 60 for d=3 and 208 for d=5; on hardware every CX is a CZ
between Hadamards, and the Hadamards that meet cancel (or turn a reset or a measurement
into the other basis).

Orientation
-----------
A fault inside a fold window spreads to the folded pair (``a, b``, horizontal), and an
X fault on a cat qubit of an X check spreads to the data pair it still has to touch
(horizontal too). Horizontal pairs do not shorten a logical error that runs vertically, so
for a Z memory the X logical errors must run top to bottom: X-type checks on top and
bottom, Z-type on the sides (and so on every tree); for an X memory the other way round.
``basis`` chooses this. With the gate order above the graphlike circuit distance of the
other basis is still ``d``, but that basis fails far more often (at d=5, FakeFez median
noise: about 2.0% per round against 0.3%).
"""

from __future__ import annotations

import functools

from qpuflow.native.lattice import Grid, check_code, make_gadget
from qpuflow.native.template import Gadget, Stabilizer, Template, place_rigid

__all__ = ["surface_template"]


@functools.lru_cache(maxsize=None)
def surface_template(distance: int, basis: str) -> Template:
    """The native rotated surface code of odd ``distance`` oriented for a ``basis`` memory."""
    d = check_code(distance, basis)
    side = basis  # type of the left/right weight-2 checks (and of every tree plaquette)
    top = "X" if side == "Z" else "Z"

    def ptype(i: int, j: int) -> str:
        return "X" if (i + j) % 2 == 0 else "Z"

    phi = 0 if side == "X" else 1

    def is_tree(i: int, j: int) -> bool:
        return (i + j) % 2 == phi

    grid = Grid(d)
    D = grid.data

    def V(i: int, j: int, role: str = "bridge") -> int:
        return grid.node((2 * i, 2 * j), role)

    phases = (side, top)
    n_gadgets: dict[int, list[Gadget]] = {0: [], 1: []}
    edge_gadgets: list[Gadget] = []

    # Tree plaquettes and side checks (type `side`).
    tree_gadgets = [grid.tree(i, j, side, phases) for i in range(d - 1) for j in range(d + 1) if is_tree(i, j)]

    # N plaquettes (type `top`): fold the left data into the right data, read with the tree
    # to the right.
    for i in range(d - 1):
        for j in range(1, d):
            if is_tree(i, j):
                continue
            assert ptype(i, j) == top and is_tree(i, j + 1)
            n_gadgets[i % 2].append(_n_plaquette(grid, i, j, top, phases))

    # Top and bottom checks (type `top`).
    for i, row in ((-1, 0), (d - 1, d - 1)):
        for j in range(1, d):
            if ptype(i, j) != top:
                continue
            v = V(row, j, "measure")
            edge_gadgets.append(make_gadget(top, phases, (D[row, j - 1], D[row, j]), v, (),
                                            ((1, D[row, j - 1], v), (2, D[row, j], v))))

    gadgets = place_rigid(tree_gadgets, grid.data_nodes)
    gadgets += place_rigid(n_gadgets[0] + n_gadgets[1] + edge_gadgets, grid.data_nodes)
    edges = sorted({tuple(sorted((c, x))) for g in gadgets for _, c, x in g.gates})
    stabilizers = tuple(Stabilizer(g.basis, (k,), g.support) for k, g in enumerate(gadgets))
    # Top/bottom checks are of type `top`: logical `side`-type operators run along a row,
    # logical `top`-type operators along a column.
    row0 = tuple(D[0, j] for j in range(d))
    col0 = tuple(D[i, 0] for i in range(d))
    return Template(
        kind="surface", distance=d, basis=basis, coords=tuple(grid.coords), roles=tuple(grid.roles),
        edges=tuple(edges), phases=phases, gadgets=tuple(gadgets), stabilizers=stabilizers,
        logicals=((side, row0), (top, col0)),
    )


def _n_plaquette(grid: Grid, i: int, j: int, check_type: str, phases: tuple[str, str]) -> Gadget:
    """The N plaquette at column ``j`` between data rows ``i`` and ``i + 1``: the left data are
    folded into the right data through the bridges at column ``j`` and read with the tree
    check at column ``j + 1``."""
    D = grid.data
    a, bb, e, f = D[i, j - 1], D[i, j], D[i + 1, j - 1], D[i + 1, j]
    at, ab = grid.node((2 * i, 2 * j), "bridge"), grid.node((2 * i + 2, 2 * j), "bridge")
    vt, vb = grid.node((2 * i, 2 * j + 2), "bridge"), grid.node((2 * i + 2, 2 * j + 2), "bridge")
    bm = grid.node((2 * i + 1, 2 * j + 2), "measure")
    gates = (
        (1, a, at), (1, e, ab), (1, vt, bm),
        (2, at, bb), (2, ab, f), (2, vb, bm),
        (3, bb, vt), (3, f, vb),
        (4, vt, bm), (4, at, bb), (4, ab, f),
        (5, vb, bm), (5, a, at), (5, e, ab),
    )
    return make_gadget(check_type, phases, (a, bb, e, f), bm, ((at, "Z"), (ab, "Z"), (vt, "X"), (vb, "X")), gates,
                       ((bb, 2, 4), (f, 2, 4)))
