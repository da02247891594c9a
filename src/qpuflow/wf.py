"""What the Snakefile needs at planning time, in one object, without importing qiskit.

Snakemake parses the Snakefile for every run; everything here must be cheap.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from qpuflow.config import ConfigError, validate_config
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec, plan_retries, plan_runs

if TYPE_CHECKING:
    from qpuflow.batches import Batch
from qpuflow.provenance import utc_now


class Study:
    """A validated config, its runs and its paths, as seen by one Snakemake run."""

    def __init__(self, config: dict[str, Any], *, source: str) -> None:
        self.config = config
        self.source = source
        self.paths = Paths.from_config(config, base=Path("."))
        self.results_dir = config["results_dir"]
        planned = plan_runs(config)
        retries = plan_retries(planned, self._failed, int(config["provider"].get("retries", 0)))
        self.runs = {spec.key: spec for spec in planned + retries}
        self.started = utc_now()
        self._notes_printed = False
        if os.environ.get("QPUFLOW_NOW"):
            print(f"QPUFLOW_NOW is set: rehearsal clock at {self.started}; every time recorded in this run "
                  "uses it. Unset it for real hardware runs.", file=sys.stderr)

    @classmethod
    def from_snakemake(cls, config: dict[str, Any], configfiles: Sequence[Any]) -> "Study":
        source = ", ".join(str(f) for f in configfiles) or "config.yaml"
        try:
            validate_config(config, source=source)
        except ConfigError as exc:
            from snakemake.exceptions import WorkflowError

            raise WorkflowError(str(exc)) from None
        return cls(config, source=source)

    def _failed(self, key: str) -> bool:
        from qpuflow.records import Result

        path = self.paths.result(key)
        return path.exists() and Result.read(path).status == "failed"

    def spec(self, exp: str, run: str) -> RunSpec:
        try:
            return self.runs[f"{exp}/{run}"]
        except KeyError:
            raise ValueError(
                f"{exp}/{run} is not a run of {self.source}; runs are: {', '.join(sorted(self.runs)[:8])} ..."
            ) from None

    def circuit_path(self, exp: str, run: str) -> str:
        return str(self._rel(self.paths.circuit(self.spec(exp, run))))

    def isa_path(self, exp: str, run: str) -> str:
        return str(self._rel(self.paths.isa(self.spec(exp, run))))

    def isa_info_path(self, exp: str, run: str) -> str:
        return str(self._rel(self.paths.isa_info(self.spec(exp, run))))

    def submit_target(self) -> list[str]:
        """What the submit target asks for: the marker of every submitted run and the batch file
        of every job still to send (runs packed ``provider.pubs_per_job`` to a job), leaving out
        deployment sessions not due yet and arms whose probe has not been collected.

        Prints, once, what waits and when the next session is due.
        """
        if not self._notes_printed:
            self._notes_printed = True
            for note in self._plan.notes:
                print(note, file=sys.stderr)
        pending = self._pending_set
        return ([str(self._rel(self.paths.marker(key))) for key in self._plan.keys if key not in pending]
                + [self.batch_path(batch) for batch in self._batches.values()])

    @functools.cached_property
    def _batches(self) -> dict[tuple[str, str], "Batch"]:
        from qpuflow.batches import plan_batches, pubs_per_job

        batches = plan_batches((self.runs[key] for key in self._pending), pubs_per_job(self.config))
        return {(b.experiment, b.name): b for b in batches}

    def batch(self, exp: str, batch: str) -> "Batch":
        try:
            return self._batches[(exp, batch)]
        except KeyError:
            raise ValueError(f"{exp}/{batch} is not a batch of runs waiting to be submitted in this run "
                             f"(pending batches: {', '.join(sorted(b for _, b in self._batches)[:8]) or 'none'})") from None

    def batch_path(self, batch: "Batch") -> str:
        return str(self._rel(self.paths.root / "submitted" / batch.experiment / "batches" / f"{batch.name}.json"))

    def batch_specs(self, exp: str, batch: str) -> list[dict[str, Any]]:
        return [self.runs[key].to_json() for key in self.batch(exp, batch).keys]

    def batch_jobs(self, exp: str, batch: str) -> list[list[str]]:
        """The batch's provider jobs: run keys in PUB order."""
        return [list(job) for job in self.batch(exp, batch).jobs]

    def batch_selection(self, exp: str, batch: str) -> list[str]:
        """The session's selection file for a batch of deployment arms (nothing otherwise)."""
        first = self.runs[self.batch(exp, batch).keys[0]]
        return self.selection_path(first.experiment, first.run)

    @functools.cached_property
    def _events(self) -> list[dict[str, Any]]:
        from qpuflow.ledger import Ledger

        return Ledger(self.paths.ledger).events()

    @functools.cached_property
    def _plan(self):
        from qpuflow.schedule import now
        from qpuflow.sessions import plan_submissions

        return plan_submissions(self.runs, self.config, self.paths, self._events, now())

    def selection_path(self, exp: str, run: str) -> list[str]:
        """The session's selection file for a deployment arm (nothing for other runs)."""
        spec = self.spec(exp, run)
        if spec.kind != "deployment":
            return []
        return [str(self._rel(self.paths.selection(spec.experiment, spec.session)))]

    def selection_inputs(self, exp: str, session: int) -> dict[str, str]:
        """Probe marker and result a session's selection is made from (none without a probe arm)."""
        from qpuflow.sessions import completed_probe

        parts = [s for s in self.runs.values() if s.experiment == exp and s.session == session]
        if not any(s.is_probe for s in parts):
            return {}
        probe = completed_probe(parts, self.paths)
        if probe is None:
            raise ValueError(f"{exp} session {session}: no collected probe yet; run collect first")
        return {"probe_marker": str(self._rel(self.paths.marker(probe.key))),
                "probe_result": str(self._rel(self.paths.result(probe.key)))}

    def _rel(self, path: Path) -> Path:
        return Path(path).relative_to(Path(".").resolve()) if Path(path).is_absolute() else Path(path)

    @functools.cached_property
    def _pending(self) -> list[str]:
        """Runs without marker and accepted submission. A marker that went missing (deleted, moved
        away when corrupt) is written again from the ledger first: nothing is sent for it."""
        from qpuflow.records import Marker, write_marker

        accepted = {e.get("run_key"): e["marker"] for e in self._events if e["event"] == "accepted"}
        pending = []
        for key in self._plan.keys:
            if self.paths.marker(key).exists():
                continue
            if key in accepted:
                if self.runs[key].run_id() == accepted[key]["run_id"]:
                    write_marker(self.paths.marker(key), Marker.from_json(accepted[key], f"ledger entry for {key}"))
                    print(f"{key}: marker restored from the ledger (job {accepted[key]['job_id']})", file=sys.stderr)
                    continue
            pending.append(key)  # submit_batch settles a changed run against the ledger, loudly
        return pending

    @functools.cached_property
    def _pending_set(self) -> frozenset[str]:
        return frozenset(self._pending)

    def pending_runs(self) -> list[str]:
        """Runs with no marker and no accepted submission in the ledger: what submit would send.

        Computed once per Snakemake run (two input functions ask for it).
        """
        return self._pending

    def transpiled_manifests(self) -> list[str]:
        """One file per pending job, written once its runs are transpiled and checked."""
        return [str(self._rel(self.paths.root / "batches" / b.experiment / f"{b.name}.transpiled.json"))
                for b in self._batches.values()]

    def simulation_flags(self) -> list[str]:
        """One flag per submitted run, for the `simulate` target (local rehearsals)."""
        return [str(self._rel(self.paths.root / "local_jobs" / "simulated" / f"{self.paths.key_of_marker(p)}.done"))
                for p in self.paths.marker_files()]

    def collected_result_paths(self) -> list[str]:
        """Result files already on disk (analysis never asks Snakemake to collect or submit)."""
        return [str(self._rel(p)) for p in sorted((self.paths.root / "collected").glob("*/*.json"))]

    def export_submissions(self) -> None:
        from qpuflow.exports import export_submissions

        path = export_submissions(self.paths, since=self.started)
        if path is not None:
            print(f"Submission export: {path}")
