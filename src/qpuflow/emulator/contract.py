"""The documented contract of the runtime jobs API, as pure functions the server applies.

IBM's published OpenAPI description of ``/v1/jobs`` (spec 0.45.3; see
``IBM_API_NOTES.md``, "The documented contract") limits what the service accepts. The
client (qiskit-ibm-runtime 0.51) checks almost none of it, so an emulator that accepted more
would let bugs through to hardware day. Strict mode (the default) applies every rule here;
lenient mode keeps the emulator's older, more forgiving behaviour.

Standard library only: the server process imports this module and must start fast.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

MAX_TAGS = 8
MAX_TAG_LENGTH = 86
MAX_COST_SECONDS = 10800  # the service caps max_execution_time (``cost``) here
LIST_LIMIT_DEFAULT = 200
LIST_LIMIT_MAX = 200
EXECUTOR_SCHEMA = "v2.0"
EXECUTOR_PARAM_KEYS = frozenset({"schema_version", "quantum_program", "options"})
EXECUTOR_ITEM_TYPES = ("circuit", "samplex")

# Options whose default depends on the mode (what ``serve()`` uses when a caller gives none).
STRICT_DEFAULTS: dict[str, Any] = {"submit_rate_per_minute": 5, "billing_delay_seconds": 2.0}
LENIENT_DEFAULTS: dict[str, Any] = {"submit_rate_per_minute": None, "billing_delay_seconds": 0.0}

# ``more_info`` of the ErrorContainer: the service points at its error-code reference.
MORE_INFO = "https://quantum.cloud.ibm.com/docs/errors"

USAGE_EXCEEDED = "Usage exceeds instance limit"


class ContractError(ValueError):
    """A request the contract refuses; the server answers ``status`` with this code and message."""

    def __init__(self, message: str, *, status: int = 400, code: int = 1400):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def mode_defaults(strict: bool) -> dict[str, Any]:
    return dict(STRICT_DEFAULTS if strict else LENIENT_DEFAULTS)


def _is_int(value: Any) -> bool:
    # JSON true/false decode to bool, which is an int subclass; the contract means integers.
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------
# request bodies
# --------------------------------------------------------------------------------------


def check_tags(tags: Any, *, strict: bool) -> list[str]:
    """The ``Tags`` schema: a list of strings; strict adds at most 8, each at most 86 chars."""
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ContractError("'tags' must be an array of strings")
    if strict and len(tags) > MAX_TAGS:
        raise ContractError(f"'tags' may hold at most {MAX_TAGS} tags, got {len(tags)}")
    if strict:
        long = [t for t in tags if len(t) > MAX_TAG_LENGTH]
        if long:
            raise ContractError(f"a tag may be at most {MAX_TAG_LENGTH} characters; "
                                f"{len(long)} tag(s) are longer (the first has {len(long[0])})")
    return list(tags)


def check_cost(cost: Any, *, strict: bool) -> int | None:
    """``cost`` (max_execution_time, seconds): strict takes integers >= 0 and caps them at
    10800 (the service caps, it does not refuse); lenient takes positive integers as given."""
    if cost is None:
        return None
    if strict:
        if not _is_int(cost) or cost < 0:
            raise ContractError("'cost' (max_execution_time) must be an integer number of seconds >= 0")
        return min(int(cost), MAX_COST_SECONDS)
    if not _is_int(cost) or cost <= 0:
        raise ContractError("'cost' (max_execution_time) must be a positive integer")
    return int(cost)


def check_executor_params(params: dict[str, Any]) -> None:
    """Shape of an ``executor`` job's params, checked without qiskit or pydantic.

    Only what can be read off the JSON cheaply: the three top-level keys, schema v2.0, one
    positive integer ``shots`` for the whole quantum program and no item carrying its own shot
    count. The circuits themselves are decoded (and an undecodable payload failed with code
    1517) by the worker.
    """
    keys = set(params)
    if keys != EXECUTOR_PARAM_KEYS:
        missing, extra = sorted(EXECUTOR_PARAM_KEYS - keys), sorted(keys - EXECUTOR_PARAM_KEYS)
        raise ContractError(f"executor params must be exactly {sorted(EXECUTOR_PARAM_KEYS)} "
                            f"(missing {missing}, unexpected {extra})")
    if params["schema_version"] != EXECUTOR_SCHEMA:
        raise ContractError(f"executor schema_version {params['schema_version']!r} is not supported "
                            f"(only {EXECUTOR_SCHEMA!r})")
    if not isinstance(params["options"], dict):
        raise ContractError("executor 'options' must be an object")
    program = params["quantum_program"]
    if not isinstance(program, dict):
        raise ContractError("executor 'quantum_program' must be an object")
    shots = program.get("shots")
    if not _is_int(shots) or shots < 1:
        raise ContractError("a quantum program needs one integer 'shots' >= 1 for all its items")
    items = program.get("items")
    if not isinstance(items, list) or not items:
        raise ContractError("a quantum program needs a non-empty 'items' array")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get("item_type", "circuit") not in EXECUTOR_ITEM_TYPES:
            raise ContractError(f"quantum program item {index} is not a circuit or samplex item")
        if "shots" in item:  # the schema has no per-item shots: one job, one shot count
            raise ContractError(f"quantum program item {index} has its own 'shots'; a quantum program has "
                                "one shots value for all its items (submit mixed shot counts as separate jobs)")


# --------------------------------------------------------------------------------------
# the listing's query
# --------------------------------------------------------------------------------------


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def listing_limit(text: str | None) -> int:
    """``limit`` 1..200; anything else (out of range, not an integer) silently means 200."""
    value = _int_or_none(text)
    return value if value is not None and 1 <= value <= LIST_LIMIT_MAX else LIST_LIMIT_DEFAULT


def listing_offset(text: str | None) -> int:
    """``offset`` >= 0; anything else silently means 0."""
    value = _int_or_none(text)
    return value if value is not None and value >= 0 else 0


def listing_descending(text: str | None) -> bool:
    """``sort`` is ``ASC`` or ``DESC`` (by creation time); anything else is the default, DESC."""
    return text != "ASC"


def listing_pending(text: str | None) -> bool | None:
    """``pending=true``: Queued and Running; ``false``: the final states; else no filter."""
    if text is None:
        return None
    return {"true": True, "false": False}.get(text.lower())


# --------------------------------------------------------------------------------------
# answers
# --------------------------------------------------------------------------------------


def error_container(message: str, code: int | str) -> dict[str, Any]:
    """The documented error body: ``{"errors": [{code, message, more_info}], "trace": id}``."""
    return {"errors": [{"code": code, "message": message, "more_info": MORE_INFO}],
            "trace": secrets.token_hex(16)}


def billing(job: dict[str, Any], *, now: float, delay: float) -> dict[str, Any]:
    """The billing part of a job record: pending (0) until ``delay`` s after the job ended."""
    finished = job.get("finished")
    if finished is None or job.get("status") not in ("Completed", "Failed", "Cancelled") or now < finished + delay:
        return {"qpu_charge_time_seconds": 0, "status": "pending"}
    charge = job.get("usage_seconds") or 0
    return {"qpu_charge_time_seconds": charge, "status": "complete"}


def user_cancel_charge(job: dict[str, Any], *, now: float) -> float:
    """What a user's cancel costs: nothing while Queued; while Running, the whole seconds it has
    run so far, at most the job's own estimate and at most its ``cost`` (max_execution_time)."""
    if job.get("status") != "Running" or job.get("running") is None:
        return 0.0
    charge = float(math.ceil(max(0.0, now - job["running"])))
    info = job.get("info") or {}
    ceiling = info.get("usage_seconds")
    if ceiling is None and job.get("estimated_seconds") is not None:
        ceiling = math.ceil(job["estimated_seconds"])
    for cap in (ceiling, job.get("cost") or None):
        if cap is not None:
            charge = min(charge, float(cap))
    return charge
