"""IBM Quantum through qiskit-ibm-runtime, in job mode (never Session).

Accounts are referenced by name only: a saved account (``QiskitRuntimeService.save_account(
name=...)``) or ``env:PREFIX``, which reads ``PREFIX_TOKEN`` and optional ``PREFIX_INSTANCE``,
``PREFIX_CHANNEL`` and ``PREFIX_URL`` from the environment. The token is handed to the client
and never stored, logged or put in an error message by this module.

What this module holds against the service's documented contract (IBM_API_NOTES.md):

* One POST per :meth:`IBMProvider.submit`. The client would retry ``POST /jobs`` itself on
  5xx answers, and each retry may create a job (upstream issue #1114); its sessions are given a
  retry policy that never repeats a POST on a status, and a read timeout on every request
  (the client passes 900 s for a POST and none otherwise). Whether and when to send again is
  decided by :mod:`qpuflow.submit`, which looks the job up by its tags first.
* Outcomes are classified once: :class:`SubmitRefused` (4xx: nothing was created; 409 is the
  instance's usage limit, 429 the rate limit with its Retry-After), :class:`SubmitUncertain`
  (5xx, timeout, dropped connection: the job may exist).
* Usage is the job record's ``usage.qpu_charge_time_seconds`` once ``usage.status`` is no
  longer ``pending``; completion time is ``timestamps.finished`` of ``/jobs/{id}/metrics``
  (the job record has no end time). Failed and cancelled jobs have no result (204): only their
  metrics are read.
* ``primitive``: ``executor_sampler`` (``qiskit_ibm_runtime.executor_sampler.Sampler``, program
  ``executor``, one shot count per job) or ``sampler_v2`` (SamplerV2, program ``sampler``,
  deprecated since 0.50). Both give the same ``PrimitiveResult`` of ``BitArray`` registers.

``local_mode=True`` uses the client's local testing mode (a fake backend in this process):
it exercises the same Sampler calls, but its jobs vanish with the process.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from qpuflow.providers.base import (JobInfo, JobOutput, JobState, ProviderError, SubmitRefused, SubmitUncertain,
                                    Unauthorized, UsageLimitExceeded)

log = logging.getLogger("qpuflow.ibm")

PRIMITIVES = ("executor_sampler", "sampler_v2")
_PROGRAM_OF = {"executor_sampler": "executor", "sampler_v2": "sampler"}
# The service's largest page of GET /jobs (limit 1..200, IBM_API_NOTES.md).
MAX_PAGE = 200
# Statuses the client's session retries; kept for GETs, never for a POST.
_RETRY_STATUSES = (500, 502, 503, 504, 520, 521, 522, 524)

_STATE_MAP = {
    "INITIALIZING": JobState.QUEUED, "QUEUED": JobState.QUEUED, "VALIDATING": JobState.QUEUED,
    "RUNNING": JobState.RUNNING, "DONE": JobState.DONE, "COMPLETED": JobState.DONE, "ERROR": JobState.ERROR,
    "FAILED": JobState.ERROR, "CANCELLED": JobState.CANCELLED,
}


def to_state(status: Any) -> JobState:
    """Convert the client's or the REST API's status (a string, or a JobStatus enum) once."""
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
    # "Loading account with the given token. A saved account will not be used.": every env:
    # account would print it on every sign-in.
    logging.getLogger("qiskit_ibm_runtime.qiskit_runtime_service").setLevel(logging.ERROR)
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


def _reauthenticating(method: Callable[..., Any]) -> Callable[..., Any]:
    """Repeat a call once with a fresh client after the service refused the access token.

    The client refreshes its IAM token only as it nears expiry; a token the service revoked
    earlier keeps failing with 401. A new QiskitRuntimeService gets a new token. A 401 means
    the request was refused, so repeating even a submission cannot duplicate it. A second
    refusal is reported as such, never as a missing backend or a network error.
    """

    @functools.wraps(method)
    def wrapper(self: "IBMProvider", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Unauthorized:
            if self.local_mode:
                raise
            log.warning("access token rejected by the service; signing in again for account '%s'", self.account)
            self._reset()
        try:
            return method(self, *args, **kwargs)
        except Unauthorized as exc:
            raise ProviderError(
                f"the service refused the access token of account '{self.account}' twice (HTTP 401), once "
                f"right after signing in again: the API key may be revoked or expired, or lack access to "
                f"the instance. Save a valid key for this account. ({exc})"
            ) from None

    return wrapper


class IBMProvider:
    """Submit ISA circuits in job mode, one POST per call; query, fetch and cancel by job ID."""

    name = "ibm"
    may_duplicate_on_retry = True  # a POST that failed or timed out may still have created the job

    def __init__(self, account: str, *, channel: str = "ibm_quantum_platform", local_mode: bool = False,
                 service: Any = None, page_size: int = MAX_PAGE, primitive: str = "executor_sampler",
                 request_timeout_seconds: float = 60.0) -> None:
        if primitive not in PRIMITIVES:
            raise ProviderError(f"provider.ibm.primitive must be one of {PRIMITIVES}, got {primitive!r}")
        self.request_timeout_seconds = float(request_timeout_seconds)
        self.account = account
        self.page_size = max(1, min(int(page_size), MAX_PAGE))
        self.primitive = primitive
        self.local_mode = local_mode
        self._channel = channel
        self._service = service
        self._backends: dict[str, Any] = {}
        self._local_jobs: dict[str, Any] = {}  # local mode only: jobs live in this process

    @property
    def in_flight_seconds(self) -> float:
        """How long an interrupted POST may still create its job: the request timeout, plus a margin."""
        return self.request_timeout_seconds + 5.0

    @property
    def service(self):
        if self._service is None:
            self._service = open_service(self.account, channel=self._channel)
            harden_client(self._service, self.request_timeout_seconds)
        return self._service

    def _reset(self) -> None:
        self._service = None
        self._backends = {}

    @property
    def _client(self) -> Any:
        return self.service._active_api_client

    def _backend(self, name: str):
        if self.local_mode:
            from qpuflow.backends import load_backend

            return load_backend(name)
        if name not in self._backends:
            try:
                self._backends[name] = self.service.backend(name)
            except Exception as exc:
                _raise_if_unauthorized(exc, f"backend '{name}'")
                self._check_token()  # the client reports a refused token as "no backend matches"
                raise ProviderError(f"backend '{name}' is not available to account '{self.account}' "
                                    f"({describe(exc)})") from None
        return self._backends[name]

    def _check_token(self) -> None:
        try:
            self._client.cloud_usage()
        except Exception as exc:
            _raise_if_unauthorized(exc, f"account '{self.account}'")

    # ------------------------------------------------------------------ submission

    @_reauthenticating
    def submit(self, isa_paths: Sequence[Path], *, backend: str, shots: Sequence[int], tags: Sequence[str],
               max_execution_time: int, metadata: Sequence[dict] | None = None) -> str:
        """One POST /jobs carrying the circuits as PUBs; never retried here (see the module)."""
        pubs = self._pubs(isa_paths, shots, metadata)
        sampler = self._sampler(backend, max_execution_time, tags, shots)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # SamplerV2 is deprecated since 0.50
                job = sampler.run(pubs) if self.primitive == "sampler_v2" else sampler.run(pubs, shots=int(shots[0]))
        except Exception as exc:
            raise classify_submit_error(exc) from None
        job_id = job.job_id()
        if self.local_mode:
            self._local_jobs[job_id] = (job, list(tags), backend)
        return job_id

    def _pubs(self, isa_paths: Sequence[Path], shots: Sequence[int], metadata: Sequence[dict] | None) -> list[Any]:
        from qpuflow.qpyio import load_circuit

        if not isa_paths or len(isa_paths) != len(shots):
            raise ProviderError(f"a job needs one shot count per circuit (got {len(isa_paths)} circuits, "
                                f"{len(shots)} shot counts)")
        if self.primitive == "executor_sampler" and len(set(shots)) != 1:
            raise ProviderError(f"the executor sampler runs one shot count per job; got {sorted(set(shots))}")
        pubs = []
        for index, (path, pub_shots) in enumerate(zip(isa_paths, shots)):
            isa = load_circuit(path)
            if metadata is not None:
                # The service echoes circuit metadata into the results (the executor requires it
                # to be JSON-simple): send the run's identity, not the stim text and maps.
                isa.metadata = dict(metadata[index])
            pubs.append((isa, None, int(pub_shots)))  # a SamplerPub: circuit, no parameters, shots
        return pubs

    def _sampler(self, backend: str, max_execution_time: int, tags: Sequence[str], shots: Sequence[int]) -> Any:
        mode = self._backend(backend)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if self.primitive == "sampler_v2":
                from qiskit_ibm_runtime import SamplerV2

                sampler = SamplerV2(mode=mode)  # job mode: the backend, never a Session
                if not self.local_mode:
                    sampler.options.max_execution_time = int(max_execution_time)
                    sampler.options.environment.job_tags = list(tags)
                return sampler
            from qiskit_ibm_runtime.executor_sampler import Sampler

            sampler = Sampler(mode=mode)
            sampler.options.default_shots = int(shots[0])
            # The circuits were checked as transpiled: no twirling or dynamical decoupling may
            # change them on the way.
            sampler.options.twirling.enable_gates = False
            sampler.options.twirling.enable_measure = False
            sampler.options.dynamical_decoupling.enable = False
            if not self.local_mode:
                sampler.options.max_execution_time = int(max_execution_time)
                sampler.options.environment.job_tags = list(tags)
            return sampler

    @_reauthenticating
    def instance_usage(self) -> tuple[float, float] | None:
        """(consumed, limit) QPU seconds of this account's instance, as the service reports them."""
        if self.local_mode:
            return None
        try:
            usage = self.service.usage()
        except Exception as exc:
            _raise_if_unauthorized(exc, f"usage of account '{self.account}'")
            raise ProviderError(f"usage of account '{self.account}' could not be read ({describe(exc)})") from None
        limit = usage.get("usage_limit_seconds") or usage.get("usage_allocation_seconds")
        if limit is None:
            return None
        return float(usage.get("usage_consumed_seconds", 0.0)), float(limit)

    # ------------------------------------------------------------------ queries

    @_reauthenticating
    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """Status of many jobs from the job listing: ceil(N / 200) requests, not N.

        qpuflow tags every job ``qpuflow``, so paging through that tag's listing (newest first)
        finds them. A job the listing does not show (e.g. tags removed by hand) is asked for by ID.
        """
        if self.local_mode:
            return {job_id: self._local_info(job_id) for job_id in job_ids}
        wanted = set(job_ids)
        found: dict[str, JobInfo] = {}
        offset = 0
        while wanted - set(found):
            page = self._page(tags=["qpuflow"], limit=self.page_size, offset=offset, what="job status")
            jobs = page.get("jobs", [])
            for raw in jobs:
                if raw.get("id") in wanted:
                    found[raw["id"]] = info_from_raw(raw)
            offset += len(jobs)
            if not jobs or offset >= int(page.get("count", 0)):
                break
        for job_id in wanted - set(found):
            found[job_id] = self._info_by_id(job_id)
        return {job_id: found[job_id] for job_id in job_ids}

    def _page(self, *, tags: Sequence[str] | None, limit: int, offset: int, what: str) -> dict[str, Any]:
        try:
            return self._client.jobs_get(limit=limit, skip=offset, job_tags=list(tags) if tags else None)
        except Exception as exc:
            _raise_if_unauthorized(exc, what)
            raise ProviderError(f"{what} could not be listed for account '{self.account}' ({describe(exc)})") from None

    def _info_by_id(self, job_id: str) -> JobInfo:
        try:
            return info_from_raw(self._client.job_get(job_id, exclude_params=True))
        except Exception as exc:
            _raise_if_unauthorized(exc, f"job {job_id}")
            if http_status(exc) == 404:
                return JobInfo(job_id=job_id, state=JobState.UNKNOWN,
                               error=f"job {job_id} not found at the service for account '{self.account}'")
            raise ProviderError(f"status of job {job_id} could not be read ({describe(exc)})") from None

    def find_by_tag(self, tag: str) -> list[JobInfo]:
        return self.jobs(tags=[tag])

    @_reauthenticating
    def jobs(self, *, limit: int | None = None, tags: Sequence[str] = ()) -> list[JobInfo]:
        """Jobs carrying all ``tags``, newest first, every page (or the first ``limit``)."""
        if self.local_mode:
            ids = [j for j, (_, jt, _) in self._local_jobs.items() if all(t in jt for t in tags)]
            return [self._local_info(j) for j in ids[:limit]]
        out: dict[str, JobInfo] = {}
        offset = 0
        while limit is None or len(out) < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - len(out))
            page = self._page(tags=tags, limit=size, offset=offset, what="jobs")
            jobs = page.get("jobs", [])
            for raw in jobs:
                out.setdefault(raw["id"], info_from_raw(raw))  # paging while jobs are created may repeat one
            offset += len(jobs)
            if not jobs or offset >= int(page.get("count", 0)):
                break
        return list(out.values())

    @_reauthenticating
    def fetch(self, job_id: str, known: JobInfo | None = None) -> JobOutput:
        """The outcome of a final job: the result (completed jobs only: failed and cancelled jobs
        have none) and the metrics (completion time, charged usage). Two requests at most."""
        if self.local_mode:
            return self._local_fetch(job_id)
        info = known if known is not None and known.state.final else self._info_by_id(job_id)
        if not info.state.final:
            raise ProviderError(f"job {job_id} is {info.state.value}, not final; nothing to fetch yet")
        if info.state is JobState.UNKNOWN:
            return JobOutput(info=info, pubs=None, completion_time=None)
        pubs = None
        if info.state is JobState.DONE:
            try:
                raw = self._client.job_results(job_id)
            except Exception as exc:
                _raise_if_unauthorized(exc, f"result of job {job_id}")
                raise ProviderError(f"result of job {job_id} could not be downloaded ({describe(exc)})") from None
            if not raw:
                raise ProviderError(f"job {job_id} completed but the service returned no result (HTTP 204)")
            result = decode_result(raw, info.program or _PROGRAM_OF[self.primitive])
            pubs, run_ids = pub_registers(result), pub_run_ids(result)
        else:
            run_ids = None
        finished, usage, final = self.metrics(job_id)
        info = _with_usage(info, usage, final)
        return JobOutput(info=info, pubs=pubs, completion_time=finished or info.finished, pub_run_ids=run_ids)

    def metrics(self, job_id: str) -> tuple[str | None, float | None, bool]:
        """(completion time, charged seconds or None while pending, billing final) of a job."""
        try:
            metrics = self._client.job_metadata(job_id)
        except Exception as exc:
            _raise_if_unauthorized(exc, f"metrics of job {job_id}")
            raise ProviderError(f"metrics of job {job_id} could not be read ({describe(exc)})") from None
        charge, final = usage_of(metrics.get("usage"))
        return (metrics.get("timestamps") or {}).get("finished"), charge, final

    @_reauthenticating
    def cancel(self, job_id: str) -> None:
        if self.local_mode:
            self._local_jobs[job_id][0].cancel()
            return
        try:
            self._client.job_cancel(job_id)
        except Exception as exc:
            _raise_if_unauthorized(exc, f"job {job_id}")
            if http_status(exc) == 409:
                raise ProviderError(f"job {job_id} is already final and cannot be cancelled") from None
            raise ProviderError(f"job {job_id} could not be cancelled ({describe(exc)})") from None

    # ------------------------------------------------------------------ local testing mode

    def _local_info(self, job_id: str) -> JobInfo:
        if job_id not in self._local_jobs:
            return JobInfo(job_id=job_id, state=JobState.UNKNOWN, error="unknown job (local mode keeps jobs in memory)")
        job, tags, backend = self._local_jobs[job_id]
        state = to_state(job.status())
        error = str(job.error_message()) if state is JobState.ERROR and hasattr(job, "error_message") else None
        return JobInfo(job_id=job_id, state=state, tags=tuple(tags), backend=backend, error=error,
                       usage_seconds=0.0 if state.final else None, usage_final=state.final,
                       program=_PROGRAM_OF[self.primitive])

    def _local_fetch(self, job_id: str) -> JobOutput:
        info = self._local_info(job_id)
        if not info.state.final:
            raise ProviderError(f"job {job_id} is {info.state.value}, not final; nothing to fetch yet")
        pubs = pub_registers(self._local_jobs[job_id][0].result()) if info.state is JobState.DONE else None
        return JobOutput(info=info, pubs=pubs, completion_time=None)


