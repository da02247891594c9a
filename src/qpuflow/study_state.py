"""What the durable records say about each run the config plans: submitted, pending, changed.

The config describes the data (DESIGN.md invariant 7). A run whose recorded definition (its
marker, or the ledger's accepted line) differs from what the config now plans under the same
name (the user changed ``shots`` or ``distance`` after submitting) is a *changed* run: submit
and analyze refuse to mix it with new runs unless the experiment is renamed or its
``allow_mixed_definitions`` is true. A marker that went missing is written back from the
ledger; a corrupt one is moved aside and restored from the ledger when the ledger knows the
job, and reported otherwise (the run is then neither sent again nor collected).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Mapping

from qpuflow.ledger import LedgerView
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec
from qpuflow.records import CorruptRecordError, Marker, write_marker


@dataclasses.dataclass(frozen=True)
class DefinitionChange:
    """A submitted run whose definition differs from the config's for the same name."""

    run_key: str
    job_id: str
    fields: tuple[tuple[str, Any, Any], ...]  # (field, as submitted, as configured now)

    @property
    def experiment(self) -> str:
        return self.run_key.split("/", 1)[0]

    def describe_fields(self) -> str:
        return ", ".join(f"{name} {old!r} -> {new!r}" for name, old, new in self.fields)


@dataclasses.dataclass
class RecordState:
    pending: list[str] = dataclasses.field(default_factory=list)
    changed: list[DefinitionChange] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def survey(runs: Mapping[str, RunSpec], keys: Iterable[str], paths: Paths, view: LedgerView) -> RecordState:
    """The state of every planned run; ``keys`` are the ones due now (candidates to send)."""
    state = RecordState()
    submitted = set()
    for key, spec in runs.items():
        recorded = _recorded(key, paths, view, state)
        if recorded is None:
            continue
        submitted.add(key)
        job_id, definition = recorded
        fields = _differences(definition, spec.to_json())
        if fields:
            state.changed.append(DefinitionChange(run_key=key, job_id=job_id, fields=fields))
    state.pending = [key for key in keys if key not in submitted]
    return state


def _recorded(key: str, paths: Paths, view: LedgerView, state: RecordState) -> tuple[str, dict[str, Any]] | None:
    """(job ID, recorded spec) of a submitted run, None if it was never submitted. Restores or
    reports its marker on the way."""
    accepted = view.accepted.get(key)
    path = paths.marker(key)
    if path.exists():
        try:
            marker = Marker.read(path)
            return marker.job_id, marker.spec
        except CorruptRecordError as exc:
            if accepted is None:
                state.problems.append(
                    f"{exc} The ledger has no record of this run's job either: move the file away and run "
                    f"submit, which looks the run up at the provider and adopts its job if there is one.")
                return "?", {}
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            state.notes.append(f"{path} was corrupt: moved to {aside.name}, rewritten from the ledger "
                               f"(job {accepted['job_id']})")
    if accepted is None:
        return None
    marker = Marker.from_json(accepted["marker"], f"ledger entry for {key}")
    if not path.exists():
        write_marker(path, marker)
        state.notes.append(f"{key}: marker restored from the ledger (job {marker.job_id})")
    return marker.job_id, marker.spec


def _differences(recorded: dict[str, Any], planned: dict[str, Any]) -> tuple[tuple[str, Any, Any], ...]:
    if not recorded:
        return ()
    plain = json.loads(json.dumps(planned))
    out = []
    for name in sorted(set(plain) | set(recorded)):
        old, new = recorded.get(name), plain.get(name)
        if old != new and not (old is None and new in (None, 0)):
            out.append((name, old, new))
    return tuple(out)


def refusal(changes: list[DefinitionChange], allowed: set[str], source: str) -> str | None:
    """The message refusing to mix changed runs with the config's, or None if there are none
    (or their experiments allow mixed definitions)."""
    refused = [c for c in changes if c.experiment not in allowed]
    if not refused:
        return None
    groups: dict[tuple[str, str], list[DefinitionChange]] = {}
    for change in refused:
        groups.setdefault((change.experiment, change.describe_fields()), []).append(change)
    lines = []
    for (experiment, fields), members in groups.items():
        names = ", ".join(c.run_key.split("/", 1)[1] for c in members[:6]) + (" ..." if len(members) > 6 else "")
        lines.append(f"experiment '{experiment}': {len(members)} submitted run(s) ({names}) have {fields}")
    experiments = sorted({c.experiment for c in refused})
    return (
        f"{source}: the config no longer describes runs already submitted under the same names: "
        + "; ".join(lines) + ". Mixing them would put data of different experiments under one name. Give the "
        f"changed experiment a new name in {source} (its runs are then new runs), restore the old values, or set "
        + " and ".join(f"experiments.{e}.allow_mixed_definitions: true" for e in experiments)
        + " to keep the submitted runs as they are and analyse every run by its own recorded definition."
    )
