"""A provider job's identity: which runs it carries, in which PUB order, read back from its tags.

IBM's jobs API allows at most 8 tags of at most 86 characters per job (IBM_API_NOTES.md, "The
documented contract"). Every qpuflow job carries, whatever ``provider.pubs_per_job`` says:

========================  =============================================================
``qpuflow``               every qpuflow job (the listing filter of ``qpuflow jobs``)
``qpuflow-study-<10 hex>`` the study (``study:`` in config.yaml; all unnamed studies share one)
``exp:<experiment>``      readable: the experiment
``qpuflow-pack-<24 hex>``  SHA-256 of the study and the runs' full identities in PUB order
``qpuflow-runs-<ids>``    each run's short id (8 base32 characters of its run id), in PUB
                          order, dot-separated; 8 runs per tag, further tags ``qpuflow-runs2-``
========================  =============================================================

plus the config's ``tags``. So a job's composition can be recovered from the provider alone
(a kill between its answer and any local write, then a lost ``results/``): list the study's
jobs, map each short id to the planned run with that id, and accept the mapping only if it
reproduces the pack tag, which covers the full 64-hex identities and their order. A job whose
tags do not verify (a service that rewrote them, a run no longer in the config) is never
adopted on guesswork. Jobs submitted before this scheme carry ``qpuflow-run-<24 hex>`` per
run (and a ``qpuflow-batch-`` tag when packed); :func:`legacy_composition` reads those.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import math
from typing import Iterable, Mapping, Sequence

from qpuflow.errors import QpuflowError
from qpuflow.plan import RunSpec

MAX_TAGS = 8
MAX_TAG_CHARS = 86
QPUFLOW_TAG = "qpuflow"
STUDY_TAG_PREFIX = "qpuflow-study-"
PACK_TAG_PREFIX = "qpuflow-pack-"
RUNS_TAG_PREFIX = "qpuflow-runs"  # "qpuflow-runs-" for the first 8 runs, "qpuflow-runs2-" for the next 8 ...
RESERVED_PREFIX = "qpuflow"
RUNS_PER_TAG = 8
SHORT_ID_CHARS = 8  # 40 bits: base32 of the run id's first 5 bytes
# Legacy tags (before the tag limits were respected): one per run, and one per packed job.
LEGACY_RUN_TAG_PREFIX = "qpuflow-run-"
LEGACY_BATCH_TAG_PREFIX = "qpuflow-batch-"


class CompositionError(QpuflowError, RuntimeError):
    """A job's tags do not say, verifiably, which PUB holds which run."""


def short_id(run_id: str) -> str:
    """The 8-character id of a run in a ``qpuflow-runs-`` tag.

    >>> short_id("0" * 64)
    'aaaaaaaa'
    """
    return base64.b32encode(bytes.fromhex(run_id[:10])).decode().lower()


def study_tag(study: str | None) -> str:
    """The tag every job of a study carries (a hash: study names are free text).

    >>> study_tag(None) == study_tag("")
    True
    >>> len(study_tag("a study name that is rather long")) <= MAX_TAG_CHARS
    True
    """
    return STUDY_TAG_PREFIX + hashlib.sha256((study or "").encode()).hexdigest()[:10]


def pack_tag(run_ids: Sequence[str]) -> str:
    """The tag naming one job's composition: a hash of its runs' identities in PUB order.

    >>> pack_tag(["a" * 64, "b" * 64]) != pack_tag(["b" * 64, "a" * 64])
    True
    """
    text = "\n".join(run_ids)
    return PACK_TAG_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:24]


def runs_tags(run_ids: Sequence[str]) -> list[str]:
    """The runs' short ids in PUB order, 8 to a tag."""
    shorts = [short_id(r) for r in run_ids]
    tags = []
    for chunk in range(math.ceil(len(shorts) / RUNS_PER_TAG)):
        prefix = f"{RUNS_TAG_PREFIX}-" if chunk == 0 else f"{RUNS_TAG_PREFIX}{chunk + 1}-"
        tags.append(prefix + ".".join(shorts[chunk * RUNS_PER_TAG:(chunk + 1) * RUNS_PER_TAG]))
    return tags


def fixed_tag_count(pubs_per_job: int) -> int:
    """Tags qpuflow itself puts on a job of up to ``pubs_per_job`` runs (the config's come on top)."""
    return 4 + math.ceil(pubs_per_job / RUNS_PER_TAG)


