"""Decode noisy native circuits: graphlike DEMs, logical error probabilities, per-round rates.

Faults in a fold window or on a cat qubit fire three or more detectors. stim's
decomposition (``decompose_errors=True``) splits them into graphlike pieces, and on the
default circuits (unambiguous flags) every piece has a detector, so the plain recipe
``pymatching.Matching.from_detector_error_model(dem, enable_correlations=True)`` works.
With every flag declared (``flags="all"``) stim sometimes leaves a piece made of the
observable alone, which PyMatching refuses; :func:`graphlike_dem` keeps stim's pieces
where they are fine and splits the others itself into known single faults whose
observable flips add up to the error's (allowing at most one new edge). Correlated
matching then learns the hyperedges from these decompositions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pymatching
import stim

__all__ = [
    "graphlike_dem",
    "matching_for",
    "logical_error_probability",
    "per_round_error",
    "RateResult",
    "per_round_rate",
]


def _symptoms(inst: stim.DemInstruction) -> tuple[frozenset[int], int]:
    dets: set[int] = set()
    obs = 0
    for t in inst.targets_copy():
        if t.is_relative_detector_id():
            dets ^= {t.val}
        elif t.is_logical_observable_id():
            obs ^= 1 << t.val
    return frozenset(dets), obs


def _split(
    dets: frozenset[int],
    obs: int,
    known: dict[frozenset[int], int],
    budget: list[int],
    new: int = 0,
) -> list[tuple[frozenset[int], int]] | None:
    """Partition ``dets`` into pieces of one or two detectors whose observables XOR to ``obs``.

    Pieces are known single faults (with their observable mask); up to ``new`` pieces may
    be edges no single fault has (their mask is whatever makes the sum right).
    """
    if not dets:
        return [] if obs == 0 else None
    budget[0] -= 1
    if budget[0] < 0:
        return None
    first = min(dets)
    rest = dets - {first}
    options = [frozenset((first, other)) for other in sorted(rest)] + [frozenset((first,))]
    for piece in options:
        if piece in known:
            sub = _split(dets - piece, obs ^ known[piece], known, budget, new)
            if sub is not None:
                return [(piece, known[piece]), *sub]
    if new:
        for piece in options:
            if piece in known:
                continue
            # The unknown piece takes whatever observable the remaining known pieces leave.
            for mask in range(1 << max(obs.bit_length(), max(known.values(), default=0).bit_length(), 1)):
                sub = _split(dets - piece, obs ^ mask, known, budget, new - 1)
                if sub is not None:
                    return [(piece, mask), *sub]
    return None


def graphlike_dem(circuit: stim.Circuit) -> tuple[stim.DetectorErrorModel, int]:
    """The circuit's DEM decomposed into graphlike pieces that PyMatching accepts.

    stim's decomposition (``decompose_errors=True``) is kept wherever every piece has a
    detector; an error with a piece made of observables only is split again here into
    known single faults whose observable flips add up to the error's. Returns ``(dem,
    failures)``; ``failures`` counts errors with no such exact split (they are split
    ignoring the observable, which goes on the first piece).
    """
    dem = circuit.detector_error_model(decompose_errors=True, ignore_decomposition_failures=True)
    flat = dem.flattened()
    known: dict[frozenset[int], tuple[float, int]] = {}
    for inst in flat:
        if inst.type != "error":
            continue
        for dets, obs in _components(inst):
            if 1 <= len(dets) <= 2:
                p = inst.args_copy()[0]
                if dets not in known or known[dets][0] < p:
                    known[dets] = (p, obs)
    masks = {k: v[1] for k, v in known.items()}
    out = stim.DetectorErrorModel()
    failures = 0
    for inst in flat:
        if inst.type != "error":
            out.append(inst)
            continue
        comps = _components(inst)
        if all(dets and len(dets) <= 2 for dets, _ in comps):
            out.append(inst)
            continue
        p = inst.args_copy()[0]
        dets, obs = _symptoms(inst)
        if not dets:
            continue  # undetectable: no decoder can use it
        pieces = _split(dets, obs, masks, [20000]) or _split(dets, obs, masks, [20000], new=1)
        if pieces is None:
            failures += 1
            pieces = [(frozenset((d,)), 0) for d in sorted(dets)]
            pieces[0] = (pieces[0][0], obs)
        targets = _targets(pieces)
        out.append("error", p, targets)
    return out, failures


def _components(inst: stim.DemInstruction) -> list[tuple[frozenset[int], int]]:
    comps: list[tuple[frozenset[int], int]] = []
    dets: set[int] = set()
    obs = 0
    for t in [*inst.targets_copy(), None]:
        if t is None or t.is_separator():
            comps.append((frozenset(dets), obs))
            dets, obs = set(), 0
        elif t.is_relative_detector_id():
            dets ^= {t.val}
        elif t.is_logical_observable_id():
            obs ^= 1 << t.val
    return comps


def _targets(pieces: list[tuple[frozenset[int], int]]) -> list:
    targets: list = []
    for j, (piece, mask) in enumerate(pieces):
        if j:
            targets.append(stim.target_separator())
        targets += [stim.target_relative_detector_id(d) for d in sorted(piece)]
        targets += [stim.target_logical_observable_id(k) for k in range(mask.bit_length()) if mask >> k & 1]
    return targets


def matching_for(circuit: stim.Circuit, *, correlated: bool = True) -> pymatching.Matching:
    dem, _ = graphlike_dem(circuit)
    return pymatching.Matching.from_detector_error_model(dem, enable_correlations=correlated)


def logical_error_probability(
    circuit: stim.Circuit, shots: int, *, correlated: bool = True, seed: int | None = None
) -> tuple[int, int]:
    """``(failures, shots)`` of PyMatching on ``shots`` samples of the noisy ``circuit``."""
    matching = matching_for(circuit, correlated=correlated)
    sampler = circuit.compile_detector_sampler(seed=seed)
    det, obs = sampler.sample(shots, separate_observables=True)
    if correlated:
        pred = matching.decode_batch(det, enable_correlations=True)
    else:
        pred = matching.decode_batch(det)
    return int(np.count_nonzero(np.any(pred != obs, axis=1))), int(shots)


def per_round_error(p1: float, p2: float, r1: int, r2: int) -> float:
    """SPAM-free per-round error from logical error probabilities at ``r1 < r2`` rounds."""
    ratio = (1 - 2 * p2) / (1 - 2 * p1)
    if ratio <= 0:
        return 0.5
    return (1 - ratio ** (1 / (r2 - r1))) / 2


@dataclasses.dataclass(frozen=True)
class RateResult:
    rounds: tuple[int, int]
    failures: tuple[int, int]
    shots: int
    per_round: float
    stderr: float


def per_round_rate(
    make_circuit, shots: int, *, rounds: Sequence[int] = (2, 6), correlated: bool = True, seed: int = 1
) -> RateResult:
    """Per-round rate from ``make_circuit(rounds) -> noisy stim.Circuit`` at two round counts."""
    r1, r2 = rounds
    f = [logical_error_probability(make_circuit(r), shots, correlated=correlated, seed=seed + j)[0]
         for j, r in enumerate((r1, r2))]
    p = [x / shots for x in f]
    eps = per_round_error(p[0], p[1], r1, r2)
    # Error propagation of the two binomial estimates.
    s = [math.sqrt(max(x * (1 - x), 1e-12) / shots) for x in p]
    ratio = max((1 - 2 * p[1]) / (1 - 2 * p[0]), 1e-12)
    rel = math.hypot(2 * s[1] / (1 - 2 * p[1]), 2 * s[0] / (1 - 2 * p[0]))
    d_eps = ratio ** (1 / (r2 - r1)) / (2 * (r2 - r1)) * rel
    return RateResult(rounds=(r1, r2), failures=(f[0], f[1]), shots=shots, per_round=eps, stderr=d_eps)
