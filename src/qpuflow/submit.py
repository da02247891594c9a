"""Exactly-once submission of one run.

The order of events is the whole design (DESIGN.md, invariant 1):

1. Under the ledger lock, look the run up. An ``accepted`` entry means the job exists: write
   its marker again and stop. A dangling ``intent`` means a previous process may have died
   after the provider accepted the job: ask the provider for the run's tag and adopt what it
   finds. Even with no ledger entry the tag is checked, so a lost ledger cannot cause a
   duplicate either.
2. Check the budget: the job's estimated cost must fit an account's remaining window budget.
3. Flush an ``intent`` line, call the provider, flush ``accepted`` with the job ID and the
   whole marker, then write the marker atomically. Ctrl-C and SIGTERM are held back during
   step 3, so an interrupt lands before or after it, never in the middle.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from qpuflow.batches import BATCH_TAG_PREFIX, CompositionError, batch_record, composition, job_tags
from qpuflow.budget import choose_account, estimate_job_seconds, usage_by_account, with_service_usage
from qpuflow.faults import fault_point
from qpuflow.ledger import Ledger
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec
from qpuflow.provenance import git_state, package_versions, utc_now
from qpuflow.providers import JobInfo, Provider, make_provider
from qpuflow.records import Marker, read_json, write_marker

log = logging.getLogger("qpuflow.submit")


class SubmissionConflict(RuntimeError):
    """The ledger holds a job for this run key, but for a run with a different identity."""


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver them."""
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
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending:
            signal.raise_signal(signum)


def submit_run(
    spec: RunSpec, *, isa_path: Path, isa_info_path: Path, config: dict[str, Any], paths: Paths,
    account: str | None = None, api_key_index: int | None = None,
    provider_factory: Callable[[str], Provider] | None = None,
) -> Marker:
    """Submit ``spec`` once, ever, as a job of its own; write and return its marker."""
    return submit_batch([spec], config=config, paths=paths, files={spec.key: (Path(isa_path), Path(isa_info_path))},
                        account=account, api_key_index=api_key_index, provider_factory=provider_factory)[0]


def submit_batch(
    specs: Sequence[RunSpec], *, config: dict[str, Any], paths: Paths,
    files: Mapping[str, tuple[Path, Path]] | None = None, account: str | None = None,
    api_key_index: int | None = None, provider_factory: Callable[[str], Provider] | None = None,
) -> list[Marker]:
    """Submit each of ``specs`` once, ever, the unsubmitted ones together as the PUBs of one
    job (in order); write and return their markers, in the order of ``specs``.

    A run already accepted in the ledger gets its marker back; a run whose job exists at the
    provider (found by its tag: an interrupted submission, a lost ledger) is adopted with its
    PUB in that job; only the rest are sent.

    Args:
        files: run key -> (ISA file, transpile info); default: where ``paths`` puts them.
        account: pay with this account (the seed's ``--api-key-index``); default: the one
            with the most budget left.
        provider_factory: account name -> provider; default from the config.
    """
    factory = _cached(provider_factory or (lambda name: make_provider(config, account=name, local_store=paths.local_store)))
    files = files or {}
    ledger = Ledger(paths.ledger)
    done: dict[str, Marker] = {}
    with ledger.locked():
        events = ledger.events()
        unresolved = []
        for spec in specs:
            history = ledger.history(spec.key, events)
            if history.accepted is not None:
                marker = _check_same_run(history.accepted, spec)
                log.info("%s: already submitted as job %s; marker restored from the ledger", spec.key, marker.job_id)
                write_marker(paths.marker(spec.key), marker)
                done[spec.key] = marker
            else:
                unresolved.append((spec, history.dangling_intent))
        isa = {spec.key: files.get(spec.key, (paths.isa(spec), paths.isa_info(spec))) for spec, _ in unresolved}
        infos = {key: read_json(info_path, "transpile info") for key, (_, info_path) in isa.items()}
        to_send = []
        for spec, intent in unresolved:
            if spec.key in done:  # adopted with an earlier run of the same job
                continue
            found = _find_job(spec, intent, factory, config)
            if found is None:
                to_send.append(spec)
                continue
            for marker in _adopt(found, [s for s, _ in unresolved], isa, infos, config, api_key_index, ledger,
                                 paths, factory):
                done[marker.run_key] = marker
        if to_send:
            for marker in _send(to_send, isa, infos, config, paths, ledger, factory, account, api_key_index):
                done[marker.run_key] = marker
    return [done[spec.key] for spec in specs]


