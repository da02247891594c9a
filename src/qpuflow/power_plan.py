"""The power plan of a deployment experiment (``qpuflow plan``, and the floor checked at the
first submit): its configured design and the candidates around it, at every searched code
geometry, simulated with :mod:`qpuflow.power`, and the design to recommend.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from qpuflow.drift import DriftModel
from qpuflow.power import TEST, Design, PowerEstimate, StatePool, best_per_second, build_pool, estimate


@dataclasses.dataclass(frozen=True)
class PowerPlan:
    """A deployment experiment's power, for its configured design and the candidates (every
    searched code geometry times the sessions x shots grid)."""

    experiment: str
    endpoint: str
    effect_source: str  # "model" (the drift model's own effect) or "stated" (power.effect)
    configured: PowerEstimate
    candidates: tuple[PowerEstimate, ...]
    recommended: PowerEstimate | None
    floor: float | None
    budget_seconds: float
    skipped: tuple[str, ...] = ()  # searched geometries that could not be simulated, with the reason

    @property
    def below_floor(self) -> bool:
        return self.floor is not None and self.configured.power < self.floor

    @property
    def target_power(self) -> float:
        """The power a design must surely reach to be recommended: the floor, or the default."""
        return self.floor if self.floor is not None else DEFAULT_FLOOR

    def geometries(self) -> list[tuple[tuple[int | None, int | None], PowerEstimate | None]]:
        """Per searched (distance, rounds): its best design within the budget (as recommended)."""
        seen = sorted({e.design.geometry for e in self.candidates}, key=lambda g: (g[0] or 0, g[1] or 0))
        return [(g, best_per_second([e for e in self.candidates if e.design.geometry == g], self.budget_seconds,
                                    self.target_power)) for g in seen]

    def verdict(self) -> str:
        c = self.configured
        effect = f"{'the model' if self.effect_source == 'model' else 'the stated'} effect {c.effect:+.1%}"
        line = (f"{self.experiment}: power {c.power:.2f} to detect {effect} on {self.endpoint.replace('_', ' ')} "
                f"with {c.design.label()} ({TEST}, alpha {c.alpha:g}, {c.campaigns} simulated campaigns), "
                f"about {c.qpu_seconds:.0f} QPU s of {self.budget_seconds:.0f} available")
        best = self.recommended
        if best is not None and best.design == c.design:
            line += "; this is the recommended design"
        elif best is not None:
            line += (f"; recommended: {best.design.label()}, power {best.power:.2f} (one-sided 95% lower bound "
                     f"{best.power_low:.2f}) for {best.qpu_seconds:.0f} QPU s (effect {best.effect:+.1%})")
        elif best is None:
            line += "; no candidate design fits the budget"
        reach = [e for e in self.candidates if self.floor is not None and e.power_low >= self.floor]
        if self.below_floor:
            cheapest = min(reach, key=lambda e: e.qpu_seconds) if reach else None
            line += (f". Below the power floor {self.floor:g}: "
                     + (f"{cheapest.design.label()} reaches it (power {cheapest.power:.2f}, at least "
                        f"{cheapest.power_low:.2f}) for {cheapest.qpu_seconds:.0f} QPU s"
                        if cheapest else "no candidate design reaches it; more sessions or a larger effect are needed"))
        return line

    def to_json(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "endpoint": self.endpoint, "effect_source": self.effect_source,
                "configured": self.configured.to_json(), "candidates": [e.to_json() for e in self.candidates],
                "recommended": self.recommended.to_json() if self.recommended else None, "floor": self.floor,
                "budget_seconds": self.budget_seconds, "skipped": list(self.skipped),
                "geometries": [{"distance": d, "rounds": r, "best": best.to_json() if best else None}
                               for (d, r), best in self.geometries()],
                "verdict": self.verdict()}


DEFAULT_FLOOR = 0.8  # what a design must reach to be recommended when no floor is configured


def candidate_designs(sessions: int, shots: int, distance: int | None = None, rounds: int | None = None) -> list[Design]:
    """The configured sessions and shots and their neighbours: half to two and a half times the
    sessions, a quarter to twice the shots (at one code geometry)."""
    out = {Design(max(2, round(sessions * f)), max(256, round(shots * g)), distance, rounds)
           for f in (0.5, 1.0, 1.5, 2.0, 2.5) for g in (0.25, 0.5, 1.0, 2.0)}
    return sorted(out, key=lambda d: (d.sessions, d.shots))


def searched_geometries(distance: int, rounds: int, search: Mapping[str, Any] | None) -> list[tuple[int, int]]:
    """(distance, rounds) pairs the plan compares, the configured one first: ``power.search``'s
    lists, by default the configured distance and its odd neighbours (at least 3) times the
    configured rounds, half and twice as many."""
    search = search or {}
    distances = search.get("distance") or [d for d in (distance - 2, distance, distance + 2) if d >= 3]
    roundss = search.get("rounds") or sorted({max(1, rounds // 2), rounds, 2 * rounds})
    grid = [(int(d), int(r)) for d in distances for r in roundss]
    return [(distance, rounds)] + sorted(set(grid) - {(distance, rounds)})


def plan_power(config: Mapping[str, Any], experiment: str, *, budget_seconds: float, start_epoch: float,
               cache_dir: Any = None, costs: tuple[float, float] | None = None, progress: Any = None,
               search: bool = True) -> PowerPlan:
    """The power plan of one deployment experiment (see the module), on the local model of its
    backend with ``provider.local.drift``, over the searched code geometries (only the
    configured one unless ``search``). The simulated sessions (the slow part, a few seconds per
    hundred) are cached in ``cache_dir`` under a hash of everything they depend on.
    ``costs``: (QPU seconds of the probe job, of the arms' job per shot per arm) of the
    configured geometry's real circuits; another geometry's arms cost that plus the difference
    of the simulated circuits' durations. Default: the pools' own estimates."""
    exp = config["experiments"][experiment]
    settings = exp.get("power") or {}
    configured_geometry = (int(exp["distance"]), int(exp["rounds"]))
    geometries = (searched_geometries(*configured_geometry, settings.get("search")) if search
                  else [configured_geometry])
    pools: dict[tuple[int, int], StatePool] = {}
    skipped = []
    for k, (distance, rounds) in enumerate(geometries):
        step = None if progress is None else _offset_progress(progress, k, len(geometries))
        try:
            pools[(distance, rounds)] = _cached_pool(_pool_args(config, exp, distance, rounds, start_epoch), cache_dir, step)
        except ValueError as exc:  # the chain or the probe's candidates do not fit the device
            if (distance, rounds) == configured_geometry:
                raise
            skipped.append(f"d={distance}, {rounds} rounds: {exc}")
    pools = _with_costs(pools, configured_geometry, costs)
    effect = settings.get("effect")
    kwargs = {"campaigns": int(settings.get("campaigns", 200)), "alpha": float(settings.get("alpha", 0.05)),
              "seed": int(settings.get("seed", 0)), "effect": None if effect is None else float(effect)}
    configured = Design(int(exp["sessions"]), int(exp["shots"]), *configured_geometry)
    estimates = [estimate(pool, d, **kwargs) for g, pool in pools.items()
                 for d in candidate_designs(configured.sessions, configured.shots, *g)]
    current = next(e for e in estimates if e.design == configured)
    floor = settings.get("floor")
    return PowerPlan(experiment, _endpoint(exp), "model" if effect is None else "stated", current,
                     tuple(estimates),
                     best_per_second(estimates, budget_seconds, float(floor) if floor is not None else DEFAULT_FLOOR),
                     None if floor is None else float(floor), budget_seconds, tuple(skipped))


def _endpoint(exp: Mapping[str, Any]) -> str:
    return str(exp.get("endpoint", "detection_fraction"))


def _pool_args(config: Mapping[str, Any], exp: Mapping[str, Any], distance: int, rounds: int,
               start_epoch: float) -> dict[str, Any]:
    from qpuflow.chains import DEFAULT_CHAIN_WEIGHTS

    settings = exp.get("power") or {}
    schedule = exp.get("schedule") or {}
    probe = exp.get("probe") or {}
    backend = str(exp.get("backend") or config["provider"]["backend"])
    return dict(
        backend_name=backend if config["provider"]["name"] == "local" else _local_twin(backend),
        distance=distance, rounds=rounds, endpoint=_endpoint(exp),
        drift=DriftModel.from_json((config["provider"].get("local") or {}).get("drift")),
        start_epoch=start_epoch,
        interval_hours=float(schedule.get("every_hours") or (24.0 / float(schedule.get("per_day", 3)))),
        states=int(settings.get("states", 200)),
        probe_shots=int(probe.get("shots", 2000)), probe_delays_us=list(probe.get("delays_us", [50, 100, 200])),
        probe_qubits=int(probe.get("qubits") or 2 * (2 * distance - 1)),
        weights={**DEFAULT_CHAIN_WEIGHTS, **(exp.get("selection_weights") or {})},
        seed=int(settings.get("seed", 0)))


def _offset_progress(progress: Any, index: int, count: int) -> Any:
    def step(done: int, total: int) -> None:
        progress(index * total + done, count * total)
    return step


def _with_costs(pools: dict[tuple[int, int], StatePool], configured: tuple[int, int],
                costs: tuple[float, float] | None) -> dict[tuple[int, int], StatePool]:
    if costs is None:
        return pools
    base = pools[configured].arm_seconds
    return {g: dataclasses.replace(pool, probe_seconds=costs[0], arm_seconds=costs[1] + (pool.arm_seconds - base))
            for g, pool in pools.items()}


def _local_twin(backend: str) -> str:
    """The local model of an IBM backend: ibm_fez -> fake_fez."""
    return "fake_" + backend.removeprefix("ibm_")


def _cached_pool(args: dict[str, Any], cache_dir: Any, progress: Any) -> StatePool:
    import hashlib
    import json
    from pathlib import Path

    from qpuflow.records import write_json_atomic

    drift = args["drift"]
    key_data = {**args, "drift": drift.to_json(), "version": 1}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"power-pool-{key}.json" if cache_dir is not None else None
    if path is not None and path.exists():
        data = json.loads(path.read_text())
        return StatePool(data["endpoint"], int(data["trials_per_shot"]), np.array(data["mean"]), np.array(data["var"]),
                         float(data["arm_seconds"]), float(data["probe_seconds"]))
    pool = build_pool(**args, progress=progress)
    if path is not None:
        write_json_atomic(path, {"key": key_data, "endpoint": pool.endpoint, "trials_per_shot": pool.trials_per_shot,
                                 "mean": pool.mean.tolist(), "var": pool.var.tolist(),
                                 "arm_seconds": pool.arm_seconds, "probe_seconds": pool.probe_seconds})
    return pool