# ---------------------------------------------------------------------- the client, hardened


def harden_client(service: Any, timeout: float) -> bool:
    """Give every request a read timeout and stop the client from repeating a POST.

    qiskit-ibm-runtime 0.51 sends requests with timeout ``(5.0, None)`` (no read timeout) and a
    POST /jobs with ``timeout=900``, and its retry policy repeats a POST on 5xx answers, each of
    which may have created a job. There is no public setting for either: the session objects
    (``RetrySession``, private) are adjusted, checked against 0.51 and the pinned range. Returns
    False if the internals moved (qpuflow then still looks every uncertain POST up by tag).
    """
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    clients = [getattr(service, "_active_api_client", None), *getattr(service, "_api_clients", {}).values()]
    sessions = {id(s): s for s in (getattr(c, "_session", None) for c in clients if c is not None) if s is not None}
    hardened = False
    for session in sessions.values():
        if getattr(session, "_qpuflow_hardened", False):
            hardened = True
            continue
        if not hasattr(session, "_timeout") or not hasattr(session, "mount"):
            continue
        connect = session._timeout[0] if isinstance(session._timeout, tuple) else 5.0
        session._timeout = (connect, timeout)
        # urllib3's own Retry retries a status only for idempotent methods (POST is not one);
        # connection failures before anything was sent are still retried.
        # Three retries (0, 1, 2 s apart) instead of the client's five (up to 15 s): collect and
        # submit report a service that stays down and try again on their next run.
        retry = Retry(total=3, connect=3, backoff_factor=0.5, status_forcelist=_RETRY_STATUSES,
                      raise_on_status=False)
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        original = session.request

        def request(method: str, url: str, *args: Any, _original: Any = original, _connect: float = connect,
                    **kwargs: Any) -> Any:
            if kwargs.get("timeout") is not None:  # the client's POST asks for 900 s
                kwargs["timeout"] = (_connect, timeout)
            return _original(method, url, *args, **kwargs)

        session.request = request
        session._qpuflow_hardened = True
        hardened = True
    if not hardened:
        log.warning("qiskit-ibm-runtime's session internals moved: requests keep the client's timeouts and "
                    "POST retries; every uncertain submission is still looked up by tag before any resend")
    return hardened


