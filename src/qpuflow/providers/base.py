"""What every provider offers the workflow. ``local`` and ``ibm`` are interchangeable here."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np


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
    def result_status(self) -> str:
        """The result file's status word for a final state."""
        return {
            JobState.DONE: "completed", JobState.ERROR: "failed",
            JobState.CANCELLED: "cancelled", JobState.UNKNOWN: "failed",
        }[self]


@dataclasses.dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: JobState
    tags: tuple[str, ...] = ()
    created: str = ""
    backend: str = ""
    error: str | None = None
    usage_seconds: float | None = None
    finished: str | None = None  # completion time, when the status answer carries it

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "state": self.state.value, "tags": list(self.tags)}


@dataclasses.dataclass(frozen=True)
class JobOutput:
    """A final job's outcome: per PUB, bit arrays per register if DONE; the error text otherwise."""

    info: JobInfo
    pubs: list[dict[str, np.ndarray]] | None
    completion_time: str | None

    def registers(self, pub_index: int) -> dict[str, np.ndarray] | None:
        """The bit arrays of one PUB (None if the job did not complete)."""
        if self.pubs is None:
            return None
        if not 0 <= pub_index < len(self.pubs):
            raise ProviderError(f"job {self.info.job_id} returned {len(self.pubs)} PUB result(s); "
                                f"PUB {pub_index} is missing")
        return self.pubs[pub_index]


class ProviderError(RuntimeError):
    """The provider could not be reached or refused a request; the message says which."""


class Provider(Protocol):
    name: str

    def submit(self, isa_paths: Sequence[Path], *, backend: str, shots: Sequence[int], tags: Sequence[str],
               max_execution_time: int) -> str:
        """Submit ISA circuits (QPY files) as one job, one PUB each with its shots, in order;
        return the job ID without waiting."""

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