@dataclasses.dataclass(frozen=True)
class Pack:
    """The runs one provider job carries, in PUB order."""

    specs: tuple[RunSpec, ...]

    def __post_init__(self) -> None:
        if not self.specs:
            raise ValueError("a pack needs at least one run")
        if len({s.experiment for s in self.specs}) != 1 or len({s.study for s in self.specs}) != 1:
            raise ValueError(f"runs of different experiments or studies cannot share a job: {self.keys}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.specs)

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(s.run_id() for s in self.specs)

    @property
    def tag(self) -> str:
        return pack_tag(self.run_ids)

    @property
    def label(self) -> str:
        """How messages name the pack."""
        return self.keys[0] if len(self.keys) == 1 else f"{self.keys[0]} and {len(self.keys) - 1} more run(s) in one job"

    def tags(self, extra: Sequence[str] = ()) -> list[str]:
        """Every tag of the job, within the service's limits.

        Raises:
            ValueError: the tags would not fit (config validation refuses such configs first).
        """
        first = self.specs[0]
        tags = [QPUFLOW_TAG, study_tag(first.study), f"exp:{first.experiment}", self.tag,
                *runs_tags(self.run_ids), *extra]
        check_tags(tags, where=self.label)
        return tags


def check_tags(tags: Sequence[str], *, where: str) -> None:
    """Refuse tags the service would refuse (400): too many, too long or repeated."""
    too_long = [t for t in tags if len(t) > MAX_TAG_CHARS]
    if len(tags) > MAX_TAGS or too_long or len(set(tags)) != len(tags):
        raise ValueError(
            f"{where}: the job's {len(tags)} tags {list(tags)} break the service's limits (at most "
            f"{MAX_TAGS} distinct tags of at most {MAX_TAG_CHARS} characters"
            + (f"; too long: {too_long}" if too_long else "") + ")"
        )


@dataclasses.dataclass(frozen=True)
class TaggedPack:
    """What a job's tags say about it, before it is matched against the planned runs."""

    study: str | None
    pack: str | None
    shorts: tuple[str, ...]
    legacy_run_tags: tuple[str, ...] = ()

    @property
    def qpuflow(self) -> bool:
        return self.pack is not None or bool(self.legacy_run_tags)


def read_tags(tags: Iterable[str]) -> TaggedPack:
    """Parse a job's tags (in any order: the service need not keep it)."""
    tags = list(tags)
    study = next((t for t in tags if t.startswith(STUDY_TAG_PREFIX)), None)
    packs = [t for t in tags if t.startswith(PACK_TAG_PREFIX)]
    chunks: dict[int, list[str]] = {}
    for tag in tags:
        if not tag.startswith(RUNS_TAG_PREFIX):
            continue
        number, body = _split_runs_tag(tag)
        chunks[number] = body.split(".") if body else []
    shorts = tuple(itertools.chain.from_iterable(chunks[k] for k in sorted(chunks)))
    if sorted(chunks) != list(range(1, len(chunks) + 1)):
        shorts = ()  # a missing chunk: the order cannot be trusted
    legacy = tuple(t for t in tags if t.startswith(LEGACY_RUN_TAG_PREFIX))
    return TaggedPack(study=study, pack=packs[0] if len(packs) == 1 else None, shorts=shorts, legacy_run_tags=legacy)


def _split_runs_tag(tag: str) -> tuple[int, str]:
    """``qpuflow-runs-a.b`` -> (1, "a.b"); ``qpuflow-runs3-c`` -> (3, "c")."""
    number, _, body = tag[len(RUNS_TAG_PREFIX):].partition("-")
    return (int(number) if number.isdigit() else 1), body


def composition(tags: Iterable[str], job_id: str, runs: Mapping[str, RunSpec] | Iterable[RunSpec]) -> list[RunSpec]:
    """The planned runs a job carries, in PUB order, verified against its pack tag.

    ``runs``: every run the study plans (a run no longer planned cannot be recognised).

    Raises:
        CompositionError: the tags name runs that are not planned, or no assignment of the
            short ids to planned runs reproduces the pack tag (tags rewritten or reordered).
    """
    specs = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    parsed = read_tags(tags)
    if parsed.pack is None and parsed.legacy_run_tags:
        return legacy_composition(tags, job_id, specs)
    if parsed.pack is None or not parsed.shorts:
        raise CompositionError(f"job {job_id}: its tags {list(tags)} do not name its runs")
    by_short: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_short.setdefault(short_id(spec.run_id()), []).append(spec)
    candidates = [by_short.get(s, []) for s in parsed.shorts]
    if not all(candidates):
        missing = [s for s, c in zip(parsed.shorts, candidates) if not c]
        raise CompositionError(f"job {job_id} carries run(s) {missing} that this config does not plan "
                               f"(changed or removed since it was submitted)")
    for choice in itertools.islice(itertools.product(*candidates), 64):
        if pack_tag([s.run_id() for s in choice]) == parsed.pack:
            return list(choice)
    raise CompositionError(
        f"job {job_id}: its runs tag and pack tag {parsed.pack} do not agree, so which PUB holds which run "
        f"cannot be told from the service"
    )


def legacy_composition(tags: Iterable[str], job_id: str, specs: Sequence[RunSpec]) -> list[RunSpec]:
    """Runs of a job tagged before the tag limits were respected (``qpuflow-run-`` per run)."""
    tags = list(tags)
    by_tag = {s.job_tag(): s for s in specs}
    run_tags = [t for t in tags if t.startswith(LEGACY_RUN_TAG_PREFIX)]
    found = [by_tag.get(t) for t in run_tags]
    if not run_tags or None in found:
        raise CompositionError(f"job {job_id}: its run tags {run_tags} name runs this config does not plan")
    if len(run_tags) == 1:
        return [found[0]]  # type: ignore[list-item]
    experiments = [t[4:] for t in tags if t.startswith("exp:")]
    keys = [f"{experiments[0]}/{t[4:]}" for t in tags if t.startswith("run:")] if len(experiments) == 1 else []
    expected = LEGACY_BATCH_TAG_PREFIX + hashlib.sha256(
        "\n".join(f"{k} {t}" for k, t in zip(keys, run_tags)).encode()).hexdigest()[:24]
    if len(keys) != len(run_tags) or [t for t in tags if t.startswith(LEGACY_BATCH_TAG_PREFIX)] != [expected]:
        raise CompositionError(f"job {job_id} carries {len(run_tags)} runs but its tags' order cannot be verified")
    return found  # type: ignore[return-value]
