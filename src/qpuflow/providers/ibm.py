"""IBM Quantum through qiskit-ibm-runtime, in job mode (never Session).

Accounts are referenced by name only: a saved account (``QiskitRuntimeService.save_account(
name=...)``) or ``env:PREFIX``, which reads ``PREFIX_TOKEN`` and optional ``PREFIX_INSTANCE``,
``PREFIX_CHANNEL`` and ``PREFIX_URL`` from the environment. The token is handed to the client
and never stored, logged or put in an error message by this module.

``local_mode=True`` uses the client's local testing mode (a fake backend in this process):
it exercises the same Sampler calls, but its jobs vanish with the process.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from qpuflow.providers.base import JobInfo, JobOutput, JobState, ProviderError

log = logging.getLogger("qpuflow.ibm")

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

    # The client otherwise walks the whole call stack on every request to report which code
    # called it (a usage header): a third of collect's time, and caller paths sent to IBM.
    os.environ.setdefault("USAGE_DATA_OPT_OUT", "True")
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


def _is_unauthorized(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return http_status(exc) == 401 or "NotAuthorized" in text or "HTTP 401" in text or "Unauthorized" in text


def _reauthenticating(method):
    """Retry a call once with a fresh client after the service rejected the access token.

    The client refreshes its IAM token only as it nears expiry; a token the service revoked
    earlier keeps failing with 401. A new QiskitRuntimeService gets a new token. A 401 means
    the request was refused, so repeating a submission cannot duplicate it.
    """
    import functools

    @functools.wraps(method)
    def wrapper(self: "IBMProvider", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if self.local_mode or not _is_unauthorized(exc):
                raise
            log.warning("access token rejected by the service; signing in again for account '%s'", self.account)
            self._service = None
            return method(self, *args, **kwargs)

    return wrapper


class IBMProvider:
    """Submit ISA circuits with SamplerV2 in job mode; query and fetch by job ID."""

    name = "ibm"

    may_duplicate_on_retry = True  # the client retries POST /jobs on 5xx (upstream issue #1114)

    def __init__(self, account: str, *, channel: str = "ibm_quantum_platform", local_mode: bool = False,
                 service: Any = None, page_size: int = 100, max_submit_attempts: int = 6,
                 backoff_seconds: float = 15.0, backoff_cap_seconds: float = 120.0, sleep: Any = None,
                 request_timeout_seconds: float = 60.0) -> None:
        import time

        self.request_timeout_seconds = request_timeout_seconds
        self.account = account
        self.page_size = page_size
        self.max_submit_attempts = max_submit_attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_cap_seconds = backoff_cap_seconds
        self._sleep = sleep or time.sleep
        self.local_mode = local_mode
        self._channel = channel
        self._service = service
        self._local_jobs: dict[str, Any] = {}  # local mode only: jobs live in this process

    @property
    def service(self):
        if self._service is None:
            self._service = open_service(self.account, channel=self._channel)
            _set_read_timeout(self._service, self.request_timeout_seconds)
        return self._service

    def _backend(self, name: str):
        if self.local_mode:
            from qpuflow.transpile import load_backend

            return load_backend(name)
        try:
            return self.service.backend(name)
        except Exception as exc:
            raise ProviderError(f"backend '{name}' is not available to account '{self.account}' ({_describe(exc)})") from None

    @_reauthenticating
    def submit(self, isa_paths: Sequence[Path], *, backend: str, shots: Sequence[int], tags: Sequence[str],
               max_execution_time: int) -> str:
        from qiskit import qpy
        from qiskit_ibm_runtime import SamplerV2

        if not isa_paths or len(isa_paths) != len(shots):
            raise ProviderError(f"a job needs one shot count per circuit (got {len(isa_paths)} circuits, "
                                f"{len(shots)} shot counts)")
        pubs = []
        for path, pub_shots in zip(isa_paths, shots):
            with open(path, "rb") as fh:
                (isa,) = qpy.load(fh)
            pubs.append((isa, None, int(pub_shots)))  # a SamplerPub: circuit, no parameters, shots
        with warnings.catch_warnings():
            # SamplerV2 is deprecated (since 0.50) in favour of the executor-based sampler; the
            # IBM-path issue decides the migration. Job mode: mode is the backend, never a Session.
            warnings.simplefilter("ignore", DeprecationWarning)
            sampler = SamplerV2(mode=self._backend(backend))
            if not self.local_mode:
                sampler.options.max_execution_time = int(max_execution_time)
                sampler.options.environment.job_tags = list(tags)
            job = self._run_with_backoff(sampler, pubs)
        job_id = job.job_id()
        if self.local_mode:
            self._local_jobs[job_id] = (job, list(tags), backend)
        return job_id

    def _run_with_backoff(self, sampler: Any, pubs: list[Any]):
        """Submit, waiting out 429 (rate limited: the service refused, so nothing was created).

        The service allows about 5 submissions a minute per instance and the client does not
        retry 429 itself. Any other failure is raised at once: after a 5xx the client has
        already retried (and may have created the job), which only a tag lookup can settle.
        """
        for attempt in range(self.max_submit_attempts):
            try:
                return sampler.run(pubs)
            except Exception as exc:
                status = http_status(exc)
                if status == 429 and attempt + 1 < self.max_submit_attempts:
                    delay = min(self.backoff_cap_seconds, self.backoff_seconds * 2 ** attempt)
                    log.warning("rate limited by the service (429); retrying the submission in %.0f s", delay)
                    self._sleep(delay)
                    continue
                raise ProviderError(f"submission refused or failed ({_describe(exc)})") from None
        raise ProviderError("submission still rate limited after retries")  # pragma: no cover

    @_reauthenticating
    def instance_usage(self) -> tuple[float, float] | None:
        """(consumed, limit) QPU seconds of this account's instance, as the service reports them."""
        if self.local_mode:
            return None
        try:
            usage = self.service.usage()
        except Exception as exc:
            raise ProviderError(f"usage of account '{self.account}' could not be read ({_describe(exc)})") from None
        limit = usage.get("usage_limit_seconds") or usage.get("usage_allocation_seconds")
        if limit is None:
            return None
        return float(usage.get("usage_consumed_seconds", 0.0)), float(limit)

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
            raise ProviderError(f"status of job {job_id} could not be read ({_describe(exc)})") from None
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

    @_reauthenticating
    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """Status of many jobs from the job listing: ceil(N / page) requests, not N.

        qpuflow tags every job ``qpuflow``, so paging through that tag's listing finds them.
        A job the listing does not show (e.g. tags removed by hand) is asked for by ID.
        """
        if self.local_mode:
            return {job_id: self._info(job_id) for job_id in job_ids}
        wanted = set(job_ids)
        found: dict[str, JobInfo] = {}
        try:
            found = self._list_raw(wanted, tags=["qpuflow"])
        except AttributeError:  # the client's internals moved: fall back to one request per job
            found = {}
        except Exception as exc:
            raise ProviderError(f"job status could not be listed ({_describe(exc)})") from None
        for job_id in wanted - set(found):
            found[job_id] = self._info_or_unknown(job_id)
        return {job_id: found[job_id] for job_id in job_ids}

    def _list_raw(self, wanted: set[str], *, tags: list[str]) -> dict[str, JobInfo]:
        client = self.service._active_api_client  # the listing with states; service.jobs() drops them
        found: dict[str, JobInfo] = {}
        offset = 0
        while wanted - set(found):
            page = client.jobs_get(limit=self.page_size, skip=offset, job_tags=tags)
            jobs = page.get("jobs", [])
            for raw in jobs:
                if raw.get("id") in wanted:
                    found[raw["id"]] = _info_from_raw(raw)
            offset += len(jobs)
            if not jobs or offset >= int(page.get("count", 0)):
                break
        return found

    def _info_or_unknown(self, job_id: str) -> JobInfo:
        try:
            return self._info(job_id)
        except ProviderError as exc:
            if "404" in str(exc) or "not found" in str(exc).lower():
                return JobInfo(job_id=job_id, state=JobState.UNKNOWN, error=f"job {job_id} not found at the service")
            raise

    def find_by_tag(self, tag: str) -> list[JobInfo]:
        return self.jobs(tags=[tag])

    @_reauthenticating
    def jobs(self, *, limit: int | None = None, tags: Sequence[str] = ()) -> list[JobInfo]:
        if self.local_mode:
            ids = [j for j, (_, jt, _) in self._local_jobs.items() if all(t in jt for t in tags)]
            return [self._info(j) for j in ids[:limit]]
        try:
            client = self.service._active_api_client
            out: list[JobInfo] = []
            offset = 0
            while limit is None or len(out) < limit:
                size = self.page_size if limit is None else min(self.page_size, limit - len(out))
                page = client.jobs_get(limit=size, skip=offset, job_tags=list(tags) or None)
                jobs = page.get("jobs", [])
                out.extend(_info_from_raw(raw) for raw in jobs)
                offset += len(jobs)
                if not jobs or offset >= int(page.get("count", 0)):
                    break
            return out
        except Exception as exc:
            raise ProviderError(f"jobs of account '{self.account}' could not be listed ({_describe(exc)})") from None

    @_reauthenticating
    def fetch(self, job_id: str, known: JobInfo | None = None) -> JobOutput:
        """The outcome of a final job; with ``known`` (from the listing) in one request.

        Through the client's job object a download costs five requests (status twice,
        metrics twice, results) and a copy of the backend's configuration; the listing already
        holds state, error, usage and end time, so only the results are fetched.
        """
        if known is not None and known.state.final and not self.local_mode:
            output = self._fetch_known(known)
            if output is not None:
                return output
        try:
            job = self._job(job_id)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"job {job_id} could not be read ({_describe(exc)})") from None
        info = self._info(job_id, job)
        if not info.state.final:
            raise ProviderError(f"job {job_id} is {info.state.value}, not final; nothing to fetch yet")
        pubs = None
        if info.state is JobState.DONE:
            try:
                result = job.result()
            except Exception as exc:
                raise ProviderError(f"result of job {job_id} could not be downloaded ({_describe(exc)})") from None
            pubs = _pub_registers(result)
        return JobOutput(info=info, pubs=pubs, completion_time=_finished_time(job))

    def _fetch_known(self, known: JobInfo) -> JobOutput | None:
        """The download alone; ``None`` if the client's internals moved (use the job object)."""
        pubs = None
        if known.state is JobState.DONE:
            job_results = getattr(getattr(self.service, "_active_api_client", None), "job_results", None)
            if job_results is None:
                return None
            try:
                raw = job_results(known.job_id)
            except Exception as exc:
                raise ProviderError(f"result of job {known.job_id} could not be downloaded ({_describe(exc)})") from None
            pubs = _pub_registers(_decode_sampler_result(raw))
        return JobOutput(info=known, pubs=pubs, completion_time=known.finished)

    @_reauthenticating
    def cancel(self, job_id: str) -> None:
        try:
            self._job(job_id).cancel()
        except Exception as exc:
            raise ProviderError(f"job {job_id} could not be cancelled: {exc}") from None


