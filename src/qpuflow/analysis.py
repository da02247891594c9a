"""From collected results to logical error rates with confidence intervals, tables and plots.

For every completed run the measurement record is rebuilt from the registers, detection
events and observable flips come from the measurement map, and PyMatching decodes twice:

* the primary decoder (``decoded_*``): a detector error model of the ISA circuit as it ran
  (routing or native layout included) with the noise of the calibration snapshot saved
  with the job, idle noise included, and PyMatching's correlated matching
  (``analysis.decoder_noise: calibration``, ``analysis.correlated_matching: true``);
* beside it (``decoded_uniform_*``): uniform circuit-level noise ``analysis.uniform_p`` on
  the logical circuit and plain matching, the decoder that knows nothing of the device.

Each distinct DEM is built once (and kept in ``results/decoders/`` for reruns) and all shots
of the runs that share it are decoded in one batch. Rates are reported raw (no decoding) and
decoded, each with a Wilson 95% interval, per run and pooled per experiment and logical
state; per-round rates, SPAM-free over several round counts, come from :mod:`qpuflow.per_round`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from qpuflow.collect import read_markers
from qpuflow.fileio import atomic_file
from qpuflow.paths import Paths
from qpuflow.per_round import per_round_table
from qpuflow.records import Marker, Result, ResultStatus, read_or_report, write_json_atomic
from qpuflow.stats import wilson_interval

TABLES = ("runs", "summary", "per_round", "detection_rounds", "provenance", "sessions", "session_stats")


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    decoder_noise: str = "calibration"
    uniform_p: float = 1e-3
    bootstrap_samples: int = 10000
    seed: int = 12345
    correlated_matching: bool = True
    # deployment experiment -> its primary endpoint (see qpuflow.paired.ENDPOINTS)
    endpoints: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.decoder_noise not in ("uniform", "calibration"):
            raise ValueError(f"analysis.decoder_noise must be uniform or calibration, got {self.decoder_noise!r}")
        if not 0 < self.uniform_p < 0.5:
            raise ValueError(f"analysis.uniform_p must be in (0, 0.5), got {self.uniform_p}")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "AnalysisSettings":
        section = config.get("analysis", {})
        return cls(decoder_noise=section.get("decoder_noise", "calibration"),
                   uniform_p=float(section.get("uniform_p", 1e-3)),
                   bootstrap_samples=int(section.get("bootstrap_samples", 10000)), seed=int(section.get("seed", 12345)),
                   correlated_matching=bool(section.get("correlated_matching", True)),
                   endpoints=tuple((name, str(exp.get("endpoint", "detection_fraction")))
                                   for name, exp in sorted(config.get("experiments", {}).items())
                                   if exp.get("kind") == "deployment"))


def _rate_columns(prefix: str, errors: int, shots: int) -> dict[str, Any]:
    low, high = wilson_interval(errors, shots)
    return {f"{prefix}_errors": errors, f"{prefix}_rate": errors / shots if shots else float("nan"),
            f"{prefix}_ci_low": low, f"{prefix}_ci_high": high}


@dataclasses.dataclass
class _Job:
    """One completed run waiting to be decoded."""

    key: str
    marker: Marker
    registers: dict[str, np.ndarray]
    circuit: str  # the ISA file's hash: runs that share it share their DEMs


class _Decoder:
    """Decodes jobs grouped by circuit and calibration: each distinct DEM is built (or read from
    ``results/decoders/``) once and its shots are decoded in one batch."""

    def __init__(self, settings: AnalysisSettings, paths: Paths) -> None:
        self.settings = settings
        self.paths = paths

    def decode_all(self, jobs: list[_Job]) -> dict[str, tuple[Any, Any, str]]:
        """run key -> (primary DecodedRun, uniform DecodedRun, the primary decoder's name)."""
        from qpuflow.measurement_map import MeasurementMap
        from qpuflow.decode import decode_batch

        groups: dict[tuple[str, str], list[_Job]] = {}
        for job in jobs:
            groups.setdefault((job.circuit, job.marker.calibration_snapshot), []).append(job)
        out: dict[str, tuple[Any, Any, str]] = {}
        for members in groups.values():
            plan = decoder_plan(members[0].marker, self.settings, self.paths)
            metadata = plan[0][2]
            text = metadata["stim_circuit"]
            mmap = MeasurementMap.from_json(metadata["measurement_map"])
            registers = [job.registers for job in members]
            decoded = [decode_batch(registers, mmap, dem, stim_circuit_text=text, correlated=correlated)
                       for dem, correlated, _ in plan]
            primary, uniform = decoded[0], decoded[-1]
            name = "pymatching/uniform"
            if self.settings.decoder_noise == "calibration":
                name = f"pymatching{'-correlated' if plan[0][1] else ''}/calibration"
            for job, first, second in zip(members, primary, uniform):
                out[job.key] = (first, second, name)
        return out


DECODING_METADATA = ("stim_circuit", "measurement_map")


def decoder_plan(marker: Marker, settings: AnalysisSettings,
                 paths: Paths) -> list[tuple[Any, bool, dict[str, Any]]]:
    """``[(DEM, correlated, decoding metadata), ...]`` for a run: the primary decoder first,
    the uniform one last (once when it is the primary). The metadata are the ISA circuit's
    ``stim_circuit`` and ``measurement_map``. DEMs are cached in ``results/decoders/`` under
    the circuit's hash, the calibration snapshot and the decoder, and the metadata under the
    circuit's hash, so a rerun of the analysis (and a reviewer's dataset) reuses them without
    reading the QPY file."""
    import stim

    from qpuflow.dem import calibration_decoder
    from qpuflow.uniform_noise import uniform_dem
    from qpuflow.qpyio import load_circuit

    isa_cache: list[Any] = []

    def isa() -> Any:
        if not isa_cache:
            isa_cache.append(load_circuit(marker.isa_path))
        return isa_cache[0]

    stem = f"{marker.isa_sha256[:16]}-{Path(marker.calibration_snapshot).stem}"
    metadata_path = paths.decoders_dir / f"{marker.isa_sha256[:16]}.circuit.json"
    if metadata_path.exists():
        metadata = json.loads(metadata_path.read_text())
    else:
        metadata = {key: isa().metadata[key] for key in DECODING_METADATA}
        write_json_atomic(metadata_path, metadata)

    def cached(name: str, build: Callable[[], tuple[Any, bool]]) -> tuple[Any, bool]:
        path = paths.decoders_dir / f"{stem}-{name}.dem"
        flag = path.with_suffix(".correlated")
        if path.exists():
            return stim.DetectorErrorModel.from_file(str(path)), flag.exists()
        dem, correlated = build()
        path.parent.mkdir(parents=True, exist_ok=True)
        if correlated:  # before the model: a reader that finds the model finds its flag
            flag.touch()
        with atomic_file(path) as fh:
            fh.write(str(dem))
        return dem, correlated

    uniform_name = f"uniform-p{settings.uniform_p:g}"
    uniform = cached(uniform_name, lambda: (uniform_dem(isa().metadata["stim_circuit"], settings.uniform_p), False))
    if settings.decoder_noise != "calibration":
        dem, correlated = uniform
        plan = [(dem, correlated)]
    else:
        keeps_distance = (marker.circuit_distance is not None
                          and marker.circuit_distance >= int(marker.spec["distance"]))
        wants = settings.correlated_matching and keeps_distance
        snapshot = json.loads(Path(marker.calibration_snapshot).read_text())
        primary = cached("calibration" + ("-correlated" if wants else ""),
                         lambda: calibration_decoder(isa(), snapshot, correlated=wants))
        plan = [primary, uniform]
    return [(dem, correlated, metadata) for dem, correlated in plan]


def analyse(paths: Paths, settings: AnalysisSettings, problems: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Decode every collected run and return the tidy tables (see :data:`TABLES`).

    A corrupt marker or result is left out and described in ``problems`` (raised if None).
    """
    decoder = _Decoder(settings, paths)
    rows: dict[str, dict[str, Any]] = {}
    provenance, jobs = [], []
    for key, marker in sorted(read_markers(paths, problems=problems).items()):
        result_path = paths.result(key)
        result = read_or_report(Result.read, result_path, problems) if result_path.exists() else None
        provenance.append(_provenance_row(key, marker, result))
        if marker.spec["kind"] == "probe":
            continue  # probes choose qubits (see results/selection/); they have no logical error rate
        rows[key] = _base_row(key, marker)
        if result is None or result.status is not ResultStatus.COMPLETED:
            rows[key].update(status=result.status.value if result else "pending", shots=0,
                             error=result.error if result else None)
            continue
        rows[key].update(usage_seconds=result.usage_seconds)
        jobs.append(_Job(key=key, marker=marker, registers=result.bit_arrays(), circuit=marker.isa_sha256))
    rounds = []
    for key, (decoded, uniform, name) in decoder.decode_all(jobs).items():
        rows[key].update(_decoded_columns(decoded, uniform, name))
        rounds.extend(_round_rows(rows[key], decoded))
    runs_df = pd.DataFrame(list(rows.values()))
    sessions, session_stats = session_tables(runs_df, settings)
    return {
        "runs": runs_df,
        "summary": _summary(runs_df),
        "per_round": per_round_table(runs_df, seed=settings.seed),
        "detection_rounds": pd.DataFrame(rounds),
        "provenance": pd.DataFrame(provenance),
        "sessions": sessions,
        "session_stats": session_stats,
    }


def _base_row(key: str, marker: Marker) -> dict[str, Any]:
    spec = marker.spec
    return {
        "experiment": spec["experiment"], "run": spec["run"], "run_key": key, "kind": spec["kind"],
        "logical_state": marker.logical_state, "distance": spec["distance"], "rounds": spec["rounds"],
        "circuit_distance": marker.circuit_distance, "layout": spec.get("layout") or "routed",
        "session": spec.get("session"), "arm": spec.get("arm"), "attempt": spec.get("attempt", 0),
        "backend": marker.backend, "job_id": marker.job_id,
        # usage_seconds is the job's: shared by the job_runs runs packed into it as PUBs.
        "pub_index": marker.pub_index, "job_runs": len(marker.batch["runs"]) if marker.batch else 1,
        "chain": " ".join(map(str, marker.selection["chain"])) if marker.selection else None,
        "arm_position": marker.selection["position"] if marker.selection else None,
    }


def _provenance_row(key: str, marker: Marker, result: Result | None) -> dict[str, Any]:
    return {
        "run_key": key, "job_id": marker.job_id, "status": result.status.value if result else "pending",
        "backend": marker.backend, "physical_qubits": " ".join(map(str, marker.physical_layout)),
        "submission_time": marker.submission_time,
        "completion_time": result.completion_time if result else None,
        "usage_seconds": result.usage_seconds if result else None,
        "pub_index": marker.pub_index, "job_runs": len(marker.batch["runs"]) if marker.batch else 1,
        "account": marker.account, "git_commit": marker.git_commit, "git_dirty": marker.git_dirty,
        "circuit_hash": marker.circuit_hash, "transpiler_seed": marker.transpiler_seed,
        "calibration_snapshot": marker.calibration_snapshot,
        "qiskit": marker.package_versions.get("qiskit"), "stim": marker.package_versions.get("stim"),
    }


def _decoded_columns(decoded: Any, uniform: Any, decoder: str) -> dict[str, Any]:
    detectors = sum(decoded.detectors_per_round)
    events = sum(decoded.detection_events_per_round)
    return {
        "status": ResultStatus.COMPLETED.value, "shots": decoded.shots,
        **_rate_columns("raw", decoded.raw_errors, decoded.shots),
        **_rate_columns("decoded", decoded.decoded_errors, decoded.shots),
        **_rate_columns("decoded_uniform", uniform.decoded_errors, uniform.shots),
        "detection_fraction": events / (detectors * decoded.shots) if detectors and decoded.shots else float("nan"),
        "detection_events": events, "detector_trials": detectors * decoded.shots,
        "decoder": decoder, "error": None,
    }


def _round_rows(base: dict[str, Any], decoded: Any) -> list[dict[str, Any]]:
    out = []
    for index, (n_events, n_detectors) in enumerate(zip(decoded.detection_events_per_round,
                                                        decoded.detectors_per_round)):
        trials = n_detectors * decoded.shots
        low, high = wilson_interval(n_events, trials)
        out.append({**{k: base[k] for k in ("experiment", "run_key", "kind", "logical_state")},
                    "round": index, "detectors": n_detectors, "shots": decoded.shots, "events": n_events,
                    "fraction": n_events / trials if trials else float("nan"), "ci_low": low, "ci_high": high})
    return out


def session_tables(runs: pd.DataFrame, settings: AnalysisSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deployment study: one row per complete session pair, and the paired statistics.

    Per session: each arm's endpoint (the experiment's ``endpoint``, detection-event fraction
    by default) with its interval, the decoded rate beside it, the chains used, the paired
    difference (drift_aware minus calibration) with its interval and the decoded rates'
    log-odds ratio. Per experiment: mean difference with a seeded paired-bootstrap 95%
    interval, the Wilcoxon signed-rank test, effect size d_z and the within-pair correlation
    where the data support them (see :mod:`qpuflow.paired`).
    """
    from qpuflow.paired import paired_summary, session_pairs, summary_table

    deployment = runs[runs["kind"] == "deployment"] if "kind" in runs else runs.iloc[0:0]
    pair_frames, stat_frames = [], []
    for experiment in sorted(deployment["experiment"].unique()) if not deployment.empty else []:
        pairs = session_pairs(deployment, experiment=experiment,
                              endpoint=dict(settings.endpoints).get(experiment, "detection_fraction"))
        done = deployment[(deployment["experiment"] == experiment) & (deployment["status"] == "completed")]
        for arm in ("calibration", "drift_aware"):
            chains = done[done["arm"] == arm].sort_values("attempt").groupby("session")["chain"].last()
            pairs[f"chain_{arm}"] = pairs["session"].map(chains)
        summary = paired_summary(pairs, n_bootstrap=settings.bootstrap_samples, seed=settings.seed)
        stats = summary_table(summary)
        stats.insert(0, "experiment", experiment)
        pair_frames.append(pairs)
        stat_frames.append(stats)
    empty_pairs = pd.DataFrame(columns=["experiment", "session"])
    empty_stats = pd.DataFrame(columns=["experiment", "quantity", "value"])
    return (pd.concat(pair_frames, ignore_index=True) if pair_frames else empty_pairs,
            pd.concat(stat_frames, ignore_index=True) if stat_frames else empty_stats)


def _summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Pool completed runs per experiment and logical state (shots and errors add up)."""
    if runs.empty or "raw_errors" not in runs:
        return pd.DataFrame()
    done = runs[runs["status"] == "completed"]
    rows = []
    keys = ["experiment", "kind", "logical_state", "distance", "rounds", "backend"]
    for group, frame in done.groupby(keys, sort=True):
        shots = int(frame["shots"].sum())
        rows.append({
            **dict(zip(keys, group)), "jobs": len(frame),
            "jobs_failed": int(((runs["experiment"] == group[0]) & (runs["logical_state"] == group[2])
                                & runs["status"].isin(["failed", "cancelled"])).sum()),
            "shots": shots,
            **_rate_columns("raw", int(frame["raw_errors"].sum()), shots),
            **_rate_columns("decoded", int(frame["decoded_errors"].sum()), shots),
        })
    return pd.DataFrame(rows)


def write_tables(tables: dict[str, pd.DataFrame], outputs: dict[str, Path]) -> None:
    for name in TABLES:
        path = Path(outputs[name])
        with atomic_file(path) as fh:
            tables[name].to_csv(fh, index=False)
