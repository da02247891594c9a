"""How the local device drifts away from its reported calibration: slow fluctuations plus
two-level-system (TLS) defect events.

A transmon's T1 is not a constant between calibrations. Two things move it:

* **Slow fluctuations.** Every error rate of qubit ``q`` is multiplied (and T1, T2 divided) by
  ``f_q(t) = exp(sigma z_q(t))``. ``z_q`` is a standard normal drawn at knots every
  ``period_hours`` (seeded by ``(seed, knot, q)``) and interpolated between them with unit
  variance kept, ``z(t) = ((1-w) z_k + w z_{k+1}) / sqrt((1-w)^2 + w^2)``: continuous in time,
  so two jobs minutes apart see nearly the same device, two jobs a period apart independent
  ones.
* **Defect events.** A TLS defect drifting into resonance with a qubit makes it lose most of
  its T1 for minutes to hours, then recover (Klimov et al., PRL 121, 090502 (2018): T1 of a
  qubit dropping several-fold for hours as defects move in frequency; Burnett et al., npj
  Quantum Inf. 5, 54 (2019): heavy-tailed T1 fluctuations over days; Carroll et al., npj
  Quantum Inf. 8, 132 (2022): defect dynamics on hour time scales). Each qubit gets events as
  a Poisson process of ``defect_rate_per_day``; an event lasts an exponential time of mean
  ``defect_hours`` and divides T1 and T2 by a depth drawn log-uniformly from
  ``defect_depth``. Overlapping events take the deepest. Readout suffers through the decay of
  |1> during the measurement: P(0|1) grows by ``exp(-t_m / 2 T1_before) - exp(-t_m / 2 T1_now)``
  (half the measurement duration ``t_m`` as the exposure). Events are seeded per
  ``(seed, qubit, day)``, so the device state is a pure function of time: a probe and the arms
  submitted after it see the same device unless time passed between them, and an event
  persists across drift periods.

The state is evaluated on a grid of ``RESOLUTION_S`` seconds (the local provider caches one
backend per grid point).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

RESOLUTION_S = 600.0
DAY_S = 86_400.0
_DEFECT_STREAM = 0xDEFEC7  # a separate random stream from the slow fluctuations


@dataclasses.dataclass(frozen=True)
class DriftModel:
    """Slow per-qubit fluctuations and TLS defect events (see the module)."""

    sigma: float = 0.0
    period_hours: float = 24.0
    seed: int = 0
    defect_rate_per_day: float = 0.0
    defect_depth: tuple[float, float] = (3.0, 20.0)
    defect_hours: float = 6.0

    def __post_init__(self) -> None:
        where = "provider.local.drift"
        checks = (
            ("sigma", self.sigma, lambda v: v >= 0, "a finite number >= 0 (0 = no drift)"),
            ("period_hours", self.period_hours, lambda v: v > 0, "a number > 0"),
            ("defects.rate_per_day", self.defect_rate_per_day, lambda v: v >= 0, "a number >= 0 (0 = none)"),
            ("defects.hours", self.defect_hours, lambda v: v > 0, "a number > 0"),
        )
        for name, value, ok, what in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise ValueError(f"{where}.{name} must be {what}, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{where}.seed must be an int >= 0, got {self.seed!r}")
        low, high = self.defect_depth
        if not (1.0 <= low <= high and math.isfinite(high)):
            raise ValueError(f"{where}.defects.depth must be [low, high] with 1 <= low <= high, got {list(self.defect_depth)}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "DriftModel":
        """From a config's ``provider.local.drift`` block (or a job record's copy of it)."""
        data = data or {}
        defects = data.get("defects") or {}
        return cls(sigma=float(data.get("sigma", 0.0)), period_hours=float(data.get("period_hours", 24.0)),
                   seed=int(data.get("seed", 0)),
                   defect_rate_per_day=float(defects.get("rate_per_day", 0.0)),
                   defect_depth=tuple(float(v) for v in defects.get("depth", (3.0, 20.0))),  # type: ignore[arg-type]
                   defect_hours=float(defects.get("hours", 6.0)))

    def to_json(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "period_hours": self.period_hours, "seed": self.seed,
                "defects": {"rate_per_day": self.defect_rate_per_day, "depth": list(self.defect_depth),
                            "hours": self.defect_hours}}

    @property
    def active(self) -> bool:
        return self.sigma > 0 or self.defect_rate_per_day > 0

    def slow_factors(self, num_qubits: int, epoch: float) -> np.ndarray:
        """Per-qubit factors on error rates, ``exp(sigma z_q(epoch))`` (1 without slow drift).

        >>> m = DriftModel(sigma=0.3, period_hours=24.0, seed=2)
        >>> a, b = m.slow_factors(4, 86_400.0 * 5), m.slow_factors(4, 86_400.0 * 5 + 60)
        >>> bool(np.allclose(a, b, rtol=1e-2)), bool(np.allclose(a, m.slow_factors(4, 86_400.0 * 6)))
        (True, False)
        """
        if self.sigma == 0:
            return np.ones(num_qubits)
        position = epoch / (self.period_hours * 3600.0)
        knot = math.floor(position)
        w = position - knot
        z0, z1 = _knot_normals(num_qubits, self.seed, knot), _knot_normals(num_qubits, self.seed, knot + 1)
        z = ((1 - w) * z0 + w * z1) / math.sqrt((1 - w) ** 2 + w ** 2)
        return np.exp(self.sigma * z)

    def defects(self, qubit: int, start: float, end: float) -> list[tuple[float, float, float]]:
        """``(start, end, depth)`` of every defect event on ``qubit`` overlapping [start, end)."""
        if self.defect_rate_per_day == 0:
            return []
        lookback = math.ceil(12 * self.defect_hours * 3600.0 / DAY_S) + 1  # an event lasting > 12 means: e^-12
        events = []
        for day in range(max(0, math.floor(start / DAY_S) - lookback), math.floor(end / DAY_S) + 1):
            rng = np.random.default_rng([self.seed, _DEFECT_STREAM, qubit, day])
            n = rng.poisson(self.defect_rate_per_day)
            begins = day * DAY_S + rng.uniform(0, DAY_S, n)
            lasts = rng.exponential(self.defect_hours * 3600.0, n)
            low, high = np.log(self.defect_depth)
            depths = np.exp(rng.uniform(low, high, n))
            events.extend((float(b), float(b + d), float(x)) for b, d, x in zip(begins, lasts, depths)
                          if b < end and b + d > start)
        return sorted(events)

    def defect_factors(self, num_qubits: int, epoch: float) -> np.ndarray:
        """Per-qubit T1/T2 divisors from defect events active at ``epoch`` (1 without one).

        >>> m = DriftModel(defect_rate_per_day=2.0, defect_hours=4.0, seed=1)
        >>> f = m.defect_factors(156, 86_400.0 * 30)
        >>> bool((f >= 1).all()), bool(((f == 1) | ((f >= 3) & (f <= 20))).all())
        (True, True)
        """
        out = np.ones(num_qubits)
        if self.defect_rate_per_day == 0:
            return out
        for q in range(num_qubits):
            active = [depth for _, _, depth in self.defects(q, epoch, epoch + 1e-6)]
            if active:
                out[q] = max(active)
        return out


def _knot_normals(num_qubits: int, seed: int, knot: int) -> np.ndarray:
    # Seeded by (seed, knot, q): the same draws as the period-by-period drift of earlier versions
    # at the knots themselves, and qubit q's value does not depend on how many are asked for.
    return np.array([np.random.default_rng([int(seed), int(knot), q]).standard_normal() for q in range(num_qubits)])


def state_epoch(epoch: float) -> float:
    """The grid point whose device state a job at ``epoch`` sees (see ``RESOLUTION_S``)."""
    return math.floor(epoch / RESOLUTION_S) * RESOLUTION_S


def readout_decay_increase(measure_seconds: float, t1_before: float | None, t1_now: float | None) -> float:
    """Extra P(0|1) from |1> decaying during readout when T1 falls from ``t1_before`` to ``t1_now``.

    >>> round(readout_decay_increase(1.56e-6, 145e-6, 145e-6 / 20), 3)
    0.097
    """
    if not measure_seconds or not t1_before or not t1_now:
        return 0.0
    exposure = measure_seconds / 2
    return max(0.0, math.exp(-exposure / t1_before) - math.exp(-exposure / t1_now))
