"""Decode noisy native circuits: graphlike DEMs, logical error probabilities, per-round rates.

The fold-unfold circuits have faults that fire three or more detectors (e.g. a fault in a
fold window, seen by a flag and by two plaquettes). stim's own decomposition of such
hyperedges sometimes leaves a component made of the observable alone, which PyMatching
refuses. :func:`graphlike_dem` decomposes them itself: every hyperedge is split into
pieces (one or two detectors) that are themselves single faults of the model, choosing
pieces whose observable flips add up to the hyperedge's; correlated matching
(``enable_correlations=True``) then learns the hyperedges from these decompositions.
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
    dets: frozenset[int], obs: int, known: dict[frozenset[int], int], budget: list[int]
) -> list[frozenset[int]] | None:
    # Partition `dets` into known pieces of size 1 or 2 whose observables XOR to `obs`.
    if not dets:
        return [] if obs == 0 else None
    budget[0] -= 1
    if budget[0] < 0:
        return None
    first = min(dets)
    rest = dets - {first}
    options = [frozenset((first, other)) for other in sorted(rest)] + [frozenset((first,))]
    for piece in options:
        if piece not in known:
            continue
        sub = _split(dets - piece, obs ^ known[piece], known, budget)
        if sub is not None:
            return [piece, *sub]
    return None


def graphlike_dem(circuit: stim.Circuit) -> tuple[stim.DetectorErrorModel, int]:
    """The circuit's DEM with every error split into graphlike pieces.

    Returns ``(dem, failures)``; ``failures`` counts hyperedges for which no exact split
    into known single faults exists (they are split ignoring the observable and the
    observable put on the first piece; a well-built circuit has none).
    """
    dem = circuit.detector_error_model(decompose_errors=False, approximate_disjoint_errors=True)
    flat = dem.flattened()
    known: dict[frozenset[int], tuple[float, int]] = {}
    for inst in flat:
        if inst.type != "error":
            continue
        dets, obs = _symptoms(inst)
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
        p = inst.args_copy()[0]
        dets, obs = _symptoms(inst)
        if len(dets) <= 2:
            pieces = [dets] if dets else []
            targets = _targets(pieces, obs, masks, exact=False)
        else:
            pieces = _split(dets, obs, masks, [20000])
            if pieces is None:
                failures += 1
                pieces = _split(dets, 0, {k: 0 for k in masks}, [20000]) or [frozenset((d,)) for d in sorted(dets)]
                targets = _targets(pieces, obs, masks, exact=False)
            else:
                targets = _targets(pieces, obs, masks, exact=True)
        if targets:
            out.append("error", p, targets)
    return out, failures


def _targets(pieces, obs, masks, *, exact):
    targets: list = []
    for j, piece in enumerate(pieces):
        if j:
            targets.append(stim.target_separator())
        targets += [stim.target_relative_detector_id(d) for d in sorted(piece)]
        piece_obs = masks.get(piece, 0) if exact else (obs if j == 0 else 0)
        if len(pieces) == 1:
            piece_obs = obs
        for k in range(piece_obs.bit_length()):
            if piece_obs >> k & 1:
                targets.append(stim.target_logical_observable_id(k))
    if not pieces and obs:
        return []  # an undetectable logical error: nothing a decoder can do with it
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
    d_eps = ratio ** (1 / (r2 - r1)) / (2 * (r2 - r1)) * math.hypot(2 * s[1] / (1 - 2 * p[1]), 2 * s[0] / (1 - 2 * p[0]))
    return RateResult(rounds=(r1, r2), failures=(f[0], f[1]), shots=shots, per_round=eps, stderr=d_eps)
