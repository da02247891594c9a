"""Will the whole campaign fit the accounts' budgets, and when? (``qpuflow plan``)

A deployment campaign spends budget for weeks, in 28-day rolling windows per account. Before
it starts, every job still to submit is placed at the time its session is scheduled, charged
to the account with the most spendable seconds at that moment (as `submit` does), with usage
leaving each account's window 28 days after it was spent. The plan says whether everything
fits, and for the first job that does not, when it would (once enough old usage has left the
window). ``submit`` refuses to start a campaign that does not fit unless
``budget.allow_campaign_overrun`` is true.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from qpuflow.batches import job_name, plan_jobs, pubs_per_job
from qpuflow.budget import estimate_job_seconds, job_usage
from qpuflow.errors import Refusal
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec
from qpuflow.provenance import parse_time
from qpuflow.records import TranspileRecord
from qpuflow.schedule import Schedule
from qpuflow.sessions import session_starts


@dataclasses.dataclass(frozen=True)
class PlannedJob:
    run_key: str
    at: datetime
    seconds: float
    account: str | None = None  # None: no account can pay for it at that time


@dataclasses.dataclass(frozen=True)
class AccountPlan:
    account: str
    budget_seconds: float
    used_now: float  # in the window ending now
    planned_seconds: float  # charged to this account by the plan


@dataclasses.dataclass(frozen=True)
class CampaignPlan:
    jobs: tuple[PlannedJob, ...]
    accounts: tuple[AccountPlan, ...]
    finishes: datetime | None  # when the last planned job is submitted
    first_unfit: PlannedJob | None
    unfit_fits_at: datetime | None  # when that job would fit (None: never, it is too large)

    @property
    def fits(self) -> bool:
        return self.first_unfit is None

    @property
    def total_seconds(self) -> float:
        return round(sum(j.seconds for j in self.jobs), 1)

    def verdict(self) -> str:
        if not self.jobs:
            return "nothing left to submit"
        if self.fits:
            assert self.finishes is not None
            return (f"fits: {len(self.jobs)} job(s), about {math.ceil(self.total_seconds)} QPU seconds, the last "
                    f"submitted {self.finishes.isoformat(timespec='minutes')}")
        job = self.first_unfit
        assert job is not None
        later = (f"it would fit from {self.unfit_fits_at.isoformat(timespec='minutes')}, when earlier usage has "
                 f"left the window" if self.unfit_fits_at else "no account can ever pay for it")
        return (f"does NOT fit: {job.run_key}, planned for {job.at.isoformat(timespec='minutes')}, needs about "
                f"{math.ceil(job.seconds)} s and no account has that left then; {later}")


class CostEstimator:
    """QPU seconds of a run: from its transpile record if it has one, else from a representative
    circuit of the same shape (transpiled once, in process)."""

    def __init__(self, config: dict[str, Any], paths: Paths) -> None:
        self.config, self.paths = config, paths
        self._durations: dict[tuple[Any, ...], float | None] = {}

    def seconds(self, spec: RunSpec) -> float:
        """QPU seconds of the run sent as a job of its own."""
        return self.job_seconds([spec])

    def job_seconds(self, specs: Sequence[RunSpec]) -> float:
        """QPU seconds of one job carrying ``specs`` as its PUBs (one per-job overhead)."""
        return estimate_job_seconds([(spec.shots, self.duration(spec)) for spec in specs])

    def duration(self, spec: RunSpec) -> float | None:
        """Scheduled duration of the run's ISA circuit, in seconds."""
        info_path = self.paths.isa_info(spec)
        if info_path.exists():
            return TranspileRecord.read(info_path).duration_seconds
        shape = (spec.experiment, spec.kind, spec.distance, spec.rounds, spec.logical_state,
                 spec.probe_delays_us, spec.probe_qubits, spec.backend)
        if shape not in self._durations:
            self._durations[shape] = self._representative_duration(spec)
        return self._durations[shape]

    def _representative_duration(self, spec: RunSpec) -> float | None:
        from qpuflow.stages import current_backend, default_layout, logical_circuit
        from qpuflow.circuit_identity import isa_summary
        from qpuflow.transpile import transpile_isa

        backend = current_backend(spec.backend, self.config)
        isa = transpile_isa(logical_circuit(spec), backend, seed=spec.transpiler_seed,
                            optimization_level=spec.optimization_level,
                            initial_layout=default_layout(spec, backend, self.config))
        return isa_summary(isa)["duration_seconds"]


