"""Local emulator of the IBM Quantum Platform REST API, for the unmodified qiskit-ibm-runtime.

Built against qiskit-ibm-runtime 0.51 (API version header ``2026-04-15``). The client talks to
it exactly as to IBM Cloud: IAM token exchange, instance lookup through GlobalSearch and
GlobalCatalog, backends, instance usage, job submission (``SamplerV2``, and the client-side
``executor_sampler.Sampler``), status, results, metrics, cancel, tags, listing, batch sessions.
Jobs run on :func:`qpuflow.simulate.sample_isa` with the noise of the fake backend of the
same name (``ibm_fez`` -> ``fake_fez``).

By default the emulator is *strict*: it enforces the documented contract of the service
(IBM's OpenAPI for ``/v1/jobs``, see "Strict mode" below), because the client is lenient and
an emulator that accepts more than the service hides bugs until hardware day.

Strict mode (the default) and lenient mode
------------------------------------------
``EmulatorHandle(...)``, ``serve(...)``, ``python -m qpuflow.emulator`` and ``qpuflow
emulator`` are strict unless the caller opts in to the older, lenient behaviour with
``strict=False`` (``--lenient`` for ``python -m qpuflow.emulator``). The rules live in
:mod:`qpuflow.emulator.contract`; strict mode:

1. Tags (``POST /jobs`` and ``PUT /jobs/{id}/tags``): an array of at most 8 strings of at most
   86 characters, else 400. The listing's ``tags=`` filter matches jobs carrying all of them.
2. Rate: at most ``submit_rate_per_minute`` (5) jobs created per *user* (the API key behind
   the token, across all its instances) in any rolling ``rate_window_seconds`` (60); beyond,
   429 with ``Retry-After`` = seconds until the oldest slot frees. Refused submissions (400,
   409, 429) take no slot; jobs created by a fault that then answers an error do.
3. Over budget: when the instance's ``usage_consumed_seconds >= usage_limit_seconds``,
   ``POST /jobs`` answers 409 "Usage exceeds instance limit" and creates nothing (lenient:
   the job is accepted and stays Queued until time is available).
4. ``cost`` (``max_execution_time``): an integer >= 0; above 10800 it is capped to 10800;
   a non-integer (``1.5``, ``"60"``, ``true``) or a negative value is 400.
5. Every runtime-API error (4xx/5xx, injected faults and admin errors included) is an
   ErrorContainer ``{"errors": [{"code", "message", "more_info"}], "trace": "<id>"}`` with no
   top-level ``"error"``. The client does not find its ``error`` key and appends the raw body
   to the exception message instead (status codes and exception types are unchanged).
6. Billing: the job record and ``/metrics`` carry ``usage: {"qpu_charge_time_seconds",
   "status"}``, ``"pending"`` with 0 until ``billing_delay_seconds`` (2.0) after the job
   ended, then ``"complete"`` with the charge (``job.usage()`` returns 0 until then). No
   ``quantum_seconds``/``seconds`` keys, no ``end_time`` on the record: the completion time
   is ``timestamps.finished`` of ``/metrics`` (``timestamps: {created, running, finished}``).
7. Charges: see "Usage and limits" (they are the same in both modes).
8. Results: 200 with the result for Completed jobs; 204 with an empty body for Failed and
   Cancelled jobs (the client then builds a failed job's message from the record's reason);
   404 (ErrorContainer) while Queued/Running. A ``private: true`` job's result can be read
   once, then it is deleted (204 afterwards; the client's ``result()`` then returns None).
9. Listing: ``limit`` 1..200 (default 200), ``offset`` >= 0; any other value (0, 500, -1,
   ``ten``) silently means the default. ``sort=ASC`` or ``DESC`` (exactly; anything else:
   DESC, by creation time). ``pending=true``: Queued and Running, ``false``: final states.
   The answer is ``{"jobs": [...], "count": <all matching>}``. The admin ``max_page_size``
   setting still caps a page below that, to exercise the client's paging.
10. Executor jobs: params exactly ``{schema_version: "v2.0", quantum_program, options}``; the
    quantum program has one integer ``shots`` >= 1 for all its items and no item has its own
    ``shots`` (no mixed shot counts in one job); a non-empty ``items`` array of circuit or
    samplex items. Checked at ``POST /jobs`` on the JSON alone (400), without qiskit in the
    server; whether the circuits decode is still found by the worker, which fails the job
    with code 1517.
11. The job record is exactly ``id, backend, state: {status, reason, reason_code}, status,
    program: {id}, created, tags, session_id, private, cost, usage,
    estimated_running_time_seconds`` (+ ``params`` unless ``exclude_params=true``).

Lenient mode (``strict=False``) keeps the older answers: 9+ tags and long tags, ``cost`` as
given (positive integers), ``{"error": ..., "errors": ...}`` bodies, ``end_time`` and
``usage.quantum_seconds`` on the record (only once final), ``/metrics`` usage "completed" at
once, results of failed/cancelled jobs as 200 text ("Error code N; reason"), no rate limit by
default (``submit_rate_per_minute`` per instance when set), 400 on a bad ``limit``/``offset``,
jobs over budget queued, no executor shape check at submission.

Options whose default depends on the mode: ``submit_rate_per_minute`` (strict 5, lenient
None = off) and ``billing_delay_seconds`` (strict 2.0, lenient 0; 0 is allowed in strict
mode). ``rate_window_seconds`` (60) is the rate limit's rolling window in both (make it
small in tests instead of sleeping a minute). All three are also settable while the server
runs: ``set_faults(submit_rate_per_minute=, rate_window_seconds=)``,
``configure(billing_delay_seconds=)``.

Processes and state
-------------------
:class:`EmulatorHandle` starts ``python -m qpuflow.emulator`` (the HTTP server, standard
library only, listening in ~0.2 s) on 127.0.0.1; the server starts a worker process
(:mod:`qpuflow.emulator.worker`, imports qiskit, ~2 s) that moves jobs Queued -> Running ->
Completed after ``queue_seconds`` / ``run_seconds`` and restarts it if it dies. Both share the
store directory (SQLite in WAL mode + ``instances.json`` + ``emulator.key`` + ``logs/``), so
jobs, results and instances survive :meth:`EmulatorHandle.restart` / a new ``serve()`` on the
same store, and a job queued before a restart completes after it. The request log and the
fault settings live in the server process (the handle keeps the log of a stopped server).
API tokens are never written: instances keep ``HMAC(store key, token)`` digests, access
tokens are HS256 JWTs carrying only such a digest, the request log holds method, path,
query (secret-looking keys redacted), status - never headers or bodies.

Connecting the client (the recipe)
----------------------------------
::

    from qpuflow.emulator import EmulatorHandle
    from qiskit_ibm_runtime import QiskitRuntimeService, SamplerV2

    with EmulatorHandle(queue_seconds=0, run_seconds=0) as emu:    # or store=Path, port=0
        os.environ.update(emu.client_env())                        # BEFORE creating the service
        service = QiskitRuntimeService(**emu.service_kwargs(token="any-string",
                                                            instance="qpuflow-emulator"))
        backend = service.backend("ibm_fez")

(``with emu.environment(): ...`` applies and restores the variables; in pytest use
``monkeypatch.setenv`` for each item of ``client_env()``.) ``client_env()`` is::

    IAM_URL            = http://127.0.0.1:PORT/iam                 (POST /identity/token)
    GLOBAL_SEARCH_URL  = http://127.0.0.1:PORT/global-search       (POST /v3/resources/search)
    GLOBAL_CATALOG_URL = http://127.0.0.1:PORT/global-catalog/api/v1   (GET /{plan id})
    # guard (default on): anything not for 127.0.0.1 fails fast instead of leaving the machine
    HTTP_PROXY = HTTPS_PROXY = http_proxy = https_proxy = http://127.0.0.1:9
    NO_PROXY = no_proxy = 127.0.0.1,localhost
    IBM_CREDENTIALS_FILE = /dev/null   # an ibm-credentials.env cannot redirect the lookups

and ``service_kwargs(token=..., instance=...)`` is ``{"channel": "ibm_quantum_platform",
"token": token, "url": "http://127.0.0.1:PORT/experimental/api/v1", "instance": instance}``.
The URL contains ``experimental``, so the client's default URL resolver uses it verbatim
(no ``url_resolver`` needed, and it can be saved in an account). ``service_kwargs`` refuses
(``EmulatorError``) unless ``client_env()`` is applied: without ``IAM_URL`` and the lookup
URLs the client would call ``iam.cloud.ibm.com`` and IBM Cloud's search/catalog.
``instance`` may be a CRN or an instance name; the real lookup path is used (GlobalSearch +
GlobalCatalog), ``QISKIT_FUNCTIONS_EXPERIMENTAL`` is not needed. The runtime API is also
served under any other prefix ending in ``/api/v1`` (for a ``url_resolver``).

Saved account: ``save_emulator_account(filename, "emu", handle_or_url, token, instance)``
calls ``QiskitRuntimeService.save_account(url=<.../experimental/api/v1>, filename=...)``;
then ``QiskitRuntimeService(name="emu", filename=filename)`` reaches the emulator in any
process that has ``client_env()`` applied (IAM/lookup URLs are not part of a saved account).
For the ``env:PREFIX`` accounts of :mod:`qpuflow.providers.ibm`: ``PREFIX_URL`` =
``handle.api_url``, ``PREFIX_TOKEN``, ``PREFIX_INSTANCE``, plus ``client_env()``.

Instances and tokens
--------------------
By default there is one instance, ``qpuflow-emulator`` (Open plan, 600 s limit), usable with
any token. ``handle.instances([{"name": "lab-a", "tokens": ["tok-a"], "plan": "open",
"usage_limit_seconds": 600}, ...])`` replaces them: a token sees the instances listing it
(and those with ``tokens: None``); an unknown token gets IAM's 400 (BXNIM0415E), so the
client raises ``InvalidAccountError``. ``handle.crn(name)`` gives the CRN.

Programs: SamplerV2 and the executor
------------------------------------
``SamplerV2`` (program ``sampler``, params ``pubs`` of ``(circuit, parameter values, shots)``
with QPY circuits, ``options``, ``version: 2``) is what :mod:`qpuflow.providers.ibm` sends,
and it is fully supported: parameter sweeps, per-pub shots, ``meas_type="classified"``. The
result is a ``PrimitiveResult`` of ``SamplerPubResult`` with one ``BitArray`` per classical
register (``metadata["circuit_metadata"]`` and ``execution_spans`` as the service returns
them), encoded with ``RuntimeEncoder``. In 0.51 ``SamplerV2`` warns that it is deprecated
(since 0.50) in favour of ``qiskit_ibm_runtime.executor_sampler.Sampler``, which runs pre-
and post-processing in the client and submits program ``executor`` (a ``QuantumProgram`` in
schema v2.0). That payload is supported too, because it was cheap: the worker decodes it with
the client's own converters, samples circuit items and, with twirling on, samplex items
(randomizations drawn with samplomatic as the local testing mode does), and returns a
``QuantumProgramResult`` v2.0 that the client post-processes into the same
``PrimitiveResult``. So the provider can migrate without changing its tests. Not supported:
kerneled/averaged measurement levels (the job fails with code 1517), estimator, noise
learner, other programs (404 at submission).

The worker checks every instruction against the backend's Target (a non-ISA circuit fails
with "Error code 1517; The instruction ... is not supported", as the client's own ISA check
would refuse before sending), and fails jobs with code 1500 when simulation raises (e.g.
dynamic circuits the stim/Aer path cannot handle).

Usage and limits
----------------
A job's usage is ``ceil(estimate_qpu_seconds(shots, circuit duration))`` (see
:mod:`qpuflow.budget`; summed over pubs and parameter sets, one 2 s overhead per job), with
the duration from the ISA circuit's ``transpile`` metadata or estimated from the Target.
``estimated_running_time_seconds`` (``job.usage_estimation``) is that estimate unrounded; it
is null until the worker has looked at the job (tens of milliseconds; the client caches the
first answer). ``GET /instances/usage`` sums the usage of the instance's jobs finished in the
last ``usage_window_days`` (28) and reports ``usage_limit_seconds`` and
``usage_allocation_seconds`` (both the limit), ``usage_limit_reached``,
``usage_remaining_seconds``; a job's charge counts there as soon as the job ends (the
job's own billing status may still be pending). When the limit is reached the client warns
at submission and the service answers 409 (strict; lenient: the job waits Queued). Jobs
already queued when the limit is reached wait until time is available, in both modes.

Charges (both modes): a Completed job is charged ``ceil(estimate)``. A job the *user*
cancels (``POST /jobs/{id}/cancel``, or closing its batch) costs nothing while Queued and,
while Running, the whole seconds it has run so far (``ceil``), at most its estimate and at
most its ``cost``. Jobs failed or cancelled by the *system* (fault tags,
``handle.fail_job``/``handle.cancel_job``, worker errors) cost 0. A job whose usage exceeds
its ``max_execution_time`` (``cost``) ends Cancelled with reason code 1305 and is charged
``cost`` seconds; the client reports that as ``ERROR`` and raises
``RuntimeJobMaxTimeoutError`` from ``result()``.

Faults (``handle.set_faults(**changes)``; ``POST /__emulator/faults``)
---------------------------------------------------------------------
Endpoint kinds: ``iam search catalog backends configuration properties backend_status usage
submit list status results metrics logs cancel tags delete sessions``.

* ``errors=N, error_status=503, error_endpoints=["submit"], error_after_create=False,
  error_retry_after=None``: the next N matching requests get that status. With
  ``error_after_create`` a submission creates the job, then answers the error.
* ``drops=N, drop_endpoints=["status", "results"], drop_after_create=False``: close the
  socket without an answer.
* ``delays=N, delay_seconds=S, delay_endpoints=["status", "results"]``: answer after S s.
* ``submit_rate_per_minute=R``, ``rate_window_seconds=W``: jobs created per user (strict;
  per instance when lenient) in any rolling W s beyond R get 429 with ``Retry-After``
  (also constructor/serve options; defaults 5 / 60 s strict, off lenient).
* ``fail_tags=[...], fail_reason_code=1500, fail_reason=...``: jobs submitted with such a tag
  end Failed; ``cancel_tags=[...], cancel_reason=...``: cancelled by the service.
* ``token_ttl_seconds=T``: lifetime of tokens IAM issues from now on;
  ``expire_tokens=True`` (action, also ``handle.expire_tokens()``): every token issued so far
  is rejected with 401.
* ``handle.fail_job(id, reason_code, reason)`` / ``handle.cancel_job(id)``: one pending job.
* ``handle.complete_job(id)`` / ``handle.complete_jobs(ids)``: run pending jobs now (they end as the worker decides).
* ``handle.configure(queue_seconds=, run_seconds=, max_page_size=, billing_delay_seconds=)``:
  for later submissions (the billing delay applies to every job at once).
* ``handle.stop()``: server down (connection refused); ``handle.start()``: up again.
* ``handle.requests(kind)`` / ``GET /__emulator/requests``: the request log (entries carry
  ``fault``, ``job_id`` for submissions, ``instance``, ``retry_after`` for 429).

Scripted fault sequences (``handle.script(kind, actions)``; ``POST /__emulator/script``)
-------------------------------------------------------------------------------------------
``handle.script("submit", ["error:503:create", "error:503:create", "ok"])`` (body ``{"kind",
"actions"}``) replaces the script of one endpoint kind: each request of that kind consumes
the next action; once the list is empty, requests behave normally (the counters above apply
again). Scripts take precedence over the counters: a request that consumed an action is not
also hit by ``errors``/``drops``/``delays``. ``handle.script_left(kind)`` (``GET
/__emulator/script?kind=``) returns the actions not consumed; ``handle.clear_script(kind=None)``
(``DELETE /__emulator/script[?kind=]``) drops one kind's script or all. A bad action refuses
the whole script (400 / ``EmulatorError``). Grammar:

* ``ok``: handle normally.
* ``error:<status>`` (400..599): answer that status with an ErrorContainer; nothing is created.
* ``error:<status>:create`` (submit only): create the job, then answer the error - what
  makes the client's own 5xx retries leave duplicate jobs (upstream #1114).
* ``drop`` / ``drop:create``: close the connection without an answer (``:create``: after
  creating the job; submit only).
* ``delay:<seconds>`` (0..600): sleep, then handle normally; a submission creates its job
  only after the delay, so a caller that timed out and gave up finds the job later.
* ``delay:<seconds>:create`` (submit only): create the job at once, sleep, then answer.
* ``429``: ``error:429`` with ``Retry-After: 1``.

The request log entry of a scripted request has ``"fault": "<action as written>"`` and, when
a job was created, ``job_id``. A submission refused before creation (400/409/429) ignores
the ``:create`` part of its action.

What the client does (measured on 0.51 against this emulator)
-------------------------------------------------------------
* 500/502/503/504/520/521/522/524 - every method, POST included, is retried up to 5 times by
  urllib3 with back-off 0, 1, 2, 4, 8 s (``Retry-After`` is honoured on 503 instead). Two
  errors after creation: the call succeeds after ~1.2 s and 3 jobs exist (#1114). Six:
  ``IBMRuntimeError("Failed to run program: ... too many 503 error responses")`` after ~15 s
  and 6 jobs exist. Errors before creation create nothing.
* 429 on POST /jobs is not retried: ``IBMRuntimeError("Failed to run program: 429 ...")``;
  the status code is only on ``exc.__context__.status_code`` (raised ``from None``).
* Dropped connection: on GET retried like a 5xx (one drop is invisible; six raise
  ``RequestsApiError`` after ~15 s); on POST /jobs not retried - the call raises "Connection
  aborted" even when the job was created (another source of orphans).
* Timeouts: the session timeout is ``(5.0, None)`` - no read timeout, a hung answer blocks
  forever; there is no public option to change it (``service._active_api_client._session.
  _timeout`` is private). With a read timeout set, a timed-out GET is retried like a drop.
* 401: ``IBMNotAuthorizedError``; the client does not refresh on 401. It refreshes only from
  the token's own ``exp`` (synchronously at 80 % of the lifetime, or when within 10 s of
  ``exp``), so a token the server revoked keeps failing until then; a new
  ``QiskitRuntimeService`` gets a new token and works. If IAM itself fails, the client
  warns and sends ``Authorization: apikey <token>`` (refused here with 401; never logged).
* Server down: "connection refused" retried 3 times (~3 s), then ``RequestsApiError``
  (``IBMRuntimeError`` from ``service.job``); a new service raises ``InvalidAccountError``.
* Submission = ``GET /instances/usage`` + ``GET /backends/{name}/status`` + ``POST /jobs``;
  ``service.job(id)`` = one GET, and ``job.status()`` one more GET until the job is final.
* ``POST /jobs`` is sent with a fixed read timeout of 900 s (not the session's), so the
  client cannot give up on a slow submission; a caller that does (another HTTP client, a
  killed process) leaves a job that appears when the server gets to it.
* ErrorContainer bodies: ``RequestsApiError`` keeps its ``status_code`` and appends the raw
  body to its message; 404 on ``service.job`` is still ``RuntimeJobNotFound``, 409 on cancel
  ``RuntimeInvalidStateError``.
* 204 results: ``result()`` of a failed job raises ``RuntimeJobFailureError`` with the
  record's ``Error code N; reason``; of a cancelled one ``RuntimeInvalidStateError`` (no
  results request); ``_api_client.job_results`` returns ``""``.

CLI
---
``python -m qpuflow.emulator --store DIR [--host 127.0.0.1] [--port 8765] [--lenient]
[--options JSON]`` runs :func:`serve` in the foreground (``--options`` holds its other
keyword arguments; ``--lenient`` is ``strict=False``). ``qpuflow emulator`` calls
:func:`serve` and is therefore strict.
"""

from qpuflow.emulator.handle import EmulatorError, EmulatorHandle, save_emulator_account
from qpuflow.emulator.server import API_PREFIX, FAULT_DEFAULTS, serve

__all__ = ["EmulatorHandle", "EmulatorError", "serve", "save_emulator_account", "API_PREFIX", "FAULT_DEFAULTS"]
