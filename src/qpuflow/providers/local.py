"""The embedded local backend: a persistent job store on disk that behaves like the service.

Jobs live in ``<store>/jobs/<id>.json`` (state, tags, times) with the submitted circuit beside
them (``<id>.qpy``) and, once done, the result (``<id>.result.json``). Any process can look a job
up by ID. States follow QUEUED -> RUNNING -> DONE/ERROR (or CANCELLED) on a simulated clock:
a job is QUEUED for ``queue_seconds`` after submission, then RUNNING for ``run_seconds``, and
the first process that looks at it after that simulates it, under a per-job lock, so no two
processes ever write one job. Simulation uses the noise of the fake backend's calibration.

Drift (``provider.local.drift``; see :mod:`qpuflow.drift`): a real device's calibration is
hours old when a job runs. A job is simulated on the device state at its submission time (by
the workflow's clock, :func:`qpuflow.provenance.clock`, so ``QPUFLOW_NOW`` rehearsals drift
too, on a 10-minute grid): slow per-qubit fluctuations of every error (``sigma``, correlation
time ``period_hours``) and two-level-system defect events that take a qubit's T1 for hours
(``defects``). The calibration the backend *reports* (``load_backend(name).target``, what
transpilation and a calibration-based qubit choice see) stays the static one; the drift is
only visible in results, which is what a probe job measures. The drift settings are stored in
the job record at submission, so a job is simulated as submitted whatever the configuration
says later.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import secrets
import shutil
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from filelock import FileLock

from qpuflow.providers.base import JobInfo, JobOutput, JobState, ProviderError
from qpuflow.drift import DriftModel, state_epoch
from qpuflow.provenance import clock
from qpuflow.records import pack_bits, read_json, unpack_bits, write_json_atomic

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclasses.dataclass(frozen=True)
class LocalSettings:
    store: Path
    queue_seconds: float = 0.0
    run_seconds: float = 0.0
    noise_scale: float = 1.0
    idle_noise: bool = True
    fail_tags: tuple[str, ...] = ()
    drift: DriftModel = DriftModel()  # checked when built: a bad drift block fails at submission

    @classmethod
    def from_config(cls, config: dict[str, Any], store: Path) -> "LocalSettings":
        local = config["provider"].get("local", {})
        drift = DriftModel.from_json(local.get("drift"))
        return cls(
            store=store,
            queue_seconds=float(local.get("queue_seconds", 0)),
            run_seconds=float(local.get("run_seconds", 0)),
            noise_scale=float(local.get("noise_scale", 1.0)),
            idle_noise=bool(local.get("idle_noise", True)),
            fail_tags=tuple(local.get("fail_tags", ())),
            drift=drift,
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


class LocalProvider:
    """A simulated IBM backend whose jobs persist on disk."""

    name = "local"
    may_duplicate_on_retry = False  # a job exists once its record is written, or not at all
    in_flight_seconds = 0.0

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.jobs_dir = settings.store / "jobs"
        self.locks_dir = settings.store / "locks"

    # ------------------------------------------------------------------ submission

    def submit(self, isa_paths: Sequence[Path], *, backend: str, shots: Sequence[int], tags: Sequence[str],
               max_execution_time: int, metadata: Sequence[dict] | None = None) -> str:
        if not isa_paths or len(isa_paths) != len(shots):
            raise ProviderError(f"a job needs one shot count per circuit (got {len(isa_paths)} circuits, "
                                f"{len(shots)} shot counts)")
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        job_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))
        # The circuits and the tag index entries come first and the record last, atomically: a
        # job exists (and can be found by tag) only once its record is complete.
        circuits = [f"{job_id}.qpy" if i == 0 else f"{job_id}.pub{i}.qpy" for i in range(len(isa_paths))]
        for source, name in zip(isa_paths, circuits):
            shutil.copyfile(source, self.jobs_dir / name)
        self._ensure_tag_index()
        for tag in tags:
            self._tag_entry(tag, job_id).touch()
        now = time.time()
        write_json_atomic(self._record_path(job_id), {
            "job_id": job_id, "backend": backend, "shots": int(shots[0]), "tags": list(tags),
            "circuits": circuits, "pub_shots": [int(n) for n in shots],
            # The runs the PUBs carry (their circuits' metadata), for fault injection by run name.
            "runs": [str(m.get("qpuflow_run", "")) for m in metadata] if metadata else [],
            "max_execution_time": int(max_execution_time), "created_epoch": now, "created": _iso(now),
            "queue_seconds": self.settings.queue_seconds, "run_seconds": self.settings.run_seconds,
            "noise_scale": self.settings.noise_scale, "idle_noise": self.settings.idle_noise,
            "drift_sigma": self.settings.drift.sigma, "drift_period_hours": self.settings.drift.period_hours,
            "drift_seed": self.settings.drift.seed, "drift_defects": self.settings.drift.to_json()["defects"],
            # The drift period follows the workflow's clock, so a rehearsal under QPUFLOW_NOW
            # sees the device drift between its pretend sessions.
            "drift_epoch": clock().timestamp(),
            "state": JobState.QUEUED.value, "error": None, "usage_seconds": None, "finished": None,
        })
        return job_id

    def cancel(self, job_id: str) -> None:
        with self._job_lock(job_id):
            record = self._read(job_id)
            if record is None:
                raise ProviderError(f"local job {job_id} does not exist in {self.jobs_dir}")
            state = JobState(record["state"])
            if state.final:
                raise ProviderError(f"local job {job_id} is already {state.value}; it cannot be cancelled")
            # A job cancelled before it ran costs nothing (the simulated clock has no partial run).
            record.update(state=JobState.CANCELLED.value, error="Job cancelled by user",
                          finished=_iso(time.time()), usage_seconds=0.0)
            write_json_atomic(self._record_path(job_id), record)

    # ------------------------------------------------------------------ queries

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        return {job_id: self._info(job_id) for job_id in job_ids}

    def find_by_tag(self, tag: str) -> list[JobInfo]:
        return self.jobs(tags=[tag])

    def jobs(self, *, limit: int | None = None, tags: Sequence[str] = ()) -> list[JobInfo]:
        if not self.jobs_dir.exists():
            return []
        if tags:
            # The tag index answers in time proportional to the matches, not the store: a
            # submission looks its tag up, so a scan would make N submissions cost O(N^2).
            self._ensure_tag_index()
            ids = set.intersection(*({p.name for p in self._tag_dir(t).glob("*")} for t in tags))
            paths = [self._record_path(i) for i in sorted(ids)]
        else:
            paths = [p for p in self.jobs_dir.glob("*.json") if not p.name.endswith(".result.json")]
        records = []
        for path in paths:
            if not path.exists():
                continue  # indexed, but the submitting process died before writing the record
            record = read_json(path, "local job")
            if all(t in record["tags"] for t in tags):
                records.append(record)
        records.sort(key=lambda r: (-r["created_epoch"], r["job_id"]))
        if limit is not None:
            records = records[:limit]
        return [self._info(r["job_id"]) for r in records]

    def fetch(self, job_id: str, known: JobInfo | None = None) -> JobOutput:
        info = self._info(job_id)
        if not info.state.final:
            raise ProviderError(f"local job {job_id} is {info.state.value}, not final; nothing to fetch yet")
        record = self._read(job_id)
        pubs = None
        if info.state is JobState.DONE:
            stored = read_json(self._result_path(job_id), "local job result")
            # Results written before jobs could carry several PUBs hold one "registers" entry.
            pubs = [{name: unpack_bits(entry) for name, entry in pub.items()}
                    for pub in stored.get("pubs", [stored.get("registers")])]
        return JobOutput(info=info, pubs=pubs, completion_time=record["finished"] if record else None)

    # ------------------------------------------------------------------ internals

    @property
    def _tags_dir(self) -> Path:
        return self.settings.store / "tags"

    def _tag_dir(self, tag: str) -> Path:
        # Tags are free text; a hash keeps them valid and bounded as folder names.
        return self._tags_dir / hashlib.sha256(tag.encode()).hexdigest()[:32]

    def _tag_entry(self, tag: str, job_id: str) -> Path:
        folder = self._tag_dir(tag)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / job_id

    def _ensure_tag_index(self) -> None:
        """Index a store written before the tag index existed (once, under the store lock)."""
        if (self._tags_dir / ".complete").exists():
            return
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.locks_dir / "tag-index.lock")):
            if (self._tags_dir / ".complete").exists():
                return
            self._tags_dir.mkdir(parents=True, exist_ok=True)
            for path in self.jobs_dir.glob("*.json"):
                if not path.name.endswith(".result.json"):
                    for tag in read_json(path, "local job")["tags"]:
                        self._tag_entry(tag, path.stem).touch()
            (self._tags_dir / ".complete").touch()

    def _record_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def _result_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.result.json"

    def _job_lock(self, job_id: str) -> FileLock:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.locks_dir / f"{job_id}.lock"))

    def _read(self, job_id: str) -> dict[str, Any] | None:
        path = self._record_path(job_id)
        if not path.exists():
            return None
        return read_json(path, "local job")

    def _info(self, job_id: str) -> JobInfo:
        record = self._read(job_id)
        if record is None:
            return JobInfo(job_id=job_id, state=JobState.UNKNOWN,
                           error=f"job {job_id} not found in the local job store {self.jobs_dir}")
        if not JobState(record["state"]).final:
            record = self._advance(job_id)
        state = JobState(record["state"])
        return JobInfo(
            job_id=job_id, state=state, tags=tuple(record["tags"]),
            created=record["created"], backend=record["backend"], error=record["error"],
            usage_seconds=record["usage_seconds"], finished=record.get("finished"),
            usage_final=state.final and record["usage_seconds"] is not None, program="local",
        )

    def run_now(self, job_id: str) -> JobState:
        """Simulate a queued job now, whatever its simulated clock says (cluster rehearsals).

        The per-job lock makes this safe from any number of processes and hosts sharing the
        store: the first simulates and writes, the others find the job final and return.
        (``filelock`` uses ``fcntl`` locks, which NFS clients share through the server's lock
        manager; on a file system without POSIX locks keep the store on a local disk.)
        """
        return JobState(self._advance(job_id, force=True)["state"])

    def _advance(self, job_id: str, *, force: bool = False) -> dict[str, Any]:
        """Move a job along the simulated clock; simulate it when its run time is over."""
        with self._job_lock(job_id):
            record = self._read(job_id)
            if record is None:
                raise ProviderError(f"local job {job_id} vanished from {self.jobs_dir} while being advanced")
            now = math.inf if force else time.time()
            start = record["created_epoch"] + record["queue_seconds"]
            end = start + record["run_seconds"]
            state = JobState(record["state"])
            if state is JobState.QUEUED and now >= start:
                record["state"] = JobState.RUNNING.value
                state = JobState.RUNNING
                write_json_atomic(self._record_path(job_id), record)
            if state is JobState.RUNNING and now >= end:
                record = self._execute(record)
                write_json_atomic(self._record_path(job_id), record)
            return record

    def _execute(self, record: dict[str, Any]) -> dict[str, Any]:
        job_id = record["job_id"]
        finished = _iso(time.time())
        names = {f"run:{key.split('/', 1)[-1]}" for key in record.get("runs", ()) if key}
        failing = sorted((set(record["tags"]) | names) & set(self.settings.fail_tags))
        if failing:  # a system failure: charged nothing, as on the service
            return {**record, "state": JobState.ERROR.value, "finished": finished, "usage_seconds": 0.0,
                    "error": f"Error code 1500; Backend went offline during execution (injected by fail_tags {failing})"}
        try:
            pubs, usage = _simulate(record, self.jobs_dir)
        except Exception as exc:  # a job that cannot run ends in ERROR, as on the service
            return {**record, "state": JobState.ERROR.value, "finished": finished, "usage_seconds": 0.0,
                    "error": f"{type(exc).__name__}: {exc}"}
        if usage > record["max_execution_time"]:
            return {**record, "state": JobState.ERROR.value, "finished": finished, "usage_seconds": record["max_execution_time"],
                    "error": f"Error code 1305; job exceeded max_execution_time of {record['max_execution_time']} s"}
        write_json_atomic(self._result_path(job_id), {
            "job_id": job_id, "pubs": [{name: pack_bits(bits) for name, bits in pub.items()} for pub in pubs],
        })
        return {**record, "state": JobState.DONE.value, "finished": finished, "usage_seconds": usage,
                "simulated_on": f"{socket.gethostname()}:{os.getpid()}"}


def drift_bucket(epoch: float, period_hours: float) -> int:
    """The drift period an epoch falls in: ``floor(epoch / (period_hours * 3600))``.

    >>> drift_bucket(86400 * 3 + 5, 24.0), drift_bucket(86400 * 3 - 5, 24.0)
    (3, 2)
    """
    if not (math.isfinite(period_hours) and period_hours > 0):
        raise ValueError(f"provider.local.drift.period_hours must be > 0, got {period_hours!r}")
    return math.floor(epoch / (period_hours * 3600.0))


@functools.lru_cache(maxsize=16)
def job_backend(name: str, drift: DriftModel | None = None, epoch: float = 0.0):
    """The backend a local job runs on: ``load_backend(name)``, drifted to the device state at
    ``epoch`` (:func:`qpuflow.drift.state_epoch` of the job's time) under ``drift``.

    Cached, so jobs seeing one device state share the backend (and the noise models
    :mod:`qpuflow.simulate` caches per backend). Its ``target`` is the drifted calibration;
    the static one stays ``load_backend(name).target``.
    """
    from qpuflow.device_state import drifted_target_at
    from qpuflow.backends import TargetBackend, load_backend, readout_pairs

    backend = load_backend(name)
    if drift is None or not drift.active:
        return backend
    target, pairs = drifted_target_at(backend.target, drift, epoch, readout_pairs(backend))
    return TargetBackend(target, backend.name, readout_pairs=pairs,
                         description=f"{backend.name} drifted ({drift.to_json()}, at {epoch:.0f})")


def _simulate(record: dict[str, Any], jobs_dir: Path):
    """Sample the job's ISA circuits with the fake backend's (possibly drifted) noise.

    Returns the registers of each PUB and the job's usage (one per-job overhead for all PUBs).
    """
    import zlib

    from qpuflow.budget import estimate_job_seconds
    from qpuflow.qpyio import load_circuit
    from qpuflow.simulate import sample_isa
    from qpuflow.circuit_identity import isa_summary

    # Records written before drift existed have no drift fields: no drift; before batching,
    # one circuit named after the job.
    # Records written before defect events existed carry no "drift_defects": slow drift only.
    drift = DriftModel.from_json({"sigma": record.get("drift_sigma", 0.0),
                                  "period_hours": record.get("drift_period_hours", 24.0),
                                  "seed": record.get("drift_seed", 0), "defects": record.get("drift_defects")})
    epoch = state_epoch(record.get("drift_epoch", record["created_epoch"]))
    backend = job_backend(record["backend"], drift if drift.active else None, epoch if drift.active else 0.0)
    circuits = record.get("circuits", [f"{record['job_id']}.qpy"])
    shots = record.get("pub_shots", [record["shots"]])
    pubs, charged = [], []
    for index, (name, pub_shots) in enumerate(zip(circuits, shots)):
        isa = load_circuit(jobs_dir / name)
        # A seed from the job ID and PUB: reproducible per job, different between jobs and PUBs.
        seed = zlib.crc32(record["job_id"].encode()) + index
        pubs.append(sample_isa(isa, backend, shots=pub_shots, seed=seed,
                               noise_scale=record["noise_scale"], idle_noise=record["idle_noise"]))
        charged.append((pub_shots, isa_summary(isa)["duration_seconds"]))
    return pubs, estimate_job_seconds(charged)