def planned_times(runs: Mapping[str, RunSpec], config: dict[str, Any], events: list[dict[str, Any]],
                  at: datetime) -> dict[str, datetime]:
    """When each run is expected to be submitted if every session runs on schedule from now."""
    times = {key: at for key, spec in runs.items() if spec.session is None}
    for name, exp in config["experiments"].items():
        if exp["kind"] != "deployment":
            continue
        schedule = Schedule.from_config(exp)
        started = session_starts(name, runs, events)
        slots = schedule.planned_times(started, at) if schedule else [at] * exp["sessions"]
        for key, spec in runs.items():
            if spec.experiment == name and spec.session is not None:
                times[key] = max(slots[spec.session], at)
    return times


def plan_campaign(runs: Mapping[str, RunSpec], config: dict[str, Any], paths: Paths,
                  events: list[dict[str, Any]], at: datetime, *, estimator: CostEstimator | None = None,
                  outside_usage: Mapping[str, float] | None = None) -> CampaignPlan:
    """Place every run not yet submitted at its planned time and check each account's window.

    ``outside_usage``: seconds per account the service reports beyond what the ledger knows
    (jobs sent by other tools); counted as spent now.
    """
    estimator = estimator or CostEstimator(config, paths)
    accepted = {e["run_key"]: e["marker"] for e in events if e["event"] == "accepted"}
    window = timedelta(days=float(config["budget"]["window_days"]))
    reserve = float(config["budget"]["reserve_seconds"])
    limits = {a["name"]: float(a["budget_seconds"]) for a in config["accounts"]}
    spent: dict[str, list[tuple[datetime, float]]] = {name: [] for name in limits}
    counted: set[str] = set()  # a job carrying several runs is charged once
    for key, marker in accepted.items():
        if marker.get("account") in spent and marker["job_id"] not in counted:
            counted.add(marker["job_id"])
            spent[marker["account"]].append((parse_time(marker["submission_time"]), job_usage(marker, paths.result(key))))
    for name, seconds in (outside_usage or {}).items():
        if name in spent and seconds > 0:
            spent[name].append((at, float(seconds)))
    used_now = {name: _used(items, at, window) for name, items in spent.items()}
    times = planned_times(runs, config, events, at)
    # Runs due at the same time are packed into jobs as submit packs them (provider.pubs_per_job).
    due: dict[datetime, list[RunSpec]] = {}
    for key in runs:
        if key not in accepted:
            due.setdefault(times[key], []).append(runs[key])
    todo = [(when, job) for when in sorted(due) for job in plan_jobs(due[when], pubs_per_job(config))]
    jobs, first_unfit, fits_at = [], None, None
    for when, members in todo:
        cost = estimator.job_seconds([runs[k] for k in members])
        key = members[0] if len(members) == 1 else f"{runs[members[0]].experiment}/{job_name(members)}"
        spendable = {name: limits[name] - reserve - _used(items, when, window) for name, items in spent.items()}
        account = max(sorted(spendable), key=lambda n: spendable[n])
        if spendable[account] < cost:
            job = PlannedJob(key, when, cost, None)
            if first_unfit is None:
                first_unfit, fits_at = job, _fits_from(spent, limits, reserve, window, when, cost)
            jobs.append(job)
            continue
        spent[account].append((when, cost))
        jobs.append(PlannedJob(key, when, cost, account))
    accounts = tuple(AccountPlan(name, limits[name], round(used_now[name], 1),
                                 round(sum(j.seconds for j in jobs if j.account == name), 1)) for name in limits)
    return CampaignPlan(jobs=tuple(jobs), accounts=accounts, finishes=max((j.at for j in jobs), default=None),
                        first_unfit=first_unfit, unfit_fits_at=fits_at)


def _used(items: list[tuple[datetime, float]], at: datetime, window: timedelta) -> float:
    return sum(s for t, s in items if at - window < t <= at)


def _fits_from(spent: Mapping[str, list[tuple[datetime, float]]], limits: Mapping[str, float], reserve: float,
               window: timedelta, when: datetime, cost: float) -> datetime | None:
    """First time at or after ``when`` at which some account could pay ``cost``."""
    candidates = sorted({when} | {t + window for items in spent.values() for t, _ in items if t + window > when})
    for moment in candidates:
        if any(limits[n] - reserve - _used(items, moment, window) >= cost
               for n, items in spent.items()):
            return moment
    return None


def campaign_started(runs: Mapping[str, RunSpec], config: dict[str, Any], events: list[dict[str, Any]]) -> bool:
    """True once any session of a scheduled deployment experiment has been submitted."""
    scheduled = [name for name, exp in config["experiments"].items()
                 if exp["kind"] == "deployment" and exp.get("schedule")]
    return any(session_starts(name, runs, events) for name in scheduled)


