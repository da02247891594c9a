"""What the Snakefile needs at planning time, in one object, without importing qiskit.

Snakemake parses the Snakefile for every run; everything here must be cheap.
"""

from __future__ import annotations

import functools
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

    def isa_path(self, exp: str, run: str) -> str:
        return str(self._rel(self.paths.isa(self.spec(exp, run))))

    def isa_info_path(self, exp: str, run: str) -> str:
        return str(self._rel(self.paths.isa_info(self.spec(exp, run))))

    def marker_paths(self) -> list[str]:
        return [str(self._rel(self.paths.marker(key))) for key in self.runs]

    def _rel(self, path: Path) -> Path:
        return Path(path).relative_to(Path(".").resolve()) if Path(path).is_absolute() else Path(path)

    @functools.cached_property
    def _pending(self) -> list[str]:
        from qpuflow.ledger import Ledger

        ledger = Ledger(self.paths.ledger)
        events = ledger.events()
        return [key for key in self.runs
                if not self.paths.marker(key).exists() and ledger.history(key, events).accepted is None]

    def pending_runs(self) -> list[str]:
        """Runs with no marker and no accepted submission in the ledger: what submit would send.

        Computed once per Snakemake run (two input functions ask for it).
        """
        return self._pending

    def collected_result_paths(self) -> list[str]:
        """Result files already on disk (analysis never asks Snakemake to collect or submit)."""
        return [str(self._rel(p)) for p in sorted((self.paths.root / "collected").glob("*/*.json"))]

    def export_submissions(self) -> None:
        from qpuflow.exports import export_submissions

        path = export_submissions(self.paths, since=self.started)
        if path is not None:
            print(f"Submission export: {path}")
