"""The rotated surface code laid out natively on heavy-hex, with fold-unfold relays.

Layout (template coordinates, see :mod:`qpuflow.native.template`)
-------------------------------------------------------------------
Data qubit ``D(i, k)`` (``i, k = 0..d-1``) sits at ``(2i, 2k)``: on the degree-3 qubits of
``d`` consecutive heavy-hex rows, every second row qubit. The row qubit between ``D(i, k)``
and ``D(i, k+1)`` is ``S(i, k)`` at ``(2i, 2k+1)``. Between rows ``i`` and ``i+1`` heavy-hex
has a bridge ("rung") on every second data column, alternating from one gap to the next:
rung ``B(i, k)`` at ``(2i+1, 2k)`` exists when ``i + k + phi`` is even. So the four data of
face ``(i, k)`` (a weight-4 plaquette between columns ``k`` and ``k+1``) touch three
ancillas: ``S(i, k)`` above, ``S(i+1, k)`` below, and exactly one rung on the left or the
right side. None of these three is coupled to another; information has to go through a
data qubit.

Fold-unfold gadget (written for a Z plaquette; an X plaquette reverses every CX)
--------------------------------------------------------------------------------
With ``a``, ``e`` the top and bottom data on the rung side, ``b``, ``f`` the other two,
``St``/``Sb`` the row ancillas above/below and ``B`` the rung (all ancillas in |0>)::

    layer 1:  CX b->St   CX f->Sb        St = b, Sb = f
    layer 2:  CX St->a   CX Sb->e        fold: a = a^b, e = e^f
    layer 3:  CX a->B                    B = a^b
    layer 4:  CX e->B                    B = a^b^e^f   (measured)
    layer 5:  CX St->a   CX Sb->e        unfold: a, e restored
    layer 6:  CX b->St   CX f->Sb        St, Sb back to |0>  (measured as flags)

10 two-qubit gates per weight-4 plaquette. Every plaquette of one type runs these six
layers at the same time: a data qubit is the folded ``a``/``e`` of at most one plaquette of a
type and only the read-out ``b``/``f`` of the other (read in layers 1 and 6, outside the
fold), so nothing collides. Z plaquettes run in one phase, X plaquettes in the next: the two
plaquette types share their ancillas (a rung serves the plaquettes left and right of it, a
row ancilla those above and below), so each phase ends with a measurement.

Boundaries: a weight-2 check on the top or bottom row is read by the row ancilla between its
two data (2 gates). A weight-2 check on a side needs a rung at that column; with odd ``d`` the
rung phase can be chosen to serve one side (2 gates), and the other side's checks use a
five-ancilla chain outside the patch (``S - V - rung - V - S``, 10 gates: copy both data
to the ends, move both copies to the rung, uncompute).

Two-qubit gates per round: ``10 (d-1)^2 + 2 (d-1) + (d-1) + 10 (d-1)/2`` = 56 for d=3 and 192
for d=5.

Orientation
-----------
A single fault on a folded data qubit spreads to the pair ``a, b`` (or ``e, f``): a
*horizontal* weight-2 error of the plaquette's own type (Z for Z plaquettes, X for X
plaquettes). For a Z memory, X errors matter; the patch is oriented with X-type weight-2
checks on top and bottom, so the X chains that flip the logical run vertically and the
horizontal X pairs do not shorten them (circuit distance d). For an X memory the types are
swapped. ``basis`` in :func:`surface_template` chooses this.
"""

from __future__ import annotations

import functools

from qpuflow.native.template import Gadget, Stabilizer, Template, dual_gates, schedule_greedy

__all__ = ["surface_template"]


