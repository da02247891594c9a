"""Named fault points, so tests can kill a process at the exact moment that matters.

Set ``QPUFLOW_FAULT=<point>:kill`` to SIGKILL the process when it reaches ``<point>``,
``<point>:pause`` to write ``$QPUFLOW_FAULT_FILE`` and sleep (up to 10 minutes) so a test can
kill it from outside, or ``<point>:raise`` to raise :class:`SimulatedCrash` (in-process tests:
what is on disk then is what a killed process leaves; nothing catches it on the way out).
Unset, a fault point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

POINTS = ("after_provider_accept", "before_marker_write")


class SimulatedCrash(BaseException):
    """The process 'dies' at a fault point (a BaseException: no ``except Exception`` stops it)."""


def fault_point(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    setting = os.environ.get("QPUFLOW_FAULT", "")
    point, _, action = setting.partition(":")
    if point != name:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise SimulatedCrash(name)
    elif action == "pause":
        flag = os.environ.get("QPUFLOW_FAULT_FILE")
        if flag:
            Path(flag).write_text(str(os.getpid()))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.1)
