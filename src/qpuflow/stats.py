"""Small statistics helpers shared by the summaries and the analysis."""

from __future__ import annotations

import math


def wilson_interval(successes: int, trials: int, *, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    >>> lo, hi = wilson_interval(0, 100)
    >>> lo == 0.0 and round(hi, 4)
    0.037
    >>> all(lo <= k / 50 <= hi for k in range(51) for lo, hi in [wilson_interval(k, 50)])
    True
    """
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # At 0 or all successes the bound is exact; floating point would leave it ~1e-18 off,
    # which puts the point estimate outside its own interval.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high