@functools.lru_cache(maxsize=None)
def surface_template(distance: int, basis: str) -> Template:
    """The native rotated surface code of odd ``distance`` oriented for a ``basis`` memory."""
    d = int(distance)
    if d < 3 or d % 2 == 0:
        raise ValueError(f"distance must be odd and >= 3, not {distance}")
    if basis not in ("Z", "X"):
        raise ValueError(f"basis must be 'Z' or 'X', not {basis!r}")
    side = "Z" if basis == "Z" else "X"  # weight-2 checks on the left and right
    top = "X" if side == "Z" else "Z"  # weight-2 checks on the top and bottom

    def face_type(i: int, k: int) -> str:
        return "X" if (i + k) % 2 == 0 else "Z"

    left_gaps = [i for i in range(d - 1) if face_type(i, -1) == side]
    right_gaps = [i for i in range(d - 1) if face_type(i, d - 1) == side]
    phi = left_gaps[0] % 2  # rungs at column 0 exactly in the left-boundary gaps

    def has_rung(i: int, k: int) -> bool:
        return (i + k + phi) % 2 == 0

    coords: list[tuple[int, int]] = []
    roles: list[str] = []
    index: dict[tuple[int, int], int] = {}

    def node(rc: tuple[int, int], role: str) -> int:
        if rc in index:
            i = index[rc]
            if roles[i] == "bridge" and role == "measure":
                roles[i] = "measure"
            return i
        index[rc] = len(coords)
        coords.append(rc)
        roles.append(role)
        return index[rc]

    D = {(i, k): node((2 * i, 2 * k), "data") for i in range(d) for k in range(d)}

    def S(i: int, k: int, role: str = "bridge") -> int:
        return node((2 * i, 2 * k + 1), role)

    def rung(i: int, k: int, role: str = "measure") -> int:
        assert has_rung(i, k)
        return node((2 * i + 1, 2 * k), role)

    data_nodes = frozenset(D.values())
    phases = ("Z", "X")
    fixed: list[Gadget] = []
    loose: list[tuple[Gadget, list[tuple[int, int]]]] = []

    def finish(basis_: str, gates):
        return gates if basis_ == "Z" else dual_gates(gates)

    # Weight-4 plaquettes: fold-unfold through the data on the rung side.
    for i in range(d - 1):
        for k in range(d - 1):
            t = face_type(i, k)
            s, o = (k, k + 1) if has_rung(i, k) else (k + 1, k)
            a, b, e, f = D[i, s], D[i, o], D[i + 1, s], D[i + 1, o]
            st, sb, B = S(i, k), S(i + 1, k), rung(i, s)
            z_gates = (
                (1, b, st), (1, f, sb),
                (2, st, a), (2, sb, e),
                (3, a, B),
                (4, e, B),
                (5, st, a), (5, sb, e),
                (6, b, st), (6, f, sb),
            )
            fixed.append(Gadget(
                basis=t, phase=phases.index(t), support=tuple(sorted((a, b, e, f))),
                measure=B, helpers=(st, sb), gates=finish(t, z_gates),
                windows=((a, 2, 5), (e, 2, 5)),
            ))

    def weight_two(t: str, p: int, q: int, anc: int) -> None:
        prog = [(p, anc), (q, anc)]
        g = Gadget(basis=t, phase=phases.index(t), support=tuple(sorted((p, q))),
                   measure=anc, helpers=(), gates=())
        loose.append((g, [(c, x) if t == "Z" else (x, c) for c, x in prog]))

    for k in range(d - 1):
        if face_type(-1, k) == top:
            weight_two(top, D[0, k], D[0, k + 1], S(0, k, "measure"))
        if face_type(d - 1, k) == top:
            weight_two(top, D[d - 1, k], D[d - 1, k + 1], S(d - 1, k, "measure"))
    for i in left_gaps:
        weight_two(side, D[i, 0], D[i + 1, 0], rung(i, 0))
    for i in right_gaps:
        # S1 - V1 - Bc - V2 - S2 outside the right column.
        p, q = D[i, d - 1], D[i + 1, d - 1]
        s1, v1 = S(i, d - 1), node((2 * i, 2 * d), "bridge")
        bc = rung(i, d)
        v2, s2 = node((2 * i + 2, 2 * d), "bridge"), S(i + 1, d - 1)
        prog = [(p, s1), (q, s2), (s1, v1), (s2, v2), (v1, bc), (v2, bc),
                (s1, v1), (s2, v2), (p, s1), (q, s2)]
        if side == "X":
            prog = [(x, c) for c, x in prog]
        loose.append((Gadget(basis=side, phase=phases.index(side), support=tuple(sorted((p, q))),
                             measure=bc, helpers=(s1, v1, v2, s2), gates=()), prog))

    gadgets: list[Gadget] = []
    for ph, t in enumerate(phases):
        gadgets += schedule_greedy(
            [g for g in fixed if g.phase == ph],
            [(g, prog) for g, prog in loose if g.phase == ph],
            data_nodes,
        )

    edges = sorted({tuple(sorted((c, x))) for g in gadgets for _, c, x in g.gates})
    stabilizers = tuple(Stabilizer(g.basis, (j,), g.support) for j, g in enumerate(gadgets))
    # Logical operators: top/bottom checks are of type `top`, so logical `side`-type
    # operators run along a row and logical `top`-type operators along a column.
    row0 = tuple(D[0, k] for k in range(d))
    col0 = tuple(D[i, 0] for i in range(d))
    logicals = ((side, row0), (top, col0))
    return Template(
        kind="surface", distance=d, basis=basis, coords=tuple(coords), roles=tuple(roles),
        edges=tuple(edges), phases=phases, gadgets=tuple(gadgets), stabilizers=stabilizers,
        logicals=logicals,
    )
