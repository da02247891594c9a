"""Exactly-once submission of packs of runs (each pack one provider job, its runs the PUBs).

The order of events is the whole design (DESIGN.md, invariant 1):

1. Under the ledger lock, look every run up. An ``accepted`` entry means the job exists: write
   its marker again and stop. For the others, ask the provider which jobs of this study exist
   (one listing by the study tag per account) and read each job's composition from its tags
   (:mod:`qpuflow.packs`): a run some job already carries is adopted, with the job furthest
   along if there are several. An interrupted POST whose job may still appear is waited for.
   So neither a kill nor a lost ledger can make a second job.
2. Check the budget: the job's estimated cost must fit an account's remaining window budget.
3. Flush an ``intent`` line (with the markers still missing their job ID), POST once, and if
   the outcome is not a clear answer (5xx, timeout, dropped connection, 429), look the pack up
   by its tag before any resend: a POST that created the job is never repeated. Then settle
   duplicates (:mod:`qpuflow.reconcile`), flush ``accepted`` with the job ID and the marker of
   each run, and write the markers atomically. Ctrl-C and SIGTERM are held back around each
   POST and the lines that record it, so an interrupt lands before or after, never between.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from qpuflow.batches import batch_record
from qpuflow.budget import BudgetExceeded, choose_account, estimate_job_seconds, usage_by_account, with_service_usage
from qpuflow.config import IBMSettings
from qpuflow.errors import Refusal
from qpuflow.faults import fault_point
from qpuflow.interrupts import raise_if_stopped
from qpuflow.ledger import Ledger, LedgerView
from qpuflow.packs import CompositionError, Pack, composition, read_tags, short_id, study_tag
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec, plan_runs
from qpuflow.provenance import git_state, package_versions, utc_now
from qpuflow.providers import (JobInfo, JobState, Provider, ProviderError, SubmitRefused, SubmitUncertain,
                               UsageLimitExceeded, furthest_along, make_provider)
from qpuflow.reconcile import settle_pack
from qpuflow.records import Marker, TranspileRecord, write_marker

log = logging.getLogger("qpuflow.submit")

BACKOFF_CAP_SECONDS = 120.0
LOOKUP_POLL_SECONDS = 1.0
ANSWERED_SETTLE_SECONDS = 2.0


class SubmissionConflict(Refusal, RuntimeError):
    """The provider or the ledger holds something for these runs that cannot be trusted blindly."""


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver them. Yields the list of signals
    held so far, so a wait inside the block can give up early (see :func:`_sleep`)."""
    pending: list[int] = []
    previous = {}

    def hold(signum: int, _frame: Any) -> None:
        pending.append(signum)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, hold)
    except ValueError:  # not the main thread: signals cannot be handled here anyway
        previous = {}
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending:
            signal.raise_signal(signum)


