"""Making the ledger agree with the provider: duplicates, open checks, dangling intents.

Extra jobs can exist for one pack of runs although qpuflow sent it once per decision: a POST
that timed out but was processed later, a client that retried on its own, a listing that
lagged behind. DESIGN.md invariant 1 says what to do with them: keep the one furthest along
(completed > running > queued, then the earliest), cancel the others while they are still
queued, and record every extra job's state and charged usage in the ledger, so the budget
counts it. These checks are not one-shot: submit settles a pack right after its POST, and any
later submit or collect finishes what was left open (a kill before the check, a listing that
was down, a job that appeared late).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from qpuflow.ledger import Ledger
from qpuflow.provenance import utc_now
from qpuflow.providers import JobInfo, JobState, Provider, ProviderError, furthest_along

log = logging.getLogger("qpuflow.reconcile")


def choose_kept(jobs: Sequence[JobInfo], recorded: str | None) -> JobInfo:
    """Which of several jobs carrying the same runs to keep.

    Without a recorded job (no marker yet): the one furthest along. With one: it stays unless
    it ended badly while another is live, or it still waits in the queue while another already
    runs or completed (its data is coming anyway, and the queued one can still be cancelled).
    """
    best = furthest_along(jobs)
    current = next((j for j in jobs if j.job_id == recorded), None)
    if current is None:
        return best
    if not current.live and best.live:
        return best
    if current.state is JobState.QUEUED and best.state in (JobState.RUNNING, JobState.DONE):
        return best
    return current


def record_duplicate(ledger: Ledger, job: JobInfo, *, kept: str, pack: str, run_keys: Sequence[str],
                     account: str, provider: Provider, estimate: float | None) -> dict[str, Any]:
    """Cancel an extra job if it is still queued; record what it is and what it costs."""
    state, outcome, usage, final = job.state, job.state.value.lower(), job.usage_seconds, job.usage_final
    if state is JobState.QUEUED:
        try:
            provider.cancel(job.job_id)
            state, outcome, usage, final = JobState.CANCELLED, "cancelled", 0.0, True  # never ran: costs nothing
        except ProviderError as exc:
            outcome = f"cancel failed: {exc}"
    if state is JobState.RUNNING:
        outcome = "running (not cancelled: a running job is charged anyway)"
    event = ledger.append(
        "duplicate", pack=pack, job_id=job.job_id, kept=kept, run_keys=list(run_keys), account=account,
        provider=provider.name, state=state.value, outcome=outcome, usage_seconds=usage, usage_final=final,
        estimated_qpu_seconds=estimate, created=job.created, time=utc_now(),
    )
    log.warning("%s: job %s carries the same runs as job %s (a duplicate): %s",
                run_keys[0] if run_keys else pack, job.job_id, kept, outcome)
    return event


def settle_pack(pack: str, jobs: Sequence[JobInfo], *, recorded: str | None, ledger: Ledger, provider: Provider,
                account: str, run_keys: Sequence[str], estimate: float | None,
                known_duplicates: Sequence[str] = (), keep: JobInfo | None = None) -> JobInfo:
    """Keep one of ``jobs`` (all carrying pack tag ``pack``): ``keep``, else :func:`choose_kept`;
    record the others as duplicates (cancelling queued ones) and mark the pack checked.
    Returns the kept job."""
    kept = keep if keep is not None else choose_kept(jobs, recorded)
    for job in jobs:
        if job.job_id != kept.job_id and job.job_id not in known_duplicates:
            record_duplicate(ledger, job, kept=kept.job_id, pack=pack, run_keys=run_keys, account=account,
                             provider=provider, estimate=estimate)
    ledger.append("checked", pack=pack, job_id=kept.job_id, seen=sorted(j.job_id for j in jobs), time=utc_now())
    return kept


def refresh_duplicates(ledger: Ledger, duplicates: Sequence[dict[str, Any]],
                       factory: Callable[[str, str], Provider]) -> int:
    """Ask again about duplicates that may still cost something (running, queued, or billing
    pending) and record what changed. Returns how many were updated."""
    open_ones = [d for d in duplicates if not (d.get("usage_final") and d.get("state") in ("DONE", "ERROR", "CANCELLED"))]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for dup in open_ones:
        groups.setdefault((dup.get("provider", ""), dup["account"]), []).append(dup)
    updated = 0
    for (provider_name, account), dups in groups.items():
        try:
            provider = factory(provider_name, account)
            infos = provider.statuses([d["job_id"] for d in dups])
        except ProviderError as exc:
            log.warning("duplicates of account %s could not be checked (%s); trying again next time", account, exc)
            continue
        for dup in dups:
            info = infos[dup["job_id"]]
            if info.state is JobState.UNKNOWN:
                continue
            if (info.state.value, info.usage_seconds, info.usage_final) == (dup.get("state"), dup.get("usage_seconds"),
                                                                          dup.get("usage_final")):
                continue
            ledger.append("duplicate", **{**{k: v for k, v in dup.items() if k != "event"},
                                          "state": info.state.value, "usage_seconds": info.usage_seconds,
                                          "usage_final": info.usage_final, "time": utc_now()})
            updated += 1
    return updated


def resolve_open(config: dict[str, Any], paths: Any, factory: Callable[[str, str], Provider]) -> list[str]:
    """What a collect finishes on the way: adopt the job of a dangling intent, check accepted
    packs for duplicates nobody checked, find extra jobs of this study that appeared late, and
    refresh duplicates that may still cost something. Returns notes for the user.

    Needs the ledger lock; if a submit holds it, this is left for the next time.
    """
    import filelock

    from qpuflow.packs import read_tags, study_tag

    ledger = Ledger(paths.ledger)
    if not ledger.path.exists():
        return []
    notes: list[str] = []
    try:
        with ledger.locked(timeout=0):
            view = ledger.view()
            if not factory(config["provider"]["name"], config["accounts"][0]["name"]).may_duplicate_on_retry:
                return notes  # (local) a job exists once recorded, or not at all: submit adopts it
            for intent in view.dangling():
                notes.extend(_adopt_intent(intent, ledger, paths, factory))
            view = ledger.view()
            for pack, accepted in view.unchecked_packs().items():
                notes.extend(_check_pack(pack, accepted, view, ledger, paths, factory))
            view = ledger.view()
            notes.extend(_late_extras(config, view, ledger, paths, factory, study_tag(config.get("study")), read_tags))
            refresh_duplicates(ledger, list(ledger.view().duplicates.values()), factory)
    except filelock.Timeout:
        log.info("a submit holds the ledger; open submissions are checked next time")
    return notes


def _adopt_intent(intent: dict[str, Any], ledger: Ledger, paths: Any,
                  factory: Callable[[str, str], Provider]) -> list[str]:
    """Write the markers of a dangling intent whose job exists after all."""
    from qpuflow.records import Marker, write_marker

    provider = factory(intent.get("provider", "ibm"), intent["account"])
    try:
        found = provider.jobs(tags=[intent["pack"]])
    except ProviderError as exc:
        return [f"{intent['runs'][0]}: an interrupted submission could not be looked up ({exc}); trying again next time"]
    if not found or not intent.get("markers"):
        return []
    kept = settle_pack(intent["pack"], found, recorded=None, ledger=ledger, provider=provider,
                       account=intent["account"], run_keys=intent["runs"],
                       estimate=intent.get("estimated_qpu_seconds"))
    for key in intent["runs"]:
        fields = {**intent["markers"][key], "tags": list(kept.tags) or intent["markers"][key]["tags"]}
        marker = Marker(job_id=kept.job_id, submission_time=utc_now(), adopted=True, **fields)
        ledger.append("accepted", run_key=key, run_id=marker.run_id, job_id=kept.job_id, pack=intent["pack"],
                      time=utc_now(), adopted=True, checked=True, marker=marker.to_json())
        write_marker(paths.marker(key), marker)
    return [f"{intent['runs'][0]}: an interrupted submission had created job {kept.job_id}: adopted "
            f"({len(intent['runs'])} run(s))"]


def _check_pack(pack: str, accepted: list[dict[str, Any]], view: Any, ledger: Ledger, paths: Any,
                factory: Callable[[str, str], Provider]) -> list[str]:
    """The duplicate check a submit could not finish (killed, or the listing was down)."""
    marker = accepted[0]["marker"]
    provider = factory(marker["provider"], marker["account"])
    try:
        found = provider.jobs(tags=[pack])
    except ProviderError as exc:
        return [f"{marker['run_key']}: duplicates could not be checked ({exc}); trying again next time"]
    extras = _settle_accepted(pack, found, accepted, view, ledger, paths, provider, marker["account"])
    return [f"{marker['run_key']}: {extras} duplicate job(s) found and recorded"] if extras else []


def _settle_accepted(pack: str, found: Sequence[JobInfo], accepted: list[dict[str, Any]], view: Any,
                     ledger: Ledger, paths: Any, provider: Provider, account: str) -> int:
    """Settle the jobs carrying an accepted pack: the recorded one stays unless another is
    further along and no result of the recorded one was collected yet. Returns how many new
    duplicates were recorded."""
    recorded = accepted[0]["job_id"]
    if recorded not in {j.job_id for j in found}:
        return 0  # the listing does not show the recorded job yet: nothing to decide on
    kept = choose_kept(found, recorded)
    if kept.job_id != recorded and any(paths.result(e["run_key"]).exists() for e in accepted):
        kept = next(j for j in found if j.job_id == recorded)  # its result is in: the record stays
    if kept.job_id != recorded:
        _switch(accepted, kept, ledger, paths)
    new = [j for j in found if j.job_id != kept.job_id and j.job_id not in view.duplicates]
    settle_pack(pack, found, recorded=recorded, keep=kept, ledger=ledger, provider=provider, account=account,
                run_keys=[e["run_key"] for e in accepted], estimate=accepted[0]["marker"].get("estimated_qpu_seconds"),
                known_duplicates=list(view.duplicates))
    return len(new)


def _switch(accepted: list[dict[str, Any]], kept: JobInfo, ledger: Ledger, paths: Any) -> None:
    """Point a pack's runs at the job that is further along (the recorded one waits in the
    queue or ended badly): new accepted lines and markers replacing the old ones."""
    from qpuflow.records import Marker, write_json_atomic

    for event in accepted:
        marker = Marker.from_json({**event["marker"], "job_id": kept.job_id, "adopted": True,
                                   "tags": list(kept.tags) or event["marker"]["tags"]})
        ledger.append("accepted", run_key=event["run_key"], run_id=event["run_id"], job_id=kept.job_id,
                      pack=event.get("pack"), time=utc_now(), adopted=True, replaces=event["job_id"],
                      marker=marker.to_json())
        write_json_atomic(paths.marker(event["run_key"]), marker.to_json())
        log.warning("%s: now recorded as job %s, which is further along than job %s", event["run_key"],
                    kept.job_id, event["job_id"])


def _late_extras(config: dict[str, Any], view: Any, ledger: Ledger, paths: Any,
                 factory: Callable[[str, str], Provider], tag: str, read_tags: Callable[[Any], Any]) -> list[str]:
    """Jobs of this study that no record names: duplicates of accepted packs (settled here),
    or jobs whose records were lost (only a submit can adopt those: it knows the runs)."""
    accepted_packs: dict[str, list[dict[str, Any]]] = {}
    for event in view.accepted.values():
        if event.get("pack"):
            accepted_packs.setdefault(event["pack"], []).append(event)
    notes, unknown = [], 0
    for account in [a["name"] for a in config["accounts"]]:
        provider = factory(config["provider"]["name"], account)
        try:
            jobs = provider.jobs(tags=[tag])
        except ProviderError as exc:
            return [f"the study's jobs could not be listed ({exc}); trying again next time"]
        by_pack: dict[str, list[JobInfo]] = {}
        for job in jobs:
            pack = read_tags(job.tags).pack
            if pack is not None:
                by_pack.setdefault(pack, []).append(job)
        for pack, found in by_pack.items():
            new = [j for j in found if j.job_id not in view.known_jobs]
            if not new:
                continue
            if pack not in accepted_packs:
                unknown += len(new)
                continue
            if _settle_accepted(pack, found, accepted_packs[pack], view, ledger, paths, provider, account):
                notes.append(f"{accepted_packs[pack][0]['run_key']}: {len(new)} late duplicate job(s) found and recorded")
    if unknown:
        notes.append(f"{unknown} job(s) of this study at the provider are not in {ledger.path}: "
                     f"`snakemake --cores 1 submit` adopts them (lost records) instead of sending again")
    return notes
