"""HTTP side of the emulator: IAM, GlobalSearch/GlobalCatalog and the runtime REST API.

Standard library only (it must start in a fraction of a second). Jobs are executed by a
separate worker process (:mod:`qpuflow.emulator.worker`) that this server starts, watches and
restarts; the two share the SQLite store. See the package docstring for the routes, the
faults and how to point the client here.

Run as ``python -m qpuflow.emulator --store DIR [--port N] ...`` (what
:class:`~qpuflow.emulator.EmulatorHandle` does) or call :func:`serve`.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import hmac
import importlib.util
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from qpuflow.emulator import contract
from qpuflow.emulator.contract import ContractError
from qpuflow.emulator.scripts import ScriptAction, Scripts
from qpuflow.emulator.store import (
    DEFAULT_BACKENDS,
    FINAL_STATES,
    PENDING_STATES,
    InstanceRegistry,
    JobStore,
    Secrets,
    iso,
    new_job_id,
    normalise_instance,
    parse_time,
    write_text_atomic,
)

API_PREFIX = "/experimental/api/v1"
IAM_PREFIX = "/iam"
SEARCH_PREFIX = "/global-search"
CATALOG_PREFIX = "/global-catalog/api/v1"
ADMIN_PREFIX = "/__emulator"

PROGRAMS = ("sampler", "executor")
MAX_PAGE = 200  # the service caps a page of GET /jobs

_SECRET_QUERY_KEYS = {"apikey", "api_key", "token", "access_token", "refresh_token", "password"}

FAULT_DEFAULTS: dict[str, Any] = {
    # HTTP errors: the next `errors` requests to `error_endpoints` get `error_status`.
    "errors": 0,
    "error_status": 503,
    "error_endpoints": ["submit"],
    "error_after_create": False,  # submit only: the job IS created, then the error is returned
    "error_retry_after": None,  # seconds for a Retry-After header on the error (None: no header)
    # Dropped connections: the socket is closed without an answer.
    "drops": 0,
    "drop_endpoints": ["status", "results"],
    "drop_after_create": False,  # submit only: created, then dropped
    # Slow answers: `delay_seconds` before answering (longer than the client waits = a timeout).
    "delays": 0,
    "delay_seconds": 0.0,
    "delay_endpoints": ["status", "results"],
    # 429 + Retry-After beyond this many created jobs per user (strict; per instance when
    # lenient) in any rolling `rate_window_seconds` (None: off). The initial value is the
    # server's option (strict default 5, lenient None).
    "submit_rate_per_minute": None,
    "rate_window_seconds": 60.0,
    # Jobs submitted with one of these tags end Failed / are cancelled by the service.
    "fail_tags": [],
    "fail_reason_code": 1500,
    "fail_reason": "Internal error: the job failed on the system (emulated fault)",
    "cancel_tags": [],
    "cancel_reason": "Job was cancelled by the service (emulated fault)",
    # Lifetime of access tokens issued from now on.
    "token_ttl_seconds": 3600,
}
_FAULT_ACTIONS = ("expire_tokens",)

ENDPOINT_KINDS = ("iam", "search", "catalog", "backends", "configuration", "properties", "backend_status",
                  "usage", "submit", "list", "status", "results", "metrics", "logs", "cancel", "tags",
                  "delete", "sessions", "other")


@dataclasses.dataclass
class EmulatorConfig:
    store: Path
    host: str = "127.0.0.1"
    port: int = 8765
    queue_seconds: float = 0.0
    run_seconds: float = 0.0
    usage_limit_seconds: float | None = 600.0
    usage_window_days: float = 28.0
    submit_rate_per_minute: float | None = 5  # strict's default (serve() picks per mode)
    token_ttl_seconds: int = 3600
    backends: dict[str, str] = dataclasses.field(
        default_factory=lambda: backend_map(DEFAULT_BACKENDS))
    noise_scale: float = 1.0
    idle_noise: bool = True  # as the local backend: a device idles with T1/T2
    seed: int | None = None
    enforce_max_execution_time: bool = True
    poll_seconds: float = 0.05
    worker: bool = True
    max_page_size: int = MAX_PAGE
    # Strict: enforce the documented contract (see contract.py); lenient: the older behaviour.
    strict: bool = True
    billing_delay_seconds: float = 2.0
    rate_window_seconds: float = 60.0

    def worker_settings(self) -> dict[str, Any]:
        return {"backends": self.backends, "noise_scale": self.noise_scale, "idle_noise": self.idle_noise,
                "seed": self.seed, "enforce_max_execution_time": self.enforce_max_execution_time,
                "poll_seconds": self.poll_seconds, "usage_window_days": self.usage_window_days}


def backend_map(backends: Any) -> dict[str, str]:
    """``["ibm_fez"]`` or ``{"ibm_fez": "fake_fez"}`` -> served name -> fake backend name."""
    if backends is None:
        backends = DEFAULT_BACKENDS
    if isinstance(backends, str):
        backends = [backends]
    if isinstance(backends, dict):
        return {str(k): str(v) for k, v in backends.items()}
    out = {}
    for item in backends:
        name, _, fake = str(item).partition("=")
        out[name] = fake or (name if name.startswith("fake_") else "fake_" + name.removeprefix("ibm_"))
    return out


# --------------------------------------------------------------------------------------
# access tokens (HS256 JWT; the client decodes them without checking the signature)
# --------------------------------------------------------------------------------------


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(key: bytes, claims: dict[str, Any]) -> str:
    head = _b64u(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64u(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64u(sig)}"


def read_jwt(key: bytes, token: str) -> dict[str, Any] | None:
    try:
        head, body, sig = token.split(".")
        expected = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64u(sig)):
            return None
        return json.loads(_unb64u(body))
    except (ValueError, TypeError):
        return None


# --------------------------------------------------------------------------------------
# backends served from the fake backends' JSON files
# --------------------------------------------------------------------------------------


class BackendFiles:
    """Configuration/properties JSON of each served backend, read from qiskit_ibm_runtime's
    fake_provider files without importing qiskit (``find_spec`` only locates the package)."""

    def __init__(self, mapping: dict[str, str]):
        spec = importlib.util.find_spec("qiskit_ibm_runtime")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("qiskit_ibm_runtime is not installed; the emulator serves its fake backends' files")
        root = Path(list(spec.submodule_search_locations)[0]) / "fake_provider" / "backends"
        self.mapping = dict(mapping)
        self._paths: dict[str, tuple[Path, Path]] = {}
        self._conf: dict[str, dict[str, Any]] = {}
        self._bytes: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        for name, fake in self.mapping.items():
            short = fake.removeprefix("fake_")
            conf, props = root / short / f"conf_{short}.json", root / short / f"props_{short}.json"
            if not conf.exists() or not props.exists():
                raise ValueError(f"backend {name!r}: no fake backend files for {fake!r} under {root}")
            self._paths[name] = (conf, props)

    def names(self) -> list[str]:
        return list(self.mapping)

    def configuration(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._conf:
                conf = json.loads(self._paths[name][0].read_text())
                conf["backend_name"] = name
                self._conf[name] = conf
            return self._conf[name]

    def raw(self, name: str, which: str) -> bytes:
        """The JSON body for ``configuration`` or ``properties`` (cached, renamed)."""
        key = (name, which)
        if key not in self._bytes:
            if which == "configuration":
                data = self.configuration(name)
            else:
                data = json.loads(self._paths[name][1].read_text())
                data["backend_name"] = name
            body = json.dumps(data).encode()
            with self._lock:
                self._bytes[key] = body
        return self._bytes[key]


# --------------------------------------------------------------------------------------
# shared server state
# --------------------------------------------------------------------------------------


class Faults:
    def __init__(self, initial: dict[str, Any]):
        self._lock = threading.Lock()
        self._initial = dict(FAULT_DEFAULTS) | initial
        self.values = dict(self._initial)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.values))

    def update(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - set(FAULT_DEFAULTS) - set(_FAULT_ACTIONS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(FAULT_DEFAULTS)} and "
                             f"actions {list(_FAULT_ACTIONS)}")
        for key in ("error_endpoints", "drop_endpoints", "delay_endpoints"):
            if key in changes:
                if isinstance(changes[key], str):
                    changes[key] = [changes[key]]
                bad = set(changes[key]) - set(ENDPOINT_KINDS)
                if bad:
                    raise ValueError(f"{key}: unknown endpoint kind(s) {sorted(bad)}; known: {list(ENDPOINT_KINDS)}")
        for key in ("fail_tags", "cancel_tags"):
            if key in changes and isinstance(changes[key], str):
                changes[key] = [changes[key]]
        with self._lock:
            self.values.update({k: v for k, v in changes.items() if k in FAULT_DEFAULTS})

    def reset(self) -> None:
        with self._lock:
            self.values = dict(self._initial)

    def take(self, counter: str, endpoints_key: str, kind: str) -> dict[str, Any] | None:
        """Consume one count of a fault if it applies to this endpoint kind."""
        with self._lock:
            if self.values[counter] > 0 and kind in self.values[endpoints_key]:
                self.values[counter] -= 1
                return dict(self.values)
        return None

    def get(self, key: str) -> Any:
        with self._lock:
            return self.values[key]


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._seq = 0

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)
            if len(self._entries) > 200_000:
                del self._entries[:100_000]

    def all(self) -> list[dict[str, Any]]:
        """Entries in the order the requests arrived (a slow answer is logged when it ends)."""
        with self._lock:
            return sorted(self._entries, key=lambda e: (e["time"], e["seq"]))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class App:
    """Everything the request handlers share."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.store_dir = Path(config.store)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.secrets = Secrets(self.store_dir)
        self.instances = InstanceRegistry(self.store_dir)
        self.jobs = JobStore(self.store_dir)
        self.backends = BackendFiles(config.backends)
        self.strict = bool(config.strict)
        self.faults = Faults({"submit_rate_per_minute": config.submit_rate_per_minute,
                              "rate_window_seconds": config.rate_window_seconds,
                              "token_ttl_seconds": config.token_ttl_seconds})
        self.scripts = Scripts(ENDPOINT_KINDS)
        self.log = RequestLog()
        # Settings tests may change while the server runs (POST /__emulator/settings).
        self.settings = {"queue_seconds": config.queue_seconds, "run_seconds": config.run_seconds,
                         "max_page_size": config.max_page_size,
                         "billing_delay_seconds": config.billing_delay_seconds}
        self.revoked: set[str] = set()
        self.issued: set[str] = set()
        self._token_lock = threading.Lock()
        self._rate: dict[str, list[float]] = {}
        self._rate_lock = threading.Lock()
        self.started = time.time()
        self.worker: WorkerSupervisor | None = None
        if not self.instances.exists():
            self.define_instances([{"name": "qpuflow-emulator", "plan": "open", "tokens": None}])

    def define_instances(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not isinstance(specs, list) or not specs:
            raise ValueError("instances: give a non-empty list of instance specs")
        records = [normalise_instance(s, self.config.usage_limit_seconds, self.backends.names(),
                                      self.secrets.digest) for s in specs]
        crns = [r["crn"] for r in records]
        if len(set(crns)) != len(crns):
            raise ValueError("instances: two instances have the same name/CRN")
        for r in records:
            unknown = set(r["backends"]) - set(self.backends.names())
            if unknown:
                raise ValueError(f"instance {r['name']!r}: unknown backend(s) {sorted(unknown)}; "
                                 f"served: {self.backends.names()}")
        self.instances.save(records)
        return self.instances.public()

    # ---------------------------------------------------------------- tokens

    def issue_token(self, digest: str) -> dict[str, Any]:
        now = int(time.time())
        ttl = int(self.faults.get("token_ttl_seconds"))
        jti = secrets.token_hex(8)
        claims = {"iss": "qpuflow-emulator", "sub": digest, "iam_id": f"IBMid-emulator-{digest[:12]}",
                  "account": {"bss": "emulator"}, "iat": now, "exp": now + ttl, "jti": jti,
                  "grant_type": "urn:ibm:params:oauth:grant-type:apikey"}
        with self._token_lock:
            self.issued.add(jti)
        token = make_jwt(self.secrets.key, claims)
        return {"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
                "expires_in": ttl, "expiration": now + ttl, "scope": "ibm openid"}

    def expire_tokens(self) -> int:
        with self._token_lock:
            self.revoked |= self.issued
            self.issued = set()
            return len(self.revoked)

    def check_token(self, header: str | None) -> tuple[dict[str, Any] | None, str]:
        if not header or not header.startswith("Bearer "):
            return None, "missing bearer token (the client sends 'apikey ...' when IAM could not be reached)"
        claims = read_jwt(self.secrets.key, header[len("Bearer "):].strip())
        if claims is None:
            return None, "invalid access token"
        if claims.get("exp", 0) <= time.time():
            return None, "access token expired"
        with self._token_lock:
            if claims.get("jti") in self.revoked:
                return None, "access token expired (revoked by the emulator)"
        return claims, ""

    # ---------------------------------------------------------------- rate limit

    def rate_acquire(self, key: str) -> float | None:
        """Take a submission slot for ``key`` (the user in strict mode, the instance when
        lenient): None if taken, else the seconds until the oldest slot in the rolling window
        frees. Check and record are one step, so concurrent submissions cannot both pass."""
        rate = self.faults.get("submit_rate_per_minute")
        if not rate:
            return None
        window = float(self.faults.get("rate_window_seconds"))
        now = time.time()
        with self._rate_lock:
            recent = [t for t in self._rate.get(key, []) if now - t < window]
            if len(recent) >= rate:
                self._rate[key] = recent
                return max(0.0, window - (now - recent[0]))
            self._rate[key] = recent + [now]
        return None

    # ---------------------------------------------------------------- cancels

    def user_cancel(self, job_id: str, reason: str) -> bool:
        """Cancel a pending job on the user's request, charging what it used (nothing while
        Queued, its running time while Running). False if the job is already final.

        The worker may move the job meanwhile (Queued -> Running -> final), so the charge is
        computed for the state read and the update applies only from that state; a few
        retries cover the races.
        """
        for _ in range(5):
            job = self.jobs.get(job_id)
            if job is None or job["status"] not in PENDING_STATES:
                return False
            now = time.time()
            charge = contract.user_cancel_charge(job, now=now)
            if self.jobs.finish(job_id, "Cancelled", now=now, reason=reason, usage_seconds=charge,
                                from_states=(job["status"],)):
                return True
        return False

    # ---------------------------------------------------------------- usage

    def usage(self, instance: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        since = now - self.config.usage_window_days * 86400
        consumed = self.jobs.usage(instance["crn"], since=since)
        out: dict[str, Any] = {
            "instance_id": instance["crn"],
            "plan_id": plan_id(instance),
            "usage_consumed_seconds": consumed,
            "usage_period": {"start_time": iso(since), "end_time": iso(now)},
        }
        limit = instance.get("usage_limit_seconds")
        if limit is not None:
            out.update({"usage_limit_seconds": limit, "usage_allocation_seconds": limit,
                        "usage_limit_reached": consumed >= limit,
                        "usage_remaining_seconds": max(limit - consumed, 0.0)})
        else:
            out["usage_limit_reached"] = False
        return out


def plan_id(instance: dict[str, Any]) -> str:
    return f"emulator-plan-{instance['plan']}--{instance['pricing_type']}"


# --------------------------------------------------------------------------------------
# the worker process
# --------------------------------------------------------------------------------------


class WorkerSupervisor:
    """Starts the worker process and restarts it if it dies; its stdin is a lifeline."""

    def __init__(self, app: App):
        self.app = app
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)
        self._write_lock = threading.Lock()
        self.restarts = 0

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        logs = self.app.store_dir / "logs"
        logs.mkdir(exist_ok=True)
        out = open(logs / "worker.log", "ab")
        settings = json.dumps(self.app.config.worker_settings())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qpuflow.emulator.worker", "--store", str(self.app.store_dir),
             "--settings", settings],
            stdin=subprocess.PIPE, stdout=out, stderr=out, close_fds=True)
        out.close()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            if self.proc is not None and self.proc.poll() is not None and not self._stop.is_set():
                self.restarts += 1
                time.sleep(min(5.0, 0.5 * self.restarts))
                if not self._stop.is_set():
                    self._spawn()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def notify(self) -> None:
        """Wake the worker up (a new job); harmless if it is gone."""
        proc = self.proc
        try:
            if proc is not None and proc.stdin is not None and proc.poll() is None:
                with self._write_lock:
                    proc.stdin.write(b"\n")
                    proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        self._stop.set()
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        # The worker keeps no state outside SQLite transactions, so it need not finish its
        # loop: SIGTERM ends it at once (a clean interpreter exit with qiskit loaded is slow).
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------
# request handling
# --------------------------------------------------------------------------------------

