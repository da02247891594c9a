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
from typing import Any, Callable, Iterator

from qpuflow.budget import choose_account, estimate_qpu_seconds, usage_by_account, with_service_usage
from qpuflow.faults import fault_point
from qpuflow.ledger import Ledger
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec
from qpuflow.provenance import git_state, package_versions, utc_now
from qpuflow.providers import Provider, make_provider
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
    """Submit ``spec`` once, ever; write and return its marker.

    Args:
        account: pay with this account (the seed's ``--api-key-index``); default: the one
            with the most budget left.
        provider_factory: account name -> provider; default from the config.
    """
    factory = _cached(provider_factory or (lambda name: make_provider(config, account=name, local_store=paths.local_store)))
    ledger = Ledger(paths.ledger)
    marker_path = paths.marker(spec.key)
    with ledger.locked():
        history = ledger.history(spec.key)
        if history.accepted is not None:
            marker = _check_same_run(history.accepted, spec)
            log.info("%s: already submitted as job %s; marker restored from the ledger", spec.key, marker.job_id)
            write_marker(marker_path, marker)
            return marker

        info = read_json(isa_info_path, "transpile info")
        adopted = _adopt_by_tag(spec, history.dangling_intent, factory, config)
        if adopted is not None:
            job_id, account_name = adopted
            marker = _make_marker(spec, job_id=job_id, account=account_name, info=info, config=config,
                                  isa_path=isa_path, api_key_index=api_key_index, adopted=True)
            ledger.append("accepted", run_key=spec.key, run_id=spec.run_id(), job_id=job_id,
                          time=utc_now(), adopted=True, marker=marker.to_json())
            log.warning("%s: adopted job %s found by tag %s (an earlier submission was interrupted)",
                        spec.key, job_id, spec.job_tag())
            write_marker(marker_path, marker)
            _cancel_duplicates(spec, job_id, factory(account_name), ledger)
            return marker

        _check_isa_before_spending(spec, isa_path, info)
        cost = estimate_qpu_seconds(shots=spec.shots, circuit_duration=info.get("duration_seconds"))
        usage = usage_by_account(config, ledger.accepted_markers(), lambda key: paths.result(key))
        usage = with_service_usage(usage, factory, only=account)
        account_name = choose_account(usage, cost, run_key=spec.key, preferred=account)
        provider = factory(account_name)
        tags = _tags(spec, config)
        with deferred_interrupts():
            ledger.append("intent", run_key=spec.key, run_id=spec.run_id(), tag=spec.job_tag(),
                          account=account_name, provider=spec.provider, time=utc_now())
            try:
                job_id = provider.submit(isa_path, backend=spec.backend, shots=spec.shots, tags=tags,
                                         max_execution_time=config["provider"]["max_execution_time"])
            except BaseException as exc:
                ledger.append("submit_error", run_key=spec.key, run_id=spec.run_id(), time=utc_now(),
                              error=f"{type(exc).__name__}: {exc}")
                # A failed POST may still have created the job (the client does not retry a
                # dropped POST, and retries 5xx ones): look for the tag now, not next run.
                adopted = _lookup_after_failed_submit(spec, exc, provider, account_name, factory, config)
                if adopted is None:
                    raise
                job_id = adopted[0]
                marker = _make_marker(spec, job_id=job_id, account=account_name, info=info, config=config,
                                      isa_path=isa_path, api_key_index=api_key_index, adopted=True,
                                      estimated=cost, tags=tags)
                ledger.append("accepted", run_key=spec.key, run_id=spec.run_id(), job_id=job_id,
                              time=utc_now(), adopted=True, marker=marker.to_json())
                log.warning("%s: the submission reported %s, but job %s exists with the run's tag: adopted",
                            spec.key, type(exc).__name__, job_id)
                write_marker(marker_path, marker)
                _cancel_duplicates(spec, job_id, provider, ledger)
                return marker
            fault_point("after_provider_accept")
            marker = _make_marker(spec, job_id=job_id, account=account_name, info=info, config=config,
                                  isa_path=isa_path, api_key_index=api_key_index, adopted=False,
                                  estimated=cost, tags=tags)
            ledger.append("accepted", run_key=spec.key, run_id=spec.run_id(), job_id=job_id,
                          time=utc_now(), adopted=False, marker=marker.to_json())
            fault_point("before_marker_write")
            write_marker(marker_path, marker)
        _cancel_duplicates(spec, job_id, provider, ledger)
        log.info("%s: submitted as job %s (account %s, ~%.1f QPU s)", spec.key, job_id, account_name, cost)
        return marker


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
                                factory: Callable[[str], Provider], config: dict[str, Any]) -> tuple[str, str] | None:
    """(job ID, account) if the failed submission created the job anyway; None otherwise.

    Only for providers whose client can create a job and still report failure; an interrupt
    (KeyboardInterrupt) is never swallowed, and a lookup that fails leaves the original error.
    """
    from qpuflow.providers import ProviderError

    if not isinstance(exc, Exception) or not getattr(provider, "may_duplicate_on_retry", False):
        return None
    try:
        return _adopt_by_tag(spec, {"account": account}, factory, config)
    except ProviderError as lookup_error:
        log.warning("%s: could not look the job up by tag after the failed submission (%s)", spec.key, lookup_error)
        return None


