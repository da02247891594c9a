"""What a person sees after collect: per-job status lines and a table of raw figures.

The figures here are raw (undecoded): the logical observable read straight from the final
data measurement, and the fraction of detection events. Decoding comes with the analysis.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

from qpuflow.collect import JobStatusRow
from qpuflow.paths import Paths
from qpuflow.providers.base import JobState
from qpuflow.records import Marker, Result, ResultStatus
from qpuflow.stats import wilson_interval


@dataclasses.dataclass(frozen=True)
class RawFigures:
    shots: int
    logical_errors: int
    detection_events: int
    detector_samples: int


def raw_figures(result: Result, measurement_map: dict[str, Any]) -> RawFigures:
    """Count raw logical errors and detection events in a completed result."""
    from qpuflow.measurement_map import MeasurementMap, detection_events, observable_flips

    mmap = MeasurementMap.from_json(measurement_map)
    registers = result.bit_arrays()
    flips = observable_flips(registers, mmap)
    events = detection_events(registers, mmap)
    return RawFigures(shots=int(flips.shape[0]), logical_errors=int(flips.any(axis=1).sum()),
                      detection_events=int(events.sum()), detector_samples=int(events.size))


def measurement_map_of(paths: Paths, marker: Marker) -> dict[str, Any]:
    """The measurement map saved with the run's ISA circuit (falls back to the logical circuit)."""
    from qpuflow.qpyio import load_circuit

    for path in (Path(marker.isa_path), paths.root / "circuits" / f"{marker.run_key}.qpy"):
        if path.exists():
            return load_circuit(path).metadata["measurement_map"]
    raise FileNotFoundError(f"{marker.run_key}: neither {marker.isa_path} nor the logical circuit exists")


def summary_table(paths: Paths, markers: dict[str, Marker]) -> list[dict[str, Any]]:
    """Rows per (experiment, logical state): runs (a job may carry several), shots, raw logical error rate with 95% CI."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for key, marker in sorted(markers.items()):
        if marker.experiment_type == "probe":
            continue  # a calibration measurement, not a memory experiment: no logical error rate
        group = groups.setdefault((key.split("/")[0], marker.logical_state), {
            "experiment": key.split("/")[0], "kind": marker.experiment_type, "logical_state": marker.logical_state,
            "jobs": 0, "completed": 0, "failed": 0, "shots": 0, "logical_errors": 0,
            "detection_events": 0, "detector_samples": 0,
        })
        group["jobs"] += 1
        result_path = paths.result(key)
        if not result_path.exists():
            continue
        result = Result.read(result_path)
        if result.status is not ResultStatus.COMPLETED:
            group["failed"] += 1
            continue
        figures = raw_figures(result, measurement_map_of(paths, marker))
        group["completed"] += 1
        group["shots"] += figures.shots
        group["logical_errors"] += figures.logical_errors
        group["detection_events"] += figures.detection_events
        group["detector_samples"] += figures.detector_samples
    rows = []
    for group in groups.values():
        shots = group["shots"]
        low, high = wilson_interval(group["logical_errors"], shots)
        rows.append({
            **group,
            "raw_logical_error_rate": group["logical_errors"] / shots if shots else None,
            "ci95_low": low if shots else None,
            "ci95_high": high if shots else None,
            "detection_fraction": group["detection_events"] / group["detector_samples"] if group["detector_samples"] else None,
        })
    return rows


def print_status(rows: Iterable[JobStatusRow], console: Any = None, *, every_job: bool = False) -> None:
    """The seed's per-job lines ("Job <id>: DONE") and counts ("✓ Completed: 1/3", "Pending: 2/3").

    Without ``every_job`` only the jobs that need a word get a line (collected just now, failed,
    unknown to the provider, unreachable): a cron log stays readable at hundreds of jobs; the
    others are counted by state. ``qpuflow status`` lists every job.
    """
    from collections import Counter

    from rich.console import Console

    console = console or Console()
    rows = list(rows)
    for row in rows:
        state = row.state
        if not (every_job or row.new or state in (JobState.ERROR, JobState.CANCELLED, JobState.UNKNOWN, "?")):
            continue
        note = f"  ({row.error})" if row.error and state != JobState.DONE else ""
        console.print(f"Job {row.job_id}: {state}  [dim]{row.run_key}[/dim]{note}", highlight=False, soft_wrap=True)
    completed = sum(r.state == JobState.DONE for r in rows)
    failed = sum(r.final and r.state != JobState.DONE for r in rows)
    waiting = Counter(r.state for r in rows if not r.final)
    console.print(f"  ✓ Completed: {completed}/{len(rows)}", highlight=False)
    if failed:
        console.print(f"  ✗ Failed or cancelled: {failed}/{len(rows)}", highlight=False)
    detail = ", ".join(f"{n} {state}" for state, n in sorted(waiting.items()))
    console.print(f"  Pending: {sum(waiting.values())}/{len(rows)}" + (f" ({detail})" if detail else ""),
                  highlight=False)


def print_summary(rows: list[dict[str, Any]], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="Raw (undecoded) results per experiment and logical state")
    table.add_column("experiment", no_wrap=True)
    table.add_column("state", justify="center", no_wrap=True)
    table.add_column("runs", justify="right", no_wrap=True)
    table.add_column("shots", justify="right", no_wrap=True)
    table.add_column("raw p_L", justify="right", no_wrap=True)
    table.add_column("95% CI", justify="right", no_wrap=True)
    table.add_column("det. rate", justify="right", no_wrap=True)
    for row in rows:
        has = row["raw_logical_error_rate"] is not None
        table.add_row(
            row["experiment"], row["logical_state"],
            f"{row['completed']}/{row['jobs']}" + (f" ({row['failed']} failed)" if row["failed"] else ""),
            str(row["shots"]),
            f"{row['raw_logical_error_rate']:.4f}" if has else "-",
            f"[{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]" if has else "-",
            "-" if row["detection_fraction"] is None else f"{row['detection_fraction']:.4f}",
        )
    console.print(table)