def _send(specs: list[RunSpec], isa: Mapping[str, tuple[Path, Path]], infos: Mapping[str, dict[str, Any]],
          config: dict[str, Any], paths: Paths, ledger: Ledger, factory: Callable[[str], Provider],
          account: str | None, api_key_index: int | None) -> list[Marker]:
    """Send ``specs`` as one job (intent, submit, accepted, markers); the ledger lock is held."""
    keys = [spec.key for spec in specs]
    label = keys[0] if len(keys) == 1 else f"{keys[0]} and {len(keys) - 1} more run(s) in one job"
    if len({(s.backend, s.provider) for s in specs}) != 1:
        raise ValueError(f"{label}: runs on different backends or providers cannot share a job")
    for spec in specs:
        _check_isa_before_spending(spec, isa[spec.key][0], infos[spec.key])
    cost = _job_seconds(specs, infos)
    limit = int(config["provider"]["max_execution_time"])
    if cost > limit:
        raise ValueError(
            f"{label}: the job needs about {cost:.1f} QPU seconds but provider.max_execution_time in the config is "
            f"{limit} s, so the service would cancel it part way (and charge for it). Raise max_execution_time "
            f"or lower provider.pubs_per_job. Nothing was submitted."
        )
    usage = usage_by_account(config, ledger.accepted_markers(), lambda key: paths.result(key))
    usage = with_service_usage(usage, factory, only=account)
    account_name = choose_account(usage, cost, run_key=label, preferred=account)
    provider = factory(account_name)
    tags = job_tags(specs, config.get("tags", []))
    batch = batch_record(keys, [spec.job_tag() for spec in specs])
    with deferred_interrupts():
        for spec in specs:
            ledger.append("intent", run_key=spec.key, run_id=spec.run_id(), tag=spec.job_tag(), account=account_name,
                          provider=spec.provider, time=utc_now(), batch=batch)
        adopted = False
        try:
            job_id = provider.submit([isa[key][0] for key in keys], backend=specs[0].backend,
                                     shots=[spec.shots for spec in specs], tags=tags, max_execution_time=limit)
        except BaseException as exc:
            for spec in specs:
                ledger.append("submit_error", run_key=spec.key, run_id=spec.run_id(), time=utc_now(),
                              error=f"{type(exc).__name__}: {exc}")
            # A failed POST may still have created the job (the client does not retry a
            # dropped POST, and retries 5xx ones): look for the tag now, not next run.
            job_id = _lookup_after_failed_submit(specs[0], exc, provider, account_name, factory, config)
            if job_id is None:
                raise
            adopted = True
            log.warning("%s: the submission reported %s, but job %s exists with the run's tag: adopted",
                        label, type(exc).__name__, job_id)
        fault_point("after_provider_accept")
        markers = []
        for index, spec in enumerate(specs):
            marker = _make_marker(spec, job_id=job_id, account=account_name, info=infos[spec.key], config=config,
                                  isa_path=isa[spec.key][0], api_key_index=api_key_index, adopted=adopted,
                                  estimated=cost, tags=tags, pub_index=index, batch=batch)
            ledger.append("accepted", run_key=spec.key, run_id=spec.run_id(), job_id=job_id,
                          time=utc_now(), adopted=adopted, marker=marker.to_json())
            markers.append(marker)
        fault_point("before_marker_write")
        for marker in markers:
            write_marker(paths.marker(marker.run_key), marker)
    _cancel_duplicates(specs[0].key, _job_lookup_tag(tags, specs[0]), job_id, provider, ledger,
                       [spec.run_id() for spec in specs])
    log.info("%s: submitted as job %s (account %s, ~%.1f QPU s)", label, job_id, account_name, cost)
    return markers


