"""The one planner: what to send now, decided from the config and the durable records alone.

Both front ends ask it: Snakemake's DAG view (:class:`qpuflow.wf.Study`, the ``submit`` target
and ``submit_run``) and the seed scripts (:func:`qpuflow.pipeline.submit_pending`). From the
planned runs (retries of failed ones included), the ledger and the clock it decides which runs
are due (sessions by their schedule, arms once their probe is collected, in their recorded
order), which of them are still to be sent (no marker, no accepted submission), what waits and
why, and what the records say (runs whose definition changed, corrupt records). Reading the
records writes back what is provably lost (a missing ledger line or marker); it never submits
and never prints: the front ends say what they want of :attr:`SubmitDecision.notes`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Mapping, Sequence

from qpuflow.ledger import LedgerView
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec, plan_retries, plan_runs
from qpuflow.rebuild import planning_events
from qpuflow.records import Result, ResultStatus
from qpuflow.sessions import plan_submissions
from qpuflow.study_state import RecordState, refusal, survey


@dataclasses.dataclass(frozen=True)
class SubmitDecision:
    """What a submit does now, and why the rest waits."""

    runs: Mapping[str, RunSpec]  # every planned run, retries included
    due: tuple[str, ...]  # asked for now, in planned order (arms in their recorded order)
    pending: tuple[str, ...]  # due, without a marker or an accepted submission: to be sent
    waiting: tuple[str, ...]  # one line per thing that waits (a session's schedule, a probe)
    records: RecordState  # changed definitions, corrupt records, what was written back
    events: tuple[dict[str, Any], ...]  # the ledger as planning read it

    def refusal(self, config: Mapping[str, Any], source: str) -> str | None:
        """Why submit must not go on (runs submitted under another definition), or None."""
        allowed = {name for name, exp in config["experiments"].items() if exp.get("allow_mixed_definitions")}
        return refusal(self.records.changed, allowed, source)


def failed_result(paths: Paths, key: str) -> bool:
    """Whether a run's collected result is a failure (what plans a retry)."""
    path = paths.result(key)
    return path.exists() and Result.read(path).status is ResultStatus.FAILED


def planned_runs(config: Mapping[str, Any], paths: Paths,
                 specs: Sequence[RunSpec] | None = None) -> dict[str, RunSpec]:
    """The config's runs (or ``specs``, a front end's selection of them) and the retries of
    failed ones, up to ``provider.retries`` per run."""
    planned = list(plan_runs(dict(config)) if specs is None else specs)
    retries = plan_retries(planned, lambda key: failed_result(paths, key), int(config["provider"]["retries"]))
    return {spec.key: spec for spec in planned + retries}


def decide(config: Mapping[str, Any], paths: Paths, at: datetime, *,
           runs: Mapping[str, RunSpec] | None = None) -> SubmitDecision:
    """The submission decision at time ``at`` for ``runs`` (default: :func:`planned_runs`)."""
    runs = dict(runs if runs is not None else planned_runs(config, paths))
    events = planning_events(paths)
    plan = plan_submissions(runs, dict(config), paths, events, at)
    records = survey(runs, plan.keys, paths, LedgerView(events))
    return SubmitDecision(runs=runs, due=tuple(plan.keys), pending=tuple(records.pending),
                          waiting=tuple(plan.notes), records=records, events=tuple(events))