# ---------------------------------------------------------------------- errors


def http_status(exc: BaseException | None) -> int | None:
    """The HTTP status behind a client exception, following its causes and contexts."""
    seen = 0
    while exc is not None and seen < 12:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status > 0:
            return status
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and status > 0:
            return status
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _retry_after(exc: BaseException | None) -> float | None:
    seen = 0
    while exc is not None and seen < 12:
        response = getattr(exc, "response", None)
        value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _is_unauthorized(exc: BaseException) -> bool:
    if http_status(exc) == 401:
        return True
    seen, current = 0, exc
    while current is not None and seen < 12:
        if "NotAuthorized" in type(current).__name__:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _raise_if_unauthorized(exc: BaseException, what: str) -> None:
    if _is_unauthorized(exc):
        raise Unauthorized(f"{what}: the service refused the access token (HTTP 401)") from None


def classify_submit_error(exc: BaseException) -> ProviderError:
    """What a failed POST /jobs means for exactly-once submission."""
    if _is_unauthorized(exc):
        return Unauthorized("submission refused: the service rejected the access token (HTTP 401)")
    status = http_status(exc)
    text = describe(exc)
    if status == 409:  # the one documented conflict of POST /jobs: "Usage exceeds instance limit"
        return UsageLimitExceeded(f"the service refused the job: the instance's usage limit is reached ({text})",
                                  status=409)
    if status is not None and 400 <= status < 500 and status != 408:
        return SubmitRefused(f"the service refused the job ({text})", status=status, retry_after=_retry_after(exc))
    if status is None and isinstance(exc, (ValueError, TypeError)):
        return SubmitRefused(f"the client refused the job before sending it ({text})", status=None)
    return SubmitUncertain(f"the submission's outcome is unknown ({text})", status=status)