def _cached(factory: Callable[[str], Provider]) -> Callable[[str], Provider]:
    """One provider (one authenticated client) per account for the duration of a call."""
    made: dict[str, Provider] = {}

    def get(name: str) -> Provider:
        if name not in made:
            made[name] = factory(name)
        return made[name]

    return get


def _cancel_duplicates(spec: RunSpec, job_id: str, provider: Provider, ledger: Ledger) -> None:
    """Cancel jobs that carry this run's tag but are not the recorded one.

    qiskit-ibm-runtime retries POST /jobs on 5xx answers, so one submission can create several
    jobs (upstream issue #1114). They would all spend budget; a queued job cancelled now costs
    nothing. Providers that cannot duplicate skip the extra listing.
    """
    if not getattr(provider, "may_duplicate_on_retry", False):
        return
    from qpuflow.providers import ProviderError

    try:
        extras = [j for j in provider.find_by_tag(spec.job_tag()) if j.job_id != job_id]
    except ProviderError as exc:
        log.warning("%s: could not check for duplicate jobs (%s); run `qpuflow jobs --tag %s`",
                    spec.key, exc, spec.job_tag())
        return
    for extra in extras:
        outcome = "already final"
        if not extra.state.final:
            try:
                provider.cancel(extra.job_id)
                outcome = "cancelled"
            except ProviderError as exc:
                outcome = f"cancel failed: {exc}"
        ledger.append("duplicate", run_key=spec.key, run_id=spec.run_id(), job_id=extra.job_id, kept=job_id,
                      outcome=outcome, time=utc_now())
        log.warning("%s: duplicate job %s created by client retries: %s (kept %s)",
                    spec.key, extra.job_id, outcome, job_id)


def _tags(spec: RunSpec, config: dict[str, Any]) -> list[str]:
    return ["qpuflow", f"exp:{spec.experiment}", f"run:{spec.run}", *config.get("tags", []), spec.job_tag()]


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


def _adopt_by_tag(spec: RunSpec, intent: dict[str, Any] | None, factory: Callable[[str], Provider],
                  config: dict[str, Any]) -> tuple[str, str] | None:
    """(job ID, account) of a job already carrying this run's tag, if the provider has one."""
    accounts = [intent["account"]] if intent else [a["name"] for a in config["accounts"]]
    for name in accounts:
        found = factory(name).find_by_tag(spec.job_tag())
        if found:
            # Oldest first: if a duplicate ever slipped through, the first job is the real one.
            found.sort(key=lambda j: (j.created, j.job_id))
            if len(found) > 1:
                log.warning("%s: %d jobs carry tag %s; adopting the oldest, %s",
                            spec.key, len(found), spec.job_tag(), found[0].job_id)
            return found[0].job_id, name
    return None


def _make_marker(spec: RunSpec, *, job_id: str, account: str, info: dict[str, Any], config: dict[str, Any],
                 isa_path: Path, api_key_index: int | None, adopted: bool, estimated: float | None = None,
                 tags: list[str] | None = None) -> Marker:
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
        tags=tags or _tags(spec, config),
        isa_path=str(isa_path),
        isa_sha256=info["isa_sha256"],
        physical_layout=list(info["physical_layout"]),
        transpiler_seed=spec.transpiler_seed,
        optimization_level=spec.optimization_level,
        calibration_snapshot=info["calibration_snapshot"],
        package_versions=package_versions(),
        git_dirty=dirty,
        estimated_qpu_seconds=estimated if estimated is not None else
        estimate_qpu_seconds(shots=spec.shots, circuit_duration=info.get("duration_seconds")),
        max_execution_time=int(config["provider"]["max_execution_time"]),
        spec=spec.to_json(),
        adopted=adopted,
        selection=info.get("selection"),
    )


def check_pending_budget(specs: list[RunSpec], *, config: dict[str, Any], paths: Paths, source: str = "config.yaml",
                         provider_factory: Callable[[str], Provider] | None = None) -> dict[str, float]:
    """Refuse, before anything is sent, a set of runs that cannot all be paid for.

    Runs already accepted in the ledger cost nothing more; the others are estimated from their
    transpile record. Returns run key -> estimated seconds of the runs still to submit.
    """
    from qpuflow.budget import check_study_fits

    factory = _cached(provider_factory or (lambda name: make_provider(config, account=name, local_store=paths.local_store)))
    ledger = Ledger(paths.ledger)
    events = ledger.events()
    costs = {}
    for spec in specs:
        if ledger.history(spec.key, events).accepted is not None:
            continue
        info = read_json(paths.isa_info(spec), "transpile info")
        costs[spec.key] = estimate_qpu_seconds(shots=spec.shots, circuit_duration=info.get("duration_seconds"))
    if costs:
        usage = usage_by_account(config, ledger.accepted_markers(), lambda key: paths.result(key))
        check_study_fits(costs, with_service_usage(usage, factory, only=None), source=source)
    return costs
