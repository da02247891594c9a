"""The errors a user can act on, and how every entry point shows them.

Every error qpuflow raises on purpose derives from :class:`QpuflowError`; its message names
the file, field, run or job and says what to do next. Entry points (the Snakemake rules, the
CLI, the seed scripts) print it as one paragraph without a traceback. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import errno


class QpuflowError(Exception):
    """An error whose message is meant for the user (no traceback needed)."""


class Refusal(QpuflowError):
    """qpuflow will not do what was asked, on purpose (the message says why and the way out)."""


class Interrupted(QpuflowError):
    """A stop was requested (Ctrl-C, SIGTERM); what was sent before it is recorded."""


def describe_os_error(exc: OSError) -> str:
    """One paragraph for a file-system failure: what could not be done where, and what to do.

    >>> print(describe_os_error(PermissionError(13, "Permission denied", "results/x.json")))
    cannot write results/x.json: permission denied. Make the folder writable (or run from a copy of the study you own) and run the same command again; nothing half-written was left behind.
    """
    where = exc.filename or "a file"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "permission denied" if exc.errno != errno.EROFS else "the file system is read-only"
        return (f"cannot write {where}: {what}. Make the folder writable (or run from a copy of the study you "
                f"own) and run the same command again; nothing half-written was left behind.")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"cannot write {where}: the disk is full. Free some space and run the same command again; "
                f"files are written whole or not at all, so nothing half-written was left behind.")
    return f"{where}: {exc.strerror or exc}"