def describe(exc: BaseException) -> str:
    """A one-line description of a client error. Tokens never reach client messages, but be sure."""
    text = " ".join(str(exc).split())[:300]
    for name in ("QISKIT_IBM_TOKEN",):
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    status = http_status(exc)
    kind = type(exc).__name__
    if status is None and ("Connection" in text or "Max retries" in text or "connect" in kind.lower()
                           or "timed out" in text.lower()):
        return f"{kind}: the service could not be reached or did not answer in time: {text}"
    return f"{kind}{f' HTTP {status}' if status else ''}: {text}"


# ---------------------------------------------------------------------- records and results


def usage_of(block: Any) -> tuple[float | None, bool]:
    """(charged seconds, final) from a ``usage`` block: ``qpu_charge_time_seconds`` counts once
    ``status`` is no longer ``pending`` (the client's ``job.usage()`` rule). A record without a
    billing status (older services) is taken as final."""
    if not isinstance(block, dict):
        return None, False
    charge = block.get("qpu_charge_time_seconds", block.get("quantum_seconds"))
    pending = str(block.get("status", "")).lower() == "pending"
    if charge is None or pending:
        return None, False
    return float(charge), True


def _with_usage(info: JobInfo, usage: float | None, final: bool) -> JobInfo:
    import dataclasses

    if usage is None and info.usage_seconds is not None:
        return info
    return dataclasses.replace(info, usage_seconds=usage, usage_final=final)