def has_campaign(config: dict[str, Any]) -> bool:
    return any(exp["kind"] == "deployment" and exp.get("schedule") for exp in config["experiments"].values())


def plan_rows(plan: CampaignPlan) -> list[dict[str, Any]]:
    """Per account: window budget, used in the window ending now, and what the plan charges to it."""
    return [{"account": a.account, "budget_seconds": a.budget_seconds, "used_now": a.used_now,
             "planned_seconds": a.planned_seconds} for a in plan.accounts]


def check_campaign_start(config: dict[str, Any], paths: Paths, events: list[dict[str, Any]], at: datetime,
                         *, source: str = "config.yaml") -> CampaignPlan | None:
    """Before a scheduled campaign's first session: refuse to start one that does not fit.

    Returns the plan (``None`` when there is no campaign or it has started already).

    Raises:
        BudgetExceeded: the campaign does not fit and ``budget.allow_campaign_overrun`` is false.
    """
    from qpuflow.budget import BudgetExceeded
    from qpuflow.plan import plan_runs

    runs = {spec.key: spec for spec in plan_runs(config)}
    if not has_campaign(config) or campaign_started(runs, config, events):
        return None
    plan = plan_campaign(runs, config, paths, events, at)
    if not plan.fits and not config["budget"].get("allow_campaign_overrun", False):
        raise BudgetExceeded(
            f"not starting the campaign of {source}: {plan.verdict()}. Nothing was submitted. See "
            f"`qpuflow plan --jobs`; shorten the schedule, lower shots, add an account, or set "
            f"budget.allow_campaign_overrun: true in {source} to start anyway."
        )
    for power in campaign_power(config, paths, plan, at, only_with_floor=True, skip_accepted=True):
        if power.below_floor:
            raise LowPower(
                f"not starting the campaign of {source}: {power.verdict()}. Nothing was submitted. Change the "
                f"design (`qpuflow plan` lists the candidates), or set experiments.{power.experiment}.power."
                f"accept_low_power: true in {source} to start anyway.")
    return plan


class LowPower(Refusal):
    """A campaign whose prospective power is below its configured floor; it is not started."""


def campaign_power(config: dict[str, Any], paths: Paths, plan: CampaignPlan, at: datetime, *,
                   only_with_floor: bool = False, skip_accepted: bool = False, progress: Any = None) -> list[Any]:
    """The power plan (:func:`qpuflow.power.plan_power`) of every scheduled deployment
    experiment (only those with a ``power.floor`` when ``only_with_floor``, and then at the
    configured code geometry alone: the floor is checked, no design searched; not those whose
    low power is accepted when ``skip_accepted``). The budget a
    campaign may use is what the accounts can spend in one window, less what the plan puts
    on the other experiments."""
    from qpuflow.power_plan import plan_power

    reserve = float(config["budget"]["reserve_seconds"])
    spendable = sum(a.budget_seconds - reserve - a.used_now for a in plan.accounts)
    out = []
    for name, exp in sorted(config["experiments"].items()):
        if exp["kind"] != "deployment" or not exp.get("schedule"):
            continue
        settings = exp.get("power") or {}
        if (only_with_floor and settings.get("floor") is None) or (skip_accepted and settings.get("accept_low_power")):
            continue  # nothing to check (an accepted low power is shown by `qpuflow plan`, not recomputed)
        others = sum(j.seconds for j in plan.jobs if not j.run_key.startswith(f"{name}/"))
        start = (exp.get("schedule") or {}).get("start")
        epoch = (parse_time(start) if start else at).timestamp()
        out.append(plan_power(config, name, budget_seconds=max(0.0, spendable - others),
                              start_epoch=math.floor(epoch / 86400) * 86400, cache_dir=paths.ledger.parent,
                              costs=_session_costs(config, paths, name), progress=progress,
                              search=not only_with_floor))
    return out


def _session_costs(config: dict[str, Any], paths: Paths, experiment: str) -> tuple[float, float]:
    """(QPU seconds of a session's probe job, of its arms' job per shot per arm, without the
    per-job overhead), estimated from the session's real circuits as the budget check does."""
    from qpuflow.budget import DEFAULT_REP_DELAY_SECONDS
    from qpuflow.plan import plan_runs

    estimator = CostEstimator(config, paths)
    parts = [spec for spec in plan_runs(config) if spec.experiment == experiment and spec.session == 0]
    probe = [spec for spec in parts if spec.is_probe]
    arms = [spec for spec in parts if not spec.is_probe]
    probe_seconds = estimator.job_seconds(probe) if probe else 0.0
    per_shot = sum((estimator.duration(spec) or 0.0) + DEFAULT_REP_DELAY_SECONDS for spec in arms)
    return probe_seconds, per_shot
