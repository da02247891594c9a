"""The whole pipeline in one process, for the seed-compatible scripts.

Same stages, same files, same ledger as the Snakemake rules: a run submitted here has a
marker Snakemake recognises, and the other way round.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

from qpuflow.collect import JobStatusRow, collect_result, poll_rows, provider_factory, read_markers
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec
from qpuflow.records import Marker

log = logging.getLogger("qpuflow.pipeline")


def ensure_isa(spec: RunSpec, config: dict[str, Any], paths: Paths, runs: dict[str, RunSpec] | None = None) -> None:
    """Build and transpile a run's circuit unless its files exist already (for this run id).

    A deployment arm first needs its session's selection (made now, from the collected probe).
    """
    from qpuflow.stages import ensure_transpiled, select_session

    selection = None
    if spec.kind == "deployment":
        assert spec.session is not None
        selection = paths.selection(spec.experiment, spec.session)
        if not selection.exists():
            select_session(spec.experiment, spec.session, selection, config=config, paths=paths,
                           **_probe_inputs(spec, runs or {spec.key: spec}, paths))
    ensure_transpiled(spec, config=config, paths=paths, selection_path=selection)


def _probe_inputs(spec: RunSpec, runs: dict[str, RunSpec], paths: Paths) -> dict[str, Path]:
    from qpuflow.sessions import completed_probe

    parts = [s for s in runs.values() if s.experiment == spec.experiment and s.session == spec.session]
    probe = completed_probe(parts, paths)
    return {} if probe is None else {"probe_marker": paths.marker(probe.key), "probe_result": paths.result(probe.key)}


def submit_pending(specs: Sequence[RunSpec], config: dict[str, Any], paths: Paths, *,
                   accounts: Sequence[str] | None = None) -> list[Marker]:
    """Submit every run in ``specs`` that has no marker; return the markers written now.

    ``accounts``: pay with these, round-robin (the seed's ``--api-key-index``/``--submit-all``);
    default: whichever account has most budget left.
    """
    from qpuflow.batches import plan_jobs, pubs_per_job
    from qpuflow.campaign import check_campaign_start
    from qpuflow.errors import Refusal
    from qpuflow.planner import decide, planned_runs
    from qpuflow.schedule import now
    from qpuflow.submit import check_pending_budget, submit_packs

    # The same planner as the Snakemake submit target: sessions that are due, arms whose probe
    # was collected, in their recorded order; runs with a marker or an accepted submission
    # are not sent again (a lost marker is written back from the ledger on the way).
    runs = planned_runs(config, paths, specs)
    decision = decide(config, paths, now(), runs=runs)
    message = decision.refusal(config, "config.yaml")
    if message:
        raise Refusal(message)
    check_campaign_start(config, paths, list(decision.events), now())  # a campaign that does not fit is not started
    for note in (*decision.records.notes, *decision.waiting):
        print(note, flush=True)
    specs = [runs[key] for key in decision.due]
    written = []
    pending = [runs[key] for key in decision.pending]
    for spec in pending:
        ensure_isa(spec, config, paths, runs)
    check_pending_budget(pending, config=config, paths=paths)  # all or nothing, before the first job
    jobs = plan_jobs(pending, pubs_per_job(config))
    chosen = [accounts[i % len(accounts)] for i in range(len(jobs))] if accounts else [None] * len(jobs)
    # Each marker's api_key_index is the index of the account that paid (the seed's field).
    markers = submit_packs([[runs[key] for key in job] for job in jobs], config=config, paths=paths, account=chosen)
    sizes = {key: len(job) for job in jobs for key in job}
    written.extend(markers)
    for marker in markers:
        pub = f", PUB {marker.pub_index + 1} of {sizes[marker.run_key]}" if sizes[marker.run_key] > 1 else ""
        print(f"Submitted {marker.run_key}: job {marker.job_id} ({marker.account}{pub})", flush=True)
    skipped = len(specs) - len(pending)
    if skipped:
        print(f"{skipped} run(s) already had a marker; nothing resubmitted.")
    return written


def collect(config: dict[str, Any], paths: Paths, *, keys: Iterable[str] | None = None,
            problems: list[str] | None = None, lock_timeout: float = 600.0) -> list[JobStatusRow]:
    """Poll the markers' jobs (all, or ``keys``), write results for final ones, return the rows.

    Never submits. One bulk status request per provider and account; each final job without
    a result is downloaded once. A download that fails (timeout, dropped connection, service
    down) is reported in its row and retried on the next call; the others go on. A corrupt
    marker or result is skipped and described in ``problems`` (logged if None). One collect
    at a time per study: a second one waits for the first (a lock), so nothing is downloaded
    twice.
    """
    import filelock

    from qpuflow.errors import Refusal

    lock = filelock.FileLock(str(paths.ledger.parent / "collect.lock"))
    paths.ledger.parent.mkdir(parents=True, exist_ok=True)
    found: list[str] = [] if problems is None else problems
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        log.warning("another collect is running in this study; waiting for it to finish")
        try:
            lock.acquire(timeout=lock_timeout)
        except filelock.Timeout:
            raise Refusal(f"another collect has held {lock.lock_file} for {lock_timeout:.0f} s; if none is "
                          f"running, delete that file and run collect again") from None
    try:
        rows = _collect_locked(config, paths, keys, found)
    finally:
        lock.release()
    if problems is None:
        for problem in found:
            log.warning("%s", problem)
    return rows


def _collect_locked(config: dict[str, Any], paths: Paths, keys: Iterable[str] | None,
                    problems: list[str]) -> list[JobStatusRow]:
    import dataclasses

    from qpuflow.collect import pending_charges, record_charges
    from qpuflow.providers import ProviderError
    from qpuflow.reconcile import resolve_open

    factory = provider_factory(config, paths)
    markers = read_markers(paths, keys, problems)
    waiting = sum(not paths.result(key).exists() for key in markers)
    log.info("collect: %d submitted run(s), %d without a result yet: asking the provider", len(markers), waiting)
    notes = resolve_open(config, paths, factory)
    for note in notes:
        log.warning("%s", note)
    if notes:  # an interrupted submission may have been adopted: its markers are new
        markers = read_markers(paths, keys, [])
    billing = pending_charges(paths, markers)
    rows, infos = poll_rows(paths, markers, factory, also=billing, problems=problems)
    record_charges(paths, billing, {key: infos[key] for key in billing if key in infos})
    downloaded: dict = {}  # job ID -> output: a job carrying several runs is downloaded once
    out = []
    for row in rows:
        if row.final and not row.collected and row.state != "UNKNOWN":
            marker = markers[row.run_key]
            try:
                result = collect_result(marker, paths.result(row.run_key), factory(marker.provider, marker.account),
                                        known=infos.get(row.run_key), downloaded=downloaded)
            except ProviderError as exc:
                log.warning("%s: job %s could not be downloaded (%s); will retry next time", row.run_key, row.job_id, exc)
                row = dataclasses.replace(row, state="?", error=f"download failed: {exc}")
            else:
                if result is not None:
                    row = dataclasses.replace(row, collected=True, error=result.error, new=True)
        out.append(row)
    return out


def markers_from_jobs_file(path: Path, paths: Paths) -> list[str]:
    """Run keys of the jobs listed in a seed JSONL export (by run_key, else by job ID)."""
    import json

    from qpuflow.errors import QpuflowError

    if not path.exists() and (paths.exports_dir / path.name).exists():
        path = paths.exports_dir / path.name
    if not path.is_file():
        raise QpuflowError(f"{path}: no such jobs file. Submit exports are written to {paths.exports_dir} "
                           f"(submitted_jobs_*.jsonl); or use --poll-all.")
    keys = []
    by_job = {m.job_id: k for k, m in read_markers(paths, problems=[]).items()}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise QpuflowError(f"{path}, line {number}: not a JSON line (is this a submitted_jobs_*.jsonl "
                               f"export?)") from None
        key = entry.get("run_key") or by_job.get(entry.get("job_id"))
        if key is None:
            raise QpuflowError(f"{path}, line {number}: job {entry.get('job_id')} has no marker under "
                               f"{paths.root}/submitted")
        keys.append(key)
    return keys
