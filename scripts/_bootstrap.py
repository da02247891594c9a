"""Make the seed scripts run as the README writes them, with or without the venv active.

`python scripts/submit_async.py ...` with a Python that lacks qpuflow (the system one) re-runs
the same command with the project's `.venv/bin/python` if it exists, and otherwise says how to
set it up, instead of failing with ModuleNotFoundError.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def ensure_qpuflow() -> None:
    try:
        import qpuflow  # noqa: F401
    except ImportError:
        venv = Path(__file__).resolve().parents[1] / ".venv"
        venv_python = venv / "bin" / "python"
        # Compare environments, not executables: the venv's python is a symlink to the base one.
        if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
        sys.exit(f"{Path(sys.argv[0]).name}: qpuflow is not installed for {sys.executable}. Run `make setup` in "
                 f"the repository, then `.venv/bin/python {sys.argv[0]} ...`.")


def quiet_logging() -> None:
    """qpuflow's own lines at INFO; the libraries' (qiskit's pass timings, the client's account
    notices, urllib3's retries) only from WARNING, and without their noisy INFO chatter."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("qpuflow").setLevel(logging.INFO)
    for noisy in ("qiskit", "qiskit_ibm_runtime", "urllib3", "stevedore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
