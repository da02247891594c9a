"""Packing several runs into one provider job, one PUB per run (``provider.pubs_per_job``).

Every job costs a fixed overhead on the QPU besides its shots (budget.JOB_OVERHEAD_SECONDS),
so runs sent together spend less of the budget. Which runs may share a job: those of one
experiment, on one backend, in one deployment session (a probe never shares with arms: the
arms are chosen from its result). Within a group the runs keep their planned order (a
session's arms in their recorded random order), chunked ``pubs_per_job`` at a time.

What identifies a job at the provider (its tags, within the service's limits) is in
:mod:`qpuflow.packs`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Sequence

from qpuflow.plan import RunSpec


# Runs one Snakemake job transpiles and submits (as ceil(runs / pubs_per_job) provider jobs).
# Snakemake's bookkeeping costs ~15-30 ms per job and its scheduler rescans ready jobs every
# round; a job per run made orchestration 1.4-1.7x the work itself (bench/RESULTS.md,
# submit_overhead). Nothing depends on the size: every provider job is still sent exactly once
# with its own ledger lines, and a batch that fails half way leaves markers for what was sent.
RUNS_PER_SNAKEMAKE_JOB = 50


@dataclasses.dataclass(frozen=True)
class Batch:
    """Runs handled by one Snakemake job: one or more provider jobs, each a tuple of run keys
    in PUB order."""

    experiment: str
    jobs: tuple[tuple[str, ...], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for job in self.jobs for key in job)

    @property
    def name(self) -> str:
        """``<first run>-<number of runs>``: unique among pending batches, readable in paths."""
        return job_name(self.keys)


def job_name(keys: Sequence[str]) -> str:
    """``<first run>-<number of runs>`` (the experiment is left out)."""
    return f"{keys[0].split('/', 1)[1]}-{len(keys)}"


def pubs_per_job(config: dict[str, Any]) -> int:
    """How many runs one job may carry (``provider.pubs_per_job``)."""
    return int(config["provider"]["pubs_per_job"])


def batch_group(spec: RunSpec) -> tuple[Any, ...]:
    """Runs with equal groups may share a job. The shot count is part of it: the executor-based
    sampler runs one shot count per job (IBM_API_NOTES.md, executor jobs)."""
    return (spec.experiment, spec.backend, spec.provider, spec.session, spec.is_probe, spec.shots)


def plan_jobs(specs: Iterable[RunSpec], pubs_per_job: int) -> list[tuple[str, ...]]:
    """Group runs (in their planned order) into provider jobs of at most ``pubs_per_job`` runs."""
    return [job for batch in plan_batches(specs, pubs_per_job) for job in batch.jobs]


def plan_batches(specs: Iterable[RunSpec], pubs_per_job: int,
                 runs_per_batch: int = RUNS_PER_SNAKEMAKE_JOB) -> list[Batch]:
    """Provider jobs (``pubs_per_job`` runs at most, of one group, in planned order), gathered
    into Snakemake jobs of about ``runs_per_batch`` runs (never splitting a provider job).

    A deployment session's runs always stay in one batch, so its arms are sent one after the
    other, in their recorded order, by one process.
    """
    if pubs_per_job < 1:
        raise ValueError(f"provider.pubs_per_job must be at least 1, got {pubs_per_job}")
    groups: dict[tuple[Any, ...], list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(batch_group(spec), []).append(spec)
    batches = []
    for group, members in groups.items():
        jobs = [tuple(s.key for s in members[i:i + pubs_per_job]) for i in range(0, len(members), pubs_per_job)]
        limit = max(runs_per_batch, pubs_per_job) if group[3] is None else len(members)  # [3]: the session
        current: list[tuple[str, ...]] = []
        for job in jobs:
            if current and sum(map(len, current)) + len(job) > limit:
                batches.append(Batch(members[0].experiment, tuple(current)))
                current = []
            current.append(job)
        if current:
            batches.append(Batch(members[0].experiment, tuple(current)))
    return batches


def batch_record(specs: Sequence[RunSpec]) -> dict[str, Any] | None:
    """What a marker records about the job's other runs (``None`` for a one-run job): the
    job's name, its pack tag and its runs in PUB order."""
    if len(specs) == 1:
        return None
    from qpuflow.packs import Pack

    keys = [s.key for s in specs]
    return {"name": job_name(keys), "tag": Pack(tuple(specs)).tag, "runs": keys}


def write_batch_file(path: Path, batch: str, markers: Sequence[Any]) -> None:
    """The submit_batch rule's output: where each run of the batch went (job and PUB)."""
    from qpuflow.provenance import utc_now
    from qpuflow.records import write_json_atomic

    write_json_atomic(path, {
        "batch": batch,
        "runs": [{"run_key": m.run_key, "job_id": m.job_id, "pub_index": m.pub_index, "account": m.account}
                 for m in markers],
        "jobs": sorted({m.job_id for m in markers}),
        "written": utc_now(),
    })