def _adopt(found: tuple[JobInfo, str], candidates: Sequence[RunSpec], isa: Mapping[str, tuple[Path, Path]],
           infos: Mapping[str, dict[str, Any]], config: dict[str, Any], api_key_index: int | None, ledger: Ledger,
           paths: Paths, factory: Callable[[str], Provider]) -> list[Marker]:
    """Markers for the runs of ``candidates`` that the existing job ``found`` carries."""
    job, account_name = found
    try:
        pubs = composition(job.tags, job.job_id)
    except CompositionError as exc:
        raise SubmissionConflict(
            f"{exc}. Nothing was submitted; restore {paths.ledger} from a backup to adopt it, or cancel it "
            f"(`qpuflow jobs`) and submit again."
        ) from None
    keys = [key for key, _ in pubs]
    batch = batch_record(keys, [tag for _, tag in pubs])
    by_tag = {spec.job_tag(): spec for spec in candidates}
    mine = [(index, by_tag[tag]) for index, (_, tag) in enumerate(pubs) if tag in by_tag]
    cost = _job_seconds([spec for _, spec in mine], infos)
    markers = []
    for index, spec in mine:
        marker = _make_marker(spec, job_id=job.job_id, account=account_name, info=infos[spec.key], config=config,
                              isa_path=isa[spec.key][0], api_key_index=api_key_index, adopted=True, estimated=cost,
                              tags=list(job.tags), pub_index=index, batch=batch)
        ledger.append("accepted", run_key=spec.key, run_id=spec.run_id(), job_id=job.job_id,
                      time=utc_now(), adopted=True, marker=marker.to_json())
        log.warning("%s: adopted job %s (PUB %d) found by tag %s (an earlier submission was interrupted)",
                    spec.key, job.job_id, index, spec.job_tag())
        write_marker(paths.marker(spec.key), marker)
        markers.append(marker)
    first = mine[0][1]
    _cancel_duplicates(first.key, _job_lookup_tag(list(job.tags), first), job.job_id, factory(account_name), ledger,
                       [spec.run_id() for _, spec in mine])
    return markers


def _job_seconds(specs: Sequence[RunSpec], infos: Mapping[str, dict[str, Any]]) -> float:
    """Estimated QPU seconds of one job carrying ``specs``, from their transpile records."""
    return estimate_job_seconds([(spec.shots, infos[spec.key].get("duration_seconds")) for spec in specs])


def _job_lookup_tag(tags: Sequence[str], spec: RunSpec) -> str:
    """The tag that names exactly one job's composition: its batch tag, else the run's tag."""
    return next((t for t in tags if t.startswith(BATCH_TAG_PREFIX)), spec.job_tag())


def _check_isa_before_spending(spec: RunSpec, isa_path: Path, info: dict[str, Any]) -> None:
    """The file about to be sent is the one transpiled and it passes the noiseless preflight."""
    from qiskit import qpy

    from qpuflow.provenance import file_sha256
    from qpuflow.stages import require_preflight

    if file_sha256(isa_path) != info["isa_sha256"]:
        raise SubmissionConflict(
            f"{spec.key}: {isa_path} changed after it was transpiled (its hash differs from the "
            f"transpile record). Not submitting a circuit nobody checked: delete it and its .json "
            f"to transpile again."
        )
    with open(isa_path, "rb") as fh:
        (isa,) = qpy.load(fh)
    require_preflight(isa, spec.key, stage="ISA")


def _lookup_after_failed_submit(spec: RunSpec, exc: BaseException, provider: Provider, account: str,
                                factory: Callable[[str], Provider], config: dict[str, Any]) -> str | None:
    """The job ID if the failed submission created the job anyway; None otherwise.

    Only for providers whose client can create a job and still report failure; an interrupt
    (KeyboardInterrupt) is never swallowed, and a lookup that fails leaves the original error.
    """
    from qpuflow.providers import ProviderError

    if not isinstance(exc, Exception) or not getattr(provider, "may_duplicate_on_retry", False):
        return None
    try:
        found = _find_job(spec, {"account": account}, factory, config)
    except ProviderError as lookup_error:
        log.warning("%s: could not look the job up by tag after the failed submission (%s)", spec.key, lookup_error)
        return None
    return None if found is None else found[0].job_id


def _cached(factory: Callable[[str], Provider]) -> Callable[[str], Provider]:
    """One provider (one authenticated client) per account for the duration of a call."""
    made: dict[str, Provider] = {}

    def get(name: str) -> Provider:
        if name not in made:
            made[name] = factory(name)
        return made[name]

    return get


def _cancel_duplicates(run_key: str, tag: str, job_id: str, provider: Provider, ledger: Ledger,
                       run_ids: Sequence[str]) -> None:
    """Cancel jobs that carry ``tag`` (the job's batch tag, or its one run's tag) but are not
    the recorded one.

    qiskit-ibm-runtime retries POST /jobs on 5xx answers, so one submission can create several
    jobs (upstream issue #1114). They would all spend budget; a queued job cancelled now costs
    nothing. Providers that cannot duplicate skip the extra listing.
    """
    if not getattr(provider, "may_duplicate_on_retry", False):
        return
    from qpuflow.providers import ProviderError

    try:
        extras = [j for j in provider.find_by_tag(tag) if j.job_id != job_id]
    except ProviderError as exc:
        log.warning("%s: could not check for duplicate jobs (%s); run `qpuflow jobs --tag %s`", run_key, exc, tag)
        return
    for extra in extras:
        outcome = "already final"
        if not extra.state.final:
            try:
                provider.cancel(extra.job_id)
                outcome = "cancelled"
            except ProviderError as exc:
                outcome = f"cancel failed: {exc}"
        ledger.append("duplicate", run_key=run_key, run_id=run_ids[0], run_ids=list(run_ids), job_id=extra.job_id,
                      kept=job_id, outcome=outcome, time=utc_now())
        log.warning("%s: duplicate job %s created by client retries: %s (kept %s)",
                    run_key, extra.job_id, outcome, job_id)


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


