"""Write a template's memory experiment as a noiseless stim circuit on physical qubits.

Circuit: data reset in the memory basis (then X or Z on every data qubit for "1"/"-": the
product of all X, or all Z, is a logical operator of these odd-distance codes); per round
and phase, one layer resetting the phase's ancillas (each in the basis of its first use;
an ancilla reused in the other basis gets an H in between), the phase's CX layers, one
measurement layer; finally the data measured in the memory basis.

Detectors: every stabilizer of the memory basis in the first round; every stabilizer from
the second round on, against its previous value; with ``flags``, every helper measurement
(deterministic); at the end, each memory-basis stabilizer recomputed from the data against
its last round. One observable: the logical operator of the memory basis on the data.

Layers hold operations on distinct qubits and end with a TICK; each CX is written
``H(t) CZ H(t)``. A peephole pass then works on each qubit's own sequence: ``H H``
cancels, ``R H`` becomes ``RX`` (and ``RX H`` becomes ``R``), ``H M`` becomes ``MX`` (and
``H MX`` becomes ``M``) when the qubit is next reset or never used again. Empty layers
are dropped. Detectors refer to measurements by key and are written right after the layer
that completes them.

Without resets (``reset=False``), an ancilla measured earlier is brought back by a Pauli
conditioned on its recorded outcome (``CX rec q`` / ``CZ rec q``), and stim's
``with_inlined_feedback`` then removes those and folds the recorded outcomes into the
detectors: the ancilla simply keeps its post-measurement state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import stim

from qpuflow.native.template import Gadget, Template

__all__ = ["memory_circuit", "LOGICAL_STATES"]

LOGICAL_STATES = {"0": ("Z", 0), "1": ("Z", 1), "+": ("X", 0), "-": ("X", 1)}

_RESET = {"R", "RX"}
_MEASURE = {"M", "MX"}


@dataclasses.dataclass
class _Op:
    name: str
    qubit: int
    key: object = None  # measurement key
    partner: int | None = None  # CZ partner


def _layers_for(
    template: Template, rounds: int, memory_basis: str, flip: int, flags: bool, reset: bool
) -> list[list[_Op]]:
    data = template.nodes_with_role("data")
    layers: list[list[_Op]] = []
    init = "R" if memory_basis == "Z" else "RX"
    layers.append([_Op(init, q) for q in data])
    if flip:
        layers.append([_Op("X" if memory_basis == "Z" else "Z", q) for q in data])
    last_meas: dict[int, tuple[object, str]] = {}  # ancilla -> (key, basis) of its last measurement
    for r in range(rounds):
        for ph in range(len(template.phases)):
            layers += _phase_layers([g for g in template.gadgets if g.phase == ph], r, ph, reset, flags, last_meas)
    final = "M" if memory_basis == "Z" else "MX"
    layers.append([_Op(final, q, key=("d", q)) for q in data])
    return layers


def _phase_layers(gadgets: list[Gadget], r: int, ph: int, reset: bool, flags: bool | str,
                  last_meas: dict[int, tuple[object, str]]) -> list[list[_Op]]:
    """The layers of one phase of round ``r``: prepare its ancillas (reset, or undo the last
    measured value by feedback), its CX layers as H-CZ-H with the basis changes ancillas need,
    and its measurements (recorded in ``last_meas``)."""
    # Each ancilla's uses in this phase, in time order: (first layer, basis).
    uses: dict[int, list[tuple[int, str]]] = {}
    for g in gadgets:
        for a in g.ancillas:
            first = min(layer for layer, c, t in g.gates if a in (c, t))
            uses.setdefault(a, []).append((first, g.ancilla_basis(a)))
    for a in uses:
        uses[a].sort()
    anc = sorted(uses)
    init_layer: list[_Op] = []
    after_init: list[_Op] = []
    for a in anc:
        want = uses[a][0][1]
        if reset or a not in last_meas:
            init_layer.append(_Op("R" if want == "Z" else "RX", a))
            continue
        # No reset: undo the measured value with a Pauli conditioned on the record
        # (inlined into the detectors at the end), then change basis if needed.
        key, was = last_meas[a]
        init_layer.append(_Op("FBX" if was == "Z" else "FBZ", a, key=key))
        if want != was:
            after_init.append(_Op("H", a))
    layers: list[list[_Op]] = [init_layer, after_init]
    change_at: dict[int, list[int]] = {}  # layer -> ancillas needing an H first
    final_basis = {}
    for a, seq in uses.items():
        for (f0, b0), (f1, b1) in zip(seq, seq[1:]):
            if b0 != b1:
                change_at.setdefault(f1, []).append(a)
        final_basis[a] = seq[-1][1]
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for g in gadgets:
        for layer, c, t in g.gates:
            by_layer.setdefault(layer, []).append((c, t))
    for layer in sorted(by_layer):
        gates = sorted(by_layer[layer])
        pre = [t for _, t in gates]
        for a in change_at.get(layer, []):
            if a in pre:
                pre.remove(a)  # H H cancels
            else:
                pre.append(a)
        layers.append([_Op("H", q) for q in sorted(pre)])
        layers.append([op for c, t in gates for op in (_Op("CZ", c, partner=t), _Op("CZ", t, partner=c))])
        layers.append([_Op("H", t) for _, t in gates])
    measured = []
    for g in gadgets:
        measured.append((g.measure, g.measure_basis))
    if flags or not reset:
        flagged = {a for a in anc} - {g.measure for g in gadgets}
        measured += [(a, final_basis[a]) for a in sorted(flagged)]
    layers.append([_Op("M" if b == "Z" else "MX", a, key=("a", r, ph, a)) for a, b in measured])
    for a, b in measured:
        last_meas[a] = (("a", r, ph, a), b)
    return layers


def _peephole(layers: list[list[_Op]]) -> list[list[_Op]]:
    # Per qubit: the (layer index, op) sequence; rewrite pairs until nothing changes.
    changed = True
    while changed:
        changed = False
        seq: dict[int, list[tuple[int, _Op]]] = {}
        for li, layer in enumerate(layers):
            for op in layer:
                seq.setdefault(op.qubit, []).append((li, op))
        dead: set[int] = set()
        for ops in seq.values():
            j = 0
            while j + 1 < len(ops):
                (_, a), (_, b) = ops[j], ops[j + 1]
                if id(a) in dead or id(b) in dead:
                    j += 1
                    continue
                after = ops[j + 2][1] if j + 2 < len(ops) else None
                free_after = after is None or after.name in _RESET
                if a.name == "H" and b.name == "H":
                    dead.update((id(a), id(b)))
                    j += 2
                    continue
                if a.name in _RESET and b.name == "H":
                    a.name = "RX" if a.name == "R" else "R"
                    dead.add(id(b))
                    j += 2
                    continue
                if a.name == "H" and b.name in _MEASURE and free_after:
                    b.name = "MX" if b.name == "M" else "M"
                    dead.add(id(a))
                    j += 2
                    continue
                j += 1
        if dead:
            changed = True
            layers = [[op for op in layer if id(op) not in dead] for layer in layers]
    return [layer for layer in layers if layer]


def _detector_keys(template: Template, rounds: int, memory_basis: str,
                   flags: bool | str) -> tuple[list[tuple[tuple, list]], list]:
    """Every detector as (coordinates, the measurement keys it compares) in the order they are
    emitted, and the observable's keys: each stabilizer against its previous round (the first
    round only in the memory basis), each flag helper once per round, and the final data
    readout against the last round."""
    detectors: list[tuple[tuple, list]] = []  # (coords, keys)
    def gadget_round_keys(g: int, r: int) -> tuple:
        return ("a", r, template.gadgets[g].phase, template.gadgets[g].measure)

    for r in range(rounds):
        for ph, _basis in enumerate(template.phases):
            for st in template.stabilizers:
                if template.gadgets[st.gadgets[0]].phase != ph:
                    continue
                keys = [gadget_round_keys(g, r) for g in st.gadgets]
                if r > 0:
                    keys += [gadget_round_keys(g, r - 1) for g in st.gadgets]
                elif st.basis != memory_basis:
                    continue
                m = template.coords[template.gadgets[st.gadgets[0]].measure]
                detectors.append(((m[0], m[1], r), keys))
            if flags:
                measured = {g.measure for g in template.gadgets if g.phase == ph}
                count: dict[int, int] = {}
                for g in template.gadgets:
                    if g.phase == ph:
                        for h, _ in g.helpers:
                            count[h] = count.get(h, 0) + 1
                # A helper shared by two gadgets of a phase is measured once for both; its
                # flag would mix faults of either, so it only counts when `flags == "all"`.
                helpers = sorted(h for h, n in count.items() if h not in measured and (n == 1 or flags == "all"))
                for h in helpers:
                    rc = template.coords[h]
                    detectors.append(((rc[0], rc[1], r), [("a", r, ph, h)]))
    for st in template.stabilizers:
        if st.basis != memory_basis:
            continue
        keys = [("d", q) for q in st.support] + [gadget_round_keys(g, rounds - 1) for g in st.gadgets]
        m = template.coords[template.gadgets[st.gadgets[0]].measure]
        detectors.append(((m[0], m[1], rounds), keys))
    observable = [("d", q) for q in template.logical(memory_basis)]

    return detectors, observable


def memory_circuit(template: Template, qubits: Sequence[int], *, rounds: int, logical_state: str,
                   flags: bool | str = True, reset: bool = True) -> stim.Circuit:
    """The noiseless memory experiment of ``template`` with node ``i`` on qubit ``qubits[i]``."""
    if logical_state not in LOGICAL_STATES:
        raise ValueError(f"logical_state must be one of {sorted(LOGICAL_STATES)}, not {logical_state!r}")
    rounds = int(rounds)
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    memory_basis, flip = LOGICAL_STATES[logical_state]
    layers = _peephole(_layers_for(template, rounds, memory_basis, flip, flags, reset))
    phys = list(qubits)
    detectors, observable = _detector_keys(template, rounds, memory_basis, flags)
    c = stim.Circuit()
    used = sorted({op.qubit for layer in layers for op in layer})
    for node in used:
        c.append("QUBIT_COORDS", [phys[node]], list(template.coords[node]))
    index: dict[object, int] = {}
    count = 0
    pending = list(range(len(detectors)))
    for layer in layers:
        names: dict[str, list[_Op]] = {}
        for op in layer:
            names.setdefault(op.name, []).append(op)
        for name, ops in names.items():
            if name in ("FBX", "FBZ"):
                for op in ops:
                    c.append("CX" if name == "FBX" else "CZ", [stim.target_rec(index[op.key] - count), phys[op.qubit]])
                continue
            if name == "CZ":
                targets = [phys[q] for op in ops if op.qubit < op.partner for q in (op.qubit, op.partner)]
            else:
                targets = [phys[op.qubit] for op in ops]
            c.append(name, targets)
            if name in _MEASURE:
                for op in ops:
                    index[op.key] = count
                    count += 1
        c.append("TICK")
        if any(op.name in _MEASURE for op in layer):
            still = []
            for j in pending:
                coords, keys = detectors[j]
                if all(k in index for k in keys):
                    c.append("DETECTOR", [stim.target_rec(index[k] - count) for k in keys], list(coords))
                else:
                    still.append(j)
            pending = still
    assert not pending
    c.append("OBSERVABLE_INCLUDE", [stim.target_rec(index[k] - count) for k in observable], 0)
    if not reset:
        c = c.with_inlined_feedback()
    return c
