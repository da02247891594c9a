"""Scripted fault sequences: one action per request of an endpoint kind, in order.

The fault counters (``errors``, ``drops``, ``delays``) say "the next N requests"; a script
says exactly what each of the next requests gets, which is what a test of a retry or a
duplicate-job scenario needs (e.g. ``["error:503:create", "error:503:create", "ok"]`` is the
client's own retry loop leaving two orphans, upstream qiskit-ibm-runtime #1114).

Grammar of an action (see the package docstring):

    ok                      handle normally
    error:<status>          answer that status (ErrorContainer body), create nothing
    error:<status>:create   submit only: create the job, then answer the error
    drop | drop:create      close the connection without an answer (after creating the job)
    delay:<seconds>         sleep, then handle normally (a submit creates its job after the sleep)
    delay:<seconds>:create  submit only: create the job at once, sleep, then answer
    429                     error:429 with ``Retry-After: 1``
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Iterable

CREATE_KINDS = ("submit",)  # only a submission creates something to act after


@dataclasses.dataclass(frozen=True)
class ScriptAction:
    text: str  # as the test wrote it; logged as the request's ``fault``
    verb: str  # ok | error | drop | delay
    status: int | None = None
    seconds: float = 0.0
    create: bool = False  # act after the job was created
    retry_after: int | None = None


def parse_action(text: str, kind: str) -> ScriptAction:
    """One action of the grammar, or ValueError saying what is wrong with it."""
    if not isinstance(text, str):
        raise ValueError(f"script action must be a string, got {text!r}")
    parts = text.strip().split(":")
    create = len(parts) > 1 and parts[-1] == "create"
    if create:
        parts = parts[:-1]
        if kind not in CREATE_KINDS:
            raise ValueError(f"{text!r}: ':create' applies only to {list(CREATE_KINDS)}, not {kind!r}")
    verb, args = parts[0], parts[1:]
    if verb == "ok" and not args and not create:
        return ScriptAction(text, "ok")
    if verb == "429" and not args and not create:
        return ScriptAction(text, "error", status=429, retry_after=1)
    if verb == "drop" and not args:
        return ScriptAction(text, "drop", create=create)
    if verb == "error" and len(args) == 1:
        status = _number(text, args[0], int)
        if not 400 <= status <= 599:
            raise ValueError(f"{text!r}: the status must be 400..599")
        return ScriptAction(text, "error", status=status, create=create)
    if verb == "delay" and len(args) == 1:
        seconds = _number(text, args[0], float)
        if not 0 <= seconds <= 600:
            raise ValueError(f"{text!r}: the delay must be 0..600 s")
        return ScriptAction(text, "delay", seconds=seconds, create=create)
    raise ValueError(f"unknown script action {text!r}; use ok, error:<status>[:create], drop[:create], "
                     "delay:<seconds>[:create] or 429")


def _number(text: str, value: str, kind: type) -> int | float:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} is not a number") from None


class Scripts:
    """The pending actions per endpoint kind (thread-safe; lives in the server process)."""

    def __init__(self, kinds: Iterable[str]):
        self._kinds = tuple(kinds)
        self._lock = threading.Lock()
        self._left: dict[str, list[ScriptAction]] = {}

    def set(self, kind: str, actions: list[str]) -> list[str]:
        if kind not in self._kinds:
            raise ValueError(f"unknown endpoint kind {kind!r}; known: {list(self._kinds)}")
        if not isinstance(actions, list):
            raise ValueError("'actions' must be a list of strings")
        parsed = [parse_action(a, kind) for a in actions]  # all or nothing
        with self._lock:
            self._left[kind] = parsed
        return self.left(kind)

    def take(self, kind: str) -> ScriptAction | None:
        with self._lock:
            queue = self._left.get(kind)
            return queue.pop(0) if queue else None

    def left(self, kind: str) -> list[str]:
        with self._lock:
            return [a.text for a in self._left.get(kind, [])]

    def snapshot(self) -> dict[str, list[str]]:
        with self._lock:
            return {k: [a.text for a in v] for k, v in self._left.items() if v}

    def clear(self, kind: str | None = None) -> None:
        with self._lock:
            if kind is None:
                self._left.clear()
            else:
                self._left.pop(kind, None)