def _find_job(spec: RunSpec, intent: dict[str, Any] | None, factory: Callable[[str], Provider],
              config: dict[str, Any]) -> tuple[JobInfo, str] | None:
    """(job, account) of a job already carrying this run's tag, if the provider has one."""
    accounts = [intent["account"]] if intent else [a["name"] for a in config["accounts"]]
    for name in accounts:
        found = factory(name).find_by_tag(spec.job_tag())
        if found:
            # Oldest first: if a duplicate ever slipped through, the first job is the real one.
            found.sort(key=lambda j: (j.created, j.job_id))
            if len(found) > 1:
                log.warning("%s: %d jobs carry tag %s; adopting the oldest, %s",
                            spec.key, len(found), spec.job_tag(), found[0].job_id)
            return found[0], name
    return None


def _make_marker(spec: RunSpec, *, job_id: str, account: str, info: dict[str, Any], config: dict[str, Any],
                 isa_path: Path, api_key_index: int | None, adopted: bool, estimated: float,
                 tags: list[str], pub_index: int = 0, batch: dict[str, Any] | None = None) -> Marker:
    commit, dirty = git_state()
    names = [a["name"] for a in config["accounts"]]
    return Marker(
        job_id=job_id,
        experiment_type=spec.experiment_type,
        backend=spec.backend,
        logical_state=spec.logical_state,
        shots=spec.shots,
        circuit_hash=info["circuit_hash"],
        transpiled_depth=int(info["depth"]),
        transpiled_gates=int(info["num_gates"]),
        submission_time=utc_now(),
        api_key_index=api_key_index if api_key_index is not None else names.index(account),
        git_commit=commit,
        status="submitted",
        run_key=spec.key,
        run_id=spec.run_id(),
        job_tag=spec.job_tag(),
        account=account,
        provider=spec.provider,
        tags=list(tags),
        isa_path=str(isa_path),
        isa_sha256=info["isa_sha256"],
        physical_layout=list(info["physical_layout"]),
        transpiler_seed=spec.transpiler_seed,
        optimization_level=spec.optimization_level,
        calibration_snapshot=info["calibration_snapshot"],
        package_versions=package_versions(),
        git_dirty=dirty,
        estimated_qpu_seconds=estimated,
        max_execution_time=int(config["provider"]["max_execution_time"]),
        spec=spec.to_json(),
        adopted=adopted,
        selection=info.get("selection"),
        pub_index=pub_index,
        batch=batch,
    )


def check_pending_budget(specs: list[RunSpec], *, config: dict[str, Any], paths: Paths, source: str = "config.yaml",
                         provider_factory: Callable[[str], Provider] | None = None) -> dict[str, float]:
    """Refuse, before anything is sent, a set of runs that cannot all be paid for.

    Runs already accepted in the ledger cost nothing more; the others are packed into jobs as
    submit will pack them (``provider.pubs_per_job``) and each job is estimated from its runs'
    transpile records. Returns job (``experiment/batch``) -> estimated seconds.
    """
    from qpuflow.batches import job_name, plan_jobs, pubs_per_job
    from qpuflow.budget import check_study_fits

    factory = _cached(provider_factory or (lambda name: make_provider(config, account=name, local_store=paths.local_store)))
    ledger = Ledger(paths.ledger)
    events = ledger.events()
    pending = {spec.key: spec for spec in specs if ledger.history(spec.key, events).accepted is None}
    costs = {}
    for job in plan_jobs(pending.values(), pubs_per_job(config)):
        specs_of_job = [pending[key] for key in job]
        infos = {spec.key: read_json(paths.isa_info(spec), "transpile info") for spec in specs_of_job}
        costs[f"{pending[job[0]].experiment}/{job_name(job)}"] = _job_seconds(specs_of_job, infos)
    if costs:
        usage = usage_by_account(config, ledger.accepted_markers(), lambda key: paths.result(key))
        check_study_fits(costs, with_service_usage(usage, factory, only=None), source=source)
    return costs
