"""What the Snakefile needs at planning time, in one object, without importing qiskit.

Snakemake parses the Snakefile for every run; everything here must be cheap.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from qpuflow.config import ConfigError, validate_config
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec, plan_retries, plan_runs
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

    def marker_paths(self) -> list[str]:
        """Markers the submit target asks for: every run except deployment sessions not due yet
        and session arms whose probe has not been collected."""
        return [str(self._rel(self.paths.marker(key))) for key in self._plan.keys]

    def submit_target(self) -> list[str]:
        """The submit target's markers; prints, once, what waits and when the next session is due."""
        if not self._notes_printed:
            self._notes_printed = True
            for note in self._plan.notes:
                print(note, file=sys.stderr)
        return self.marker_paths()

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

    def preceding_marker(self, exp: str, run: str) -> list[str]:
        """The marker of the arm submitted just before this one in its session's random order."""
        from qpuflow.plan import configured_arm_order, session_run

        spec = self.spec(exp, run)
        if spec.arm is None or spec.attempt:
            return []
        order = configured_arm_order(self.config, spec.experiment, spec.session)
        position = order.index(spec.arm)
        if position == 0:
            return []
        return [str(self._rel(self.paths.marker(f"{spec.experiment}/{session_run(spec.session, order[position - 1])}")))]

    def _rel(self, path: Path) -> Path:
        return Path(path).relative_to(Path(".").resolve()) if Path(path).is_absolute() else Path(path)

    @functools.cached_property
    def _pending(self) -> list[str]:
        accepted = {e.get("run_key") for e in self._events if e["event"] == "accepted"}
        return [key for key in self._plan.keys if not self.paths.marker(key).exists() and key not in accepted]

    @functools.cached_property
    def _pending_set(self) -> frozenset[str]:
        return frozenset(self._pending)

    def pending_runs(self) -> list[str]:
        """Runs with no marker and no accepted submission in the ledger: what submit would send.

        Computed once per Snakemake run (two input functions ask for it).
        """
        return self._pending

    def budget_flag(self, exp: str, run: str) -> list[str]:
        """The budget check's flag for a pending run; nothing for one already submitted."""
        if f"{exp}/{run}" not in self._pending_set:
            return []
        return [str(self._rel(self.paths.root / "ledger" / "budget_checked.flag"))]

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
