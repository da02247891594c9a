"""Rebuilding the records from each other: the ledger from markers, markers from the ledger.

The ledger (``results/ledger/submissions.jsonl``) and the markers (``results/submitted/``)
hold the same facts: which job each run went out as. If one is lost, the other rebuilds it:

* a marker without an ``accepted`` line (the ledger was deleted or restored from an old
  backup) gets one, marked ``restored``, so exactly-once, the budget and the campaign
  schedule see the run again;
* an ``accepted`` line without a marker gets its marker back;
* the batch records under ``submitted/{exp}/batches/`` (what one submit sent together) are
  written again, one per provider job.

Planning does the first two on its own (and says so); ``qpuflow rebuild`` does all three and
prints what it rebuilt.
"""

from __future__ import annotations

from pathlib import Path

from qpuflow.ledger import Ledger
from qpuflow.paths import Paths
from qpuflow.provenance import utc_now
from qpuflow.records import CorruptRecordError, Marker, write_json_atomic, write_marker


def scan_markers(paths: Paths, files: list[Path] | None = None) -> tuple[dict[str, Marker], list[str]]:
    """Every readable marker (or those of ``files``) by run key, and a description of each
    unreadable one."""
    markers, problems = {}, []
    for path in paths.marker_files() if files is None else files:
        try:
            marker = Marker.read(path)
        except CorruptRecordError as exc:
            problems.append(str(exc))
            continue
        markers[marker.run_key] = marker
    return markers, problems


def restore_ledger(paths: Paths, markers: dict[str, Marker]) -> list[str]:
    """Append an ``accepted`` line for every marker the ledger does not know; returns notes."""
    ledger = Ledger(paths.ledger)
    missing = [m for k, m in markers.items() if k not in ledger.view().accepted]
    if not missing:
        return []
    with ledger.locked():
        known = ledger.view().accepted
        for marker in missing:
            if marker.run_key in known:
                continue
            ledger.append("accepted", run_key=marker.run_key, run_id=marker.run_id, job_id=marker.job_id,
                          pack=marker.job_tag if marker.job_tag.startswith("qpuflow-pack-") else None,
                          time=utc_now(), adopted=marker.adopted, restored=True, checked=True,
                          marker=marker.to_json())
    return [f"the ledger {paths.ledger} had no line for {len(missing)} submitted run(s) (lost or replaced?): "
            f"written back from their markers, e.g. {missing[0].run_key} (job {missing[0].job_id})"]


def planning_events(paths: Paths) -> list[dict]:
    """The ledger's events for planning, after writing back a line for every marker it lacks
    (only those markers are read). Says on stderr what it wrote back."""
    import sys

    ledger = Ledger(paths.ledger)
    known = ledger.view().accepted
    unknown = [p for p in paths.marker_files() if paths.key_of_marker(p) not in known]
    if unknown:
        markers, _ = scan_markers(paths, unknown)
        for note in restore_ledger(paths, markers):
            print(note, file=sys.stderr)
    return ledger.events()


def restore_markers(paths: Paths) -> list[str]:
    """Write the marker of every accepted run whose marker file is missing; returns notes."""
    restored = []
    for key, event in Ledger(paths.ledger).view().accepted.items():
        path = paths.marker(key)
        if not path.exists():
            write_marker(path, Marker.from_json(event["marker"], f"ledger entry for {key}"))
            restored.append(key)
    return [f"{len(restored)} marker(s) written back from the ledger, e.g. {restored[0]}"] if restored else []


def restore_batches(paths: Paths, markers: dict[str, Marker]) -> list[str]:
    """One batch record per provider job whose record is missing; returns notes."""
    jobs: dict[str, list[Marker]] = {}
    for marker in markers.values():
        jobs.setdefault(marker.job_id, []).append(marker)
    written = 0
    for job_id, members in sorted(jobs.items()):
        members.sort(key=lambda m: m.pub_index)
        first = members[0]
        experiment = first.run_key.split("/", 1)[0]
        name = (first.batch or {}).get("name") or f"{first.run_key.split('/', 1)[1]}-{len(members)}"
        path = paths.root / "submitted" / experiment / "batches" / f"{name}.json"
        if path.exists():
            continue
        write_json_atomic(path, {
            "batch": name, "jobs": [job_id], "written": utc_now(), "rebuilt": True,
            "runs": [{"run_key": m.run_key, "job_id": m.job_id, "pub_index": m.pub_index, "account": m.account}
                     for m in members],
        })
        written += 1
    return [f"{written} batch record(s) written under {paths.root / 'submitted'}/*/batches/"] if written else []


def rebuild(paths: Paths) -> tuple[list[str], list[str]]:
    """Everything above; (what was rebuilt, records that could not be read)."""
    markers, problems = scan_markers(paths)
    notes = restore_ledger(paths, markers) + restore_markers(paths)
    markers, _ = scan_markers(paths)
    notes += restore_batches(paths, markers)
    return notes, problems


def describe(notes: list[str], problems: list[str]) -> str:
    lines = notes or ["nothing to rebuild: the ledger and the markers agree"]
    lines += [f"needs attention: {p}" for p in problems]
    return "\n".join(lines)
