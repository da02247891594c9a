"""One function per pipeline stage. Snakemake rules and the seed scripts both call these."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from qpuflow.config import IBMSettings
from qpuflow.distance import circuit_distance, require_distance
from qpuflow.errors import Refusal
from qpuflow.paths import Paths
from qpuflow.plan import RunSpec
from qpuflow.provenance import file_sha256, utc_now
from qpuflow.qpyio import dump_circuit, load_circuit
from qpuflow.records import ArmChoice, ResultStatus, SessionSelection, TranspileRecord, read_json, write_json_atomic


def build_circuit(spec: RunSpec, out: Path) -> None:
    """The logical circuit of a run (from stim's generators), as QPY with its measurement map."""
    circuit = logical_circuit(spec)
    circuit.metadata = {**circuit.metadata, "run_spec": spec.to_json(), "run_id": spec.run_id()}
    dump_circuit(out, circuit)


def logical_circuit(spec: RunSpec):
    """The run's logical circuit: a memory experiment from stim's generators, or a probe."""
    from qpuflow.circuits import memory_experiment
    from qpuflow.placement import is_native, native_logical_circuit
    from qpuflow.probe import probe_circuit

    if spec.is_probe:
        return probe_circuit(spec)
    if is_native(spec.layout):
        return native_logical_circuit(spec.layout, distance=spec.distance, rounds=spec.rounds,
                                      logical_state=spec.logical_state, ancilla_reset=bool(spec.ancilla_reset),
                                      name=spec.run)
    kind = "repetition_code" if spec.kind == "deployment" else spec.kind
    circuit, _ = memory_experiment(kind, distance=spec.distance, rounds=spec.rounds,
                                   logical_state=spec.logical_state, name=spec.run)
    return circuit


def default_layout(spec: RunSpec, backend, config: dict[str, Any]) -> list[int] | None:
    """Qubits a run is laid out on when nothing was selected for it: a probe's candidates, a
    deployment arm's calibration-best chain, or ``None`` (the transpiler chooses)."""
    from qpuflow.probe import candidate_qubits
    from qpuflow.chains import select_chain

    if spec.is_probe:
        assert spec.probe_qubits is not None
        return candidate_qubits(backend, spec.chain_length, spec.probe_qubits, weights=_weights(spec, config))
    if spec.kind == "deployment":
        return select_chain(backend, spec.chain_length, weights=_weights(spec, config))
    return None


def transpile_run(spec: RunSpec, circuit_path: Path, out_isa: Path, out_info: Path, *,
                  config: dict[str, Any], paths: Paths, selection_path: Path | None = None) -> TranspileRecord:
    """Transpile for the backend, check the ISA circuit, and save layout and calibration.

    A deployment arm runs on the chain its session's selection file chose for it; a probe on
    the candidate qubits around the calibration-best chain, at a fixed layout. The backend's
    calibration is saved (content-addressed) so the marker can point at what was used.
    """
    from qpuflow.qpyio import check_isa_delays
    from qpuflow.circuit_identity import calibration_snapshot, circuit_fingerprint, isa_summary
    from qpuflow.transpile import physical_layout

    circuit = load_circuit(circuit_path)
    backend = current_backend(spec.backend, config)
    snapshot = calibration_snapshot(backend)
    snapshot_path = save_calibration(snapshot, paths, spec.backend)
    layout = default_layout(spec, backend, config) if spec.is_probe else None
    selection = None
    if spec.kind == "deployment":
        if selection_path is None:
            raise ValueError(f"{spec.key}: a deployment arm needs its session's selection file")
        selection = SessionSelection.read(selection_path).for_arm(spec.arm, selection_path)
        layout = selection["chain"]
    isa, placement = _isa_for(spec, circuit, backend, snapshot, str(snapshot_path), layout)
    if layout is not None and physical_layout(isa) != list(layout):
        raise ValueError(f"{spec.key}: the transpiler moved the chosen qubits {layout} to "
                         f"{physical_layout(isa)}; refusing to submit a run on qubits nobody chose")
    delays = check_isa_delays(circuit, isa, backend.target.dt, run=spec.key)
    require_preflight(isa, spec.key, stage="transpiled")
    fingerprint = circuit_fingerprint(isa)
    distance = None if spec.is_probe else _distance(isa, backend, (fingerprint, str(snapshot_path)))
    dump_circuit(out_isa, isa)
    summary = isa_summary(isa)
    record = TranspileRecord(
        run_key=spec.key, run_id=spec.run_id(), backend=spec.backend, circuit_hash=fingerprint,
        isa_sha256=file_sha256(out_isa), physical_layout=[int(q) for q in physical_layout(isa)],
        transpiler_seed=spec.transpiler_seed, optimization_level=spec.optimization_level,
        depth=summary["depth"], num_gates=summary["num_gates"], gate_counts=summary["gate_counts"],
        calibration_snapshot=str(snapshot_path), duration_seconds=summary["duration_seconds"],
        delays_seconds=delays, chosen_chain=layout, circuit_distance=distance, transpiled_time=utc_now(),
        selection=selection, placement=placement.to_json() if placement else None)
    write_json_atomic(out_info, record.to_json())
    return record



def _isa_for(spec: RunSpec, circuit: Any, backend: Any, snapshot: dict[str, Any], snapshot_key: str,
             layout: list[int] | None) -> tuple[Any, Any]:
    """(ISA circuit, native placement or None): a native layout is placed on the device's best
    clean region; any other is transpiled, onto ``layout`` when one was chosen."""
    from qpuflow.placement import is_native, native_isa, place_patch
    from qpuflow.transpile import transpile_isa

    if not is_native(spec.layout):
        return transpile_isa(circuit, backend, seed=spec.transpiler_seed, optimization_level=spec.optimization_level,
                             initial_layout=layout), None
    placement = place_patch(spec.layout, distance=spec.distance, logical_state=spec.logical_state, backend=backend,
                            snapshot=snapshot, snapshot_key=snapshot_key, seed=spec.transpiler_seed,
                            optimization_level=spec.optimization_level, ancilla_reset=bool(spec.ancilla_reset))
    return native_isa(circuit, placement, backend, seed=spec.transpiler_seed,
                      optimization_level=spec.optimization_level), placement

def ensure_transpiled(spec: RunSpec, *, config: dict[str, Any], paths: Paths,
                      selection_path: Path | None = None) -> TranspileRecord:
    """The run's transpile record, transpiling (and building its circuit) only if missing or
    made for a run with other parameters (another run id)."""
    isa, info = paths.isa(spec), paths.isa_info(spec)
    if isa.exists() and info.exists():
        data = read_json(info, "transpile record")
        if data.get("run_id") == spec.run_id() and "circuit_distance" in data:  # else: from before distances
            record = TranspileRecord.from_json(data, info)
            require_circuit_distance(spec, record, config)
            return record
    circuit = paths.circuit(spec)
    if not circuit.exists() or _circuit_run_id(circuit) != spec.run_id():
        build_circuit(spec, circuit)
    record = transpile_run(spec, circuit, isa, info, config=config, paths=paths, selection_path=selection_path)
    require_circuit_distance(spec, record, config)
    return record


_DISTANCES: dict[tuple[str, str], dict[str, Any]] = {}


def _distance(isa: Any, backend: Any, key: tuple[str, str]) -> dict[str, Any]:
    """The circuit's distance, computed once per process for each (circuit, calibration):
    the repetitions of a run transpile to the same circuit."""
    if key not in _DISTANCES:
        _DISTANCES[key] = circuit_distance(isa, backend).to_json()
    return _DISTANCES[key]


def require_circuit_distance(spec: RunSpec, info: TranspileRecord, config: dict[str, Any]) -> None:
    """Refuse a run whose transpiled circuit lost distance (DESIGN.md invariant 6), unless its
    experiment accepts it (``accept_distance_loss``)."""
    measured = info.circuit_distance
    if spec.is_probe or not measured:
        return
    experiment = config["experiments"].get(spec.experiment, {})
    cz = info.gate_counts.get("cz")
    native = str(experiment.get("layout", "routed")).startswith("native")
    cause = (f"laid out {'natively' if native else 'by the transpiler, with SWAPs'}"
             f" on {spec.backend}" + (f": {cz} CZ in {spec.rounds} round(s)" if cz else ""))
    require_distance(spec.key, spec.distance, measured, accepted=bool(experiment.get("accept_distance_loss")),
                     cause=cause)


def _circuit_run_id(path: Path) -> str | None:
    return (load_circuit(path).metadata or {}).get("run_id")


class PreflightError(Refusal, RuntimeError):
    """A circuit whose noiseless outcome is wrong; it is never submitted."""


def require_preflight(isa: Any, run_key: str, *, stage: str) -> None:
    """Simulate ``isa`` without noise; raise if a detector or observable is wrong.

    Every detector must be deterministically 0 and every observable must equal the prepared
    state's value. Such a circuit would spend budget on data that cannot mean anything.
    """
    from qpuflow.probe import probe_problems
    from qpuflow.preflight import preflight_check

    problems = probe_problems(isa) if "probe" in (isa.metadata or {}) else preflight_check(isa)
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


def select_session(experiment: str, session: int, out: Path, *, config: dict[str, Any], paths: Paths,
                   probe_marker: Path | None = None, probe_result: Path | None = None) -> SessionSelection:
    """Choose each arm's chain for one session, now, and fix the arms' submission order.

    ``calibration``: the best chain by the backend's calibration as reported right now.
    ``drift_aware``: the best chain among the probed qubits, with the probe's T1 and readout
    estimates in place of the reported ones (T2 and two-qubit errors stay reported).
    """
    from qpuflow.plan import configured_arm_order
    from qpuflow.probe import estimate, probe_registers
    from qpuflow.records import Marker, Result
    from qpuflow.chains import select_chain
    from qpuflow.circuit_identity import calibration_snapshot

    exp = config["experiments"][experiment]
    spec = _any_arm_spec(experiment, session, config)
    backend = current_backend(spec.backend, config)
    snapshot = calibration_snapshot(backend)
    arms: dict[str, ArmChoice] = {}
    weights = _weights(spec, config)
    if "calibration" in exp["arms"]:
        arms["calibration"] = ArmChoice(chain=default_layout(spec, backend, config), source="reported calibration")
    if "drift_aware" in exp["arms"]:
        if probe_marker is None or probe_result is None:
            raise ValueError(f"{experiment} session {session}: the drift-aware arm needs a collected probe")
        marker, result = Marker.read(probe_marker), Result.read(probe_result)
        if result.status is not ResultStatus.COMPLETED or result.job_id != marker.job_id:
            raise ValueError(f"{probe_result}: the probe job {marker.job_id} did not complete; "
                             f"no drift-aware chain can be chosen from it")
        probe_spec = RunSpec.from_json(marker.spec)
        measured = estimate(result.bit_arrays(), marker.physical_layout, probe_registers(probe_spec.probe_delays_us or ()))
        chain = select_chain(backend, spec.chain_length, weights=weights, only=list(measured),
                             measured={q: {k: v for k, v in m.items() if k in ("readout_error", "t1") and v is not None}
                                       for q, m in measured.items()})
        arms["drift_aware"] = ArmChoice(chain=chain, source="probe", probe_run=probe_spec.run,
                                        probe_job_id=marker.job_id, probe_completion_time=result.completion_time,
                                        estimates={str(q): m for q, m in sorted(measured.items())})
    record = SessionSelection(
        experiment=experiment, session=session, backend=spec.backend, selected_time=utc_now(),
        order=configured_arm_order(config, experiment, session),
        calibration_snapshot=str(save_calibration(snapshot, paths, spec.backend)),
        arms=arms, properties_last_update=snapshot["properties_last_update"])
    write_json_atomic(out, record.to_json())
    return record


def current_backend(name: str, config: dict[str, Any]):
    """The backend as it reports itself now (the local fake one, or the service's)."""
    from qpuflow.backends import load_backend

    if config["provider"]["name"] == "local" or _ibm_local_mode(config):
        return load_backend(name)
    return _ibm_backend(name, config)


def _weights(spec: RunSpec, config: dict[str, Any]) -> dict[str, float] | None:
    return config["experiments"][spec.experiment].get("selection_weights")


def _any_arm_spec(experiment: str, session: int, config: dict[str, Any]) -> RunSpec:
    from qpuflow.plan import plan_runs

    for spec in plan_runs({**config, "experiments": {experiment: config["experiments"][experiment]}}):
        if spec.session == session and not spec.is_probe:
            return spec
    raise ValueError(f"{experiment} has no session {session}")


def _ibm_local_mode(config: dict[str, Any]) -> bool:
    return IBMSettings.of(config).local_mode


def _ibm_backend(name: str, config: dict[str, Any]):
    ibm = IBMSettings.of(config)
    return _service_backend(name, config["accounts"][0]["name"], ibm.channel, ibm.request_timeout_seconds)


@functools.lru_cache(maxsize=8)
def _service_backend(name: str, account: str, channel: str, timeout: float):
    """The service's backend, fetched once per process: every service sign-in costs IAM, instance
    lookup and backend requests, and a submit transpiles many runs for the same backend."""
    from qpuflow.providers.ibm import IBMProvider

    return IBMProvider(account, channel=channel, request_timeout_seconds=timeout)._backend(name)
