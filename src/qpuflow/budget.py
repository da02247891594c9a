"""QPU-time budget: estimate a job's cost and refuse what an account cannot pay for.

Open Plan accounts get about 600 QPU seconds per rolling 28-day window. Usage per account
is the sum over its jobs in the window of the provider-reported usage (from collected
results) or, while a job has none yet, the estimate recorded at submission.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable

from qpuflow.errors import Refusal
from qpuflow.provenance import clock, parse_time
from qpuflow.records import CorruptRecordError, Result

# How a job is charged. IBM's "Workload usage" guide
# (quantum.cloud.ibm.com/docs/guides/estimate-job-run-time): job-mode usage is the time the
# QPU is locked to execute the job, including the overhead of preparing the QPU for it. The
# "Dynamic repetition rate execution" guide: every shot of every circuit is followed by the
# backend's rep_delay (backend.default_rep_delay; 250 us on Heron devices such as ibm_fez).
# So usage ~ fixed per-job overhead + shots x circuits x (scheduled duration + rep_delay).
# The per-job overhead is not published; 2 s is this project's assumption (small jobs on Open
# Plan report a few seconds) and should be replaced by a fit to collected usage_seconds.
JOB_OVERHEAD_SECONDS = 2.0
DEFAULT_REP_DELAY_SECONDS = 250e-6


class BudgetExceeded(Refusal, RuntimeError):
    """A submission that would spend more than an account has left."""


def estimate_qpu_seconds(
    *, shots: int, circuit_duration: float | None, rep_delay: float = DEFAULT_REP_DELAY_SECONDS,
    overhead: float = JOB_OVERHEAD_SECONDS,
) -> float:
    """QPU seconds a job will be charged: fixed overhead plus shots x (circuit + rep delay).

    >>> estimate_qpu_seconds(shots=4096, circuit_duration=20e-6)
    3.11
    """
    return estimate_job_seconds([(shots, circuit_duration)], rep_delay=rep_delay, overhead=overhead)


def estimate_job_seconds(
    pubs: Iterable[tuple[int, float | None]], *, rep_delay: float = DEFAULT_REP_DELAY_SECONDS,
    overhead: float = JOB_OVERHEAD_SECONDS,
) -> float:
    """QPU seconds of one job carrying several PUBs, each ``(shots, circuit duration)``.

    The per-job overhead is paid once, however many circuits the job carries: what packing
    runs into one job (``provider.pubs_per_job``) saves.

    >>> estimate_job_seconds([(4096, 20e-6)] * 4)
    6.42
    """
    return round(overhead + sum(shots * ((duration or 0.0) + rep_delay) for shots, duration in pubs), 2)


@dataclasses.dataclass(frozen=True)
class AccountUsage:
    account: str
    limit_seconds: float
    used_seconds: float
    reserve_seconds: float

    @property
    def remaining_seconds(self) -> float:
        return self.limit_seconds - self.used_seconds

    @property
    def spendable_seconds(self) -> float:
        return max(0.0, self.remaining_seconds - self.reserve_seconds)


def usage_by_account(
    config: dict[str, Any], accepted_markers: Iterable[dict[str, Any]], result_path_of,
    *, now: datetime | None = None, duplicates: Iterable[dict[str, Any]] = (),
) -> dict[str, AccountUsage]:
    """Usage in the current window for every configured account.

    ``duplicates``: the ledger's duplicate jobs (latest record of each); an extra job that ran
    is charged like any other, one cancelled while queued costs nothing.
    """
    now = now or clock()
    window = timedelta(days=config["budget"]["window_days"])
    used = {a["name"]: 0.0 for a in config["accounts"]}
    seen: set[str] = set()
    for marker in accepted_markers:
        if marker["job_id"] in seen or marker["account"] not in used:
            continue
        seen.add(marker["job_id"])
        if now - parse_time(marker["submission_time"]) > window:
            continue
        used[marker["account"]] += job_usage(marker, result_path_of(marker["run_key"]))
    for dup in duplicates:
        if dup["job_id"] in seen or dup.get("account") not in used:
            continue
        seen.add(dup["job_id"])
        if now - parse_time(dup["time"]) > window:
            continue
        used[dup["account"]] += duplicate_usage(dup)
    return {
        a["name"]: AccountUsage(
            account=a["name"], limit_seconds=float(a["budget_seconds"]), used_seconds=round(used[a["name"]], 3),
            reserve_seconds=float(config["budget"]["reserve_seconds"]),
        )
        for a in config["accounts"]
    }


def job_usage(marker: dict[str, Any], result_path: Path) -> float:
    """Seconds a job cost: the provider's charge once collected and billed, else the estimate at
    submission (also while the service's billing is still pending)."""
    if result_path.exists():
        try:
            result = Result.read(result_path)
        except CorruptRecordError:
            result = None
        if result is not None and result.job_id == marker["job_id"] and result.usage_seconds is not None:
            return float(result.usage_seconds)
    return float(marker["estimated_qpu_seconds"])


def duplicate_usage(dup: dict[str, Any]) -> float:
    """Seconds an extra job costs: its charge once known, nothing if cancelled before it ran,
    else the estimate of the job it duplicates."""
    if dup.get("usage_seconds") is not None and (dup.get("usage_final") or dup.get("state") == "CANCELLED"):
        return float(dup["usage_seconds"])
    if dup.get("state") == "CANCELLED" and str(dup.get("outcome", "")).startswith("cancelled"):
        return 0.0
    return float(dup.get("estimated_qpu_seconds") or 0.0)


def with_service_usage(usage: dict[str, AccountUsage], factory: Callable[[str], Any], *,
                       only: str | None) -> dict[str, AccountUsage]:
    """Take the service's own figures where it reports them: it also sees jobs qpuflow did not send.

    ``factory(account)`` gives a provider; one with ``instance_usage()`` (ibm) reports
    (consumed, limit) seconds for its instance. ``only``: look at that account alone.
    """
    out = dict(usage)
    for name, account in usage.items():
        if only is not None and name != only:
            continue
        reported = getattr(factory(name), "instance_usage", lambda: None)()
        if reported is None:
            continue
        consumed, limit = reported
        out[name] = dataclasses.replace(account, used_seconds=max(account.used_seconds, consumed),
                                        limit_seconds=min(account.limit_seconds, limit))
    return out


def choose_account(
    usage: dict[str, AccountUsage], cost: float, *, run_key: str, preferred: str | None = None,
) -> str:
    """The account that pays for a job: ``preferred`` if given, else the one with most left.

    Raises:
        BudgetExceeded: saying how much is needed and what each account has.
    """
    candidates = [usage[preferred]] if preferred else sorted(
        usage.values(), key=lambda u: (-u.spendable_seconds, u.account)
    )
    for account in candidates:
        if account.spendable_seconds >= cost:
            return account.account
    detail = "; ".join(
        f"{u.account}: {u.remaining_seconds:.1f} s left of {u.limit_seconds:.0f} s, "
        f"{u.reserve_seconds:.0f} s reserved" for u in candidates
    )
    raise BudgetExceeded(
        f"not submitting {run_key}: it needs about {math.ceil(cost)} QPU seconds and no account can "
        f"pay for it ({detail}). Wait for the 28-day window to roll, add an account, or lower "
        f"shots/reserve in config.yaml. Nothing was submitted for this run."
    )


def check_study_fits(
    costs: dict[str, float], usage: dict[str, AccountUsage], *, source: str = "config.yaml",
) -> None:
    """Refuse a batch of submissions whose total estimated cost exceeds what all accounts can spend.

    Args:
        costs: job -> estimated QPU seconds, for the jobs about to be submitted.
        usage: per-account usage in the current window.

    Raises:
        BudgetExceeded: before anything is sent, saying what is needed and what is available.
    """
    needed = sum(costs.values())
    available = sum(u.spendable_seconds for u in usage.values())
    largest = max(costs.values(), default=0.0)
    best_single = max((u.spendable_seconds for u in usage.values()), default=0.0)
    if needed <= available and largest <= best_single:
        return
    detail = "; ".join(f"{u.account}: {u.spendable_seconds:.1f} s spendable ({u.remaining_seconds:.1f} s left, "
                       f"{u.reserve_seconds:.0f} s reserved)" for u in usage.values())
    raise BudgetExceeded(
        f"not submitting any of the {len(costs)} pending job(s) of {source}: together they need about "
        f"{math.ceil(needed)} QPU seconds (largest job {math.ceil(largest)} s) and the accounts can spend "
        f"{available:.1f} s ({detail}). Submit fewer runs (remove experiments or lower shots), add an "
        f"account, or wait for the 28-day window to roll. Nothing was submitted."
    )
