"""Where a job came from: code version, package versions, time."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

_PACKAGES = ("qpuflow", "qiskit", "qiskit-ibm-runtime", "qiskit-aer", "stim", "pymatching", "snakemake", "numpy")


def clock() -> datetime:
    """The current time in UTC, or ``QPUFLOW_NOW`` (ISO-8601) if set.

    ``QPUFLOW_NOW`` is for rehearsing a weeks-long campaign in minutes on the local backend:
    the schedule, the session start times recorded in markers and the ledger, and the budget
    windows then all follow the same pretend clock. Never set it for real hardware runs.
    """
    override = os.environ.get("QPUFLOW_NOW")
    if override:
        try:
            # Any offset is accepted and turned into UTC: every time qpuflow records is UTC.
            return parse_time(override).astimezone(timezone.utc)
        except ValueError:
            from qpuflow.errors import QpuflowError

            raise QpuflowError(
                f"QPUFLOW_NOW={override!r} is not an ISO-8601 time; write it like 2026-12-01T16:00:00Z "
                f"(or unset it: it is only for rehearsals on the local backend)."
            ) from None
    return datetime.now(timezone.utc)


def utc_now() -> str:
    """Current time (see :func:`clock`) as ISO-8601 with an explicit UTC offset."""
    return clock().isoformat()


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; naive ones (the seed's) are taken as UTC."""
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


@functools.lru_cache(maxsize=None)
def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@functools.lru_cache(maxsize=None)
def git_state(directory: str = ".") -> tuple[str, bool]:
    """(commit, dirty) of the repository holding ``directory``; ("unknown", True) outside git.

    Only tracked files count as dirty: results and caches are untracked by design.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory, capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return commit, bool(status.strip())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
