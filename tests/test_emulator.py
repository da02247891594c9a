"""The IBM Quantum Platform emulator, driven by the unmodified qiskit-ibm-runtime client.

Every test starts its own emulator (server + worker processes) on 127.0.0.1 with a free port
and points the client at it with ``handle.client_env()`` and ``handle.service_kwargs()``.
An autouse guard makes any connection or name lookup other than loopback fail, so a URL the
client builds for IBM Cloud by mistake fails the test instead of leaving the machine.

Every emulator here is strict (the default: the documented API contract, see
test_emulator_contract.py for each rule). A test that is not about a rule may relax one of
strict mode's settings (``billing_delay_seconds=0``, ``submit_rate_per_minute=None``) and
says so.

What the client does (qiskit-ibm-runtime 0.51), as these tests measure it:

* 5xx on POST /jobs: retried (urllib3, 5 retries, back-off 0, 1, 2, 4, 8 s), so a job created
  before the error is answered is submitted again: duplicates.
* 429 on POST /jobs: not retried; ``IBMRuntimeError("Failed to run program: ... 429 ...")``
  whose ``__context__`` is the ``RequestsApiError`` with ``status_code == 429``.
* Dropped connection / read timeout on a GET: retried like a 5xx (a single fault is
  invisible); on POST /jobs: not retried, the call raises even if the job was created.
* No read timeout by default (``RetrySession._timeout == (5.0, None)``): a hung answer blocks.
* 401: ``IBMNotAuthorizedError``; the client does not refresh its token on 401, only ~10 s
  before the token's own ``exp``. A new ``QiskitRuntimeService`` gets a new token.
* Server down: connection refused, retried 3 times (about 3 s), then ``RequestsApiError``
  (``IBMRuntimeError`` from ``service.job``); a new service fails with ``InvalidAccountError``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import socket
import time
import urllib.request
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ClassicalRegister, Parameter, QuantumRegister

from qpuflow.emulator import EmulatorError, EmulatorHandle, save_emulator_account
from qpuflow.backends import load_backend
from qpuflow.transpile import transpile_isa

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = "qpuflow-TEST-apikey-5c1e7a9dd2"  # recognisable: must never reach the store or the log
OTHER_TOKEN = "qpuflow-TEST-apikey-other-81f0"


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection or name lookup that is not loopback raises (nothing leaves the machine)."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def is_loopback(host) -> bool:
        if host in ("localhost", None):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            raise OSError(f"test guard: blocked connection to non-loopback address {address!r}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not is_loopback(host):
            raise socket.gaierror(f"test guard: blocked name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def start(tmp_path, monkeypatch):
    """``start(**options)`` -> a running EmulatorHandle with the client environment applied."""
    handles = []

    def _start(store: Path | None = None, **options) -> EmulatorHandle:
        options.setdefault("backends", ["ibm_fez"])  # one fake backend: a cheaper worker
        handle = EmulatorHandle(store or tmp_path / f"store{len(handles)}", **options).start()
        handles.append(handle)
        for key, value in handle.client_env().items():
            monkeypatch.setenv(key, value)
        return handle

    yield _start
    for handle in handles:
        handle.close()


def connect(handle: EmulatorHandle, token: str = TOKEN, instance: str | None = "qpuflow-emulator"):
    from qiskit_ibm_runtime import QiskitRuntimeService

    return QiskitRuntimeService(**handle.service_kwargs(token=token, instance=instance))


@pytest.fixture(scope="module")
def isa():
    """X on q1 read into bit 8 of a 9-bit register, q0 into a 1-bit register."""
    q = QuantumRegister(2, "q")
    a, b = ClassicalRegister(1, "a"), ClassicalRegister(9, "b")
    qc = QuantumCircuit(q, a, b)
    qc.x(q[1])
    qc.measure(q[0], a[0])
    qc.measure(q[1], b[8])
    return transpile_isa(qc, load_backend("fake_fez"), seed=3)


def submit(backend, circuit, *, shots=200, tags=("qpuflow",), max_execution_time=60):
    from qiskit_ibm_runtime import SamplerV2

    sampler = SamplerV2(mode=backend)
    sampler.options.max_execution_time = max_execution_time
    sampler.options.environment.job_tags = list(tags)
    return sampler.run([circuit], shots=shots)


def wait_final(job, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while (status := job.status()) not in ("DONE", "ERROR", "CANCELLED"):
        assert time.monotonic() < deadline, f"job {job.job_id()} still {status}"
        time.sleep(0.1)
    return status


def wait_billed(job, timeout: float = 15.0) -> float:
    """A charged job's ``job.usage()`` once billing is complete (the client reports 0 while
    the billing status is pending)."""
    deadline = time.monotonic() + timeout
    while (usage := job.usage()) == 0:
        assert time.monotonic() < deadline, f"billing of {job.job_id()} still pending"
        time.sleep(0.1)
    assert job.metrics()["usage"] == {"qpu_charge_time_seconds": usage, "status": "complete"}
    return usage


def check_registers(result, shots: int) -> None:
    data = result[0].data
    assert data.a.num_shots == shots and data.b.num_bits == 9
    b = data.b.to_bool_array(order="little")
    assert b[:, 8].mean() > 0.8 and b[:, :8].mean() < 0.05  # bit 8 set, the rest clear
    assert data.a.to_bool_array(order="little").mean() < 0.2


# --------------------------------------------------------------------------------------
# the happy path
# --------------------------------------------------------------------------------------


def test_backends_job_lifecycle_and_retrieval_from_another_service(start, isa):
    handle = start(queue_seconds=0.5, run_seconds=0.8, billing_delay_seconds=0.5)
    service = connect(handle)
    assert [b.name for b in service.backends()] == ["ibm_fez"]
    backend = service.backend("ibm_fez")
    assert backend.num_qubits == 156 and "cz" in backend.target.operation_names
    assert backend.status().operational

    job = submit(backend, isa, shots=300, tags=["qpuflow", "life"], max_execution_time=60)
    seen = []
    while (status := job.status()) not in ("DONE", "ERROR", "CANCELLED"):
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.05)
    assert seen == ["QUEUED", "RUNNING"] and status == "DONE"
    result = job.result()
    check_registers(result, 300)
    assert result[0].data.b.get_counts()["100000000"] > 240  # bit 0 rightmost
    assert wait_billed(job) == 3.0  # ceil(2 s overhead + 300 x (circuit + 250 us rep delay))
    assert job.usage_estimation["quantum_seconds"] == pytest.approx(2.08, abs=0.01)
    stamps = job.metrics()["timestamps"]
    assert stamps["created"] < stamps["running"] < stamps["finished"]

    # Another process: a new service finds the job by id and by tag, with the same result.
    other = connect(handle)
    again = other.job(job.job_id())
    assert again.status() == "DONE" and again.tags == ["qpuflow", "life"]
    assert again.backend().name == "ibm_fez" and again.creation_date is not None
    assert np.array_equal(again.result()[0].data.b.array, result[0].data.b.array)
    assert again.inputs["pubs"][0][0].num_qubits == isa.num_qubits  # GET /jobs/{id} with params
    assert [j.job_id() for j in other.jobs(job_tags=["life"])] == [job.job_id()]

    usage = other.usage()
    assert usage["usage_consumed_seconds"] == 3.0 and usage["usage_limit_seconds"] == 600
    assert usage["usage_remaining_seconds"] == 597 and usage["usage_limit_reached"] is False


def test_listing_filters_paging_count_and_cancel(start, isa):
    from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

    # Jobs stay queued; pages of 2; six submissions in a row: the rate limit is not the subject.
    handle = start(queue_seconds=120, max_page_size=2, submit_rate_per_minute=None)
    service = connect(handle)
    backend = service.backend("ibm_fez")
    jobs = [submit(backend, isa, tags=["list", f"n{i}"]) for i in range(5)]
    ids = [j.job_id() for j in jobs]
    submit(backend, isa, tags=["other"])

    handle.clear_requests()
    listed = service.jobs(job_tags=["list"], limit=None)
    assert [j.job_id() for j in listed] == ids[::-1]  # newest first
    assert len(handle.requests("list")) == 3  # the client paged: 2 + 2 + 1 (count = 5)
    assert [j.job_id() for j in service.jobs(job_tags=["list"], limit=3)] == ids[:1:-1]
    assert [j.job_id() for j in service.jobs(job_tags=["list"], skip=3)] == ids[1::-1]
    assert [j.job_id() for j in service.jobs(job_tags=["list"], descending=False, limit=2)] == ids[:2]
    assert [j.job_id() for j in service.jobs(job_tags=["list", "n3"])] == [ids[3]]  # all tags must match
    assert service.jobs(job_tags=["list", "nope"]) == []
    assert len(service.jobs(job_tags=["list"], pending=True)) == 5
    assert service.jobs(job_tags=["list"], pending=False) == []
    assert service.jobs(backend_name="ibm_torino") == []
    after = jobs[2].creation_date - timedelta(microseconds=1)
    assert {j.job_id() for j in service.jobs(job_tags=["list"], created_after=after)} == set(ids[2:])
    listing = handle.requests("list")[-1]["query"]
    assert listing["tags"] == ["list"] and listing["created_after"]

    jobs[1].cancel()  # queued -> cancelled
    assert service.job(ids[1]).status() == "CANCELLED"
    with pytest.raises(RuntimeInvalidStateError):  # 409: already final
        service.job(ids[1]).cancel()
    assert [j.job_id() for j in service.jobs(job_tags=["list"], pending=False)] == [ids[1]]
    assert [r["status"] for r in handle.requests("cancel")] == [204, 409]


def test_store_persists_across_restart(start, isa, tmp_path):
    handle = start(queue_seconds=0)
    service = connect(handle)
    backend = service.backend("ibm_fez")
    done = submit(backend, isa, tags=["persist"])
    assert wait_final(done) == "DONE"
    counts = done.result()[0].data.b.get_counts()
    handle.configure(queue_seconds=1.5)
    queued = submit(backend, isa, tags=["persist"])
    assert queued.status() == "QUEUED"

    handle.stop()
    assert not handle.alive()
    handle.restart()  # same port, same store
    later = connect(handle)
    assert later.job(done.job_id()).result()[0].data.b.get_counts() == counts
    assert {j.job_id() for j in later.jobs(job_tags=["persist"])} == {done.job_id(), queued.job_id()}
    assert wait_final(later.job(queued.job_id())) == "DONE"  # submitted before the restart
    assert service.job(done.job_id()).status() == "DONE"  # the old service works on


def test_parametrized_pub_and_executor_sampler(start):
    from qiskit_ibm_runtime import SamplerV2
    from qiskit_ibm_runtime.executor_sampler import Sampler

    handle = start()
    service = connect(handle)
    backend = service.backend("ibm_fez")
    # A hand-made ISA circuit on physical qubit 0: sx rz(t) sx is X for t=0 and I for t=pi.
    theta = Parameter("t")
    qc = QuantumCircuit(backend.num_qubits, 1)
    qc.sx(0)
    qc.rz(theta, 0)
    qc.sx(0)
    qc.measure(0, 0)
    qc.metadata = {"sweep": "t", "points": 3}
    sampler = SamplerV2(mode=backend)
    job = sampler.run([(qc, [[0.0], [math.pi], [0.0]])], shots=400)
    assert job.result()[0].metadata["circuit_metadata"] == {"sweep": "t", "points": 3}
    data = job.result()[0].data
    assert data.shape == (3,) and data.c.num_shots == 400
    ones = data.c.to_bool_array(order="little")[..., 0].mean(axis=-1)
    assert ones[0] > 0.9 and ones[1] < 0.1 and ones[2] > 0.9

    # The client-side sampler SamplerV2 is deprecated for: program "executor", with twirling.
    q = QuantumRegister(2, "q")
    c = ClassicalRegister(2, "c")
    bell = QuantumCircuit(q, c)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure(q, c)
    bell_isa = transpile_isa(bell, load_backend("fake_fez"), seed=5)
    bell_isa.metadata = {"run": "bell", "rep": 2, "tags": ["x", "y"]}
    executor = Sampler(mode=backend)
    executor.options.environment.job_tags = ["executor"]
    executor.options.twirling.enable_gates = True
    executor.options.twirling.enable_measure = True
    executor.options.twirling.num_randomizations = 4
    executor.options.twirling.shots_per_randomization = 100
    ejob = executor.run([bell_isa])
    eresult = ejob.result()
    counts = eresult[0].data.c.get_counts()
    # Circuit metadata travels as JSON in the payload's passthrough data and comes back in the
    # pub result's metadata, as the client's post-processing expects.
    assert eresult[0].metadata["circuit_metadata"] == {"run": "bell", "rep": 2, "tags": ["x", "y"]}
    assert sum(counts.values()) == 400
    assert counts.get("00", 0) + counts.get("11", 0) > 340 and min(counts.get("00", 0), counts.get("11", 0)) > 120
    assert handle.requests("submit")[-1]["status"] == 200
    assert service.job(ejob.job_id()).primitive_id == "executor"


def test_batch_session_and_server_side_isa_check(start, isa):
    from qiskit_ibm_runtime import Batch, SamplerV2

    handle = start()
    service = connect(handle)
    backend = service.backend("ibm_fez")
    with Batch(backend=backend) as batch:
        sampler = SamplerV2(mode=batch)
        jobs = [sampler.run([isa], shots=100) for _ in range(2)]
    assert {j.session_id for j in jobs} == {batch.session_id}
    assert batch.details()["mode"] == "batch" and batch.details()["accepting_jobs"] is False
    assert {j.job_id() for j in service.jobs(session_id=batch.session_id)} == {j.job_id() for j in jobs}
    check_registers(jobs[1].result(), 100)

    # The client refuses non-ISA circuits itself; sent anyway (through its own transport),
    # the job fails on the service side like on IBM's.
    bad = QuantumCircuit(1, 1)
    bad.h(0)
    bad.measure(0, 0)
    answer = service._active_api_client.program_run(
        program_id="sampler", backend_name="ibm_fez", params={"pubs": [(bad, None, 100)], "version": 2},
        image=None, log_level=None, session_id=None)
    failed = service.job(answer["id"])
    assert wait_final(failed) == "ERROR"
    assert "Error code 1517" in failed.error_message() and "instruction h" in failed.error_message()


# --------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------


def test_5xx_after_create_makes_duplicates_before_create_does_not(start, isa):
    handle = start()
    service = connect(handle)
    backend = service.backend("ibm_fez")

    handle.set_faults(errors=2, error_status=503, error_endpoints=["submit"], error_after_create=True)
    job = submit(backend, isa, tags=["dup"])  # the plain client call succeeds...
    submits = handle.requests("submit")
    assert [r["status"] for r in submits] == [503, 503, 200], submits
    created = [r["job_id"] for r in submits]
    assert created[-1] == job.job_id()
    listed = {j.job_id() for j in service.jobs(job_tags=["dup"])}
    assert listed == set(created) and len(listed) == 3, (listed, submits)  # ...and left two orphans

    handle.clear_requests()
    handle.set_faults(errors=2, error_status=500, error_after_create=False)
    job = submit(backend, isa, tags=["nodup"])
    assert [r["status"] for r in handle.requests("submit")] == [500, 500, 200]
    assert [j.job_id() for j in service.jobs(job_tags=["nodup"])] == [job.job_id()]


def test_429_rate_limit_is_not_retried(start, isa):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    handle = start(submit_rate_per_minute=2)
    backend = connect(handle).backend("ibm_fez")
    submit(backend, isa)
    submit(backend, isa)
    with pytest.raises(IBMRuntimeError, match="429") as info:
        submit(backend, isa)
    assert info.value.__context__.status_code == 429
    statuses = [r["status"] for r in handle.requests("submit")]
    assert statuses == [200, 200, 429]  # one attempt: the client does not retry 429
    assert 1 <= handle.requests("submit")[-1]["retry_after"] <= 60
    assert len(handle.jobs()) == 2


def test_slow_answers_block_the_client_and_short_timeouts_are_retried(start, isa):
    handle = start()
    service = connect(handle)
    job = submit(service.backend("ibm_fez"), isa)
    wait_final(job)
    fresh = service.job(job.job_id())

    # No read timeout by default: the client waits as long as the server takes.
    handle.set_faults(delays=1, delay_seconds=1.5, delay_endpoints=["results"])
    t0 = time.monotonic()
    check_registers(fresh.result(), 200)
    assert time.monotonic() - t0 >= 1.5

    # With a read timeout (only settable on the private session) a timeout is retried.
    session = service._active_api_client._session
    assert session._timeout == (5.0, None)
    session._timeout = (5.0, 1.0)
    handle.clear_requests()
    handle.set_faults(delays=1, delay_seconds=2.5, delay_endpoints=["status"])
    assert service.job(job.job_id()).status() == "DONE"
    deadline = time.monotonic() + 5
    while len(status_calls := handle.requests("status")) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # the abandoned slow answer is logged when the server finishes it
    # service.job(): the timed-out attempt and its retry; .status(): one more GET.
    assert [r.get("fault") for r in status_calls] == ["delay", None, None]


@pytest.mark.slow
def test_repeated_timeouts_and_drops_make_the_client_raise(start, isa):
    """Six faults in a row exhaust the client's retries (~15 s of back-off each)."""
    import threading

    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    handle = start()
    service = connect(handle)
    job = submit(service.backend("ibm_fez"), isa)
    wait_final(job)
    dropper, sleeper = service.job(job.job_id()), connect(handle).job(job.job_id())
    sleeper._api_client._session._timeout = (5.0, 0.3)
    handle.set_faults(drops=6, drop_endpoints=["results"], delays=6, delay_seconds=1.0, delay_endpoints=["metrics"])
    errors = {}

    def run(name, fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions below
            errors[name] = exc

    threads = [threading.Thread(target=run, args=("drop", dropper.result)),
               threading.Thread(target=run, args=("timeout", sleeper.metrics))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert isinstance(errors["drop"], RequestsApiError) and "RemoteDisconnected" in str(errors["drop"])
    assert "Read timed out" in str(errors["timeout"]) or "ReadTimeout" in str(errors["timeout"])
    assert [r["status"] for r in handle.requests("results")] == [None] * 6
    deadline = time.monotonic() + 10
    while len(handle.requests("metrics")) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)  # abandoned slow answers are logged when the server finishes them
    assert [r.get("fault") for r in handle.requests("metrics")] == ["delay"] * 6


def test_dropped_connections(start, isa):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    handle = start()
    service = connect(handle)
    backend = service.backend("ibm_fez")
    job = submit(backend, isa)
    wait_final(job)

    handle.set_faults(drops=1, drop_endpoints=["status"])  # one drop on a GET: retried silently
    handle.clear_requests()
    assert service.job(job.job_id()).status() == "DONE"
    assert [r["status"] for r in handle.requests("status")] == [None, 200, 200]  # drop, retry, status()

    handle.set_faults(drops=1, drop_endpoints=["submit"], drop_after_create=False)
    with pytest.raises(IBMRuntimeError, match="Connection aborted"):
        submit(backend, isa, tags=["lost"])
    assert service.jobs(job_tags=["lost"]) == []  # dropped before the job was made

    handle.set_faults(drops=1, drop_endpoints=["submit"], drop_after_create=True)
    with pytest.raises(IBMRuntimeError, match="Connection aborted"):
        submit(backend, isa, tags=["orphan"])
    assert len(service.jobs(job_tags=["orphan"])) == 1  # the call failed but the job exists


def test_jobs_failed_or_cancelled_by_the_service(start, isa):
    from qiskit_ibm_runtime.exceptions import RuntimeJobFailureError, RuntimeJobMaxTimeoutError

    handle = start(billing_delay_seconds=0)  # charges readable at once
    service = connect(handle)
    backend = service.backend("ibm_fez")
    handle.set_faults(fail_tags=["boom"], fail_reason_code=1500, fail_reason="Internal error during execution",
                      cancel_tags=["axe"])
    failed = submit(backend, isa, tags=["qpuflow", "boom"])
    assert wait_final(failed) == "ERROR"
    assert "Error code 1500" in failed.error_message() and "Internal error" in failed.error_message()
    with pytest.raises(RuntimeJobFailureError, match="1500"):
        failed.result()
    assert failed.usage() == 0

    cancelled = submit(backend, isa, tags=["axe"])
    assert wait_final(cancelled) == "CANCELLED"

    # max_execution_time below the job's usage: cancelled with reason code 1305 -> ERROR.
    too_long = submit(backend, isa, shots=4096, max_execution_time=1)
    assert wait_final(too_long) == "ERROR"
    with pytest.raises(RuntimeJobMaxTimeoutError):
        too_long.result()
    assert too_long.usage() == 1

    handle.configure(queue_seconds=60)
    held = [submit(backend, isa) for _ in range(2)]
    handle.fail_job(held[0].job_id(), reason_code=1517, reason="Instruction not supported")
    handle.cancel_job(held[1].job_id())
    assert wait_final(held[0]) == "ERROR" and "1517" in held[0].error_message()
    assert wait_final(held[1]) == "CANCELLED"


def test_expired_token_401_and_proactive_refresh(start, isa):
    from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

    handle = start()
    service = connect(handle)
    job = submit(service.backend("ibm_fez"), isa)
    wait_final(job)

    handle.expire_tokens()  # the server rejects every token issued so far
    with pytest.raises(IBMNotAuthorizedError, match="401"):
        service.job(job.job_id())
    with pytest.raises(IBMNotAuthorizedError):  # the client does not refresh on 401...
        service.usage()
    assert handle.requests()[-1]["status"] == 401
    fresh = connect(handle)  # ...a new service gets a new token
    assert fresh.job(job.job_id()).status() == "DONE"

    # Tokens the client knows are expiring are refreshed before the request (10 s window).
    handle.set_faults(token_ttl_seconds=11)
    short = connect(handle)
    seen = len(handle.requests())
    time.sleep(1.2)
    assert short.job(job.job_id()).status() == "DONE"
    after = handle.requests()[seen:]
    # Refreshed before use, never rejected. (How many refreshes depends on how long the calls
    # take: each new 11 s token is inside the 10 s window again after 1 s, so on a loaded
    # machine a second refresh is legitimate; counting exactly one made this test flaky.)
    assert [r["kind"] for r in after][0] == "iam", f"no refresh before the first request: {after}"
    assert all(r["status"] != 401 for r in after)


def test_emulator_down_then_up_again(start, isa):
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts.exceptions import InvalidAccountError
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    handle = start()
    service = connect(handle)
    job = submit(service.backend("ibm_fez"), isa)
    wait_final(job)
    calls_before = len(handle.requests())
    handle.stop()
    t0 = time.monotonic()
    with pytest.raises(IBMRuntimeError, match="Connection refused|Failed to establish") as info:
        service.job(job.job_id())
    assert 2.5 < time.monotonic() - t0 < 10  # connect retries: 3, with 0 + 1 + 2 s back-off
    assert isinstance(info.value.__context__, RequestsApiError)  # what job.status() would raise
    with pytest.raises(InvalidAccountError):
        QiskitRuntimeService(**handle.service_kwargs(token=TOKEN, instance="qpuflow-emulator"))
    assert len(handle.requests()) == calls_before  # the log of the stopped server is kept
    handle.start()
    assert service.job(job.job_id()).status() == "DONE"


# --------------------------------------------------------------------------------------
# accounts, instances, usage, request log, secrets
# --------------------------------------------------------------------------------------


def test_instances_tokens_and_usage_limit(start, isa):
    from qiskit_ibm_runtime.accounts.exceptions import InvalidAccountError
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    handle = start(instances=[
        {"name": "open-a", "tokens": [TOKEN], "plan": "open", "usage_limit_seconds": 7},
        {"name": "premium-b", "tokens": [TOKEN, OTHER_TOKEN], "plan": "premium", "usage_limit_seconds": None},
    ])
    crn_a = handle.crn("open-a")
    assert {i["name"]: i["plan"] for i in connect(handle, instance=None).instances()} == {
        "open-a": "open", "premium-b": "premium"}
    assert [i["name"] for i in connect(handle, token=OTHER_TOKEN, instance=None).instances()] == ["premium-b"]
    with pytest.raises(InvalidAccountError):
        connect(handle, token="not-a-known-token", instance=None)
    with pytest.raises(Exception, match="does not have access"):
        connect(handle, token=OTHER_TOKEN, instance=crn_a)

    service = connect(handle, instance=crn_a)  # by CRN
    backend = service.backend("ibm_fez")
    for _ in range(2):
        wait_final(submit(backend, isa, shots=4096))  # 4 s each
    usage = service.usage()
    assert usage["usage_consumed_seconds"] == 8 and usage["usage_limit_reached"] is True
    assert usage["usage_remaining_seconds"] == 0
    handle.clear_requests()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(IBMRuntimeError, match="409") as info:  # the service refuses (strict)
            submit(backend, isa)
    assert any("usage limit" in str(w.message) for w in caught)  # the client warned first
    assert "Usage exceeds instance limit" in str(info.value.__context__)
    assert [r["status"] for r in handle.requests("submit")] == [409] and len(handle.jobs()) == 2
    other = connect(handle, token=OTHER_TOKEN, instance="premium-b")  # by name
    assert other.jobs() == [] and other.usage()["usage_consumed_seconds"] == 0
    assert [u["usage_consumed_seconds"] for u in handle.usage()] == [8, 0]


def test_saved_account_reaches_the_emulator(start, isa, tmp_path):
    from qiskit_ibm_runtime import QiskitRuntimeService

    handle = start()
    accounts = tmp_path / "accounts.json"
    save_emulator_account(accounts, "emu", handle, TOKEN, "qpuflow-emulator")
    saved = json.loads(accounts.read_text())["emu"]
    assert saved["url"] == handle.api_url and "experimental" in saved["url"]
    service = QiskitRuntimeService(name="emu", filename=str(accounts))
    job = submit(service.backend("ibm_fez"), isa)
    assert wait_final(job) == "DONE"
    assert service.active_instance() == handle.crn("qpuflow-emulator")


def test_request_log_via_handle_and_admin_endpoint(start, isa):
    handle = start(queue_seconds=60)
    service = connect(handle)
    job = submit(service.backend("ibm_fez"), isa)
    handle.clear_requests()
    for _ in range(3):
        assert job.status() == "QUEUED"
    log = handle.requests()
    assert [r["kind"] for r in log] == ["status"] * 3
    entry = log[0]
    assert entry["method"] == "GET" and entry["path"].endswith(f"/jobs/{job.job_id()}")
    assert entry["query"] == {"exclude_params": ["true"]} and entry["status"] == 200
    assert entry["instance"] == handle.crn("qpuflow-emulator")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(handle.url + "/__emulator/requests") as response:
        assert json.loads(response.read()) == log
    with pytest.raises(EmulatorError, match="unknown fault"):
        handle.set_faults(explode=True)


def test_no_token_in_store_or_log(start, isa, tmp_path):
    from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

    # Short-lived tokens make the client go back to IAM (with the API key) more often.
    handle = start(instances=[{"name": "qpuflow-emulator", "tokens": [TOKEN]}], token_ttl_seconds=11)
    service = connect(handle)
    job = submit(service.backend("ibm_fez"), isa, tags=["secret-check"])
    wait_final(job)
    job.result()
    service.jobs(job_tags=["secret-check"])
    time.sleep(1.1)  # the client now considers its token expired
    handle.set_faults(errors=1, error_endpoints=["iam"], error_status=500)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # IAM failed: the client sends "apikey <token>" instead
        with pytest.raises(IBMNotAuthorizedError):
            service.job(job.job_id())
    assert any("API Key will be used instead" in str(w.message) for w in caught)
    log_text = json.dumps(handle.requests())
    store = handle.store
    handle.stop()
    needle = TOKEN.encode()
    files = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.name == "emulator.sqlite3" for p in files) and any(p.name == "worker.log" for p in files)
    leaking = [str(p) for p in files if needle in p.read_bytes()]
    assert leaking == []
    assert TOKEN not in log_text and "apikey" not in log_text


def test_complete_job_now_runs_a_queued_job_and_leaves_the_others(start, isa):
    handle = start(queue_seconds=3600, run_seconds=3600, billing_delay_seconds=0)  # charges at once
    service = connect(handle)
    backend = service.backend("ibm_fez")
    jobs = [submit(backend, isa) for _ in range(3)]
    done = handle.complete_job(jobs[0].job_id())
    assert done["status"] == "Completed"
    assert [j["status"] for j in handle.complete_jobs([jobs[1].job_id()])] == ["Completed"]
    assert jobs[2].status() == "QUEUED", "only the jobs asked for run"
    check_registers(jobs[0].result(), 200)
    assert jobs[1].usage() > 0
    with pytest.raises(EmulatorError, match="already final"):
        handle.complete_job(jobs[0].job_id())
    with pytest.raises(EmulatorError, match="no job"):
        handle.complete_job("no-such-job")
