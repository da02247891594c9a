"""Logical error per round, with its spread, from runs of different round counts.

A memory experiment of ``r`` rounds fails with probability ``P(r)``; with an error per round
``eps`` and a state-preparation-and-measurement (SPAM) contribution, ``1 - 2 P(r) =
A (1 - 2 eps)^r``. Runs of two or more round counts give ``eps`` without the SPAM term
``A``: a weighted least-squares line through ``log(1 - 2 P)`` against ``r`` has slope
``log(1 - 2 eps)`` (weights: the inverse binomial variance of each point's log, by the delta
method). With one round count only, ``eps = (1 - (1 - 2 P)^(1/r)) / 2`` includes SPAM, and
the table says so. Intervals: a seeded parametric bootstrap over the binomial counts.

>>> round(per_round_error([(2, 0.05), (6, 0.13)]), 4)   # (1 - (0.74 / 0.9) ** (1 / 4)) / 2
0.0239
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

BOOTSTRAP = 2000
GROUP = ["experiment", "kind", "logical_state", "distance", "layout", "backend"]


def per_round_error(points: Sequence[tuple[int, float]], weights: Sequence[float] | None = None) -> float:
    """Error per round from ``(rounds, failure probability)`` points (see the module)."""
    r = np.array([p[0] for p in points], dtype=float)
    p = np.array([[pt[1] for pt in points]], dtype=float)
    w = np.ones((1, len(r))) if weights is None else np.asarray(weights, dtype=float)[None, :]
    return float(_per_round_errors(r, p, w)[0])


def _per_round_errors(r: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`per_round_error` for every row of ``p`` (failure probabilities at round counts
    ``r``) with weights ``w`` at once: the weighted least-squares slope in closed form, so a
    bootstrap of thousands of resamples costs one array operation."""
    fidelity = 1 - 2 * p
    dead = np.any(fidelity <= 0, axis=1)  # at or past a coin toss: no memory left to measure
    y = np.log(np.where(fidelity > 0, fidelity, 1.0))
    if len(set(r.tolist())) == 1:
        eps = (1 - np.exp(y.mean(axis=1) / r[0])) / 2
    else:
        r_bar = (w * r).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
        y_bar = (w * y).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
        slope = (w * (r - r_bar) * (y - y_bar)).sum(axis=1) / (w * (r - r_bar) ** 2).sum(axis=1)
        eps = np.clip((1 - np.exp(slope)) / 2, 0.0, 0.5)
    return np.where(dead, 0.5, eps)


def _weights(shots: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse variance of log(1 - 2 p) for a binomial p over ``shots``."""
    p = np.clip(p, 0.5 / np.maximum(shots, 1), 0.49)
    variance = 4 * p * (1 - p) / shots / (1 - 2 * p) ** 2
    return 1 / variance


def fit(rounds: np.ndarray, shots: np.ndarray, errors: np.ndarray, *, seed: int = 0) -> tuple[float, float, float]:
    """(per-round error, 95% low, 95% high) from pooled counts per round count."""
    rounds = np.asarray(rounds, dtype=float)
    p = errors / shots
    estimate = per_round_error(list(zip(rounds, p)), _weights(shots, p))
    rng = np.random.default_rng(seed)
    draws = rng.binomial(shots.astype(int)[None, :], np.clip(p, 0, 1)[None, :], size=(BOOTSTRAP, len(shots)))
    resampled = draws / shots
    boot = _per_round_errors(rounds, resampled, _weights(shots[None, :], resampled))
    low, high = np.percentile(boot, [2.5, 97.5])
    return estimate, float(low), float(high)


def per_round_table(runs: pd.DataFrame, *, error_column: str = "decoded_errors", seed: int = 0) -> pd.DataFrame:
    """One row per experiment, logical state, distance, layout and backend: the logical error
    per round of the completed runs, SPAM-free when they span two or more round counts."""
    columns = [*GROUP, "round_counts", "shots", "per_round_error", "ci_low", "ci_high", "method"]
    if runs.empty or error_column not in runs:
        return pd.DataFrame(columns=columns)
    done = runs[(runs["status"] == "completed") & runs["kind"].isin(["surface_code", "repetition_code"])]
    rows = []
    for key, frame in done.groupby(GROUP, sort=True, dropna=False):
        pooled = frame.groupby("rounds")[["shots", error_column]].sum().sort_index()
        rounds = pooled.index.to_numpy(dtype=float)
        estimate, low, high = fit(rounds, pooled["shots"].to_numpy(dtype=float),
                                  pooled[error_column].to_numpy(dtype=float), seed=seed)
        rows.append({**dict(zip(GROUP, key)), "round_counts": " ".join(str(int(r)) for r in rounds),
                     "shots": int(pooled["shots"].sum()), "per_round_error": estimate, "ci_low": low, "ci_high": high,
                     "method": ("SPAM-free fit over round counts" if len(rounds) > 1
                                else "one round count: includes state preparation and readout")})
    return pd.DataFrame(rows, columns=columns)