def _sleep(seconds: float, held: list[int], sleep: Callable[[float], None]) -> None:
    """Wait before sending again, unless an interrupt arrived: then stop at once (nothing is in
    flight during a wait; the intent stays open and the next submit looks the job up first)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if held:
            held.clear()
            raise KeyboardInterrupt("interrupted while waiting to send a job again; nothing was in flight")
        sleep(min(0.2, max(0.0, end - time.monotonic())))


@dataclasses.dataclass(frozen=True)
class SubmitSettings:
    """How hard to try one POST: attempts, back-off, and how long an interrupted one may land."""

    max_attempts: int = 6
    backoff_seconds: float = 15.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SubmitSettings":
        ibm = IBMSettings.of(config)
        return cls(max_attempts=ibm.max_submit_attempts, backoff_seconds=ibm.backoff_seconds)


def submit_run(
    spec: RunSpec, *, isa_path: Path, isa_info_path: Path, config: dict[str, Any], paths: Paths,
    account: str | None = None, api_key_index: int | None = None,
    provider_factory: Callable[[str], Provider] | None = None,
) -> Marker:
    """Submit ``spec`` once, ever, as a job of its own; write and return its marker."""
    return submit_packs([[spec]], config=config, paths=paths, files={spec.key: (Path(isa_path), Path(isa_info_path))},
                        account=account, api_key_index=api_key_index, provider_factory=provider_factory)[0]


def submit_batch(
    specs: Sequence[RunSpec], *, config: dict[str, Any], paths: Paths,
    files: Mapping[str, tuple[Path, Path]] | None = None, account: str | None = None,
    api_key_index: int | None = None, provider_factory: Callable[[str], Provider] | None = None,
) -> list[Marker]:
    """Submit ``specs`` once, ever, the unsubmitted ones together as the PUBs of one job."""
    return submit_packs([specs], config=config, paths=paths, files=files, account=account,
                        api_key_index=api_key_index, provider_factory=provider_factory)


def submit_packs(
    packs: Sequence[Sequence[RunSpec]], *, config: dict[str, Any], paths: Paths,
    files: Mapping[str, tuple[Path, Path]] | None = None, account: str | Sequence[str | None] | None = None,
    api_key_index: int | None = None, provider_factory: Callable[[str], Provider] | None = None,
    settings: SubmitSettings | None = None,
) -> list[Marker]:
    """Submit each pack of runs as one job, each run once, ever; return the runs' markers in order.

    A run already accepted in the ledger gets its marker back; a run some job at the provider
    already carries (an interrupted submission, a lost ledger) is adopted with its PUB in that
    job; the rest of each pack is sent.

    Args:
        files: run key -> (ISA file, transpile info); default: where ``paths`` puts them.
        account: pay with this account (the seed's ``--api-key-index``), or one per pack;
            default: the one with the most budget left.
        provider_factory: account name -> provider; default from the config.
    """
    factory = _cached(provider_factory or (lambda name: make_provider(config, account=name, local_store=paths.local_store)))
    settings = settings or SubmitSettings.from_config(config)
    accounts = list(account) if isinstance(account, (list, tuple)) else [account] * len(packs)
    ledger = Ledger(paths.ledger)
    specs = [spec for pack in packs for spec in pack]
    done: dict[str, Marker] = {}
    with ledger.locked():
        view = ledger.view()
        for spec in specs:
            accepted = view.accepted.get(spec.key)
            if accepted is not None:
                marker = _check_same_run(accepted, spec)
                log.info("%s: already submitted as job %s; marker restored from the ledger", spec.key, marker.job_id)
                write_marker(paths.marker(spec.key), marker)
                done[spec.key] = marker
        pending = [spec for spec in specs if spec.key not in done]
        if not pending:
            return [done[spec.key] for spec in specs]
        files = {spec.key: (files or {}).get(spec.key, (paths.isa(spec), paths.isa_info(spec))) for spec in pending}
        infos = {key: TranspileRecord.read(info_path) for key, (_, info_path) in files.items()}
        context = _Context(config=config, paths=paths, ledger=ledger, factory=factory, files=files, infos=infos,
                           api_key_index=api_key_index, settings=settings)
        done.update(_recover(pending, view, context))
        for pack, preferred in zip(packs, accounts):
            rest = [spec for spec in pack if spec.key not in done]
            if rest:
                for marker in _send(Pack(tuple(rest)), preferred, context):
                    done[marker.run_key] = marker
    return [done[spec.key] for spec in specs]


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every step of one submission call shares."""

    config: dict[str, Any]
    paths: Paths
    ledger: Ledger
    factory: Callable[[str], Provider]
    files: Mapping[str, tuple[Path, Path]]
    infos: Mapping[str, dict[str, Any]]
    api_key_index: int | None
    settings: SubmitSettings


# ---------------------------------------------------------------------- finding what exists


@dataclasses.dataclass(frozen=True)
class _Carrier:
    """A job at the provider that carries a pending run."""

    job: JobInfo
    account: str
    runs: tuple[RunSpec, ...]  # the job's whole composition, in PUB order


def _recover(pending: list[RunSpec], view: LedgerView, ctx: _Context) -> dict[str, Marker]:
    """Adopt every pending run that some job at the provider already carries."""
    _wait_for_interrupted_posts(pending, view, ctx)
    carriers = _carriers(pending, view, ctx)
    by_run: dict[str, list[_Carrier]] = {}
    for carrier in carriers:
        for spec in carrier.runs:
            by_run.setdefault(spec.key, []).append(carrier)
    chosen: dict[str, _Carrier] = {}
    for spec in pending:
        if spec.key in by_run:
            best = furthest_along([c.job for c in by_run[spec.key]])
            chosen[spec.key] = next(c for c in by_run[spec.key] if c.job.job_id == best.job_id)
    markers: dict[str, Marker] = {}
    for job_id in dict.fromkeys(c.job.job_id for c in chosen.values()):
        carrier = next(c for c in chosen.values() if c.job.job_id == job_id)
        mine = [spec for spec in carrier.runs if chosen.get(spec.key) is carrier]
        for marker in _adopt(carrier, mine, view, ctx):
            markers[marker.run_key] = marker
        pack = read_tags(carrier.job.tags).pack
        same = [c.job for c in carriers if pack is not None and read_tags(c.job.tags).pack == pack]
        if pack is not None and ctx.factory(carrier.account).may_duplicate_on_retry:
            settle_pack(pack, same, recorded=job_id, ledger=ctx.ledger, provider=ctx.factory(carrier.account),
                        account=carrier.account, run_keys=[s.key for s in carrier.runs],
                        estimate=_job_seconds(mine, ctx.infos), known_duplicates=list(view.duplicates))
    return markers


def _carriers(pending: list[RunSpec], view: LedgerView, ctx: _Context) -> list[_Carrier]:
    """Every job of this study (any configured account) whose tags verifiably carry a pending run."""
    planned = {spec.key: spec for spec in plan_runs(ctx.config)}
    planned.update({spec.key: spec for spec in pending})
    pending_keys = {spec.key for spec in pending}
    pending_shorts = {short_id(spec.run_id()): spec.key for spec in pending}
    legacy = {spec.job_tag() for spec in pending if _has_legacy_intent(view, spec.key)}
    out = []
    for account in _accounts_to_ask(pending, view, ctx.config):
        provider = ctx.factory(account)
        jobs = {j.job_id: j for j in provider.jobs(tags=[study_tag(pending[0].study)])}
        for tag in sorted(legacy):  # jobs submitted before pack tags existed
            jobs.update({j.job_id: j for j in provider.jobs(tags=[tag])})
        for job in jobs.values():
            tagged = read_tags(job.tags)
            if not tagged.qpuflow:
                continue
            if tagged.shorts and not any(s in pending_shorts for s in tagged.shorts):
                # Names none of the pending runs, so it cannot carry one: skip the composition
                # check, which hashes every planned run (per job, it made submission quadratic).
                continue
            try:
                runs = composition(job.tags, job.job_id, planned)
            except CompositionError as exc:
                mine = [pending_shorts[s] for s in tagged.shorts if s in pending_shorts]
                if mine:
                    raise SubmissionConflict(
                        f"{exc}. It may carry {', '.join(mine)}, so nothing was submitted for them. Cancel it "
                        f"(`qpuflow cancel {job.job_id}`) if it is not this study's, or restore the ledger "
                        f"{ctx.paths.ledger} from a backup."
                    ) from None
                continue
            if any(spec.key in pending_keys for spec in runs):
                out.append(_Carrier(job=job, account=account, runs=tuple(runs)))
    return out


def _has_legacy_intent(view: LedgerView, key: str) -> bool:
    return any(not intent.get("pack") for intent in view.intents.get(key, ()))


def _accounts_to_ask(pending: list[RunSpec], view: LedgerView, config: dict[str, Any]) -> list[str]:
    named = [intent["account"] for spec in pending for intent in view.intents.get(spec.key, ()) if intent.get("account")]
    return list(dict.fromkeys([*named, *(a["name"] for a in config["accounts"])]))


def _wait_for_interrupted_posts(pending: list[RunSpec], view: LedgerView, ctx: _Context) -> None:
    """A POST cut off by a kill or a timeout may still be processed by the service: before these
    runs are sent again, give the job the time it could still take to appear."""
    keys = {spec.key for spec in pending}
    for intent in view.dangling():
        if not keys & set(intent["runs"]):
            continue
        started = float(intent.get("real_time", 0))
        errors = [e for e in view.pack_errors.get(intent["pack"], []) if float(e.get("real_time", 0)) >= started]
        if errors and (errors[-1].get("kind") == "refused" or errors[-1].get("status") is not None):
            continue  # the last POST was answered: whatever it created is visible by now
        provider = ctx.factory(intent["account"])
        deadline = float(errors[-1]["real_time"] if errors else started) + provider.in_flight_seconds
        if deadline <= time.time():
            continue
        log.warning("%s: an interrupted submission of this job started %.0f s ago; waiting up to %.0f s for it "
                    "to appear at the provider before anything is sent again", intent["runs"][0],
                    time.time() - float(intent.get("real_time", 0)), deadline - time.time())
        while time.time() < deadline and not provider.jobs(tags=[intent["pack"]]):
            ctx.settings.sleep(min(LOOKUP_POLL_SECONDS, max(0.0, deadline - time.time())))  # Ctrl-C ends it: nothing sent


def _adopt(carrier: _Carrier, mine: list[RunSpec], view: LedgerView, ctx: _Context) -> list[Marker]:
    """Markers (and accepted lines) for the runs of ``mine``, which ``carrier`` holds."""
    job, keys = carrier.job, [s.key for s in carrier.runs]
    tagged = read_tags(job.tags)
    ours = tagged.pack is not None and tagged.pack in view.pack_intents
    if not ours and not any(_has_legacy_intent(view, s.key) for s in mine):
        log.warning(
            "%s: adopting job %s (created %s), which carries this run but was never recorded in %s. It was "
            "sent by an earlier submit whose records were lost, or by another study folder with the same "
            "config: its data will be used here. To take new data instead, give this study a new `study:` "
            "name in config.yaml.", mine[0].key, job.job_id, job.created or "at an unknown time", ctx.paths.ledger)
    cost = _job_seconds(mine, ctx.infos)
    batch = batch_record(list(carrier.runs))
    markers = []
    for spec in mine:
        index = keys.index(spec.key)
        fields = _marker_fields(spec, account=carrier.account, ctx=ctx, estimated=cost, tags=list(job.tags),
                                pub_index=index, batch=batch, job_tag=tagged.pack or spec.job_tag())
        marker = Marker(job_id=job.job_id, submission_time=utc_now(), adopted=True, **fields)
        ctx.ledger.append("accepted", run_key=spec.key, run_id=spec.run_id(), job_id=job.job_id, pack=tagged.pack,
                          time=utc_now(), adopted=True, marker=marker.to_json())
        log.warning("%s: adopted job %s (PUB %d, %s) found at the provider", spec.key, job.job_id, index,
                    job.state.value)
        write_marker(ctx.paths.marker(spec.key), marker)
        markers.append(marker)
    return markers


# ---------------------------------------------------------------------- sending


def _send(pack: Pack, preferred: str | None, ctx: _Context) -> list[Marker]:
    """Send one pack as one job (intent, POST until the outcome is known, accepted, markers)."""
    raise_if_stopped(f"sending {pack.label}")
    specs = list(pack.specs)
    if len({(s.backend, s.provider) for s in specs}) != 1:
        raise ValueError(f"{pack.label}: runs on different backends or providers cannot share a job")
    for spec in specs:
        _check_isa_before_spending(spec, ctx.files[spec.key][0], ctx.infos[spec.key], ctx.config)
    cost = _job_seconds(specs, ctx.infos)
    limit = int(ctx.config["provider"]["max_execution_time"])
    if cost > limit:
        raise ValueError(
            f"{pack.label}: the job needs about {cost:.1f} QPU seconds but provider.max_execution_time in the config is "
            f"{limit} s, so the service would cancel it part way (and charge for it). Raise max_execution_time "
            f"or lower provider.pubs_per_job. Nothing was submitted."
        )
    usage = usage_by_account(ctx.config, ctx.ledger.accepted_markers(), ctx.paths.result,
                             duplicates=ctx.ledger.duplicates())
    usage = with_service_usage(usage, ctx.factory, only=preferred)
    account = choose_account(usage, cost, run_key=pack.label, preferred=preferred)
    provider = ctx.factory(account)
    tags = pack.tags(ctx.config.get("tags", []))
    batch = batch_record(specs)
    templates = {spec.key: _marker_fields(spec, account=account, ctx=ctx, estimated=cost, tags=tags, pub_index=i,
                                          batch=batch, job_tag=pack.tag) for i, spec in enumerate(specs)}
    ctx.ledger.append("intent", pack=pack.tag, runs=list(pack.keys), run_ids=list(pack.run_ids), account=account,
                      provider=specs[0].provider, tags=tags, time=utc_now(), real_time=time.time(),
                      estimated_qpu_seconds=cost, markers=templates)
    # Interrupts wait from the first POST until the markers are written (they end a wait
    # between attempts at once): a job the service accepted is always recorded.
    with deferred_interrupts() as held:
        job_id, adopted = _post_until_known(pack, provider, tags, ctx, account, held)
        fault_point("after_provider_accept")
        job_id, checked = _settle_after_post(pack, job_id, provider, ctx, account, cost)
        markers = []
        for spec in specs:
            marker = Marker(job_id=job_id, submission_time=utc_now(), adopted=adopted, **templates[spec.key])
            ctx.ledger.append("accepted", run_key=spec.key, run_id=spec.run_id(), job_id=job_id, pack=pack.tag,
                              time=utc_now(), adopted=adopted, checked=checked, marker=marker.to_json())
            markers.append(marker)
        fault_point("before_marker_write")
        for marker in markers:
            write_marker(ctx.paths.marker(marker.run_key), marker)
    log.debug("%s: submitted as job %s (account %s, ~%.1f QPU s)", pack.label, job_id, account, cost)
    return markers


def _settle_after_post(pack: Pack, job_id: str, provider: Provider, ctx: _Context, account: str,
                       cost: float) -> tuple[str, bool]:
    """(the job to keep, whether the pack was checked): look for other jobs with the pack's tag
    (an earlier attempt's, processed late) and settle them. A listing that fails leaves the
    check to the next submit or collect."""
    if not provider.may_duplicate_on_retry:
        return job_id, False
    try:
        found = provider.jobs(tags=[pack.tag])
    except ProviderError as exc:
        log.warning("%s: could not check for duplicate jobs (%s); the next submit or collect will", pack.label, exc)
        return job_id, False
    if job_id not in {j.job_id for j in found}:  # the listing may lag behind the POST
        found.append(JobInfo(job_id=job_id, state=JobState.QUEUED, created=utc_now()))
    kept = settle_pack(pack.tag, found, recorded=None, ledger=ctx.ledger, provider=provider, account=account,
                       run_keys=list(pack.keys), estimate=cost)
    return kept.job_id, True


def _post_until_known(pack: Pack, provider: Provider, tags: list[str], ctx: _Context, account: str,
                      held: list[int]) -> tuple[str, bool]:
    """POST the pack until the provider holds exactly one answer for it; (job ID, adopted).

    Every failed, refused or ambiguous POST is followed by a lookup of the pack's tag before
    anything is sent again. A lookup that fails stops everything: sending blindly could make a
    second job, and the intent stays open for the next submit or collect to resolve.
    """
    attempts = ctx.settings.max_attempts if provider.may_duplicate_on_retry else 1
    specs = list(pack.specs)
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            raise_if_stopped(f"sending {pack.label} again (its intent stays open: the next submit looks it up first)")
        started = time.time()
        try:
            return provider.submit([ctx.files[s.key][0] for s in specs], backend=specs[0].backend,
                                   shots=[s.shots for s in specs], tags=tags,
                                   max_execution_time=int(ctx.config["provider"]["max_execution_time"]),
                                   metadata=[{"qpuflow_run": s.key, "qpuflow_run_id": s.run_id()} for s in specs]
                                   ), False
        except (SubmitRefused, SubmitUncertain) as exc:
            uncertain = isinstance(exc, SubmitUncertain)
            ctx.ledger.append("submit_error", pack=pack.tag, runs=list(pack.keys), attempt=attempt,
                              kind="uncertain" if uncertain else "refused", status=getattr(exc, "status", None),
                              error=str(exc), time=utc_now(), real_time=time.time())
            if not provider.may_duplicate_on_retry:
                raise
            found = _look_up(pack, provider, until=_settle_until(exc, started, provider),
                             sleep=lambda seconds: _sleep(seconds, held, ctx.settings.sleep))
            if found is not None:
                log.warning("%s: the submission reported %s, but job %s carries its pack tag: adopted",
                            pack.label, type(exc).__name__, found.job_id)
                return found.job_id, True
            if isinstance(exc, UsageLimitExceeded):
                raise BudgetExceeded(
                    f"not submitting {pack.label}: the service refused it because the instance of account "
                    f"'{account}' has used up its QPU time (HTTP 409, usage exceeds instance limit). Wait for "
                    f"its window to roll or add an account. Nothing was submitted."
                ) from None
            if isinstance(exc, SubmitRefused) and exc.status != 429:
                raise ProviderError(f"{pack.label}: {exc}. Nothing was submitted.") from None
            if attempt == attempts:
                break
            wait = min(BACKOFF_CAP_SECONDS, ctx.settings.backoff_seconds * 2 ** (attempt - 1))
            if isinstance(exc, SubmitRefused) and exc.retry_after:
                wait = max(wait, float(exc.retry_after))
            log.warning("%s: %s; no job carries its pack tag; sending again in %.0f s (attempt %d of %d)",
                        pack.label, exc, wait, attempt + 1, attempts)
            _sleep(wait, held, ctx.settings.sleep)
    raise ProviderError(
        f"{pack.label}: {attempts} submission attempts failed and no job carries its pack tag {pack.tag}. "
        f"Nothing more was sent; the next submit looks for the job again before sending."
    )


def _settle_until(exc: ProviderError, started: float, provider: Provider) -> float:
    """Until when a job created by a failed POST may still appear at the provider (epoch).

    A refusal created nothing: one lookup (for jobs of earlier attempts) is enough. An answered
    5xx was sent after whatever the service created: a short settle for the listing to catch
    up. No answer (timeout, dropped connection): the service may still be working on the POST,
    for as long as a request may take.
    """
    if isinstance(exc, SubmitUncertain):
        if exc.status is None:
            return started + provider.in_flight_seconds
        return time.time() + ANSWERED_SETTLE_SECONDS
    return 0.0


def _look_up(pack: Pack, provider: Provider, *, until: float, sleep: Callable[[float], None]) -> JobInfo | None:
    """The job carrying the pack's tag, polling until ``until`` (epoch) for one to appear."""
    while True:
        try:
            found = provider.jobs(tags=[pack.tag])
        except ProviderError as exc:
            raise ProviderError(
                f"{pack.label}: its submission failed and the provider could not be asked whether it created the "
                f"job anyway ({exc}). Nothing more was sent; the next submit or collect looks it up again."
            ) from None
        if found:
            return furthest_along(found)
        if time.time() >= until:
            return None
        sleep(min(LOOKUP_POLL_SECONDS, max(0.0, until - time.time())))


# ---------------------------------------------------------------------- records


def _job_seconds(specs: Sequence[RunSpec], infos: Mapping[str, TranspileRecord]) -> float:
    """Estimated QPU seconds of one job carrying ``specs``, from their transpile records."""
    return estimate_job_seconds([(spec.shots, infos[spec.key].duration_seconds) for spec in specs])


def _check_isa_before_spending(spec: RunSpec, isa_path: Path, info: TranspileRecord, config: dict[str, Any]) -> None:
    """The file about to be sent is the one transpiled and it passes the noiseless preflight."""
    from qpuflow.provenance import file_sha256
    from qpuflow.qpyio import load_circuit
    from qpuflow.stages import require_circuit_distance, require_preflight

    if file_sha256(isa_path) != info.isa_sha256:
        raise SubmissionConflict(
            f"{spec.key}: {isa_path} changed after it was transpiled (its hash differs from the "
            f"transpile record). Not submitting a circuit nobody checked: delete it and its .json "
            f"to transpile again."
        )
    require_preflight(load_circuit(isa_path), spec.key, stage="ISA")
    require_circuit_distance(spec, info, config)


def _cached(factory: Callable[[str], Provider]) -> Callable[[str], Provider]:
    """One provider (one authenticated client) per account for the duration of a call."""
    made: dict[str, Provider] = {}

    def get(name: str) -> Provider:
        if name not in made:
            made[name] = factory(name)
        return made[name]

    return get


def _check_same_run(accepted: dict[str, Any], spec: RunSpec) -> Marker:
    marker = Marker.from_json(accepted["marker"], f"ledger entry for {spec.key}")
    if accepted["run_id"] != spec.run_id():
        raise SubmissionConflict(
            f"{spec.key}: the ledger already holds job {marker.job_id} for this run, submitted with "
            f"different parameters (run id {accepted['run_id'][:12]}, now {spec.run_id()[:12]}). "
            f"qpuflow will not spend budget on a changed run under the same name: give the changed "
            f"run a new experiment name in config.yaml, or restore the old parameters."
        )
    return marker


def _marker_fields(spec: RunSpec, *, account: str, ctx: _Context, estimated: float, tags: list[str],
                   pub_index: int, batch: dict[str, Any] | None, job_tag: str) -> dict[str, Any]:
    """Everything a run's marker holds except the job ID, the submission time and ``adopted``."""
    info, isa_path, config = ctx.infos[spec.key], ctx.files[spec.key][0], ctx.config
    commit, dirty = git_state()
    names = [a["name"] for a in config["accounts"]]
    return dict(
        experiment_type=spec.experiment_type,
        backend=spec.backend,
        logical_state=spec.logical_state,
        shots=spec.shots,
        circuit_hash=info.circuit_hash,
        transpiled_depth=info.depth,
        transpiled_gates=info.num_gates,
        api_key_index=ctx.api_key_index if ctx.api_key_index is not None else names.index(account),
        git_commit=commit,
        status="submitted",
        run_key=spec.key,
        run_id=spec.run_id(),
        job_tag=job_tag,
        account=account,
        provider=spec.provider,
        tags=list(tags),
        isa_path=str(isa_path),
        isa_sha256=info.isa_sha256,
        physical_layout=list(info.physical_layout),
        transpiler_seed=spec.transpiler_seed,
        optimization_level=spec.optimization_level,
        calibration_snapshot=info.calibration_snapshot,
        package_versions=package_versions(),
        git_dirty=dirty,
        estimated_qpu_seconds=estimated,
        max_execution_time=int(config["provider"]["max_execution_time"]),
        spec=spec.to_json(),
        selection=info.selection,
        pub_index=pub_index,
        batch=batch,
        circuit_distance=(info.circuit_distance or {}).get("distance"),
        placement=info.placement,
    )


def check_pending_budget(specs: list[RunSpec], *, config: dict[str, Any], paths: Paths, source: str = "config.yaml",
                         provider_factory: Callable[[str], Provider] | None = None,
                         estimated: bool = False) -> dict[str, float]:
    """Refuse, before anything is sent, a set of runs that cannot all be paid for.

    Runs already accepted in the ledger cost nothing more; the others are packed into jobs as
    submit will pack them (``provider.pubs_per_job``) and each job is estimated from its runs'
    transpile records, or, with ``estimated``, before any transpiling, from one representative
    circuit per kind of run (:class:`qpuflow.campaign.CostEstimator`). Returns job
    (``experiment/batch``) -> estimated seconds.
    """
    from qpuflow.batches import job_name, plan_jobs, pubs_per_job
    from qpuflow.budget import check_study_fits

    factory = _cached(provider_factory or (lambda name: make_provider(config, account=name, local_store=paths.local_store)))
    ledger = Ledger(paths.ledger)
    view = ledger.view()
    pending = {spec.key: spec for spec in specs if spec.key not in view.accepted}
    costs = {}
    estimator = None
    if estimated:
        from qpuflow.campaign import CostEstimator

        estimator = CostEstimator(config, paths)
    for job in plan_jobs(pending.values(), pubs_per_job(config)):
        specs_of_job = [pending[key] for key in job]
        if estimator is not None:
            cost = estimator.job_seconds(specs_of_job)
        else:
            infos = {spec.key: TranspileRecord.read(paths.isa_info(spec)) for spec in specs_of_job}
            cost = _job_seconds(specs_of_job, infos)
        costs[f"{pending[job[0]].experiment}/{job_name(job)}"] = cost
    if costs:
        usage = usage_by_account(config, ledger.accepted_markers(), paths.result,
                                 duplicates=list(view.duplicates.values()))
        check_study_fits(costs, with_service_usage(usage, factory, only=None), source=source)
    return costs
