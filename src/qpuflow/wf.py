"""What the Snakefile needs at planning time, in one object, without importing qiskit.

Snakemake parses the Snakefile for every run; everything here must be cheap.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from qpuflow.config import load_config, validate_config
from qpuflow.errors import QpuflowError
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec
from qpuflow.planner import SubmitDecision, planned_runs
from qpuflow.records import read_json

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
        self.runs = planned_runs(config, self.paths)
        self.started = utc_now()
        self._notes_printed = False
        self._remove_stale_flags()
        if os.environ.get("QPUFLOW_NOW"):
            print(f"QPUFLOW_NOW is set: rehearsal clock at {self.started}; every time recorded in this run "
                  "uses it. Unset it for real hardware runs.", file=sys.stderr)

    def _remove_stale_flags(self) -> None:
        """Temporary files of a submit that failed half way: the budget check's flag and the
        transpile manifests. Snakemake removes them only after a successful run; left behind,
        the flag would make the next submit skip transpiling and the budget check. Nothing is
        touched while another Snakemake holds this folder's lock (its files are not stale)."""
        locks = Path(".snakemake") / "locks"
        if locks.is_dir() and any(locks.iterdir()):
            return
        ledger_dir = self.paths.ledger.parent
        stale = [ledger_dir / "budget_checked.flag", ledger_dir / "budget_prechecked.flag",
                 ledger_dir / "pending_transpiled.txt",
                 *(self.paths.root / "batches").glob("*/*.transpiled.json")]
        for path in stale:
            path.unlink(missing_ok=True)

    @classmethod
    def from_snakemake(cls, config: dict[str, Any], configfiles: Sequence[Any] | None,
                       default: str = "config.yaml") -> "Study":
        """The study of a Snakemake run: Snakemake's ``config`` (from ``--configfile``) or, without
        one, ``default`` with ``--config`` values on top, validated into the study's own copy with
        defaults filled. Snakemake's ``config`` is left as it is: rule bodies get the study's."""
        from snakemake.exceptions import WorkflowError

        source = ", ".join(str(f) for f in configfiles or ()) or default
        try:
            if configfiles:
                filled = validate_config(config, source=source)
            else:
                filled = load_config(default, overrides=dict(config))
            return cls(filled, source=source)
        except QpuflowError as exc:
            raise WorkflowError(str(exc)) from None

    def spec(self, exp: str, run: str) -> RunSpec:
        try:
            return self.runs[f"{exp}/{run}"]
        except KeyError:
            raise ValueError(
                f"{exp}/{run} is not a run of {self.source}; runs are: {', '.join(sorted(self.runs)[:8])} ..."
            ) from None

    @property
    def dataset_name(self) -> str:
        """The dataset folder's name: the study's name, or ``study`` without one."""
        return str(self.config.get("study") or "study")

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
        self.refuse_changed_runs()
        if not self._notes_printed:
            self._notes_printed = True
            for note in self._decision.waiting:
                print(note, file=sys.stderr)
            if self.problems and not self._batches:
                # Nothing else to do, so Snakemake would end without its onsuccess: say it now.
                self.finish()
        pending = self._pending_set
        return ([str(self._rel(self.paths.marker(key))) for key in self._decision.due if key not in pending]
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
    def _decision(self) -> SubmitDecision:
        """The planner's decision (:mod:`qpuflow.planner`), made once per Snakemake run. Reading
        the records writes back a lost ledger line or marker; what it did is said on stderr."""
        from qpuflow.planner import decide
        from qpuflow.schedule import now

        decision = decide(self.config, self.paths, now(), runs=self.runs)
        for note in decision.records.notes:
            print(note, file=sys.stderr)
        return decision

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

    @property
    def problems(self) -> list[str]:
        """Records found unreadable while planning (reported at the end, exit code 3)."""
        return self._decision.records.problems if "_decision" in self.__dict__ else []

    def refuse_changed_runs(self) -> None:
        """Stop (before anything is sent or analysed) if submitted runs no longer match the config."""
        from snakemake.exceptions import WorkflowError

        message = self._decision.refusal(self.config, self.source)
        if message:
            raise WorkflowError(message)

    @functools.cached_property
    def _pending(self) -> list[str]:
        """Runs without marker and accepted submission, due now: what submit sends."""
        return list(self._decision.pending)

    @functools.cached_property
    def _pending_set(self) -> frozenset[str]:
        return frozenset(self._pending)

    def pending_runs(self) -> list[str]:
        """Runs with no marker and no accepted submission in the ledger: what submit would send.

        Computed once per Snakemake run (two input functions ask for it).
        """
        return self._pending

    def run_pack(self, exp: str, run: str) -> dict[str, Any]:
        """For a request of one run's marker (rule submit_run): ``pack``, the specs of the
        provider job the run goes out in (its pack-mates too, in PUB order), or empty with
        ``refusal`` saying why it is not to be submitted now (not a run of the study, a
        deployment session not due, arms waiting for their probe, already submitted).

        Never raises: Snakemake asks for this for every marker it sees, made or not.
        """
        key = f"{exp}/{run}"
        if key not in self.runs:
            return {"pack": [], "refusal": f"{key} is not a run of this study ({self.source}); "
                                          "`qpuflow status` lists them"}
        for batch in self._batches.values():
            for job in batch.jobs:
                if key in job:
                    return {"pack": [self.runs[k].to_json() for k in job], "refusal": None}
        if key not in self._decision.due:
            why = "; ".join(self._decision.waiting) or "it is not due"
            return {"pack": [], "refusal": f"{key} is not to be submitted now: {why}"}
        return {"pack": [self.runs[key].to_json()], "refusal": None}  # submitted: the ledger restores it

    def transpiled_manifests(self) -> list[str]:
        """One file per pending job, written once its runs are transpiled and checked."""
        return [str(self._rel(self.paths.root / "batches" / b.experiment / f"{b.name}.transpiled.json"))
                for b in self._batches.values()]

    def simulation_flags(self) -> list[str]:
        """One flag per submitted run, for the `simulate` target (local rehearsals)."""
        return [str(self._rel(self.paths.root / "local_jobs" / "simulated" / f"{self.paths.key_of_marker(p)}.done"))
                for p in self.paths.marker_files()]

    def submitted_result_paths(self) -> list[str]:
        """The result file of every run with a marker (rule collected)."""
        return [str(self._rel(self.paths.result(self.paths.key_of_marker(p)))) for p in self.paths.marker_files()]

    def poll_path(self) -> str:
        """The poll checkpoint's output for this invocation (named for it, so every `snakemake
        finished` asks the provider anew; the checkpoint runs in this process)."""
        stamp = utc_now().replace(":", "").replace("-", "").split(".")[0]
        return str(self._rel(self.paths.root / "ledger" / "poll" / f"{stamp}-{os.getpid()}.json"))

    def finished_result_paths(self, poll: str) -> list[str]:
        """The result file of every run the poll found final (rule finished)."""
        keys = read_json(Path(poll), "poll record")["finished"]
        return [str(self._rel(self.paths.result(key))) for key in keys]

    def collected_result_paths(self) -> list[str]:
        """Result files already on disk (analysis never asks Snakemake to collect or submit)."""
        self.refuse_changed_runs()
        return [str(self._rel(p)) for p in sorted((self.paths.root / "collected").glob("*/*.json"))]

    def finish(self) -> None:
        """After a successful run: the exports, then the records that need attention (corrupt,
        unreadable), if any, as the last lines, with exit code 3."""
        from qpuflow.smk import ATTENTION

        self.export_submissions()
        problems = list(dict.fromkeys([*self.problems, *ATTENTION]))
        if problems:
            print(f"\nqpuflow: {len(problems)} record(s) need attention; everything else was done:", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            sys.exit(3)

    def print_refusals(self, log: Any = None) -> None:
        """After a failed run: each refusal again as the last lines, one paragraph each."""
        from qpuflow.smk import REFUSALS

        for message in dict.fromkeys(REFUSALS):
            print(f"\nqpuflow: {message}", file=sys.stderr)

    def export_submissions(self) -> None:
        from qpuflow.exports import export_submissions

        path = export_submissions(self.paths, since=self.started)
        if path is not None:
            print(f"Submission export: {path}")
