"""Strict mode of the emulator: each rule of the documented runtime API contract, one test each.

The rules (IBM's OpenAPI for ``/v1/jobs``, see ``IBM_API_NOTES.md``) are checked over plain
HTTP to 127.0.0.1 (what the service answers) and, where the client is affected, through the
unmodified qiskit-ibm-runtime client (what a caller sees). Most tests run the server without
its worker process (``worker=False``: jobs stay Queued, no qiskit import, ~0.3 s to start);
the ones about billing, charges and results run jobs for real.

The loopback guard and the helpers come from test_emulator.py (the same fixtures, imported).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from datetime import datetime
from typing import Any

import pytest

from qpuflow.emulator import EmulatorError, EmulatorHandle
from test_emulator import (  # noqa: F401 - fixtures are used by name
    OTHER_TOKEN,
    TOKEN,
    connect,
    isa,
    loopback_only,
    start,
    submit,
    wait_final,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RECORD_KEYS = {"id", "backend", "state", "status", "program", "created", "tags", "session_id", "private", "cost",
               "usage", "estimated_running_time_seconds"}
PENDING_BILL = {"qpu_charge_time_seconds": 0, "status": "pending"}

# Admin and raw API calls never go through a proxy (the client environment sets a guard proxy).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------------------
# the runtime API over plain HTTP
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Raw:
    """The runtime API as one user (API key) on one instance, over urllib: no client logic."""

    def __init__(self, handle: EmulatorHandle, token: str = TOKEN, instance: str = "qpuflow-emulator"):
        self.api = handle.api_url
        self.crn = handle.crn(instance)
        form = urllib.parse.urlencode({"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": token})
        with _OPENER.open(urllib.request.Request(handle.url + "/iam/identity/token", data=form.encode())) as answer:
            self.bearer = json.loads(answer.read())["access_token"]

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 10, **query: Any) -> Answer:
        url = self.api + path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
        request = urllib.request.Request(
            url, data=None if body is None else json.dumps(body).encode(), method=method,
            headers={"Authorization": f"Bearer {self.bearer}", "Service-CRN": self.crn,
                     "Content-Type": "application/json"})
        try:
            with _OPENER.open(request, timeout=timeout) as answer:
                return Answer(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, dict(exc.headers), exc.read())

    def submit(self, *, timeout: float = 10, **fields: Any) -> Answer:
        """POST /jobs; the payload is only decoded by the worker, so an empty one does here."""
        body = {"program_id": "sampler", "backend": "ibm_fez", "params": {"pubs": [], "version": 2}} | fields
        return self.call("POST", "/jobs", body, timeout=timeout)

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.call("GET", f"/jobs/{job_id}", exclude_params="true")
        assert answer.status == 200, answer
        return answer.json()


def error_of(answer: Answer, status: int) -> str:
    """Assert the documented ErrorContainer with this status; return its message."""
    assert answer.status == status, (answer.status, answer.body[:300])
    body = answer.json()
    assert set(body) == {"errors", "trace"}, body  # in particular no top-level "error"
    assert isinstance(body["trace"], str) and body["trace"]
    (error,) = body["errors"]
    assert {"code", "message", "more_info"} <= set(error) and isinstance(error["code"], (str, int))
    assert isinstance(error["message"], str) and error["message"]
    return error["message"]


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------------------


def test_strict_is_the_default_and_lenient_is_opt_in(start, tmp_path):
    strict = start(worker=False)
    assert strict.strict and strict.health()["strict"] is True
    faults = strict.faults()
    assert faults["submit_rate_per_minute"] == 5 and faults["rate_window_seconds"] == 60
    assert strict.configure()["billing_delay_seconds"] == 2.0

    lenient = start(worker=False, strict=False)
    assert not lenient.strict and lenient.health()["strict"] is False
    assert lenient.faults()["submit_rate_per_minute"] is None
    assert lenient.configure()["billing_delay_seconds"] == 0

    # `python -m qpuflow.emulator --lenient` (what the CLI runs).
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "qpuflow.emulator", "--store", str(tmp_path / "cli"), "--port", "0",
                             "--lenient", "--ready-file", str(ready), "--exit-with-parent",
                             "--options", json.dumps({"worker": False})],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the CLI server did not start"
            time.sleep(0.02)
        url = json.loads(ready.read_text())["url"]
        with _OPENER.open(url + "/__emulator/health") as answer:
            assert json.loads(answer.read())["strict"] is False
    finally:
        proc.terminate()
        proc.wait(10)


def test_lenient_mode_keeps_the_older_answers(start):
    handle = start(worker=False, strict=False, instances=[{"name": "qpuflow-emulator", "usage_limit_seconds": 0}])
    raw = Raw(handle)
    answers = [raw.submit(tags=[f"t{i}" for i in range(9)], cost=20000) for _ in range(6)]
    assert [a.status for a in answers] == [200] * 6  # 9 tags, no rate limit, over budget: queued
    record = raw.job(answers[0].json()["id"])
    assert record["cost"] == 20000 and "end_time" in record and record["status"] == "Queued"
    assert "error" in raw.call("GET", "/jobs/nope").json()
    assert raw.call("GET", "/jobs", limit=-1).status == 400
    handle.fail_job(record["id"], reason_code=1500, reason="boom")
    failed = raw.call("GET", f"/jobs/{record['id']}/results")
    assert failed.status == 200 and failed.body == b"Error code 1500; boom"


# --------------------------------------------------------------------------------------
# submissions
# --------------------------------------------------------------------------------------


def test_tags_at_most_8_of_at_most_86_characters(start, isa):
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    handle = start(worker=False, submit_rate_per_minute=None)  # many submissions: not about the rate
    raw = Raw(handle)
    nine = [f"t{i}" for i in range(9)]
    longest = [f"{i}" + "x" * 85 for i in range(8)]  # 8 tags of 86 characters
    assert "at most 8" in error_of(raw.submit(tags=nine), 400)
    assert "86" in error_of(raw.submit(tags=["y" * 87]), 400)
    error_of(raw.submit(tags="one-string"), 400)
    accepted = raw.submit(tags=longest)
    assert accepted.status == 200
    job_id = accepted.json()["id"]
    assert raw.job(job_id)["tags"] == longest and len(handle.jobs()) == 1

    # PUT /jobs/{id}/tags: the same schema.
    error_of(raw.call("PUT", f"/jobs/{job_id}/tags", {"tags": nine}), 400)
    error_of(raw.call("PUT", f"/jobs/{job_id}/tags", {"tags": ["z" * 87]}), 400)
    assert raw.call("PUT", f"/jobs/{job_id}/tags", {"tags": ["a", "b"]}).status == 204
    assert raw.job(job_id)["tags"] == ["a", "b"]

    # The listing's tags filter: jobs carrying ALL the given tags.
    only_a = raw.submit(tags=["a"]).json()["id"]
    assert [j["id"] for j in raw.call("GET", "/jobs", tags=["a", "b"]).json()["jobs"]] == [job_id]
    assert {j["id"] for j in raw.call("GET", "/jobs", tags=["a"]).json()["jobs"]} == {job_id, only_a}

    # The client checks neither limit: the service refuses, the client raises.
    service = connect(handle)
    backend = service.backend("ibm_fez")
    with pytest.raises(IBMRuntimeError, match="400") as info:
        submit(backend, isa, tags=nine)
    assert "at most 8" in str(info.value)
    job = submit(backend, isa, tags=longest)
    with pytest.raises(RequestsApiError) as info:
        job.update_tags(nine)
    assert info.value.status_code == 400
    assert len(handle.jobs()) == 3


def test_rate_limit_5_jobs_per_user_in_a_rolling_window(start):
    handle = start(worker=False, rate_window_seconds=3, instances=[
        {"name": "lab-a", "tokens": [TOKEN, OTHER_TOKEN]}, {"name": "lab-b", "tokens": [TOKEN]}])
    me_a, me_b, other_a = Raw(handle, TOKEN, "lab-a"), Raw(handle, TOKEN, "lab-b"), Raw(handle, OTHER_TOKEN, "lab-a")
    error_of(me_a.submit(tags=["x"] * 9), 400)  # a refused submission takes no slot
    statuses = [me_a.submit().status for _ in range(3)] + [me_b.submit().status for _ in range(2)]
    assert statuses == [200] * 5
    sixth = me_b.submit()  # the same user through another instance: the limit is the user's
    assert "rate limit" in error_of(sixth, 429)
    retry_after = int(sixth.headers["Retry-After"])
    assert 1 <= retry_after <= 3
    assert handle.requests("submit")[-1]["retry_after"] == retry_after
    assert other_a.submit().status == 200  # another user on the same instance is not limited
    error_of(me_a.submit(), 429)
    time.sleep(retry_after + 0.05)  # the oldest slot has left the rolling window
    assert me_a.submit().status == 200
    assert len(handle.jobs()) == 7  # 5 + the other user's + the one after the wait


def test_over_budget_is_409_and_creates_nothing(start, isa):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    handle = start(worker=False, instances=[{"name": "spent", "usage_limit_seconds": 0}])
    raw = Raw(handle, instance="spent")
    assert error_of(raw.submit(), 409) == "Usage exceeds instance limit"
    service = connect(handle, instance="spent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the client warns that the limit is reached, then submits
        with pytest.raises(IBMRuntimeError, match="409") as info:
            submit(service.backend("ibm_fez"), isa)
    assert "Usage exceeds instance limit" in str(info.value)
    assert handle.jobs() == [] and [r["status"] for r in handle.requests("submit")] == [409, 409]


def test_cost_is_an_integer_capped_at_10800(start):
    handle = start(worker=False, submit_rate_per_minute=None)
    raw = Raw(handle)
    for cost, kept in ((20000, 10800), (10800, 10800), (0, 0), (60, 60)):
        answer = raw.submit(cost=cost)
        assert answer.status == 200 and raw.job(answer.json()["id"])["cost"] == kept
    for bad in (-1, 1.5, "60", True):
        assert "cost" in error_of(raw.submit(cost=bad), 400)
    assert len(handle.jobs()) == 4


def test_executor_payload_shape_is_checked_at_submission(start):
    handle = start(worker=False, submit_rate_per_minute=None)
    raw = Raw(handle)

    def payload(**program: Any) -> dict[str, Any]:
        quantum_program = {"shots": 100, "items": [{"item_type": "circuit"}], "circuits": {}} | program
        return {"schema_version": "v2.0", "quantum_program": quantum_program, "options": {}}

    assert raw.submit(program_id="executor", params=payload()).status == 200
    bad = [
        {k: v for k, v in payload().items() if k != "options"},
        payload() | {"pubs": []},
        payload() | {"schema_version": "v1.0"},
        payload(shots=0),
        payload(shots=1.5),
        payload(items=[]),
        payload(items=[{"item_type": "circuit"}, {"item_type": "circuit", "shots": 200}]),  # mixed shots
    ]
    messages = [error_of(raw.submit(program_id="executor", params=params), 400) for params in bad]
    assert "shots" in messages[3] and "one shots value" in messages[-1]
    assert len(handle.jobs()) == 1


# --------------------------------------------------------------------------------------
# answers
# --------------------------------------------------------------------------------------


def test_every_runtime_error_is_an_error_container(start):
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

    handle = start(worker=False)
    raw = Raw(handle)
    assert "nope" in error_of(raw.call("GET", "/jobs/nope"), 404)
    error_of(raw.call("POST", "/jobs/nope/cancel"), 404)
    error_of(raw.call("GET", "/nowhere"), 404)
    error_of(raw.submit(program_id="estimator"), 404)
    queued = raw.submit().json()["id"]
    error_of(raw.call("GET", f"/jobs/{queued}/results"), 404)  # no result yet
    raw.bearer = "not-a-token"
    error_of(raw.call("GET", "/jobs"), 401)
    raw = Raw(handle)
    handle.set_faults(errors=1, error_status=503, error_endpoints=["list"])  # injected faults too
    error_of(raw.call("GET", "/jobs"), 503)
    handle.script("status", ["error:418"])
    error_of(raw.call("GET", f"/jobs/{queued}"), 418)

    # The client finds no "error" key and appends the raw body to its message instead.
    service = connect(handle)
    with pytest.raises(RuntimeJobNotFound):
        service.job("nope")
    with pytest.raises(RequestsApiError) as info:
        service._active_api_client.job_get("nope")
    assert info.value.status_code == 404 and '"errors"' in str(info.value) and "nope" in str(info.value)


def test_billing_pending_then_complete_and_the_record_has_no_end_time(start, isa):
    handle = start(billing_delay_seconds=1.5)
    service = connect(handle)
    raw = Raw(handle)
    job = submit(service.backend("ibm_fez"), isa, shots=300)
    assert raw.job(job.job_id())["usage"] == PENDING_BILL  # queued or running
    assert wait_final(job) == "DONE"

    metrics, record = job.metrics(), raw.job(job.job_id())
    assert metrics["usage"] == PENDING_BILL and record["usage"] == PENDING_BILL
    assert job.usage() == 0  # the client reports 0 while billing is pending
    assert set(record) == RECORD_KEYS and set(record["state"]) == {"status", "reason", "reason_code"}
    assert set(raw.call("GET", f"/jobs/{job.job_id()}").json()) == RECORD_KEYS | {"params"}
    assert "end_time" not in record and "quantum_seconds" not in json.dumps([record, metrics])
    stamps = metrics["timestamps"]
    assert set(stamps) == {"created", "running", "finished"}
    finished = stamp(stamps["finished"])
    assert stamp(stamps["created"]) <= stamp(stamps["running"]) <= finished

    deadline = time.monotonic() + 10
    while job.metrics()["usage"]["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert time.time() >= finished + 1.5
    assert job.usage() == 3  # ceil of the estimate
    assert job.metrics()["usage"] == {"qpu_charge_time_seconds": 3, "status": "complete"}
    assert raw.job(job.job_id())["usage"] == {"qpu_charge_time_seconds": 3, "status": "complete"}
    (entry,) = raw.call("GET", "/jobs").json()["jobs"]
    assert set(entry) == RECORD_KEYS and entry["usage"]["qpu_charge_time_seconds"] == 3


def test_user_cancel_is_charged_while_running_free_while_queued_system_cancels_free(start, isa):
    handle = start(run_seconds=60, billing_delay_seconds=0)
    service = connect(handle)
    backend = service.backend("ibm_fez")

    def running(job) -> None:
        deadline = time.monotonic() + 30
        while job.status() != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)

    charged = submit(backend, isa, shots=4096)  # estimated 4 s
    victims = [submit(backend, isa), submit(backend, isa)]
    for job in (charged, *victims):
        running(job)
    time.sleep(1.3)
    charged.cancel()  # the user's cancel of a running job: charged what it used
    handle.cancel_job(victims[0].job_id())  # the system's doings: free
    handle.fail_job(victims[1].job_id())
    stamps = charged.metrics()["timestamps"]
    ran = stamp(stamps["finished"]) - stamp(stamps["running"])
    assert charged.status() == "CANCELLED" and ran > 1.3
    assert charged.usage() == min(math.ceil(ran), 4) >= 2
    assert [v.usage() for v in victims] == [0, 0]

    handle.configure(queue_seconds=60)
    queued = submit(backend, isa)
    queued.cancel()  # still queued: free
    assert queued.metrics()["usage"] == {"qpu_charge_time_seconds": 0, "status": "complete"}
    assert service.usage()["usage_consumed_seconds"] == charged.usage()


def test_results_204_for_failed_and_cancelled_and_private_results_read_once(start, isa):
    from qiskit_ibm_runtime import SamplerV2
    from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError, RuntimeJobFailureError

    handle = start()
    service = connect(handle)
    backend = service.backend("ibm_fez")
    raw = Raw(handle)
    handle.set_faults(fail_tags=["boom"], fail_reason="Internal error during execution", cancel_tags=["axe"])
    failed, cancelled = submit(backend, isa, tags=["boom"]), submit(backend, isa, tags=["axe"])
    sampler = SamplerV2(mode=backend)
    sampler.options.environment.private = True
    private = sampler.run([isa], shots=100)
    assert [wait_final(j) for j in (failed, cancelled, private)] == ["ERROR", "CANCELLED", "DONE"]

    for job in (failed, cancelled):
        answer = raw.call("GET", f"/jobs/{job.job_id()}/results")
        assert answer.status == 204 and answer.body == b""
    # The client builds a failed job's message from the record's reason (the body is empty).
    assert "Error code 1500; Internal error during execution" in failed.error_message()
    with pytest.raises(RuntimeJobFailureError, match="1500"):
        failed.result()
    with pytest.raises(RuntimeInvalidStateError):
        cancelled.result()
    assert service._active_api_client.job_results(failed.job_id()) == ""

    # A private job's result can be read once.
    assert raw.job(private.job_id())["private"] is True
    assert private.result()[0].data.b.num_shots == 100
    again = raw.call("GET", f"/jobs/{private.job_id()}/results")
    assert again.status == 204 and again.body == b""
    assert private.result() is None  # the client decodes the empty answer to None


def test_listing_limit_offset_sort_and_pending(start):
    handle = start(worker=False, submit_rate_per_minute=None)
    raw = Raw(handle)
    ids = [raw.submit().json()["id"] for _ in range(201)]
    handle.fail_job(ids[0])
    handle.cancel_job(ids[1])

    def listing(**query: Any) -> dict[str, Any]:
        answer = raw.call("GET", "/jobs", **query)
        assert answer.status == 200, answer
        return answer.json()

    def listed(**query: Any) -> list[str]:
        return [j["id"] for j in listing(**query)["jobs"]]

    page = listing()
    assert set(page) == {"jobs", "count"} and page["count"] == 201
    newest_first = ids[::-1]
    assert [j["id"] for j in page["jobs"]] == newest_first[:200]  # default limit 200, DESC
    assert all(set(j) == RECORD_KEYS for j in page["jobs"])
    for limit in (0, 201, 500, -3, "ten"):  # out of range: silently the default
        assert listed(limit=limit) == newest_first[:200], limit
    assert listed(limit=1) == newest_first[:1] and listed(limit=200) == newest_first[:200]
    for offset in (-1, "x"):
        assert listed(offset=offset, limit=2) == newest_first[:2], offset
    assert listed(offset=199) == newest_first[199:]
    assert listed(sort="ASC", limit=3) == ids[:3]
    for sort in ("asc", "sideways", "DESC"):
        assert listed(sort=sort, limit=3) == newest_first[:3], sort
    assert listing(pending="true", limit=1)["count"] == 199
    assert listed(pending="false") == [ids[1], ids[0]]


# --------------------------------------------------------------------------------------
# scripted fault sequences
# --------------------------------------------------------------------------------------


def test_script_error_create_leaves_duplicates_then_ok(start, isa):
    handle = start(worker=False, submit_rate_per_minute=None)  # 7 jobs: not about the rate
    raw = Raw(handle)
    actions = ["error:503:create", "error:503:create", "ok"]
    assert handle.script("submit", actions) == actions
    answers = [raw.submit(tags=["dup"]) for _ in range(3)]
    error_of(answers[0], 503)
    assert [a.status for a in answers] == [503, 503, 200] and handle.script_left("submit") == []
    log = handle.requests("submit")
    assert [e["fault"] for e in log] == actions
    assert {e["job_id"] for e in log} == {j["id"] for j in handle.jobs()} and len(handle.jobs()) == 3
    assert raw.submit().status == 200 and "fault" not in handle.requests("submit")[-1]  # script used up

    # The client retries the 503s on its own (upstream #1114): its call succeeds, 3 jobs exist.
    handle.script("submit", actions)
    job = submit(connect(handle).backend("ibm_fez"), isa, tags=["client-dup"])
    created = [e["job_id"] for e in handle.requests("submit")[-3:]]
    assert created[-1] == job.job_id() and len(set(created)) == 3
    assert sum("client-dup" in j["tags"] for j in handle.jobs()) == 3


def test_script_errors_drops_429_and_precedence(start):
    handle = start(worker=False)
    raw = Raw(handle)
    handle.script("submit", ["error:500", "429", "drop", "drop:create", "ok"])
    error_of(raw.submit(), 500)
    limited = raw.submit()
    error_of(limited, 429)
    assert limited.headers["Retry-After"] == "1"
    for _ in range(2):
        with pytest.raises(OSError):  # the connection closes without an answer
            raw.submit()
    assert raw.submit().status == 200
    log = handle.requests("submit")
    assert [e["status"] for e in log] == [500, 429, None, None, 200]
    assert [e["fault"] for e in log] == ["error:500", "429", "drop", "drop:create", "ok"]
    assert [bool(e.get("job_id")) for e in log] == [False, False, False, True, True]
    assert len(handle.jobs()) == 2

    # Other endpoint kinds; scripts come before the fault counters.
    job_id = log[-1]["job_id"]
    handle.set_faults(errors=1, error_status=503, error_endpoints=["status"])
    handle.script("status", ["ok", "error:502"])
    assert raw.call("GET", f"/jobs/{job_id}").status == 200
    assert handle.script_left("status") == ["error:502"]
    error_of(raw.call("GET", f"/jobs/{job_id}"), 502)
    error_of(raw.call("GET", f"/jobs/{job_id}"), 503)  # now the counter
    assert raw.call("GET", f"/jobs/{job_id}").status == 200

    with pytest.raises(EmulatorError, match="unknown script action"):
        handle.script("submit", ["ok", "explode"])
    with pytest.raises(EmulatorError, match=":create"):
        handle.script("status", ["error:503:create"])
    with pytest.raises(EmulatorError, match="endpoint kind"):
        handle.script("nowhere", ["ok"])
    assert handle.script_left("submit") == []  # a bad script changes nothing
    handle.script("list", ["ok", "ok"])
    handle.clear_script("list")
    assert handle.script_left("list") == []


def test_script_delay_a_timed_out_submission_leaves_a_job_that_appears_later(start, isa):
    handle = start(worker=False)
    raw = Raw(handle)
    handle.script("submit", ["delay:2"])
    t0 = time.monotonic()
    with pytest.raises(OSError, match="timed out"):  # a caller with a 0.5 s read timeout gives up
        raw.submit(tags=["late"], timeout=0.5)
    assert time.monotonic() - t0 < 1.5
    assert handle.jobs() == [] and raw.call("GET", "/jobs", tags="late").json()["count"] == 0  # nothing yet...
    while not handle.jobs():
        assert time.monotonic() - t0 < 5
        time.sleep(0.05)
    assert time.monotonic() - t0 >= 1.9  # ...the job appears once the delay is over
    (late,) = raw.call("GET", "/jobs", tags="late").json()["jobs"]
    entry = handle.requests("submit")[-1]
    assert entry["fault"] == "delay:2" and entry["job_id"] == late["id"]

    # delay:<s>:create: the job exists at once, the answer comes later.
    handle.script("submit", ["delay:1:create"])
    with pytest.raises(OSError, match="timed out"):
        raw.submit(timeout=0.3)
    assert len(handle.jobs()) == 2

    # The client cannot time a submission out: POST /jobs is sent with a fixed 900 s read
    # timeout (whatever its session's), so it waits the delay out and gets its job.
    handle.script("submit", ["delay:1"])
    service = connect(handle)
    t0 = time.monotonic()
    job = submit(service.backend("ibm_fez"), isa, tags=["waited"])
    assert time.monotonic() - t0 >= 1.0
    assert handle.requests("submit")[-1]["job_id"] == job.job_id() and len(handle.jobs()) == 3
