"""The durable records: markers (a submitted job) and results (a collected job).

Both are frozen dataclasses that validate on construction and round-trip through JSON with
a ``schema_version``. Files are written atomically (temp file, fsync, rename), so a reader
sees either the old file or the whole new one, never half of one.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import numpy as np

from qpuflow.errors import QpuflowError
from qpuflow.fileio import atomic_file

MARKER_SCHEMA_VERSION = 1
RESULT_SCHEMA_VERSION = 1
class ResultStatus(str, enum.Enum):
    """A result file's outcome. A ``str`` enum: it is written and compared as its word."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


RESULT_STATUSES = tuple(s.value for s in ResultStatus)


class CorruptRecordError(QpuflowError, ValueError):
    """A marker or result file that cannot be read; it is never silently overwritten."""


# ---------------------------------------------------------------------------- file I/O


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` so that the file is never seen half-written."""
    with atomic_file(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")


def read_or_report(reader: Any, path: Path, problems: list[str] | None) -> Any:
    """``reader(path)``, or None with the problem appended to ``problems`` if the record is
    corrupt (``problems`` None: raise). One bad record must not stop the others."""
    try:
        return reader(path)
    except CorruptRecordError as exc:
        if problems is None:
            raise
        problems.append(str(exc))
        return None


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, raising :class:`CorruptRecordError` naming ``path`` if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise CorruptRecordError(
            f"{path}: corrupt {what} file ({exc}). It was left as it is: move it away; a marker is then "
            f"restored from the ledger by `snakemake --cores 1 submit`, a result downloaded again by collect."
        ) from None
    if not isinstance(data, dict):
        raise CorruptRecordError(f"{path}: corrupt {what} file (not a JSON object).")
    return data


def _from_fields(cls: type, data: dict[str, Any], path: str | Path, what: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = required - set(data)
    if missing:
        raise CorruptRecordError(f"{path}: corrupt {what} file, missing field(s) {sorted(missing)}.")
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(f"{path}: corrupt {what} file: {exc}") from None


_R = TypeVar("_R", bound="JsonRecord")


class JsonRecord:
    """A record file between stages: a frozen dataclass written as JSON, read back field by field
    (a missing required field is a corrupt record naming the file; unknown fields are ignored)."""

    WHAT: ClassVar[str] = "record"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[_R], data: dict[str, Any], path: str | Path | None = None) -> _R:
        return _from_fields(cls, data, path if path is not None else f"<{cls.WHAT}>", cls.WHAT)

    @classmethod
    def read(cls: type[_R], path: Path) -> _R:
        return cls.from_json(read_json(path, cls.WHAT), path)


# ---------------------------------------------------------------------------- transpile record


@dataclasses.dataclass(frozen=True)
class TranspileRecord(JsonRecord):
    """What transpiling one run produced, beside its ISA file (``results/isa/<exp>/<run>.json``):
    the circuit's fingerprint and file hash, where it was laid out, its size and duration, its
    circuit-level distance and the calibration it was checked against. Files written before a
    field existed read with it unset."""

    run_key: str
    run_id: str
    backend: str
    circuit_hash: str
    isa_sha256: str
    physical_layout: list[int]
    transpiler_seed: int
    optimization_level: int
    depth: int
    num_gates: int
    gate_counts: dict[str, int]
    calibration_snapshot: str
    duration_seconds: float | None = None
    delays_seconds: dict[str, Any] | list[Any] | None = None
    chosen_chain: list[int] | None = None
    circuit_distance: dict[str, Any] | None = None  # qpuflow.distance.CircuitDistance.to_json()
    transpiled_time: str | None = None
    selection: dict[str, Any] | None = None  # the session's choice, for a deployment arm
    placement: dict[str, Any] | None = None  # the native patch's placement

    WHAT: ClassVar[str] = "transpile record"


# ---------------------------------------------------------------------------- session selection


@dataclasses.dataclass(frozen=True)
class ArmChoice:
    """One arm's chain in a session and where it came from (the reported calibration, or the
    probe job whose estimates chose it)."""

    chain: list[int]
    source: str
    probe_run: str | None = None
    probe_job_id: str | None = None
    probe_completion_time: str | None = None
    estimates: dict[str, dict[str, Any]] | None = None  # physical qubit -> the probe's estimates

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class SessionSelection(JsonRecord):
    """The chains a deployment session's arms run on, chosen once when the session is sent, and
    the order the arms are submitted in (``results/selection/<exp>/sessionNNN.json``)."""

    experiment: str
    session: int
    backend: str
    selected_time: str
    order: list[str]
    calibration_snapshot: str
    arms: dict[str, ArmChoice]
    properties_last_update: str | None = None

    WHAT: ClassVar[str] = "qubit selection"

    def __post_init__(self) -> None:
        arms = {name: a if isinstance(a, ArmChoice) else _from_fields(ArmChoice, a, f"arm {name}", "qubit selection")
                for name, a in self.arms.items()}
        object.__setattr__(self, "arms", arms)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "arms": {name: a.to_json() for name, a in self.arms.items()}}

    def for_arm(self, arm: str, path: Path) -> dict[str, Any]:
        """What an arm's transpile record and marker keep of how its qubits were chosen."""
        if arm not in self.arms:
            raise CorruptRecordError(f"{path}: no chain was selected for arm {arm!r} (arms: {sorted(self.arms)})")
        chosen = self.arms[arm]
        return {"arm": arm, "chain": [int(q) for q in chosen.chain], "source": chosen.source,
                "probe_job_id": chosen.probe_job_id, "order": self.order, "position": self.order.index(arm),
                "selected_time": self.selected_time, "selection_file": str(path)}


# ---------------------------------------------------------------------------- marker


@dataclasses.dataclass(frozen=True)
class Marker(JsonRecord):
    """A submitted job: its ID and the full provenance of what was submitted.

    The first twelve fields are the seed's; the rest make the job traceable to the qubits,
    code and calibration it ran with.
    """

    job_id: str
    experiment_type: str
    backend: str
    logical_state: str
    shots: int
    circuit_hash: str
    transpiled_depth: int
    transpiled_gates: int
    submission_time: str
    api_key_index: int
    git_commit: str
    status: str
    # provenance beyond the seed
    run_key: str
    run_id: str
    job_tag: str
    account: str
    provider: str
    tags: list[str]
    isa_path: str
    isa_sha256: str
    physical_layout: list[int]
    transpiler_seed: int
    optimization_level: int
    calibration_snapshot: str
    package_versions: dict[str, str]
    git_dirty: bool
    estimated_qpu_seconds: float
    max_execution_time: int
    spec: dict[str, Any]
    adopted: bool = False
    # Deployment arms: the chosen chain, where it came from (calibration or a probe job) and
    # the session's random submission order with this arm's position in it.
    selection: dict[str, Any] | None = None
    # Several runs in one job (provider.pubs_per_job): this run's PUB in the job, and the
    # batch: its name, tag and member run keys in PUB order. estimated_qpu_seconds is then
    # the whole job's estimate (budget accounting counts each job ID once).
    pub_index: int = 0
    batch: dict[str, Any] | None = None
    schema_version: int = MARKER_SCHEMA_VERSION
    # The transpiled circuit's circuit-level distance under the noise model (None: not a
    # memory experiment, or submitted before distances were checked).
    circuit_distance: int | None = None
    # Native layouts: where the patch was placed and the logical error predicted there
    # (qpuflow.placement.Placement.to_json); None for routed runs.
    placement: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.job_id:
            raise ValueError("a marker needs a job_id")
        if self.job_tag not in self.tags:
            raise ValueError(f"the job tag {self.job_tag!r} must be among the tags {self.tags}")
        runs = (self.batch or {}).get("runs") or [self.run_key]
        if not 0 <= self.pub_index < len(runs) or runs[self.pub_index] != self.run_key:
            raise ValueError(f"PUB {self.pub_index} of the job's runs {runs} is not {self.run_key}")
        if self.shots < 1:
            raise ValueError(f"shots must be positive, got {self.shots}")
        if not self.submission_time.endswith("+00:00"):
            raise ValueError(f"submission_time must be UTC ISO-8601, got {self.submission_time!r}")
        if self.schema_version != MARKER_SCHEMA_VERSION:
            raise ValueError(f"unsupported marker schema_version {self.schema_version}")

    WHAT: ClassVar[str] = "marker"


def write_marker(path: Path, marker: Marker) -> None:
    """Write a marker once. An existing marker is kept if identical and never replaced if not."""
    path = Path(path)
    if path.exists():
        existing = Marker.read(path)
        if existing == marker:
            return
        raise CorruptRecordError(
            f"{path}: a marker for job {existing.job_id} already exists and differs from the one "
            f"being written (job {marker.job_id}). Markers are never rewritten; check the ledger "
            f"({marker.run_key}) before moving either away."
        )
    write_json_atomic(path, marker.to_json())


# ---------------------------------------------------------------------------- result


def pack_bits(bits: np.ndarray) -> dict[str, Any]:
    """Encode a (shots, num_bits) bool array; column i is bit i of the register."""
    bits = np.asarray(bits, dtype=bool)
    if bits.ndim != 2:
        raise ValueError(f"expected a (shots, num_bits) array, got shape {bits.shape}")
    packed = np.packbits(bits, axis=1, bitorder="little")
    return {
        "num_shots": int(bits.shape[0]),
        "num_bits": int(bits.shape[1]),
        "encoding": "packbits-little-b64",
        "data": base64.b64encode(packed.tobytes()).decode(),
    }


def unpack_bits(entry: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`pack_bits`."""
    if entry.get("encoding") != "packbits-little-b64":
        raise ValueError(f"unknown bit encoding {entry.get('encoding')!r}")
    shots, nbits = int(entry["num_shots"]), int(entry["num_bits"])
    width = (nbits + 7) // 8
    raw = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.uint8)
    if raw.size != shots * width:
        raise ValueError(f"bit data holds {raw.size} bytes, expected {shots * width}")
    return np.unpackbits(raw.reshape(shots, width), axis=1, count=nbits, bitorder="little").astype(bool)


@dataclasses.dataclass(frozen=True)
class Result(JsonRecord):
    """A collected job: its outcome and, if completed, one bit array per classical register."""

    job_id: str
    run_key: str
    status: ResultStatus
    completion_time: str | None
    usage_seconds: float | None
    registers: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    error: str | None = None
    provider_status: str = ""
    collected_time: str = ""
    schema_version: int = RESULT_SCHEMA_VERSION
    # Whether usage_seconds is the service's final charge. False while its billing is pending
    # (usage_seconds is then None and the budget uses the estimate); a later collect fills it
    # in. None in results written before billing was tracked.
    usage_final: bool | None = None

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(f"status must be one of {RESULT_STATUSES}, got {self.status!r}")
        object.__setattr__(self, "status", ResultStatus(self.status))  # read from a file: a word
        if self.status is ResultStatus.COMPLETED and not self.registers:
            raise ValueError("a completed result needs its registers")
        if self.status is not ResultStatus.COMPLETED and not self.error:
            raise ValueError(f"a {self.status} result needs the provider's error message")

    def bit_arrays(self) -> dict[str, np.ndarray]:
        """Register name -> (shots, num_bits) bool array, as SamplerV2's BitArrays hold them."""
        return {name: unpack_bits(entry) for name, entry in self.registers.items()}

    WHAT: ClassVar[str] = "result"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status.value}
