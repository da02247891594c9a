"""One function per pipeline stage. Snakemake rules and the seed scripts both call these."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qpuflow.paths import Paths
from qpuflow.plan import RunSpec
from qpuflow.provenance import file_sha256, utc_now
from qpuflow.records import write_json_atomic


def build_circuit(spec: RunSpec, out: Path) -> None:
    """The logical circuit of a run (from stim's generators), as QPY with its measurement map."""
    from qiskit import qpy

    from qpuflow.circuits import memory_experiment

    kind = "repetition_code" if spec.kind == "deployment" else spec.kind
    circuit, _ = memory_experiment(kind, distance=spec.distance, rounds=spec.rounds,
                                   logical_state=spec.logical_state, name=spec.run)
    circuit.metadata = {**circuit.metadata, "run_spec": spec.to_json(), "run_id": spec.run_id()}
    _write_qpy(out, circuit, qpy)


def transpile_run(spec: RunSpec, circuit_path: Path, out_isa: Path, out_info: Path, *,
                  config: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Transpile for the backend, check the ISA circuit, and save layout and calibration.

    For a deployment run the physical chain is chosen from the backend's calibration now, and
    that calibration is saved (content-addressed) so the marker can point at what was used.
    """
    from qiskit import qpy

    from qpuflow.transpile import (calibration_snapshot, circuit_fingerprint, isa_summary,
                                   load_backend, physical_layout, select_chain, transpile_isa)

    with open(circuit_path, "rb") as fh:
        (circuit,) = qpy.load(fh)
    backend = load_backend(spec.backend) if spec.provider == "local" or _ibm_local_mode(config) \
        else _ibm_backend(spec, config)
    snapshot = calibration_snapshot(backend)
    snapshot_path = save_calibration(snapshot, paths, spec.backend)
    layout = None
    if spec.kind == "deployment":
        weights = config["experiments"][spec.experiment].get("selection_weights")
        layout = select_chain(backend, circuit.num_qubits, weights=weights)
    isa = transpile_isa(circuit, backend, seed=spec.transpiler_seed,
                        optimization_level=spec.optimization_level, initial_layout=layout)
    require_preflight(isa, spec.key, stage="transpiled")
    _write_qpy(out_isa, isa, qpy)
    summary = isa_summary(isa)
    info = {
        "run_key": spec.key,
        "run_id": spec.run_id(),
        "backend": spec.backend,
        "circuit_hash": circuit_fingerprint(isa),
        "isa_sha256": file_sha256(out_isa),
        "physical_layout": [int(q) for q in physical_layout(isa)],
        "chosen_chain": layout,
        "transpiler_seed": spec.transpiler_seed,
        "optimization_level": spec.optimization_level,
        "depth": summary["depth"],
        "num_gates": summary["num_gates"],
        "gate_counts": summary["gate_counts"],
        "duration_seconds": summary["duration_seconds"],
        "calibration_snapshot": str(snapshot_path),
        "transpiled_time": utc_now(),
    }
    write_json_atomic(out_info, info)
    return info


class PreflightError(RuntimeError):
    """A circuit whose noiseless outcome is wrong; it is never submitted."""


def require_preflight(isa: Any, run_key: str, *, stage: str) -> None:
    """Simulate ``isa`` without noise; raise if a detector or observable is wrong.

    Every detector must be deterministically 0 and every observable must equal the prepared
    state's value. Such a circuit would spend budget on data that cannot mean anything.
    """
    from qpuflow.simulate import preflight_check

    problems = preflight_check(isa)
    if problems:
        listed = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise PreflightError(
            f"{run_key}: the {stage} circuit fails the noiseless preflight check, so it was not "
            f"submitted: {listed}. Check the circuit builder or the transpiler settings."
        )


def save_calibration(snapshot: dict[str, Any], paths: Paths, backend: str) -> Path:
    """Save a calibration snapshot under a name derived from its content; return the path."""
    import hashlib

    text = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
    path = paths.calibration_dir / backend / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.exists():
        write_json_atomic(path, snapshot)
    return path


def _write_qpy(out: Path, circuit: Any, qpy: Any) -> None:
    import os
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "wb") as fh:
        qpy.dump(circuit, fh)
    os.replace(tmp, out)


def _ibm_local_mode(config: dict[str, Any]) -> bool:
    return bool(config["provider"].get("ibm", {}).get("local_mode", False))


def _ibm_backend(spec: RunSpec, config: dict[str, Any]):
    from qpuflow.providers.ibm import IBMProvider

    account = config["accounts"][0]["name"]
    return IBMProvider(account, channel=config["provider"].get("ibm", {}).get("channel", "ibm_quantum_platform"))._backend(spec.backend)
