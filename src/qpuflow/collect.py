"""Collection: ask providers about submitted jobs and record final ones, each once.

Collection never submits. Status is asked for all pending jobs at once, grouped by provider
and account; a result file is written only for a job in a final state and only if it has
none yet, so rerunning downloads nothing twice. A result file that exists is never replaced.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

from qpuflow.paths import Paths
from qpuflow.provenance import utc_now
from qpuflow.providers import JobInfo, JobOutput, JobState, Provider, ProviderError, make_provider
from qpuflow.records import Marker, Result, pack_bits, read_or_report, write_json_atomic

log = logging.getLogger("qpuflow.collect")


@dataclasses.dataclass(frozen=True)
class JobStatusRow:
    """One line of the status view: a submitted run and what is known of its job."""

    run_key: str
    job_id: str
    state: str          # provider state (QUEUED, RUNNING, DONE, ERROR, CANCELLED, UNKNOWN) or "?" if unreachable
    collected: bool
    error: str | None = None
    new: bool = False  # collected by this very collect

    @property
    def final(self) -> bool:
        """Collected, or ended at the provider. A job the provider does not know (UNKNOWN) is
        not final: its record may be elsewhere, and a later collect asks again."""
        return self.collected or self.state in {s.value for s in JobState if s.final and s is not JobState.UNKNOWN}


def read_markers(paths: Paths, keys: Iterable[str] | None = None,
                 problems: list[str] | None = None) -> dict[str, Marker]:
    """All markers (or those of ``keys``) by run key. A corrupt one is skipped and described in
    ``problems`` (or, with ``problems`` None, stops with its path)."""
    files = [paths.marker(k) for k in keys] if keys is not None else paths.marker_files()
    found = (read_or_report(Marker.read, f, problems) for f in files if f.exists())
    return {m.run_key: m for m in found if m is not None}


def poll(markers: dict[str, Marker], *, factory: Callable[[str, str], Provider]) -> dict[str, JobInfo | str]:
    """Status of every marker's job, one bulk request per (provider, account).

    Returns run key -> JobInfo, or an error string when that provider could not be reached
    (collection goes on with the others).
    """
    groups: dict[tuple[str, str], list[Marker]] = {}
    for marker in markers.values():
        groups.setdefault((marker.provider, marker.account), []).append(marker)
    out: dict[str, JobInfo | str] = {}
    for (provider_name, account), group in sorted(groups.items()):
        try:
            infos = factory(provider_name, account).statuses([m.job_id for m in group])
        except ProviderError as exc:
            for m in group:
                out[m.run_key] = str(exc)
            continue
        for m in group:
            out[m.run_key] = infos[m.job_id]
    return out


def status_rows(paths: Paths, markers: dict[str, Marker], factory: Callable[[str, str], Provider],
                problems: list[str] | None = None) -> list[JobStatusRow]:
    """Status of each submitted run; jobs already collected are not asked about again."""
    return poll_rows(paths, markers, factory, problems=problems)[0]


def poll_rows(paths: Paths, markers: dict[str, Marker], factory: Callable[[str, str], Provider],
              also: dict[str, Marker] | None = None,
              problems: list[str] | None = None) -> tuple[list[JobStatusRow], dict[str, JobInfo]]:
    """:func:`status_rows`, plus what the bulk poll said of each pending run's job.

    ``also``: collected runs to ask about in the same poll (their charge was still pending).
    ``problems``: where corrupt result files are described (they are left out of the rows).
    """
    rows: dict[str, JobStatusRow] = {}
    infos: dict[str, JobInfo] = {}
    pending: dict[str, Marker] = {}
    for key, marker in markers.items():
        result_path = paths.result(key)
        if result_path.exists():
            result = read_or_report(Result.read, result_path, problems)
            if result is None:
                continue
            rows[key] = JobStatusRow(key, marker.job_id, result.provider_status or result.status.upper(),
                                     collected=True, error=result.error)
        else:
            pending[key] = marker
    extra = {k: m for k, m in (also or {}).items() if k not in pending}
    for key, info in poll({**pending, **extra}, factory=factory).items():
        if key in extra:
            if not isinstance(info, str):
                infos[key] = info
            continue
        if isinstance(info, str):
            rows[key] = JobStatusRow(key, markers[key].job_id, "?", collected=False, error=info)
        else:
            infos[key] = info
            rows[key] = JobStatusRow(key, info.job_id, info.state.value, collected=False, error=info.error)
    return [rows[k] for k in sorted(rows)], infos


def collect_result(marker: Marker, result_path: Path, provider: Provider,
                   known: JobInfo | None = None, downloaded: dict[str, JobOutput] | None = None) -> Result | None:
    """Write the result of a final job once; return None (and write nothing) if not final.

    ``known``: the job's status from the bulk poll, so it is not asked for again.
    ``downloaded``: job ID -> output already fetched in this collection (a job carrying several
    runs as PUBs is downloaded once; each run's result file takes its own PUB).
    """
    if result_path.exists():
        return Result.read(result_path)  # raises naming the path if corrupt: never overwritten
    info = known if known is not None else provider.statuses([marker.job_id])[marker.job_id]
    if not info.state.final:
        log.info("%s: job %s is %s; nothing to collect yet", marker.run_key, marker.job_id, info.state.value)
        return None
    if info.state is JobState.UNKNOWN:
        # Not a failure: the job store may be elsewhere, or the account may be another
        # instance's. Nothing is written, so a later collect that finds the job completes it.
        log.warning("%s: the provider does not know job %s (%s); left pending, not recorded as failed",
                    marker.run_key, marker.job_id, info.error or "unknown job")
        return None
    downloaded = {} if downloaded is None else downloaded
    if marker.job_id not in downloaded:
        downloaded[marker.job_id] = provider.fetch(marker.job_id, known=info)
    output = downloaded[marker.job_id]
    info = output.info
    output_registers = output.registers(marker.pub_index, run_id=marker.run_id)
    result = Result(
        job_id=marker.job_id,
        run_key=marker.run_key,
        status=info.state.result_status,
        completion_time=output.completion_time,
        usage_seconds=info.usage_seconds if info.usage_final else None,
        usage_final=info.usage_final,
        registers={name: pack_bits(bits) for name, bits in (output_registers or {}).items()},
        error=None if info.state is JobState.DONE else (info.error or f"job ended {info.state.value} without a message"),
        provider_status=info.state.value,
        collected_time=utc_now(),
    )
    write_json_atomic(result_path, result.to_json())
    log.info("%s: job %s %s", marker.run_key, marker.job_id, result.status)
    return result


def pending_charges(paths: Paths, markers: dict[str, Marker]) -> dict[str, Marker]:
    """Runs whose result is written but whose job's charge was still pending at the service."""
    out = {}
    for key, marker in markers.items():
        path = paths.result(key)
        if path.exists():
            result = read_or_report(Result.read, path, [])
            if result is not None and result.usage_final is False:
                out[key] = marker
    return out


def record_charges(paths: Paths, markers: dict[str, Marker], infos: dict[str, JobInfo]) -> int:
    """Write the final charge into results collected while billing was pending (their data is
    not touched: only usage_seconds and usage_final change). Returns how many were updated."""
    updated = 0
    for key, info in infos.items():
        if not info.usage_final or info.usage_seconds is None:
            continue
        result = Result.read(paths.result(key))
        if result.job_id != markers[key].job_id or result.usage_final is not False:
            continue
        write_json_atomic(paths.result(key), dataclasses.replace(result, usage_seconds=info.usage_seconds,
                                                                  usage_final=True).to_json())
        log.info("%s: job %s charged %.1f QPU s (billing final)", key, info.job_id, info.usage_seconds)
        updated += 1
    return updated


def provider_factory(config: dict[str, Any], paths: Paths) -> Callable[[str, str], Provider]:
    """(provider name, account) -> provider, one instance per pair."""
    cache: dict[tuple[str, str], Provider] = {}

    def factory(provider_name: str, account: str) -> Provider:
        if provider_name != config["provider"]["name"]:
            raise ProviderError(
                f"a marker was written by provider '{provider_name}' but config.yaml now uses "
                f"'{config['provider']['name']}'; switch back to collect it."
            )
        key = (provider_name, account)
        if key not in cache:
            cache[key] = make_provider(config, account=account, local_store=paths.local_store)
        return cache[key]

    return factory
