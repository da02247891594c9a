"""IBM Quantum through qiskit-ibm-runtime, in job mode (never Session).

Accounts are referenced by name only: a saved account (``QiskitRuntimeService.save_account(
name=...)``) or ``env:PREFIX``, which reads ``PREFIX_TOKEN`` and optional ``PREFIX_INSTANCE``,
``PREFIX_CHANNEL`` and ``PREFIX_URL`` from the environment. The token is handed to the client
and never stored, logged or put in an error message by this module.

``local_mode=True`` uses the client's local testing mode (a fake backend in this process):
it exercises the same Sampler calls, but its jobs vanish with the process.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from qpuflow.providers.base import JobInfo, JobOutput, JobState, ProviderError

_STATE_MAP = {
    "INITIALIZING": JobState.QUEUED, "QUEUED": JobState.QUEUED, "VALIDATING": JobState.QUEUED,
    "RUNNING": JobState.RUNNING, "DONE": JobState.DONE, "ERROR": JobState.ERROR,
    "CANCELLED": JobState.CANCELLED,
}


def to_state(status: Any) -> JobState:
    """Convert the client's status (a string, or a JobStatus enum in local mode) once."""
    text = getattr(status, "name", status)
    try:
        return _STATE_MAP[str(text).upper()]
    except KeyError:
        raise ProviderError(f"unexpected job status {status!r} from qiskit-ibm-runtime") from None


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def open_service(account: str, *, channel: str = "ibm_quantum_platform"):
    """A QiskitRuntimeService for an account name; errors never contain the token."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    token = None
    try:
        if account.startswith("env:"):
            prefix = account[4:]
            token = os.environ.get(f"{prefix}_TOKEN")
            if not token:
                raise ProviderError(
                    f"account '{account}': environment variable {prefix}_TOKEN is not set. Export it "
                    f"(and {prefix}_INSTANCE) or save the account with QiskitRuntimeService.save_account(name=...)."
                )
            return QiskitRuntimeService(
                channel=os.environ.get(f"{prefix}_CHANNEL", channel), token=token,
                instance=os.environ.get(f"{prefix}_INSTANCE"), url=os.environ.get(f"{prefix}_URL"),
            )
        return QiskitRuntimeService(name=account)
    except ProviderError:
        raise
    except Exception as exc:
        raise ProviderError(
            f"account '{account}' could not be opened: {_redact(str(exc), token)}. Saved accounts are listed "
            f"by QiskitRuntimeService.saved_accounts(); environment accounts are written env:PREFIX."
        ) from None


class IBMProvider:
    """Submit ISA circuits with SamplerV2 in job mode; query and fetch by job ID."""

    name = "ibm"

    def __init__(self, account: str, *, channel: str = "ibm_quantum_platform", local_mode: bool = False,
                 service: Any = None) -> None:
        self.account = account
        self.local_mode = local_mode
        self._channel = channel
        self._service = service
        self._local_jobs: dict[str, Any] = {}  # local mode only: jobs live in this process

    @property
    def service(self):
        if self._service is None:
            self._service = open_service(self.account, channel=self._channel)
        return self._service

    def _backend(self, name: str):
        if self.local_mode:
            from qpuflow.transpile import load_backend

            return load_backend(name)
        try:
            return self.service.backend(name)
        except Exception as exc:
            raise ProviderError(f"backend '{name}' is not available to account '{self.account}': {exc}") from None

    def submit(self, isa_path: Path, *, backend: str, shots: int, tags: Sequence[str],
               max_execution_time: int) -> str:
        from qiskit import qpy
        from qiskit_ibm_runtime import SamplerV2

        with open(isa_path, "rb") as fh:
            (isa,) = qpy.load(fh)
        with warnings.catch_warnings():
            # SamplerV2 is deprecated (since 0.50) in favour of the executor-based sampler; the
            # IBM-path issue decides the migration. Job mode: mode is the backend, never a Session.
            warnings.simplefilter("ignore", DeprecationWarning)
            sampler = SamplerV2(mode=self._backend(backend))
            if not self.local_mode:
                sampler.options.max_execution_time = int(max_execution_time)
                sampler.options.environment.job_tags = list(tags)
            job = sampler.run([isa], shots=int(shots))
        job_id = job.job_id()
        if self.local_mode:
            self._local_jobs[job_id] = (job, list(tags), backend)
        return job_id

    def _job(self, job_id: str):
        if self.local_mode:
            if job_id not in self._local_jobs:
                raise ProviderError(f"job {job_id} is unknown to this process (local mode keeps jobs in memory)")
            return self._local_jobs[job_id][0]
        return self.service.job(job_id)

    def _info(self, job_id: str, job: Any = None) -> JobInfo:
        try:
            job = job if job is not None else self._job(job_id)
            state = to_state(job.status())
        except ProviderError:
            if self.local_mode:
                return JobInfo(job_id=job_id, state=JobState.UNKNOWN, error="unknown job")
            raise
        except Exception as exc:
            raise ProviderError(f"status of job {job_id} could not be read: {exc}") from None
        if self.local_mode:
            _, tags, backend = self._local_jobs[job_id]
            error = str(job.error_message()) if state is JobState.ERROR and hasattr(job, "error_message") else None
            return JobInfo(job_id=job_id, state=state, tags=tuple(tags), backend=backend, error=error)
        error = job.error_message() if state in (JobState.ERROR, JobState.CANCELLED) else None
        if state is JobState.CANCELLED and not error:
            error = "Job was cancelled"
        usage = None
        if state.final:
            try:
                usage = float(job.usage())
            except Exception:  # usage may still be pending on the service side
                usage = None
        created = job.creation_date.isoformat() if getattr(job, "creation_date", None) else ""
        return JobInfo(job_id=job_id, state=state, tags=tuple(job.tags or ()), created=created,
                       backend=job.backend().name if job.backend() else "", error=error, usage_seconds=usage)

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        return {job_id: self._info(job_id) for job_id in job_ids}

    def find_by_tag(self, tag: str) -> list[JobInfo]:
        return self.jobs(tags=[tag])

    def jobs(self, *, limit: int | None = None, tags: Sequence[str] = ()) -> list[JobInfo]:
        if self.local_mode:
            ids = [j for j, (_, jt, _) in self._local_jobs.items() if all(t in jt for t in tags)]
            return [self._info(j) for j in ids[:limit] if True]
        found = self.service.jobs(limit=limit, job_tags=list(tags) or None)
        return [self._info(job.job_id(), job) for job in found]

    def fetch(self, job_id: str) -> JobOutput:
        job = self._job(job_id)
        info = self._info(job_id, job)
        if not info.state.final:
            raise ProviderError(f"job {job_id} is {info.state.value}, not final; nothing to fetch yet")
        registers = None
        if info.state is JobState.DONE:
            result = job.result()
            data = result[0].data
            registers = {name: _bitarray_to_bool(getattr(data, name)) for name in data.keys()}
        return JobOutput(info=info, registers=registers, completion_time=_finished_time(job))

    def cancel(self, job_id: str) -> None:
        try:
            self._job(job_id).cancel()
        except Exception as exc:
            raise ProviderError(f"job {job_id} could not be cancelled: {exc}") from None


def _finished_time(job: Any) -> str | None:
    try:
        stamps = job.metrics().get("timestamps", {})
        return stamps.get("finished")
    except Exception:
        return None


def _bitarray_to_bool(bit_array: Any):
    """A BitArray (bytes, big-endian, bit 0 rightmost) -> (shots, num_bits) bool, column i = bit i."""
    import numpy as np

    raw = np.asarray(bit_array.array, dtype=np.uint8).reshape(-1, bit_array.array.shape[-1])
    bits = np.unpackbits(raw, axis=1)[:, ::-1][:, : bit_array.num_bits]
    return bits.astype(bool)
