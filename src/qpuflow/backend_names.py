"""Names of the backends the local simulator knows, parsed without importing qiskit.

Ground floor (no qpuflow imports): the config's checks and the device layer both read them.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path


# Synthetic backends of the local simulator: a square grid or a line of qubits with the
# same error p on every operation (see qpuflow.backends.load_backend). The digits are the
# decimals of p, so uniform_grid_p001 has p = 0.001 and uniform_grid_p0 is noiseless.
_SYNTHETIC_BACKEND = re.compile(r"uniform_(grid|line)_p([0-9]+)")
SYNTHETIC_MAX_ERROR = 0.5


def synthetic_backend_spec(name: str) -> tuple[str, float] | None:
    """``(topology, p)`` of a synthetic uniform-noise backend name, ``None`` for other names.

    >>> synthetic_backend_spec("uniform_grid_p001")
    ('grid', 0.001)
    >>> synthetic_backend_spec("fake_fez") is None
    True

    Raises:
        ValueError: the name has the synthetic form but ``p`` is above
            :data:`SYNTHETIC_MAX_ERROR` (a readout that is wrong more often than right).
    """
    match = _SYNTHETIC_BACKEND.fullmatch(str(name))
    if match is None:
        return None
    p = float("0." + match.group(2))
    if p > SYNTHETIC_MAX_ERROR:
        raise ValueError(
            f"synthetic backend {name!r} has p = {p}, above {SYNTHETIC_MAX_ERROR}; the digits "
            "after 'p' are the decimals of the error probability (uniform_grid_p001 is p = 0.001)"
        )
    return match.group(1), p


def median_backend_base(name: str) -> str | None:
    """The fake backend a ``<fake backend>_median`` name is built from, else None.

    ``fake_fez_median`` is FakeFez's heavy-hex coupling map with every qubit and coupler at
    the device's median calibration and no dead coupler (see
    :func:`qpuflow.backends.median_backend`).

    >>> median_backend_base("fake_fez_median"), median_backend_base("fake_fez")
    ('fake_fez', None)
    """
    base = str(name).removesuffix("_median")
    return base if base != name and base in fake_backend_names() else None


def is_synthetic_backend(name: str) -> bool:
    """True for a valid synthetic backend name: uniform noise (``uniform_grid_p001`` etc.) or a
    median-calibration copy of a fake device (``fake_fez_median``)."""
    try:
        return synthetic_backend_spec(name) is not None or median_backend_base(name) is not None
    except ValueError:
        return False


def fake_backend_names() -> list[str]:
    """Names of the fake backends shipped with qiskit-ibm-runtime, found without importing it.

    Importing ``qiskit_ibm_runtime`` costs about 2 s, too much for every Snakemake parse, so
    the names are read from the package's data folders (``fake_provider/backends/<name>/``).
    """
    spec = importlib.util.find_spec("qiskit_ibm_runtime")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(list(spec.submodule_search_locations)[0]) / "fake_provider" / "backends"
    return sorted(
        f"fake_{d.name}" for d in root.iterdir() if d.is_dir() and any(d.glob("conf_*.json"))
    )