_RUNTIME_RE = re.compile(r"^(?P<prefix>(?:/[^/]+)*?)/api/v1(?P<rest>/.*)?$")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # e.g. 520-524, Cloudflare's, which the client retries
        return f"HTTP {status}"


class _Drop(Exception):
    """Close the connection without answering."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qpuflow-ibm-emulator/1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers: ~40 ms added to every answer on a keep-alive connection.
    disable_nagle_algorithm = True
    app: App  # set on the subclass made by make_server

    # Quiet: the default handler logs every request line to stderr.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---------------------------------------------------------------- plumbing

    def _body(self) -> bytes:
        if getattr(self, "_body_cache", None) is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._body_cache = self.rfile.read(length) if length else b""
        return self._body_cache

    def _json_body(self) -> Any:
        raw = self._body()
        if not raw:
            return {}
        return json.loads(raw)

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self._status = status
        # Log before answering: a client that reads the log right after its call returns must
        # find the call in it.
        self._log_request()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # The client reads this header after parsing an error body; without it, it appends
        # the raw body to the exception message a second time.
        self.send_header("uber-trace-id", secrets.token_hex(8))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers=headers)

    def _error(self, status: int, message: str, code: int | str | None = None,
               headers: dict[str, str] | None = None) -> None:
        code = code if code is not None else status
        if self.app.strict:
            return self._json(status, contract.error_container(message, code), headers=headers)
        # Lenient: the older body with both shapes (the client reads the "error" key).
        self._json(status, {"error": {"message": message, "code": code, "status_code": status},
                            "errors": [{"message": message, "code": str(code)}]}, headers=headers)

    def _log_request(self) -> None:
        request = getattr(self, "_request_info", None)
        if request is None or self._logged:  # admin requests are not logged
            return
        self._logged = True
        entry = dict(request, status=self._status, duration=round(time.time() - request["time"], 4))
        entry.update(self._log_extra)
        self.app.log.add(entry)

    def _dispatch(self, method: str) -> None:
        self._status = None
        self._body_cache = None
        self._log_extra: dict[str, Any] = {}
        self._after_create: ScriptAction | None = None  # a scripted ':create' action for the submit
        self._scripted = False  # a script action answered this request: the fault counters stay out
        self._logged = False
        self._request_info = None
        started = time.time()
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        if path.startswith(ADMIN_PREFIX):
            try:
                self._admin(method, path[len(ADMIN_PREFIX):], query)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as exc:  # pragma: no cover - defensive
                self._safe_error(500, f"admin error: {type(exc).__name__}: {exc}")
            return
        kind, route = classify(method, path)
        self._request_info = {"time": started, "method": method, "path": path, "query": _redact_query(query),
                              "kind": kind}
        try:
            self._body()  # read the request fully before any fault, as a server would
            if not self._faults_before(kind):
                self._route(method, kind, route, query)
        except _Drop:
            self._log_extra.setdefault("fault", "drop")
            self._drop()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            self._safe_error(500, f"internal emulator error: {type(exc).__name__}")
            sys.stderr.write(f"[emulator] {method} {path}: {type(exc).__name__}: {exc}\n")
        finally:
            self._log_request()  # dropped connections and failures that sent nothing

    def _safe_error(self, status: int, message: str) -> None:
        try:
            if self._status is None:
                self._error(status, message)
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        self._status = None
        self._log_request()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _faults_before(self, kind: str) -> bool:
        """Apply a scripted action if one is queued for this kind (scripts take precedence),
        else the fault counters; True if the request is answered already."""
        action = self.app.scripts.take(kind)
        if action is None:
            return self._network_faults(kind)
        self._scripted = True
        self._log_extra["fault"] = action.text
        if action.create:  # acted on by the submit handler once the job exists
            self._after_create = action
            return False
        if action.verb == "drop":
            raise _Drop()
        if action.verb == "delay":
            time.sleep(action.seconds)
            return False
        if action.verb == "error":
            self._script_error(action)
            return True
        return False  # ok

    def _script_error(self, action: ScriptAction) -> None:
        headers = {"Retry-After": str(action.retry_after)} if action.retry_after is not None else None
        status = int(action.status or 500)
        self._error(status, f"{_phrase(status)} (emulated: script action {action.text!r})", code=status,
                    headers=headers)

    def _network_faults(self, kind: str) -> bool:
        """Apply drop/delay/error faults due before the request is handled; True if answered."""
        faults = self.app.faults
        if kind != "submit" or not faults.get("drop_after_create"):
            if faults.take("drops", "drop_endpoints", kind):
                raise _Drop()
        spec = faults.take("delays", "delay_endpoints", kind)
        if spec:
            self._log_extra["fault"] = "delay"
            time.sleep(float(spec["delay_seconds"]))
        if kind != "submit" or not faults.get("error_after_create"):
            spec = faults.take("errors", "error_endpoints", kind)
            if spec:
                self._log_extra["fault"] = "error"
                self._fault_error(spec)
                return True
        return False

    def _fault_error(self, spec: dict[str, Any]) -> None:
        headers = {}
        if spec.get("error_retry_after") is not None:
            headers["Retry-After"] = str(int(spec["error_retry_after"]))
        status = int(spec["error_status"])
        self._error(status, f"{_phrase(status)} (emulated fault)", code=status, headers=headers)

    # ---------------------------------------------------------------- routing

    def _route(self, method: str, kind: str, route: dict[str, Any], query: dict[str, list[str]]) -> None:
        if kind == "iam":
            return self._iam()
        if kind == "search":
            return self._search()
        if kind == "catalog":
            return self._catalog(route["id"])
        if route.get("api") is None:
            return self._error(404, f"no such endpoint: {method} {self.path.split('?')[0]}")
        claims, why = self.app.check_token(self.headers.get("Authorization"))
        if claims is None:
            return self._error(401, f"Unauthorized: {why}", code=1001)
        crn = self.headers.get("Service-CRN")
        allowed = self.app.instances.for_digest(claims["sub"])
        instance = next((i for i in allowed if i["crn"] == crn), None)
        if instance is None:
            return self._error(403, f"Forbidden: the API key has no access to instance {crn!r}", code=1002)
        self._log_extra["instance"] = instance["crn"]
        handler = getattr(self, f"_api_{kind}", None)
        if handler is None:
            return self._error(404, f"no such endpoint: {method} {route['api']}")
        return handler(method, route, query, instance, claims)

    # ---------------------------------------------------------------- IBM Cloud side

    def _iam(self) -> None:
        form = parse_qs(self._body().decode("utf-8", "replace"))
        grant = (form.get("grant_type") or [""])[0]
        apikey = (form.get("apikey") or [""])[0]
        if grant != "urn:ibm:params:oauth:grant-type:apikey" or not apikey:
            return self._json(400, {"errorCode": "BXNIM0109E", "errorMessage": "Property missing or empty",
                                    "context": {"requestType": "incoming.Identity_Token"}})
        digest = self.app.secrets.digest(apikey)
        if not self.app.instances.for_digest(digest):
            return self._json(400, {"errorCode": "BXNIM0415E",
                                    "errorMessage": "Provided API key could not be found.",
                                    "context": {"requestType": "incoming.Identity_Token"}})
        self._json(200, self.app.issue_token(digest))

    def _cloud_claims(self) -> dict[str, Any] | None:
        claims, why = self.app.check_token(self.headers.get("Authorization"))
        if claims is None:
            self._json(401, {"errors": [{"code": "not_authorized", "message": why}], "status_code": 401})
        return claims

    def _search(self) -> None:
        claims = self._cloud_claims()
        if claims is None:
            return
        items = [{
            "crn": inst["crn"], "name": inst["name"], "service_plan_unique_id": plan_id(inst),
            "type": "resource-instance", "region": inst["crn"].split(":")[5], "tags": inst["tags"],
            "doc": {"extensions": {"quantum": {"backends": inst["backends"]}}},
        } for inst in self.app.instances.for_digest(claims["sub"])]
        self._json(200, {"items": items, "limit": len(items)})

    def _catalog(self, entry_id: str) -> None:
        if self._cloud_claims() is None:
            return
        m = re.fullmatch(r"emulator-plan-(?P<plan>.+)--(?P<pricing>[a-z]+)", entry_id)
        if not m:
            return self._json(404, {"message": f"catalog entry {entry_id} not found"})
        self._json(200, {"id": entry_id, "name": m["plan"], "kind": "plan",
                         "overview_ui": {"en": {"display_name": m["plan"].title(), "description": "emulated plan"}},
                         "metadata": {"pricing": {"type": m["pricing"]}}})

    # ---------------------------------------------------------------- runtime API: backends

    def _backend_visible(self, name: str, instance: dict[str, Any]) -> bool:
        return name in instance["backends"] and name in self.app.backends.mapping

    def _api_backends(self, method, route, query, instance, claims) -> None:
        devices = []
        for name in instance["backends"]:
            conf = self.app.backends.configuration(name)
            devices.append({
                "name": name, "status": {"name": "online", "reason": "available"},
                "qubits": conf.get("n_qubits"), "queue_length": self.app.jobs.queue_length(name),
                "processor_type": conf.get("processor_type"), "clops": {"type": "hardware", "value": 250000},
                "performance_metrics": {"two_q_error_best": None}, "wait_time_seconds": None,
            })
        self._json(200, {"devices": devices})

    def _backend_or_404(self, route, instance) -> str | None:
        name = route["backend"]
        if not self._backend_visible(name, instance):
            self._error(404, f"Backend {name} not found", code=1211)
            return None
        return name

    def _api_configuration(self, method, route, query, instance, claims) -> None:
        name = self._backend_or_404(route, instance)
        if name:
            self._send(200, self.app.backends.raw(name, "configuration"))

    def _api_properties(self, method, route, query, instance, claims) -> None:
        name = self._backend_or_404(route, instance)
        if name:
            self._send(200, self.app.backends.raw(name, "properties"))

    def _api_backend_status(self, method, route, query, instance, claims) -> None:
        name = self._backend_or_404(route, instance)
        if name:
            conf = self.app.backends.configuration(name)
            self._json(200, {"state": True, "status": "active", "message": "available",
                             "length_queue": self.app.jobs.queue_length(name),
                             "backend_version": conf.get("backend_version", "0.0.0")})

    def _api_usage(self, method, route, query, instance, claims) -> None:
        self._json(200, self.app.usage(instance))

    # ---------------------------------------------------------------- runtime API: jobs

    def _api_submit(self, method, route, query, instance, claims) -> None:
        try:
            body = self._json_body()
        except ValueError:
            return self._error(400, "request body is not JSON", code=1400)
        if not isinstance(body, dict):
            return self._error(400, "request body must be a JSON object", code=1400)
        program = body.get("program_id")
        if program not in PROGRAMS:
            return self._error(404, f"Program {program!r} not found (the emulator runs {', '.join(PROGRAMS)})",
                               code=1211)
        backend = body.get("backend")
        if not backend or not self._backend_visible(backend, instance):
            return self._error(400, f"Backend {backend!r} is not available to this instance "
                                    f"(available: {', '.join(instance['backends'])})", code=1216)
        params = body.get("params")
        if not isinstance(params, dict):
            return self._error(400, "'params' must be an object", code=1400)
        strict = self.app.strict
        try:
            tags = contract.check_tags(body.get("tags"), strict=strict)
            cost = contract.check_cost(body.get("cost"), strict=strict)
            if strict and program == "executor":
                contract.check_executor_params(params)
        except ContractError as exc:
            return self._error(exc.status, exc.message, code=exc.code)
        session_id = body.get("session_id")
        if session_id:
            session = self.app.jobs.session(session_id)
            if session is None or session["instance"] != instance["crn"]:
                return self._error(404, f"Session {session_id} not found", code=1217)
            if not session["accepting"]:
                return self._error(400, f"Session {session_id} is closed and accepts no jobs", code=1217)
        if strict and self.app.usage(instance)["usage_limit_reached"]:
            # The service refuses; lenient mode queues the job until time is available.
            return self._error(409, contract.USAGE_EXCEEDED, code=1409)
        # Per user (the API key behind the token) as documented; lenient kept per instance.
        wait = self.app.rate_acquire(claims["sub"] if strict else instance["crn"])
        if wait is not None:
            retry_after = max(1, math.ceil(wait))
            self._log_extra["retry_after"] = retry_after
            return self._error(429, "Too Many Requests: job submission rate limit exceeded (emulated)", code=1429,
                               headers={"Retry-After": str(retry_after)})
        job_id = self._create_job(body, instance, claims, program=program, backend=backend, tags=tags, cost=cost,
                                  session_id=session_id, params=params)
        answer = {"id": job_id, "backend": backend, "session_id": session_id}
        if self._after_create is not None:
            return self._act_after_create(self._after_create, answer)
        if not self._scripted:
            self._counter_faults_after_create()
        if self._status is None:
            self._json(200, answer)

    def _create_job(self, body: dict[str, Any], instance: dict[str, Any], claims: dict[str, Any], *, program: str,
                    backend: str, tags: list[str], cost: int | None, session_id: str | None,
                    params: dict[str, Any]) -> str:
        faults = self.app.faults.snapshot()
        planned = None
        if set(tags) & set(faults["fail_tags"]):
            planned = {"status": "Failed", "reason": faults["fail_reason"],
                       "reason_code": int(faults["fail_reason_code"])}
        elif set(tags) & set(faults["cancel_tags"]):
            planned = {"status": "Cancelled", "reason": faults["cancel_reason"], "reason_code": None}
        job_id = new_job_id()
        self.app.jobs.insert_job({
            "id": job_id, "instance": instance["crn"], "account": claims["sub"][:16], "backend": backend,
            "program_id": program, "tags": tags, "session_id": session_id, "private": body.get("private"),
            "cost": cost, "created": time.time(), "queue_seconds": self.app.settings["queue_seconds"],
            "run_seconds": self.app.settings["run_seconds"], "planned": planned, "params": json.dumps(params),
        })
        if self.app.worker is not None:
            self.app.worker.notify()
        self._log_extra["job_id"] = job_id
        return job_id

    def _act_after_create(self, action: ScriptAction, answer: dict[str, Any]) -> None:
        """A scripted ':create' action, now that the job exists."""
        if action.verb == "drop":
            raise _Drop()
        if action.verb == "error":
            return self._script_error(action)
        time.sleep(action.seconds)  # delay:<s>:create
        self._json(200, answer)

    def _counter_faults_after_create(self) -> None:
        """The fault counters' after-create variants (may answer or drop the request)."""
        faults = self.app.faults
        if faults.get("drop_after_create") and faults.take("drops", "drop_endpoints", "submit"):
            self._log_extra["fault"] = "drop_after_create"
            raise _Drop()
        if faults.get("error_after_create"):
            spec = faults.take("errors", "error_endpoints", "submit")
            if spec:
                self._log_extra["fault"] = "error_after_create"
                self._fault_error(spec)

    def _job_or_404(self, route, instance, *, with_params: bool = False) -> dict[str, Any] | None:
        job = self.app.jobs.get(route["job_id"], with_params=with_params)
        if job is None or job["instance"] != instance["crn"]:
            self._error(404, f"Job not found: {route['job_id']}", code=1291)
            return None
        return job

    def _api_status(self, method, route, query, instance, claims) -> None:
        exclude = (query.get("exclude_params") or ["false"])[0].lower() == "true"
        job = self._job_or_404(route, instance, with_params=not exclude)
        if job is None:
            return
        out = self._job_record(job)
        if exclude:
            return self._json(200, out)
        # Splice the stored params text in verbatim (it holds the client's own encoding).
        head = json.dumps(out)
        self._send(200, (head[:-1] + ', "params": ' + job["params"] + "}").encode())

    def _api_results(self, method, route, query, instance, claims) -> None:
        job = self._job_or_404(route, instance)
        if job is None:
            return
        if job["status"] in PENDING_STATES:
            return self._error(404, f"Job {job['id']} has no results yet (status {job['status']})", code=1293)
        if not self.app.strict:
            return self._lenient_results(job)
        if job["status"] != "Completed":
            return self._send(204)  # documented: no final result for failed and cancelled jobs
        # A private job's result can be read once: taking it deletes it.
        text = self.app.jobs.take_result(job["id"]) if job["private"] else self.app.jobs.result(job["id"])
        if text is None:
            return self._send(204)
        self._send(200, text.encode(), content_type="application/json")

    def _lenient_results(self, job: dict[str, Any]) -> None:
        """The older answer: the result, or the error text of a failed or cancelled job."""
        if job["status"] == "Completed":
            text = self.app.jobs.result(job["id"]) or ""
            return self._send(200, text.encode(), content_type="application/json")
        reason = job["reason"] or f"Job {job['status'].lower()}"
        code = job["reason_code"]
        text = f"Error code {code}; {reason}" if code else reason
        self._send(200, text.encode(), content_type="text/plain")

    def _api_metrics(self, method, route, query, instance, claims) -> None:
        job = self._job_or_404(route, instance)
        if job is None:
            return
        if self.app.strict:
            return self._json(200, strict_metrics_json(job, self.app.jobs, now=time.time(),
                                                       billing_delay=self._billing_delay()))
        self._json(200, metrics_json(job, self.app.jobs))

    def _billing_delay(self) -> float:
        return float(self.app.settings["billing_delay_seconds"])

    def _job_record(self, job: dict[str, Any]) -> dict[str, Any]:
        """A job as GET /jobs/{id} and the listing present it, in the server's mode."""
        if self.app.strict:
            return strict_job_json(job, now=time.time(), billing_delay=self._billing_delay())
        return job_json(job)

    def _api_logs(self, method, route, query, instance, claims) -> None:
        job = self._job_or_404(route, instance)
        if job is not None:
            self._send(200, b"", content_type="text/plain")

    def _api_cancel(self, method, route, query, instance, claims) -> None:
        job = self._job_or_404(route, instance)
        if job is None:
            return
        if not self.app.user_cancel(job["id"], "Job was cancelled by the user"):
            current = self.app.jobs.get(job["id"])
            return self._error(409, f"Job {job['id']} is in a final state ({current['status']}) and cannot be "
                                    "cancelled", code=1226)
        self._send(204)

    def _api_tags(self, method, route, query, instance, claims) -> None:
        job = self._job_or_404(route, instance)
        if job is None:
            return
        try:
            body = self._json_body()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
            return self._error(400, "body must be {'tags': [strings]}", code=1400)
        try:
            tags = contract.check_tags(body["tags"], strict=self.app.strict)
        except ContractError as exc:
            return self._error(exc.status, exc.message, code=exc.code)
        self.app.jobs.update_tags(job["id"], tags)
        self._send(204)

    def _api_delete(self, method, route, query, instance, claims) -> None:
        job = self._job_or_404(route, instance)
        if job is not None:
            self.app.jobs.delete_job(job["id"])
            self._send(204)

    def _api_list(self, method, route, query, instance, claims) -> None:
        def one(key: str) -> str | None:
            values = query.get(key)
            return values[0] if values else None

        try:
            after = parse_time(one("created_after")) if one("created_after") else None
            before = parse_time(one("created_before")) if one("created_before") else None
        except ValueError:
            return self._error(400, "bad query parameter (created_after/created_before)", code=1400)
        if self.app.strict:
            limit, offset = contract.listing_limit(one("limit")), contract.listing_offset(one("offset"))
            descending, pending = contract.listing_descending(one("sort")), contract.listing_pending(one("pending"))
        else:
            try:
                limit, offset = int(one("limit") or MAX_PAGE), int(one("offset") or 0)
                if limit < 0 or offset < 0:
                    raise ValueError
            except ValueError:
                return self._error(400, "bad query parameter (limit/offset)", code=1400)
            descending = (one("sort") or "DESC").upper() != "ASC"
            pending = None if one("pending") is None else one("pending").lower() == "true"
        limit = min(limit, int(self.app.settings["max_page_size"]))  # the admin cap, for paging tests
        jobs, count = self.app.jobs.list(
            instance=instance["crn"], tags=query.get("tags", []), pending=pending,
            backend=one("backend"), program_id=one("program"), session_id=one("session_id"),
            created_after=after, created_before=before, descending=descending, limit=limit, offset=offset)
        out: dict[str, Any] = {"jobs": [self._job_record(j) for j in jobs], "count": count}
        if not self.app.strict:
            out.update(limit=limit, offset=offset)
        self._json(200, out)

    def _api_sessions(self, method, route, query, instance, claims) -> None:
        session_id = route.get("session_id")
        if method == "POST" and not session_id:
            try:
                body = self._json_body()
            except ValueError:
                body = {}
            backend = body.get("backend")
            if backend and not self._backend_visible(backend, instance):
                return self._error(400, f"Backend {backend!r} is not available to this instance", code=1216)
            new_id = new_job_id()
            self.app.jobs.create_session({"id": new_id, "instance": instance["crn"], "backend": backend,
                                          "mode": body.get("mode", "dedicated"), "created": time.time(),
                                          "max_ttl": body.get("max_ttl")})
            return self._json(200, {"id": new_id, "mode": body.get("mode", "dedicated"), "backend_name": backend})
        session = self.app.jobs.session(session_id) if session_id else None
        if session is None or session["instance"] != instance["crn"]:
            return self._error(404, f"Session {session_id} not found", code=1217)
        if method == "GET":
            return self._json(200, {"id": session["id"], "backend_name": session["backend"], "mode": session["mode"],
                                    "accepting_jobs": bool(session["accepting"]),
                                    "state": "closed" if session["closed"] else "open",
                                    "started_at": iso(session["created"]), "max_time": session["max_ttl"]})
        if method == "PATCH":
            body = self._json_body() or {}
            if "accepting_jobs" in body:
                self.app.jobs.update_session(session_id, accepting=bool(body["accepting_jobs"]))
            return self._send(204)
        if method == "DELETE" and route.get("close"):
            self.app.jobs.update_session(session_id, closed=time.time())
            for job in self.app.jobs.list(instance=instance["crn"], session_id=session_id, pending=True)[0]:
                self.app.user_cancel(job["id"], "Session was cancelled")  # the user's doing: charged so
            return self._send(204)
        self._error(405, "method not allowed")

    # ---------------------------------------------------------------- admin

    def _admin_script(self, method: str, body: Any, query: dict[str, list[str]]) -> None:
        """``POST {"kind", "actions"}`` sets a kind's script; ``DELETE`` (``?kind=``: one kind)
        clears; ``GET`` (``?kind=``) returns what is left."""
        scripts = self.app.scripts
        kind = (query.get("kind") or [None])[0]
        if method == "POST":
            if not isinstance(body, dict):
                return self._error(400, "script body must be {'kind': ..., 'actions': [...]}")
            try:
                left = scripts.set(str(body.get("kind")), body.get("actions"))
            except ValueError as exc:
                return self._error(400, str(exc))
            return self._json(200, {"kind": body["kind"], "actions": left})
        if method == "DELETE":
            scripts.clear(kind)
            return self._json(200, scripts.snapshot())
        if method == "GET":
            return self._json(200, {"kind": kind, "actions": scripts.left(kind)} if kind else scripts.snapshot())
        return self._error(405, "method not allowed")

    def _admin_faults(self, method: str, body: dict[str, Any]) -> None:
        app = self.app
        if method == "DELETE":
            app.faults.reset()
        elif method == "POST":
            try:
                expire = bool(body.pop("expire_tokens", False))
                app.faults.update(body)
            except ValueError as exc:
                return self._error(400, str(exc))
            if expire:
                app.expire_tokens()
        return self._json(200, app.faults.snapshot())

    def _admin_settings(self, method: str, body: dict[str, Any]) -> None:
        app = self.app
        if method == "POST":
            unknown = set(body) - set(app.settings)
            if unknown:
                return self._error(400, f"unknown setting(s) {sorted(unknown)}; known: {sorted(app.settings)}")
            try:
                values = {k: float(v) if k != "max_page_size" else int(v) for k, v in body.items()}
            except (TypeError, ValueError):
                return self._error(400, "settings must be numbers")
            if any(v < 0 for v in values.values()):
                return self._error(400, "settings must be >= 0")
            app.settings.update(values)
        return self._json(200, app.settings)

    def _admin_job_action(self, job_id: str, action: str, body: dict[str, Any]) -> None:
        """End a job as the service would (cancel, fail) or make it due now (complete)."""
        app = self.app
        job = app.jobs.get(job_id)
        if job is None:
            return self._error(404, f"no job {job_id}")
        if action == "complete":
            # Due now: the worker runs it on its next pass (simulation needs qiskit, which
            # lives in the worker), so it ends as it would have: Completed with a result,
            # or what a fault or max_execution_time decides.
            if not app.jobs.release(job["id"]):
                return self._error(409, f"job {job['id']} is already final")
            if app.worker is not None:
                app.worker.notify()
            return self._json(200, job_json(app.jobs.get(job["id"])))
        if action == "cancel":  # by the service: free
            ok = app.jobs.finish(job["id"], "Cancelled", now=time.time(), usage_seconds=0.0,
                                 reason=body.get("reason", "Job was cancelled by the service"),
                                 reason_code=body.get("reason_code"))
        else:
            ok = app.jobs.finish(job["id"], "Failed", now=time.time(), usage_seconds=0.0,
                                 reason=body.get("reason", "Internal error (emulated)"),
                                 reason_code=int(body.get("reason_code", 1500)))
        if not ok:
            return self._error(409, f"job {job['id']} is already final")
        return self._json(200, job_json(app.jobs.get(job["id"])))

    def _admin(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        app = self.app
        try:
            body = self._json_body() if method in ("POST", "PUT", "PATCH") else {}
        except ValueError:
            return self._error(400, "admin body must be JSON")
        if path in ("", "/", "/health"):
            return self._json(200, {"ok": True, "pid": os.getpid(), "url_path": API_PREFIX,
                                    "worker_alive": bool(app.worker and app.worker.alive()),
                                    "worker_restarts": app.worker.restarts if app.worker else 0,
                                    "started": app.started, "strict": app.strict})
        if path == "/faults" and method in ("GET", "DELETE", "POST"):
            return self._admin_faults(method, body)
        if path == "/settings":
            return self._admin_settings(method, body)
        if path == "/requests":
            if method == "DELETE":
                app.log.clear()
                return self._json(200, {"ok": True})
            return self._json(200, app.log.all())
        if path == "/instances":
            if method == "POST":
                try:
                    return self._json(200, app.define_instances(body.get("instances") if isinstance(body, dict)
                                                                else body))
                except ValueError as exc:
                    return self._error(400, str(exc))
            return self._json(200, app.instances.public())
        if path == "/usage":
            return self._json(200, [app.usage(i) for i in app.instances.all()])
        if path == "/script":
            return self._admin_script(method, body, query)
        if path == "/jobs" and method == "GET":
            jobs, _ = app.jobs.list(instance=None, descending=False)
            # The API record of the server's mode, plus what only the emulator knows (the charge
            # as soon as the job ends, whatever the billing status says).
            return self._json(200, [self._job_record(j) | {
                "instance": j["instance"], "planned": j["planned"], "usage_seconds": j["usage_seconds"],
                "finished": iso(j.get("finished"))} for j in jobs])
        m = re.fullmatch(r"/jobs/(?P<id>[^/]+)/(?P<action>cancel|fail|complete)", path)
        if m and method == "POST":
            return self._admin_job_action(m["id"], m["action"], body)
        self._error(404, f"no admin endpoint {method} {path}")


def classify(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """Endpoint kind (used by faults and the request log) and route parameters."""
    if path in (IAM_PREFIX + "/identity/token", "/identity/token"):
        return "iam", {}
    if path == SEARCH_PREFIX + "/v3/resources/search":
        return "search", {}
    if path.startswith(CATALOG_PREFIX + "/"):
        return "catalog", {"id": path[len(CATALOG_PREFIX) + 1:]}
    m = _RUNTIME_RE.match(path)
    if not m:
        return "other", {}
    rest = (m["rest"] or "/").rstrip("/") or "/"
    route: dict[str, Any] = {"api": rest}
    parts = rest.strip("/").split("/")
    if parts == ["backends"] and method == "GET":
        return "backends", route
    if len(parts) == 3 and parts[0] == "backends" and method == "GET":
        route["backend"] = parts[1]
        kind = {"configuration": "configuration", "properties": "properties", "status": "backend_status"}.get(parts[2])
        return kind or "other", route
    if parts == ["instances", "usage"] and method == "GET":
        return "usage", route
    if parts == ["jobs"]:
        return {"POST": "submit", "GET": "list"}.get(method, "other"), route
    if len(parts) >= 2 and parts[0] == "jobs":
        route["job_id"] = parts[1]
        if len(parts) == 2:
            return {"GET": "status", "DELETE": "delete"}.get(method, "other"), route
        if len(parts) == 3:
            kind = {("GET", "results"): "results", ("GET", "metrics"): "metrics", ("GET", "logs"): "logs",
                    ("POST", "cancel"): "cancel", ("PUT", "tags"): "tags"}.get((method, parts[2]))
            return kind or "other", route
    if parts[0] == "sessions" and len(parts) <= 3:
        if len(parts) >= 2:
            route["session_id"] = parts[1]
        if len(parts) == 3:
            if parts[2] != "close":
                return "other", route
            route["close"] = True
        return "sessions", route
    return "other", route


def _redact_query(query: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: (["***"] if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in query.items()}


def strict_job_json(job: dict[str, Any], *, now: float, billing_delay: float) -> dict[str, Any]:
    """A job as the documented GET /jobs/{id} (and each listing entry) presents it.

    No ``end_time``: the completion time is only ``timestamps.finished`` of /metrics. The
    charge shows once billing is complete (``billing_delay`` s after the job ended).
    """
    return {
        "id": job["id"],
        "backend": job["backend"],
        "state": {"status": job["status"], "reason": job.get("reason"), "reason_code": job.get("reason_code")},
        "status": job["status"],
        "program": {"id": job["program_id"]},
        "created": iso(job["created"]),
        "tags": job["tags"],
        "session_id": job.get("session_id"),
        "private": job.get("private", False),
        "cost": job.get("cost"),
        "usage": contract.billing(job, now=now, delay=billing_delay),
        "estimated_running_time_seconds": job.get("estimated_seconds"),
    }


def strict_metrics_json(job: dict[str, Any], jobs: JobStore, *, now: float, billing_delay: float) -> dict[str, Any]:
    """GET /jobs/{id}/metrics: timestamps, the billing-aware usage and the circuit summary."""
    return _metrics(job, jobs, contract.billing(job, now=now, delay=billing_delay))


def _metrics(job: dict[str, Any], jobs: JobStore, usage: dict[str, Any]) -> dict[str, Any]:
    info = job.get("info") or {}
    out: dict[str, Any] = {
        "timestamps": {"created": iso(job["created"]), "running": iso(job.get("running")),
                       "finished": iso(job.get("finished"))},
        "usage": usage,
        "executions": info.get("executions", 0) if job["status"] == "Completed" else 0,
        "num_circuits": info.get("num_circuits"),
        "num_qubits": info.get("num_qubits"),
        "circuit_depths": info.get("circuit_depths"),
        "qiskit_version": info.get("qiskit_version"),
        "estimated_running_time_seconds": job.get("estimated_seconds"),
        "caller": "qiskit_ibm_runtime",
    }
    if job["status"] == "Queued":
        pos = jobs.queue_position(job)
        out["position_in_queue"] = pos
        out["position_in_provider"] = pos
    return out


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the lenient GET /jobs/{id} (and the listing) presents it (the older shape)."""
    state: dict[str, Any] = {"status": job["status"]}
    if job.get("reason"):
        state["reason"] = job["reason"]
    if job.get("reason_code") is not None:
        state["reason_code"] = job["reason_code"]
    usage = job.get("usage_seconds")
    out = {
        "id": job["id"],
        "backend": job["backend"],
        "state": state,
        "status": job["status"],
        "program": {"id": job["program_id"]},
        "created": iso(job["created"]),
        "end_time": iso(job.get("finished")),
        "tags": job["tags"],
        "session_id": job.get("session_id"),
        "private": job.get("private", False),
        "cost": job.get("cost"),
        "runtime": "",
        "user_id": f"IBMid-emulator-{(job.get('account') or '')[:12]}",
        "estimated_running_time_seconds": job.get("estimated_seconds"),
    }
    if usage is not None:
        out["usage"] = {"quantum_seconds": usage, "seconds": usage}
    return out


def metrics_json(job: dict[str, Any], jobs: JobStore) -> dict[str, Any]:
    """The lenient (older) GET /jobs/{id}/metrics."""
    final = job["status"] in FINAL_STATES
    usage = (job.get("usage_seconds") if final else None) or 0
    out = _metrics(job, jobs, {"quantum_seconds": usage, "seconds": usage, "qpu_charge_time_seconds": usage,
                               "status": "completed" if final else "pending"})
    out["bss"] = {"seconds": usage}
    return out


# --------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------


def make_server(config: EmulatorConfig) -> tuple[ThreadingHTTPServer, App]:
    app = App(config)
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((config.host, config.port), handler)
    server.daemon_threads = True
    return server, app


class _ModeDefault:
    """Marks an option whose default depends on ``strict`` (None already means "off")."""

    def __repr__(self) -> str:
        return "<mode default>"


MODE_DEFAULT: Any = _ModeDefault()


def serve(host: str = "127.0.0.1", port: int = 8765, *, store: Path, strict: bool = True, queue_seconds: float = 0,
          run_seconds: float = 0, usage_limit_seconds: float | None = 600, usage_window_days: float = 28,
          submit_rate_per_minute: float | None = MODE_DEFAULT, rate_window_seconds: float = 60.0,
          billing_delay_seconds: float = MODE_DEFAULT, token_ttl_seconds: int = 3600,
          backends: Any = None, instances: list[dict[str, Any]] | None = None, noise_scale: float = 1.0,
          idle_noise: bool = True, seed: int | None = None, enforce_max_execution_time: bool = True,
          poll_seconds: float = 0.05, max_page_size: int = MAX_PAGE, ready_file: Path | None = None,
          exit_with_parent: bool = False, worker: bool = True) -> None:
    """Run the emulator in the foreground until SIGTERM/SIGINT (blocking).

    Args:
        host, port: where to listen (port 0 picks a free port; see ``ready_file``).
        store: directory of the persistent state (jobs, results, instances, key, logs).
        strict: enforce the documented contract of the runtime API (default; see the package
            docstring). False: the older lenient behaviour.
        queue_seconds, run_seconds: how long each job stays Queued, then Running.
        usage_limit_seconds: default usage limit of instances (None: unlimited).
        usage_window_days: usage is summed over jobs finished in this rolling window.
        submit_rate_per_minute: jobs created per user (strict; per instance when lenient) in
            any rolling ``rate_window_seconds`` before 429 + Retry-After. Default: 5 strict,
            None (off) lenient.
        rate_window_seconds: the rolling window of the rate limit (60; small in tests).
        billing_delay_seconds: a final job's billing stays "pending" (charge 0) this long.
            Default: 2.0 strict, 0 lenient.
        token_ttl_seconds: lifetime of the access tokens IAM hands out.
        backends: served backend names (``["ibm_fez"]``) or ``{"ibm_fez": "fake_fez"}``.
        instances: instance specs (see :meth:`EmulatorHandle.instances`); replaces the stored ones.
        noise_scale, idle_noise, seed: passed to :func:`qpuflow.simulate.sample_isa`
            (seed None: derived from the job id, so results are reproducible per job).
        enforce_max_execution_time: a job whose usage exceeds its ``max_execution_time``
            (``cost``) ends Cancelled with reason code 1305, as on the service.
        max_page_size: most jobs one GET /jobs page returns (an extra cap below the contract's
            200; small values exercise the client's paging).
        ready_file: written (JSON ``{"port", "pid", "url"}``) once the socket listens.
        exit_with_parent: stop when the parent process exits (for handles in tests).
        worker: start the worker process (False: jobs stay Queued; for tests of the HTTP side).
    """
    defaults = contract.mode_defaults(bool(strict))
    if submit_rate_per_minute is MODE_DEFAULT:
        submit_rate_per_minute = defaults["submit_rate_per_minute"]
    if billing_delay_seconds is MODE_DEFAULT:
        billing_delay_seconds = defaults["billing_delay_seconds"]
    if float(billing_delay_seconds) < 0 or float(rate_window_seconds) <= 0:
        raise ValueError("billing_delay_seconds must be >= 0 and rate_window_seconds > 0")
    config = EmulatorConfig(
        store=Path(store), host=host, port=int(port), queue_seconds=float(queue_seconds),
        run_seconds=float(run_seconds), usage_limit_seconds=usage_limit_seconds,
        usage_window_days=float(usage_window_days), submit_rate_per_minute=submit_rate_per_minute,
        token_ttl_seconds=int(token_ttl_seconds), backends=backend_map(backends), noise_scale=float(noise_scale),
        idle_noise=bool(idle_noise), seed=seed, enforce_max_execution_time=bool(enforce_max_execution_time),
        poll_seconds=float(poll_seconds), worker=bool(worker), max_page_size=int(max_page_size),
        strict=bool(strict), billing_delay_seconds=float(billing_delay_seconds),
        rate_window_seconds=float(rate_window_seconds))
    server, app = make_server(config)
    if instances:
        app.define_instances(instances)
    if config.worker:
        app.worker = WorkerSupervisor(app)
        app.worker.start()
    stopping = threading.Event()

    def stop(*_: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if exit_with_parent:
        parent = os.getppid()

        def watch() -> None:
            while not stopping.wait(0.5):
                if os.getppid() != parent:
                    stop()

        threading.Thread(target=watch, daemon=True).start()
    bound_port = server.server_address[1]
    if ready_file is not None:
        write_text_atomic(Path(ready_file), json.dumps(
            {"port": bound_port, "pid": os.getpid(), "url": f"http://{host}:{bound_port}"}))
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        if app.worker is not None:
            app.worker.stop()
        app.jobs.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local emulator of the IBM Quantum Platform REST API")
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--options", default="{}", help="JSON object of further serve() keyword arguments")
    parser.add_argument("--lenient", action="store_true",
                        help="accept more than the documented API contract (the older behaviour; default: strict)")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args(argv)
    options = json.loads(args.options)
    if args.lenient:
        options["strict"] = False
    serve(args.host, args.port, store=args.store, ready_file=args.ready_file,
          exit_with_parent=args.exit_with_parent, **options)


if __name__ == "__main__":
    main()
