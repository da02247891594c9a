"""The benchmark registry: repetition, statistics and target evaluation.

A benchmark is a function ``fn(ctx) -> dict`` that measures once and returns its
measurements. Numbers are aggregated over the repeats (median, min, max); anything else
(strings, lists, dicts) is kept from the last repeat as a detail. Optional hooks:

* ``@bench.setup``: runs once before the repeats (not timed); its return value is ``ctx.state``.
* ``@bench.conclude``: runs once after the repeats with the aggregated metrics and the
  details; may measure more (a profile, a one-off check) and must explain every missed
  target (``Conclusion.reasons``).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import statistics
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

Measurements = dict[str, Any]
Metrics = Mapping[str, dict[str, Any]]  # metric -> {"median", "min", "max", "n", "values"}
ConcludeFn = Callable[["Context", Metrics, Mapping[str, Any]], "Conclusion"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}

PASS, MISSED, NOT_MEASURED = "PASS", "MISSED", "NOT MEASURED"


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal for one metric, e.g. ``Target("ratio", "<", 10, "5000 runs plan < 10x 500 runs")``."""

    metric: str
    op: str
    threshold: float
    label: str

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"Target op must be one of {sorted(_OPS)}, got {self.op!r}")

    def met(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)


@dataclasses.dataclass
class Context:
    """What a benchmark function gets: the mode, which repeat this is, and a scratch folder."""

    name: str
    quick: bool
    repeat: int
    repeats: int
    scratch: Path
    state: Any = None

    def log(self, message: str) -> None:
        print(f"  [{self.name} {self.repeat + 1}/{self.repeats}] {message}", flush=True)


@dataclasses.dataclass
class Conclusion:
    """What ``conclude`` adds once: one-off metrics, details, notes, and why a target was missed.

    ``reasons`` maps a target's metric name to the explanation shown beside MISSED.
    """

    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarise(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


class Benchmark:
    """A registered benchmark; call :meth:`run` to measure it and get its JSON record."""

    def __init__(self, func: Callable[[Context], Measurements], *, name: str, title: str,
                 targets: tuple[Target, ...], max_repeats: int | None) -> None:
        self.func = func
        self.name = name
        self.title = title
        self.targets = targets
        self.max_repeats = max_repeats
        self._setup: Callable[[Context], Any] | None = None
        self._conclude: ConcludeFn | None = None

    def setup(self, fn: Callable[[Context], Any]) -> Callable[[Context], Any]:
        self._setup = fn
        return fn

    def conclude(self, fn: ConcludeFn) -> ConcludeFn:
        self._conclude = fn
        return fn

    def repeats_for(self, requested: int, quick: bool) -> int:
        if quick:
            return 1
        return min(requested, self.max_repeats) if self.max_repeats else requested

    def run(self, *, repeats: int, quick: bool, scratch: Path) -> dict[str, Any]:
        n = self.repeats_for(repeats, quick)
        ctx = Context(self.name, quick, 0, n, scratch)
        started = time.perf_counter()
        samples: dict[str, list[float]] = {}
        details: dict[str, Any] = {}
        conclusion = Conclusion()
        error = None
        try:
            if self._setup is not None:
                ctx.state = self._setup(ctx)
            for i in range(n):
                ctx.repeat = i
                for key, value in self.func(ctx).items():
                    if _is_number(value):
                        samples.setdefault(key, []).append(float(value))
                    else:
                        details[key] = value
            metrics = {k: summarise(v) for k, v in samples.items()}
            if self._conclude is not None:
                conclusion = self._conclude(ctx, metrics, details)
            metrics.update({k: summarise([float(v)]) for k, v in conclusion.metrics.items() if _is_number(v)})
        except Exception as exc:  # recorded, never hidden: the report shows ERROR with the cause
            metrics = {k: summarise(v) for k, v in samples.items()}
            error = f"{type(exc).__name__}: {exc}"
            details["traceback"] = traceback.format_exc().splitlines()[-12:]
        details.update(conclusion.details)
        return {
            "name": self.name,
            "title": self.title,
            "mode": "quick" if quick else "full",
            "repeats": n,
            "duration_s": round(time.perf_counter() - started, 2),
            "metrics": metrics,
            "targets": [self._evaluate(t, metrics, conclusion, error) for t in self.targets],
            "details": details,
            "notes": conclusion.notes,
            "error": error,
        }

    @staticmethod
    def _evaluate(target: Target, metrics: Metrics, conclusion: Conclusion,
                  error: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {"label": target.label, "metric": target.metric, "op": target.op,
                               "threshold": target.threshold, "measured": None, "n": 0}
        stats = metrics.get(target.metric)
        if stats is None:
            reason = error or conclusion.reasons.get(target.metric) or f"metric {target.metric!r} was not produced"
            return {**row, "result": NOT_MEASURED, "reason": reason}
        row.update(measured=stats["median"], n=stats["n"])
        if target.met(stats["median"]):
            return {**row, "result": PASS, "reason": conclusion.reasons.get(target.metric, "")}
        reason = conclusion.reasons.get(target.metric) or error or (
            "no reason given by the benchmark: its conclude() must explain every missed target")
        return {**row, "result": MISSED, "reason": reason}


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, *, title: str, targets: tuple[Target, ...] = (),
              max_repeats: int | None = None) -> Callable[[Callable[[Context], Measurements]], Benchmark]:
    """Register ``fn(ctx) -> dict`` under ``name`` (the JSON file is ``results/<name>.json``)."""

    def register(func: Callable[[Context], Measurements]) -> Benchmark:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = Benchmark(func, name=name, title=title, targets=tuple(targets),
                                   max_repeats=max_repeats)
        return REGISTRY[name]

    return register
