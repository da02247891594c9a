"""Packing several runs into one provider job, one PUB per run (``provider.pubs_per_job``).

Every job costs a fixed overhead on the QPU besides its shots (budget.JOB_OVERHEAD_SECONDS),
so runs sent together spend less of the budget. Which runs may share a job: those of one
experiment, on one backend, in one deployment session (a probe never shares with arms: the
arms are chosen from its result). Within a group the runs keep their planned order (a
session's arms in their recorded random order), chunked ``pubs_per_job`` at a time.

A job's composition can be read back from its tags alone, so an interrupted submission can be
adopted even without the ledger: the ``exp:``, ``run:`` and per-run job tags, in PUB order,
plus a batch tag hashing that order (a provider that reordered tags is detected, not trusted).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from qpuflow.plan import RunSpec

BATCH_TAG_PREFIX = "qpuflow-batch-"
RUN_TAG_PREFIX = "qpuflow-run-"


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
    return int(config["provider"].get("pubs_per_job", 1))


def batch_group(spec: RunSpec) -> tuple[Any, ...]:
    """Runs with equal groups may share a job."""
    return (spec.experiment, spec.backend, spec.provider, spec.session, spec.is_probe)


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


def batch_tag(keys: Sequence[str], job_tags: Sequence[str]) -> str:
    """The tag naming one job's composition: a hash of its runs and their job tags, in PUB order."""
    text = "\n".join(f"{key} {tag}" for key, tag in zip(keys, job_tags, strict=True))
    return BATCH_TAG_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:24]


def job_tags(specs: Sequence[RunSpec], extra: Sequence[str]) -> list[str]:
    """The tags of a job carrying ``specs`` as its PUBs, in order; ``extra``: the config's tags.

    A one-run job keeps the tags it always had; a batch adds ``run:`` names and job tags in
    PUB order and the batch tag over them.
    """
    experiment = specs[0].experiment
    runs = [f"run:{s.run}" for s in specs]
    run_tags = [s.job_tag() for s in specs]
    if len(specs) == 1:
        return ["qpuflow", f"exp:{experiment}", *runs, *extra, *run_tags]
    return ["qpuflow", f"exp:{experiment}", *runs, *extra, batch_tag([s.key for s in specs], run_tags), *run_tags]


class CompositionError(RuntimeError):
    """A job's tags do not say unambiguously which PUB holds which run."""


def composition(tags: Sequence[str], job_id: str) -> list[tuple[str, str]]:
    """(run key, run job tag) per PUB of a job, read back from its tags.

    Raises:
        CompositionError: the job holds several runs but its tags' order cannot be verified.
    """
    experiments = [t[4:] for t in tags if t.startswith("exp:")]
    runs = [t[4:] for t in tags if t.startswith("run:")]
    run_tags = [t for t in tags if t.startswith(RUN_TAG_PREFIX)]
    batch_tags = [t for t in tags if t.startswith(BATCH_TAG_PREFIX)]
    if len(experiments) != 1 or len(runs) != len(run_tags) or not runs:
        raise CompositionError(f"job {job_id}: its tags {list(tags)} do not name its runs")
    keys = [f"{experiments[0]}/{run}" for run in runs]
    if len(keys) == 1:
        return [(keys[0], run_tags[0])]
    if batch_tags != [batch_tag(keys, run_tags)]:
        raise CompositionError(
            f"job {job_id} carries {len(keys)} runs but the order of its tags does not match its batch "
            f"tag {batch_tags}: which PUB holds which run cannot be told from the service"
        )
    return list(zip(keys, run_tags))


def batch_record(keys: Sequence[str], job_tags_in_order: Sequence[str]) -> dict[str, Any] | None:
    """What a marker records about the job's other runs (``None`` for a one-run job)."""
    if len(keys) == 1:
        return None
    return {"name": job_name(keys), "tag": batch_tag(keys, job_tags_in_order),
            "runs": list(keys)}


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
