"""Writing a file so that no reader ever sees it half-written (ground floor: no qpuflow imports)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success flush it to disk, move it
    over ``path`` and sync the folder, so ``path`` holds the old content or the whole new one.
    On any error (Ctrl-C included) the temporary file is removed and ``path`` is untouched.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a" / "b.txt"
    >>> with atomic_file(target) as fh:
    ...     _ = fh.write("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_figure(fig: Any, path: Path, *, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG through :func:`atomic_file` (a report never embeds half a
    picture)."""
    with atomic_file(Path(path), "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
