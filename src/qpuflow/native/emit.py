"""Write a template's memory experiment as a noiseless stim circuit on physical qubits.

The circuit is built as a list of layers (each layer: operations on distinct qubits, one
TICK each), with every CX written as ``H(t) CZ H(t)``. A peephole pass then works on each
qubit's own sequence of operations: ``H H`` cancels, ``R H`` becomes ``RX`` (and ``RX H``
becomes ``R``), ``H M`` becomes ``MX`` (and ``H MX`` becomes ``M``) when the qubit is reset or
never used after the measurement. Empty layers are dropped. Measurement order is fixed when
the layers are built, so detectors refer to measurements by key and are written right after
the layer that completes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import stim

from qpuflow.native.template import Template

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
    template: Template, rounds: int, memory_basis: str, flip: int
) -> list[list[_Op]]:
    data = template.nodes_with_role("data")
    layers: list[list[_Op]] = []
    init = "R" if memory_basis == "Z" else "RX"
    layers.append([_Op(init, q) for q in data])
    if flip:
        layers.append([_Op("X" if memory_basis == "Z" else "Z", q) for q in data])
    for r in range(rounds):
        for ph, basis in enumerate(template.phases):
            gadgets = [g for g in template.gadgets if g.phase == ph]
            anc = sorted({a for g in gadgets for a in g.ancillas})
            layers.append([_Op("R" if basis == "Z" else "RX", a) for a in anc])
            by_layer: dict[int, list[tuple[int, int]]] = {}
            for g in gadgets:
                for layer, c, t in g.gates:
                    by_layer.setdefault(layer, []).append((c, t))
            for layer in sorted(by_layer):
                gates = sorted(by_layer[layer])
                layers.append([_Op("H", t) for _, t in gates])
                layers.append([op for c, t in gates for op in (_Op("CZ", c, partner=t), _Op("CZ", t, partner=c))])
                layers.append([_Op("H", t) for _, t in gates])
            meas = "M" if basis == "Z" else "MX"
            layers.append([_Op(meas, a, key=("a", r, ph, a)) for a in anc])
    final = "M" if memory_basis == "Z" else "MX"
    layers.append([_Op(final, q, key=("d", q)) for q in data])
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


def memory_circuit(
    template: Template,
    qubits: Sequence[int],
    *,
    rounds: int,
    logical_state: str,
    flags: bool = True,
) -> stim.Circuit:
    """The noiseless memory experiment of ``template`` with node ``i`` on qubit ``qubits[i]``."""
    if logical_state not in LOGICAL_STATES:
        raise ValueError(f"logical_state must be one of {sorted(LOGICAL_STATES)}, not {logical_state!r}")
    rounds = int(rounds)
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    memory_basis, flip = LOGICAL_STATES[logical_state]
    layers = _peephole(_layers_for(template, rounds, memory_basis, flip))
    phys = list(qubits)

    # Detectors as lists of measurement keys.
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
            for g in template.gadgets:
                if g.phase != ph or not flags:
                    continue
                for h in g.helpers:
                    rc = template.coords[h]
                    detectors.append(((rc[0], rc[1], r), [("a", r, ph, h)]))
    for st in template.stabilizers:
        if st.basis != memory_basis:
            continue
        keys = [("d", q) for q in st.support] + [gadget_round_keys(g, rounds - 1) for g in st.gadgets]
        m = template.coords[template.gadgets[st.gadgets[0]].measure]
        detectors.append(((m[0], m[1], rounds), keys))
    observable = [("d", q) for q in template.logical(memory_basis)]

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
    return c


def count_two_qubit_gates(circuit: stim.Circuit) -> int:
    n = 0
    for inst in circuit.flattened():
        if inst.name in ("CZ", "CX"):
            n += len(inst.targets_copy()) // 2
    return n


def used_couplers(circuit: stim.Circuit) -> set[tuple[int, int]]:
    out = set()
    for inst in circuit.flattened():
        if inst.name in ("CZ", "CX"):
            t = [x.value for x in inst.targets_copy()]
            for a, b in zip(t[::2], t[1::2]):
                out.add((min(a, b), max(a, b)))
    return out


def touched_qubits(circuit: stim.Circuit) -> set[int]:
    out = set()
    for inst in circuit.flattened():
        if inst.name in ("QUBIT_COORDS", "DETECTOR", "OBSERVABLE_INCLUDE", "TICK"):
            continue
        out.update(t.value for t in inst.targets_copy() if t.is_qubit_target)
    return out


_ = Mapping  # re-exported types only