def _set_read_timeout(service: Any, seconds: float) -> None:
    """Give every request of the client a read timeout.

    qiskit-ibm-runtime 0.51 sends requests with timeout (5.0, None): no read timeout, so a
    service that accepts the connection and never answers would block collect forever. There
    is no public setting; the session's private ``_timeout`` is what it uses (checked against
    0.51, pinned below 0.52). If the attribute moves, requests simply keep the client default.
    """
    clients = [getattr(service, "_active_api_client", None), *getattr(service, "_api_clients", {}).values()]
    for client in clients:
        session = getattr(client, "_session", None)
        if session is not None and hasattr(session, "_timeout"):
            connect = session._timeout[0] if isinstance(session._timeout, tuple) else 5.0
            session._timeout = (connect, seconds)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a client exception, following its causes."""
    seen = 0
    while exc is not None and seen < 10:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status > 0:
            return status
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _describe(exc: BaseException) -> str:
    """A one-line description of a client error. Tokens never reach client messages, but be sure."""
    text = " ".join(str(exc).split())[:300]
    for name in ("QISKIT_IBM_TOKEN",):
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    status = http_status(exc)
    kind = type(exc).__name__
    if "Connection" in text or "Max retries" in text or "connect" in kind.lower():
        return f"{kind}: the service could not be reached: {text}"
    return f"{kind}{f' HTTP {status}' if status else ''}: {text}"


def _info_from_raw(raw: dict[str, Any]) -> JobInfo:
    """A JobInfo from one entry of the REST job listing."""
    state_block = raw.get("state") or {}
    status = str(state_block.get("status", raw.get("status", ""))).upper()
    mapping = {"QUEUED": JobState.QUEUED, "RUNNING": JobState.RUNNING, "COMPLETED": JobState.DONE,
               "FAILED": JobState.ERROR, "CANCELLED": JobState.CANCELLED}
    state = mapping.get(status) or to_state(status)
    if state is JobState.CANCELLED and state_block.get("reason_code") == 1305:
        state = JobState.ERROR  # the client's rule: cancelled for exceeding max_execution_time is an error
    error = None
    if state in (JobState.ERROR, JobState.CANCELLED):
        reason = state_block.get("reason") or raw.get("reason")
        code = state_block.get("reason_code") or raw.get("reason_code")
        error = f"{f'Error code {code}; ' if code else ''}{reason or 'job ' + state.value.lower()}"
    usage = (raw.get("usage") or {}).get("quantum_seconds") if state.final else None
    return JobInfo(job_id=raw["id"], state=state, tags=tuple(raw.get("tags") or ()), created=str(raw.get("created", "")),
                   backend=str(raw.get("backend", "")), error=error,
                   usage_seconds=float(usage) if usage is not None else None,
                   finished=raw.get("end_time") if state.final else None)


def _decode_sampler_result(raw: str) -> Any:
    """A SamplerV2 job's results as the client's job.result() decodes them (its decoder chain)."""
    from qiskit_ibm_runtime.decoders.defaults import DEFAULT_DECODERS

    result: Any = raw
    for decoder in DEFAULT_DECODERS["sampler"]:
        if decoder.is_applicable(result):
            result = decoder.decode(result)
    return result


def _pub_registers(result: Any) -> list[dict[str, Any]]:
    """Each PUB's registers of a SamplerV2 result, as (shots, num_bits) bool arrays."""
    return [{name: _bitarray_to_bool(getattr(pub.data, name)) for name in pub.data.keys()} for pub in result]


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