def info_from_raw(raw: dict[str, Any]) -> JobInfo:
    """A JobInfo from a job record of the REST API (GET /jobs/{id} or one entry of GET /jobs)."""
    state_block = raw.get("state") or {}
    state = to_state(state_block.get("status", raw.get("status", "")))
    reason_code = state_block.get("reason_code", state_block.get("reasonCode", raw.get("reason_code")))
    if state is JobState.CANCELLED and reason_code == 1305:
        state = JobState.ERROR  # the client's rule: cancelled for exceeding max_execution_time is an error
    error = None
    if state in (JobState.ERROR, JobState.CANCELLED):
        reason = state_block.get("reason") or raw.get("reason")
        error = f"{f'Error code {reason_code}; ' if reason_code else ''}{reason or 'job ' + state.value.lower()}"
    usage, final = usage_of(raw.get("usage")) if state.final else (None, False)
    program = (raw.get("program") or {}).get("id", "") if isinstance(raw.get("program"), dict) else ""
    return JobInfo(job_id=raw["id"], state=state, tags=tuple(raw.get("tags") or ()), created=str(raw.get("created", "")),
                   backend=str(raw.get("backend", "")), error=error, usage_seconds=usage, usage_final=final,
                   finished=raw.get("end_time") if state.final else None, program=program)


