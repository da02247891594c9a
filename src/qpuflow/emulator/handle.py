"""Start, stop and steer an emulator from Python (tests, the provider's tests, notebooks)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from qpuflow.emulator.server import ADMIN_PREFIX, API_PREFIX, CATALOG_PREFIX, IAM_PREFIX, SEARCH_PREFIX

# Proxies that catch anything not addressed to 127.0.0.1: with client_env() applied, a URL the
# client builds for IBM Cloud by mistake fails fast (connection refused on 127.0.0.1:9)
# instead of leaving the machine.
GUARD_PROXY = "http://127.0.0.1:9"

# Admin requests never go through a proxy, whatever the environment says.
_ADMIN = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorError(RuntimeError):
    """The emulator could not be started or refused an admin request."""


class EmulatorHandle:
    """A running emulator on 127.0.0.1 (a server process plus its worker process).

    ``EmulatorHandle(store=None, port=0, strict=True, **options)``: ``store`` is the
    directory of the persistent state (a temporary directory if None, removed on
    :meth:`close`), ``port=0`` picks a free port (kept across :meth:`restart`), ``strict``
    enforces the documented API contract (``strict=False``: the older lenient emulator),
    ``options`` are :func:`serve`'s other keyword arguments (``queue_seconds``,
    ``run_seconds``, ``usage_limit_seconds``, ``submit_rate_per_minute``,
    ``rate_window_seconds``, ``billing_delay_seconds``, ``token_ttl_seconds``, ``backends``,
    ``seed``, ...) plus ``instances`` (a list of instance specs, see :meth:`instances`).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, store: Path | str | None = None, *, port: int = 0, host: str = "127.0.0.1",
                 start_timeout: float = 30.0, strict: bool = True, **options: Any):
        self._tmp = None
        if store is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="qpuflow-emulator-")
            store = self._tmp.name
        self.store = Path(store)
        self.host = host
        self.port = int(port)
        self.start_timeout = start_timeout
        self._instances = options.pop("instances", None)
        self.options = {"strict": bool(strict), **options}
        self.proc: subprocess.Popen | None = None
        self._old_requests: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"EmulatorHandle({self.url!r}, store={str(self.store)!r}, {state})"

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def strict(self) -> bool:
        """Whether the server enforces the documented API contract (see the package docstring)."""
        return bool(self.options.get("strict", True))

    @property
    def api_url(self) -> str:
        """Runtime API base URL; contains ``experimental`` so the client uses it verbatim."""
        return self.url + API_PREFIX

    def start(self) -> EmulatorHandle:
        if self.alive():
            return self
        self.store.mkdir(parents=True, exist_ok=True)
        ready = self.store / f".ready-{os.getpid()}-{time.monotonic_ns()}.json"
        logs = self.store / "logs"
        logs.mkdir(exist_ok=True)
        started = time.monotonic()
        with open(logs / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "qpuflow.emulator", "--store", str(self.store), "--host", self.host,
                 "--port", str(self.port), "--ready-file", str(ready), "--exit-with-parent",
                 "--options", json.dumps(self.options)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
        try:
            while not ready.exists():
                if self.proc.poll() is not None:
                    raise EmulatorError(f"the emulator exited with code {self.proc.returncode} while starting; "
                                        f"see {logs / 'server.log'}")
                if time.monotonic() - started > self.start_timeout:
                    self._kill()
                    raise EmulatorError(f"the emulator did not start within {self.start_timeout} s; "
                                        f"see {logs / 'server.log'}")
                time.sleep(0.01)
            info = json.loads(ready.read_text())
        finally:
            ready.unlink(missing_ok=True)
        self.port = int(info["port"])
        if self._instances is not None:
            self.instances(self._instances)
            self._instances = None
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and its worker: requests then get "connection refused".

        The request log of the stopped server is kept (see :meth:`requests`); jobs stay in
        the store.
        """
        if not self.alive():
            self.proc = None
            return
        with contextlib.suppress(EmulatorError, OSError):
            self._old_requests += self._admin("GET", "/requests", timeout=5)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        self.proc = None

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL); its worker exits on its own."""
        if self.alive():
            self._kill()
        self.proc = None

    def _kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def restart(self, **options: Any) -> EmulatorHandle:
        """Stop and start again on the same port and store (optionally with changed options)."""
        self.stop()
        self.options.update(options)
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmulatorHandle:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- pointing the client here

    def client_env(self, *, guard: bool = True) -> dict[str, str]:
        """Environment the client needs so that everything it contacts is this emulator.

        ``IAM_URL`` (token exchange), ``GLOBAL_SEARCH_URL`` and ``GLOBAL_CATALOG_URL``
        (instance lookup). With ``guard`` (default) also: ``IBM_CREDENTIALS_FILE=/dev/null``
        (an ``ibm-credentials.env`` lying around cannot redirect the lookups) and proxies
        ``HTTP(S)_PROXY=http://127.0.0.1:9`` with ``NO_PROXY=127.0.0.1,localhost``, so any URL
        not on 127.0.0.1 fails with "connection refused" instead of reaching IBM Cloud.
        """
        env = {
            "IAM_URL": self.url + IAM_PREFIX,
            "GLOBAL_SEARCH_URL": self.url + SEARCH_PREFIX,
            "GLOBAL_CATALOG_URL": self.url + CATALOG_PREFIX,
        }
        if guard:
            env.update({
                "IBM_CREDENTIALS_FILE": os.devnull,
                "HTTP_PROXY": GUARD_PROXY, "HTTPS_PROXY": GUARD_PROXY,
                "http_proxy": GUARD_PROXY, "https_proxy": GUARD_PROXY,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            })
        return env

    @contextlib.contextmanager
    def environment(self, *, guard: bool = True) -> Iterator[dict[str, str]]:
        """Apply :meth:`client_env` to ``os.environ`` for the duration of the block."""
        env = self.client_env(guard=guard)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def check_env(self) -> None:
        """Raise unless :meth:`client_env` is applied (without it the client calls IBM Cloud)."""
        env = self.client_env(guard=False)
        wrong = [k for k, v in env.items() if os.environ.get(k) != v]
        if wrong:
            raise EmulatorError(
                f"environment variable(s) {', '.join(wrong)} do not point at this emulator; apply "
                "handle.client_env() (or use `with handle.environment():`) before creating QiskitRuntimeService, "
                "otherwise the client contacts IBM Cloud for IAM and the instance lookup")

    def service_kwargs(self, *, token: str, instance: str | None = None, check_env: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``QiskitRuntimeService(**kwargs)`` that reach this emulator.

        ``url`` is :attr:`api_url`; it contains ``experimental``, so the client's default URL
        resolver uses it verbatim (no ``url_resolver`` needed, and it can be saved in an
        account). ``instance`` is a CRN or an instance name (None: the client picks one).
        With ``check_env`` (default) it raises :class:`EmulatorError` unless :meth:`client_env`
        is applied in this process; pass False to build kwargs for another process.
        """
        if check_env:
            self.check_env()
        kwargs: dict[str, Any] = {"channel": "ibm_quantum_platform", "token": token, "url": self.api_url}
        if instance is not None:
            kwargs["instance"] = instance
        return kwargs

    def service(self, *, token: str, instance: str | None = None):
        """A ``QiskitRuntimeService`` connected to this emulator (the environment must be applied)."""
        from qiskit_ibm_runtime import QiskitRuntimeService

        return QiskitRuntimeService(**self.service_kwargs(token=token, instance=instance))

    # ---------------------------------------------------------------- steering

    def _admin(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + ADMIN_PREFIX + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with _ADMIN.open(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = _error_message(exc.read().decode("utf-8", "replace"))
            raise EmulatorError(f"emulator admin {method} {path} failed ({exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise EmulatorError(f"emulator at {self.url} is not reachable: {exc}") from None

    def health(self) -> dict[str, Any]:
        return self._admin("GET", "/health")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change ``queue_seconds`` / ``run_seconds`` (for jobs submitted from now on) or
        ``max_page_size`` while the server runs; returns the current settings."""
        return self._admin("POST", "/settings", settings)

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change fault settings (only the ones given; see ``FAULT_DEFAULTS``); returns all.

        ``expire_tokens=True`` is an action: every access token issued so far is rejected
        with 401 from now on.
        """
        return self._admin("POST", "/faults", faults)

    def clear_faults(self) -> dict[str, Any]:
        return self._admin("DELETE", "/faults")

    def faults(self) -> dict[str, Any]:
        return self._admin("GET", "/faults")

    def expire_tokens(self) -> None:
        self.set_faults(expire_tokens=True)

    def script(self, kind: str, actions: list[str]) -> list[str]:
        """Script the next requests of one endpoint kind (``"submit"``, ``"status"``, ...): each
        consumes the next action, then requests behave normally again. Replaces the kind's
        earlier script; returns the actions left. Grammar: ``ok``, ``error:<status>``,
        ``error:<status>:create`` (submit), ``drop``, ``drop:create``, ``delay:<seconds>``,
        ``delay:<seconds>:create``, ``429`` (see the package docstring). A bad action raises
        :class:`EmulatorError` and changes nothing."""
        return self._admin("POST", "/script", {"kind": kind, "actions": list(actions)})["actions"]

    def script_left(self, kind: str) -> list[str]:
        """The actions of ``kind``'s script not consumed yet."""
        return self._admin("GET", f"/script?kind={kind}")["actions"]

    def clear_script(self, kind: str | None = None) -> None:
        """Drop the script of one kind, or of every kind."""
        self._admin("DELETE", "/script" + (f"?kind={kind}" if kind else ""))

    def requests(self, kind: str | None = None, *, method: str | None = None) -> list[dict[str, Any]]:
        """The request log (oldest first): ``method, path, query, status, kind, time, duration``
        and, where relevant, ``instance`` (CRN), ``job_id`` (created by a submission) and
        ``fault`` (which fault answered). ``status`` is None for a dropped connection.
        Includes the logs of earlier runs of this handle (before :meth:`restart`)."""
        entries = list(self._old_requests)
        if self.alive():
            entries += self._admin("GET", "/requests")
        return [e for e in entries if (kind is None or e["kind"] == kind)
                and (method is None or e["method"] == method)]

    def clear_requests(self) -> None:
        self._old_requests = []
        if self.alive():
            self._admin("DELETE", "/requests")

    def instances(self, specs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Define the instances (replacing all) if ``specs`` is given; return them (no tokens).

        A spec: ``name`` (required), ``tokens`` (API tokens that may use it; None = any
        token), ``crn`` (default: derived from the name), ``plan`` ("open"), ``pricing_type``
        (from the plan: open -> free), ``usage_limit_seconds`` (default: the server's),
        ``backends`` (default: all served), ``tags``, ``region`` ("us-east"). Tokens are
        stored only as HMAC digests.
        """
        if specs is not None:
            return self._admin("POST", "/instances", {"instances": specs})
        return self._admin("GET", "/instances")

    def crn(self, name: str) -> str:
        for inst in self.instances():
            if inst["name"] == name:
                return inst["crn"]
        raise EmulatorError(f"no instance named {name!r}")

    def usage(self) -> list[dict[str, Any]]:
        """Per-instance usage, as GET /instances/usage reports it."""
        return self._admin("GET", "/usage")

    def jobs(self) -> list[dict[str, Any]]:
        """Every job in the store, oldest first (admin view: all instances, no params)."""
        return self._admin("GET", "/jobs")

    def job(self, job_id: str) -> dict[str, Any]:
        for job in self.jobs():
            if job["id"] == job_id:
                return job
        raise EmulatorError(f"no job {job_id}")

    def cancel_job(self, job_id: str, reason: str = "Job was cancelled by the service") -> dict[str, Any]:
        """Cancel a pending job as the service would (not the user)."""
        return self._admin("POST", f"/jobs/{job_id}/cancel", {"reason": reason})

    def fail_job(self, job_id: str, reason_code: int = 1500, reason: str = "Internal error (emulated)") -> dict[str, Any]:
        """Make a pending job end Failed with this reason code and message."""
        return self._admin("POST", f"/jobs/{job_id}/fail", {"reason_code": reason_code, "reason": reason})

    def complete_job(self, job_id: str, *, wait: bool = True, timeout: float = 60.0) -> dict[str, Any]:
        """Make a pending job run now, whatever its queue and run times: the worker simulates it
        on its next pass and it ends Completed with a result (or as a fault or its
        max_execution_time decides). With ``wait`` return the job once final, else at once.
        A job of an instance over its usage limit stays queued (as on the service)."""
        job = self._admin("POST", f"/jobs/{job_id}/complete", {})
        return self.wait_for(job_id, timeout=timeout) if wait else job

    def complete_jobs(self, job_ids: list[str], *, timeout: float = 120.0) -> list[dict[str, Any]]:
        """:meth:`complete_job` for many jobs; waits (one listing per poll) until all are final."""
        for job_id in job_ids:
            self._admin("POST", f"/jobs/{job_id}/complete", {})
        wanted = set(job_ids)
        deadline = time.monotonic() + timeout
        while True:
            final = {j["id"]: j for j in self.jobs()
                     if j["id"] in wanted and j["status"] in ("Completed", "Failed", "Cancelled")}
            if len(final) == len(wanted):
                return [final[j] for j in job_ids]
            if time.monotonic() > deadline:
                raise EmulatorError(f"{len(wanted) - len(final)} of {len(wanted)} job(s) not final after {timeout} s")
            time.sleep(0.1)

    def wait_for(self, job_id: str, statuses: str | tuple[str, ...] = ("Completed", "Failed", "Cancelled"),
                 timeout: float = 60.0) -> dict[str, Any]:
        """Poll the admin view (not the logged API) until the job has one of ``statuses``."""
        wanted = (statuses,) if isinstance(statuses, str) else tuple(statuses)
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in wanted:
                return job
            if time.monotonic() > deadline:
                raise EmulatorError(f"job {job_id} is {job['status']} after {timeout} s, not one of {wanted}")
            time.sleep(0.05)


def _error_message(text: str) -> str:
    """The message of an error body of either shape (ErrorContainer or the lenient one)."""
    try:
        body = json.loads(text)
        return body["errors"][0]["message"] if "errors" in body else body["error"]["message"]
    except (ValueError, KeyError, TypeError, IndexError):
        return text


def save_emulator_account(filename: Path | str, name: str, handle_or_url: EmulatorHandle | str, token: str,
                          instance: str | None = None, *, overwrite: bool = True) -> None:
    """Save a client account that reaches the emulator: ``QiskitRuntimeService(name=, filename=)``.

    The saved ``url`` is the emulator's runtime API URL (it contains ``experimental``, which
    the client uses verbatim). IAM and the instance lookup still come from the environment:
    apply :meth:`EmulatorHandle.client_env` in every process that loads the account. The file
    holds the token in plain text, like every saved account of qiskit-ibm-runtime.
    """
    from qiskit_ibm_runtime import QiskitRuntimeService

    if isinstance(handle_or_url, EmulatorHandle):
        url = handle_or_url.api_url
    else:
        url = str(handle_or_url).rstrip("/")
        if "experimental" not in url:
            url += API_PREFIX
    QiskitRuntimeService.save_account(token=token, url=url, instance=instance, channel="ibm_quantum_platform",
                                      filename=str(filename), name=name, overwrite=overwrite)
