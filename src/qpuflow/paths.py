"""Where every stage's files live. One place, so rules, scripts and the CLI agree."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from qpuflow.plan import RunSpec


@dataclasses.dataclass(frozen=True)
class Paths:
    """Paths of a study's outputs, all below ``root`` (``results/`` by default)."""

    root: Path
    local_store: Path

    @classmethod
    def from_config(cls, config: dict[str, Any], base: Path | None = None) -> "Paths":
        base = Path(base) if base is not None else Path.cwd()
        root = base / config.get("results_dir", "results")
        store = config["provider"].get("local", {}).get("store")
        return cls(root=root, local_store=(base / store) if store else root / "local_jobs")

    def circuit(self, spec: RunSpec) -> Path:
        return self.root / "circuits" / spec.experiment / f"{spec.run}.qpy"

    def isa(self, spec: RunSpec) -> Path:
        return self.root / "isa" / spec.backend / spec.experiment / f"{spec.run}.qpy"

    def isa_info(self, spec: RunSpec) -> Path:
        return self.isa(spec).with_suffix(".json")

    def marker(self, key: str) -> Path:
        return self.root / "submitted" / f"{key}.json"

    def result(self, key: str) -> Path:
        return self.root / "collected" / f"{key}.json"

    def selection(self, experiment: str, session: int) -> Path:
        """The qubits chosen for each arm of a deployment session, and the arms' order."""
        return self.root / "selection" / experiment / f"session{session:03d}.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger" / "submissions.jsonl"

    @property
    def calibration_dir(self) -> Path:
        return self.root / "calibration"

    @property
    def decoders_dir(self) -> Path:
        """Detector error models the analysis built, one file per circuit, calibration and decoder."""
        return self.root / "decoders"

    @property
    def exports_dir(self) -> Path:
        return self.root / "ibm_experiments"

    def marker_files(self) -> list[Path]:
        return sorted((self.root / "submitted").glob("*/*.json"))

    def key_of_marker(self, path: Path) -> str:
        return f"{path.parent.name}/{path.stem}"
