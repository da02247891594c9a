"""Local emulator of the IBM Quantum Platform REST API, for the unmodified qiskit-ibm-runtime.

Built against qiskit-ibm-runtime 0.51 (API version header ``2026-04-15``). The client talks to
it exactly as to IBM Cloud: IAM token exchange, instance lookup through GlobalSearch and
GlobalCatalog, backends, instance usage, job submission (``SamplerV2``, and the client-side
``executor_sampler.Sampler``), status, results, metrics, cancel, tags, listing, batch sessions.
Jobs run on :func:`qpuflow.simulate.sample_isa` with the noise of the fake backend of the
same name (``ibm_fez`` -> ``fake_fez``).

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
``usage_remaining_seconds``. When the limit is reached the client warns at submission and
jobs stay Queued (they are not refused). A job whose usage exceeds its
``max_execution_time`` (``cost``) ends Cancelled with reason code 1305 and is charged
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
* ``submit_rate_per_minute=R``: accepted submissions per instance in any 60 s beyond R get
  429 with ``Retry-After`` (also a constructor/serve option; default off).
* ``fail_tags=[...], fail_reason_code=1500, fail_reason=...``: jobs submitted with such a tag
  end Failed; ``cancel_tags=[...], cancel_reason=...``: cancelled by the service.
* ``token_ttl_seconds=T``: lifetime of tokens IAM issues from now on;
  ``expire_tokens=True`` (action, also ``handle.expire_tokens()``): every token issued so far
  is rejected with 401.
* ``handle.fail_job(id, reason_code, reason)`` / ``handle.cancel_job(id)``: one pending job.
* ``handle.complete_job(id)`` / ``handle.complete_jobs(ids)``: run pending jobs now (they end as the worker decides).
* ``handle.configure(queue_seconds=, run_seconds=, max_page_size=)``: for later submissions.
* ``handle.stop()``: server down (connection refused); ``handle.start()``: up again.
* ``handle.requests(kind)`` / ``GET /__emulator/requests``: the request log (entries carry
  ``fault``, ``job_id`` for submissions, ``instance``, ``retry_after`` for 429).

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

CLI
---
``python -m qpuflow.emulator --store DIR [--host 127.0.0.1] [--port 8765] [--options JSON]``
runs :func:`serve` in the foreground (``--options`` holds its other keyword arguments).
"""

from qpuflow.emulator.handle import EmulatorError, EmulatorHandle, save_emulator_account
from qpuflow.emulator.server import API_PREFIX, FAULT_DEFAULTS, serve

__all__ = ["EmulatorHandle", "EmulatorError", "serve", "save_emulator_account", "API_PREFIX", "FAULT_DEFAULTS"]
