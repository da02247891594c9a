"""What every provider offers the workflow. ``local`` and ``ibm`` are interchangeable here."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from qpuflow.errors import QpuflowError
from qpuflow.records import ResultStatus


class JobState(str, enum.Enum):
    """Provider job states, converted once from each provider's own strings."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"  # the provider does not know the job ID

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.ERROR, JobState.CANCELLED, JobState.UNKNOWN)

    @property
    def result_status(self) -> ResultStatus:
        """The result file's status for a final state."""
        return {
            JobState.DONE: ResultStatus.COMPLETED, JobState.ERROR: ResultStatus.FAILED,
            JobState.CANCELLED: ResultStatus.CANCELLED, JobState.UNKNOWN: ResultStatus.FAILED,
        }[self]


# How far along a job is, for choosing among jobs that carry the same runs (duplicates):
# one that completed beats one that runs, which beats one still queued; a failed or cancelled
# job is chosen only if nothing live carries the runs.
_PROGRESS = {JobState.DONE: 0, JobState.RUNNING: 1, JobState.QUEUED: 2, JobState.ERROR: 3,
             JobState.CANCELLED: 3, JobState.UNKNOWN: 4}


@dataclasses.dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: JobState
    tags: tuple[str, ...] = ()
    created: str = ""
    backend: str = ""
    error: str | None = None
    # QPU seconds charged (IBM: usage.qpu_charge_time_seconds) and whether billing is final
    # (IBM: usage.status is no longer "pending"); None while nothing is known.
    usage_seconds: float | None = None
    finished: str | None = None  # completion time, when the answer carries it
    usage_final: bool = False
    program: str = ""

    @property
    def live(self) -> bool:
        """Queued, running or completed: a job whose work counts."""
        return self.state in (JobState.QUEUED, JobState.RUNNING, JobState.DONE)

    def progress_key(self) -> tuple[int, float, str]:
        """Sort key: furthest along first (completed, running, queued, then ended badly), then
        the earliest created."""
        return (_PROGRESS[self.state], _epoch(self.created), self.job_id)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "state": self.state.value, "tags": list(self.tags)}


def furthest_along(jobs: Sequence[JobInfo]) -> JobInfo:
    """The job to keep among several carrying the same runs (DESIGN.md invariant 1)."""
    return min(jobs, key=JobInfo.progress_key)


def _epoch(text: str) -> float:
    from datetime import datetime, timezone

    if not text:
        return float("inf")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


@dataclasses.dataclass(frozen=True)
class JobOutput:
    """A final job's outcome: per PUB, bit arrays per register if DONE; the error text otherwise."""

    info: JobInfo
    pubs: list[dict[str, np.ndarray]] | None
    completion_time: str | None
    # The run identity each PUB's circuit carried, as the service echoed it (None: not echoed).
    pub_run_ids: list[str | None] | None = None

    def registers(self, pub_index: int, run_id: str | None = None) -> dict[str, np.ndarray] | None:
        """The bit arrays of one PUB (None if the job did not complete).

        ``run_id``: the run this PUB must hold; refused if the result says it holds another.
        """
        if self.pubs is None:
            return None
        if not 0 <= pub_index < len(self.pubs):
            raise ProviderError(f"job {self.info.job_id} returned {len(self.pubs)} PUB result(s); "
                                f"PUB {pub_index} is missing")
        echoed = self.pub_run_ids[pub_index] if self.pub_run_ids and pub_index < len(self.pub_run_ids) else None
        if run_id is not None and echoed is not None and echoed != run_id:
            raise ProviderError(f"job {self.info.job_id}: PUB {pub_index} holds run {echoed[:12]}, not "
                                f"{run_id[:12]} as recorded; its data was not written")
        return self.pubs[pub_index]


class ProviderError(QpuflowError, RuntimeError):
    """The provider could not be reached or refused a request; the message says which."""


class SubmitRefused(ProviderError):
    """The service refused a submission outright (4xx): no job was created by this request.

    ``status``: the HTTP status; ``retry_after``: seconds the service asked to wait (429).
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class UsageLimitExceeded(SubmitRefused):
    """The service refused a submission because the instance has used up its budget (409)."""


class SubmitUncertain(ProviderError):
    """A submission whose outcome is unknown (5xx, timeout, dropped connection): the service
    may or may not have created the job. Only a lookup by the job's tags can tell.

    ``status``: the HTTP status if the service answered (a 5xx: whatever it created exists by
    now); None if no answer came (timeout, dropped connection: the job may still appear).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unauthorized(ProviderError):
    """The service refused the access token (401)."""


class Provider(Protocol):
    name: str
    # True when a job may exist although its submission reported failure, or twice for one
    # submission (IBM: the client's retries, timeouts): submissions are then checked by tag.
    may_duplicate_on_retry: bool
    # How long after a submission was interrupted its job may still appear (a POST in flight).
    in_flight_seconds: float

    def submit(self, isa_paths: Sequence[Path], *, backend: str, shots: Sequence[int], tags: Sequence[str],
               max_execution_time: int, metadata: Sequence[dict] | None = None) -> str:
        """Submit ISA circuits (QPY files) as one job, one PUB each with its shots, in order, in
        a single attempt; return the job ID without waiting.

        ``metadata``: JSON-simple circuit metadata per PUB (the run's identity), sent in place
        of the files' own.

        Raises:
            SubmitRefused: the service refused; nothing was created.
            SubmitUncertain: the outcome is unknown; look the job up by its tags.
        """

    def find_by_tag(self, tag: str) -> list[JobInfo]:
        """Jobs carrying ``tag``: how an interrupted submission is found again."""

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """Status of many jobs in as few requests as the provider allows."""

    def fetch(self, job_id: str, known: JobInfo | None = None) -> JobOutput:
        """The outcome of a job in a final state. ``known``: its final status, already polled
        (a provider may then skip asking again)."""

    def jobs(self, *, limit: int | None = None, tags: Sequence[str] = ()) -> list[JobInfo]:
        """Jobs the provider holds, newest first."""

    def cancel(self, job_id: str) -> None:
        """Cancel a queued or running job."""
