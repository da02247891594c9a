"""Stop means stop: Ctrl-C or SIGTERM ends submission before the next provider call.

Snakemake runs qpuflow's rule bodies in worker threads (``force-use-threads``), and a signal
reaches only the main thread: Snakemake then waits for the running rule jobs to finish, so a
batch of 50 runs would go on sending jobs after the user pressed Ctrl-C. The workflow installs
:func:`install` when it starts (``onstart``, after Snakemake set its own handlers): a signal
sets a flag and is passed on to the handler that was there before. Submission asks
:func:`raise_if_stopped` before every POST; the job in flight at the moment of the signal is
finished and recorded, nothing after it is sent.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from qpuflow.errors import Interrupted

_STOP = threading.Event()
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install() -> bool:
    """Chain a flag-setting handler in front of the current SIGINT/SIGTERM handlers (main
    thread only; False elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in _SIGNALS:
        previous = signal.getsignal(sig)
        if getattr(previous, "_qpuflow", False):
            continue
        signal.signal(sig, _chained(previous))
    return True


def _chained(previous: Any):
    def handler(signum: int, frame: Any) -> None:
        _STOP.set()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    handler._qpuflow = True  # type: ignore[attr-defined]
    return handler


def request_stop() -> None:
    """What a signal does (tests and callers with their own signal handling use this)."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def reset() -> None:
    """Forget an earlier stop (a long-lived process starting a new command)."""
    _STOP.clear()


def raise_if_stopped(what: str) -> None:
    """Raise :class:`Interrupted` if a stop was requested; ``what`` says what is not done."""
    if _STOP.is_set():
        raise Interrupted(f"stopped on request (Ctrl-C or SIGTERM) before {what}; everything sent before "
                          f"it is recorded. Run the same command again to go on.")