def decode_result(raw: str, program: str) -> Any:
    """A job's results as the client's ``job.result()`` decodes them (its decoder chain for the
    program: ``sampler`` or ``executor``, whose post-processing rebuilds the sampler's result)."""
    from qiskit_ibm_runtime.decoders.defaults import DEFAULT_DECODERS
    from qiskit_ibm_runtime.decoders.result_decoder import ResultDecoder

    decoders = DEFAULT_DECODERS.get(program, ResultDecoder)
    if not isinstance(decoders, (list, tuple)):  # 0.50 maps a program to one decoder
        decoders = [decoders]
    result: Any = raw
    for decoder in decoders:  # as job.result() chains them (0.51 skips the inapplicable ones)
        if getattr(decoder, "is_applicable", lambda _: True)(result):
            result = decoder.decode(result)
    return result


def pub_registers(result: Any) -> list[dict[str, Any]]:
    """Each PUB's registers of a sampler result, as (shots, num_bits) bool arrays."""
    return [{name: _bitarray_to_bool(getattr(pub.data, name)) for name in pub.data.keys()} for pub in result]


def pub_run_ids(result: Any) -> list[str | None]:
    """The run identity each PUB's circuit carried (``qpuflow_run_id`` in its metadata), as the
    service echoes circuit metadata into the result; None where it did not."""
    out: list[str | None] = []
    for pub in result:
        meta = (getattr(pub, "metadata", None) or {}).get("circuit_metadata") or {}
        out.append(str(meta["qpuflow_run_id"]) if isinstance(meta, dict) and "qpuflow_run_id" in meta else None)
    return out


def _bitarray_to_bool(bit_array: Any):
    """A BitArray (bytes, big-endian, bit 0 rightmost) -> (shots, num_bits) bool, column i = bit i."""
    import numpy as np

    raw = np.asarray(bit_array.array, dtype=np.uint8).reshape(-1, bit_array.array.shape[-1])
    bits = np.unpackbits(raw, axis=1)[:, ::-1][:, : bit_array.num_bits]
    return bits.astype(bool)
