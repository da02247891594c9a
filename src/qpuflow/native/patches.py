"""Placements of native code patches on a device, and their memory circuits.

:func:`find_patches` lists every placement of a native patch on a coupling graph;
:func:`native_memory_circuit` writes the memory experiment of one placement as a noiseless
stim circuit whose qubit indices are the physical qubits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import stim

from qpuflow.native.device import DeviceGraph, embeddings
from qpuflow.native.emit import LOGICAL_STATES, memory_circuit
from qpuflow.native.template import Template

__all__ = ["KINDS", "Patch", "PatchSearch", "template_for", "find_patches", "native_memory_circuit", "patch_cost"]

KINDS = ("surface", "subsystem")


def template_for(kind: str, distance: int, basis: str) -> Template:
    """The template of a native patch (cached; see :mod:`qpuflow.native.surface`)."""
    if basis not in ("Z", "X"):
        raise ValueError(f"basis must be 'Z' or 'X', not {basis!r}")
    if kind == "surface":
        from qpuflow.native.surface import surface_template

        return surface_template(int(distance), basis)
    if kind == "subsystem":
        from qpuflow.native.subsystem import subsystem_template

        return subsystem_template(int(distance), basis)
    raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


@dataclasses.dataclass(frozen=True)
class Patch:
    """One placement of a native patch on physical qubits.

    Attributes:
        kind: ``"surface"`` (rotated surface code, bridge trees and fold-unfold) or
            ``"subsystem"`` (heavy-hex subsystem code).
        distance: code distance.
        basis: memory basis the patch is oriented for (``"Z"`` or ``"X"``); its circuit
            distance in that basis is ``distance``.
        qubits: physical qubit of every template node, in template order.
        data: physical data qubits.
        measure: physical qubits whose measurements are check values (syndrome qubits).
        bridge: physical helper qubits (cat-state and fold qubits, flags).
        couplers: the physical couplers the circuit uses, as sorted pairs.
    """

    kind: str
    distance: int
    basis: str
    qubits: tuple[int, ...]
    data: tuple[int, ...]
    measure: tuple[int, ...]
    bridge: tuple[int, ...]
    couplers: tuple[tuple[int, int], ...]

    @property
    def template(self) -> Template:
        return template_for(self.kind, self.distance, self.basis)

    @property
    def physical_qubits(self) -> tuple[int, ...]:
        return tuple(sorted(self.qubits))

    @property
    def coords(self) -> dict[int, tuple[int, int]]:
        """Template ``(row, column)`` of each physical qubit of the patch."""
        t = self.template
        return {q: t.coords[i] for i, q in enumerate(self.qubits)}

    @property
    def cz_per_round(self) -> int:
        return self.template.two_qubit_gates_per_round

    def coupler_uses_per_round(self) -> dict[tuple[int, int], int]:
        """How many CZs each coupler carries in one round."""
        uses: dict[tuple[int, int], int] = {}
        for g in self.template.gadgets:
            for _, c, t in g.gates:
                a, b = self.qubits[c], self.qubits[t]
                key = (a, b) if a < b else (b, a)
                uses[key] = uses.get(key, 0) + 1
        return uses


@dataclasses.dataclass(frozen=True)
class PatchSearch(Sequence[Patch]):
    """The result of :func:`find_patches`: a sequence of :class:`Patch`, plus why.

    Attributes:
        patches: placements using no excluded coupler.
        total: placements when nothing is excluded.
        blocked: placements rejected because they use an excluded coupler.
        excluded: the excluded couplers (sorted pairs).
    """

    kind: str
    distance: int
    basis: str
    patches: tuple[Patch, ...]
    total: int
    blocked: int
    excluded: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i):  # type: ignore[override]
        return self.patches[i]

    def __iter__(self) -> Iterator[Patch]:
        return iter(self.patches)

    @property
    def distinct_qubit_sets(self) -> int:
        return len({frozenset(p.qubits) for p in self.patches})

    @property
    def summary(self) -> str:
        what = f"{self.kind} d={self.distance} ({self.basis} memory)"
        if not self.total:
            return f"{what}: the coupling graph holds no placement"
        if not self.patches:
            return (f"{what}: all {self.total} placements use an excluded coupler; "
                    "this device needs a defect-adapted patch")
        return (f"{what}: {len(self.patches)} placements ({self.distinct_qubit_sets} qubit sets), "
                f"{self.blocked} of {self.total} rejected for excluded couplers")


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def find_patches(
    edges: Iterable[Sequence[int]],
    num_qubits: int,
    *,
    distance: int,
    kind: str = "surface",
    basis: str = "Z",
    excluded: Iterable[Sequence[int]] = (),
) -> PatchSearch:
    """Every placement of a native ``kind`` patch of ``distance`` on a coupling graph.

    ``edges`` are undirected couplers ``(a, b)``; ``excluded`` couplers (e.g. those with a
    CZ error >= 0.5) are never used. The result is a sequence of :class:`Patch` (empty when
    nothing fits) with the counts that explain it (:class:`PatchSearch`).
    """
    template = template_for(kind, distance, basis)
    device = DeviceGraph.from_coupling(edges, num_qubits)
    banned = tuple(sorted({_pair(int(e[0]), int(e[1])) for e in excluded}))
    total = sum(1 for _ in embeddings(template.edges, template.num_nodes, device))
    roles = template.roles
    patches = []
    for image in embeddings(template.edges, template.num_nodes, device, excluded=banned):
        patches.append(Patch(
            kind=kind, distance=template.distance, basis=basis, qubits=image,
            data=tuple(image[i] for i, r in enumerate(roles) if r == "data"),
            measure=tuple(image[i] for i, r in enumerate(roles) if r == "measure"),
            bridge=tuple(image[i] for i, r in enumerate(roles) if r == "bridge"),
            couplers=tuple(sorted(_pair(image[a], image[b]) for a, b in template.edges)),
        ))
    return PatchSearch(kind=kind, distance=template.distance, basis=basis, patches=tuple(patches),
                       total=total, blocked=total - len(patches), excluded=banned)


def native_memory_circuit(
    patch: Patch,
    *,
    rounds: int,
    logical_state: str,
    flags: bool | str = True,
    reset: bool = True,
) -> stim.Circuit:
    """The noiseless memory experiment of ``patch`` (stim qubit = physical qubit).

    ``logical_state`` is ``"0"``/``"1"`` (Z memory) or ``"+"``/``"-"`` (X memory); the
    observable's noiseless value is 1 for ``"1"`` and ``"-"``. The patch should be
    oriented for that basis (``patch.basis``), otherwise the circuit is still correct but
    its circuit distance is lower. ``flags``: also declare as detectors the measurements of
    helper qubits that serve one gadget per phase (``"all"``: every helper; ``False``:
    helpers are not measured). ``reset=False`` measures ancillas without resetting them
    (the detectors account for the left-over states; every ancilla is then measured).
    """
    if logical_state not in LOGICAL_STATES:
        raise ValueError(f"logical_state must be one of {sorted(LOGICAL_STATES)}, not {logical_state!r}")
    return memory_circuit(patch.template, patch.qubits, rounds=rounds, logical_state=logical_state,
                          flags=flags, reset=reset)


def patch_cost(patch: Patch, target: Any) -> float:
    """Expected number of faults per round of a placement on a Qiskit ``Target``.

    Sums, over one round, the CZ error of every gate's coupler and the readout error of
    every measured qubit (check and flag qubits, once per phase they are measured in). A
    coupler with no reported error counts as 1. Lower is better; use it to rank
    placements.
    """
    cost = 0.0
    for (a, b), n in patch.coupler_uses_per_round().items():
        props = target["cz"].get((a, b)) or target["cz"].get((b, a))
        err = props.error if props is not None and props.error is not None else 1.0
        cost += n * (err if math.isfinite(err) else 1.0)
    t = patch.template
    for g in t.gadgets:
        props = target["measure"].get((patch.qubits[g.measure],))
        cost += props.error if props is not None and props.error is not None else 0.0
    return cost

