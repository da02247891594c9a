"""A dataset a reviewer can re-decode with stim and PyMatching alone.

One folder per collected, completed run, in the layout of published surface-code data sets
(circuits, measurements, detection events, error models and predictions side by side)::

    datasets/<study>/
      README.md                 what every file is and how to re-decode
      manifest.json             every file with its size and SHA-256 (ready to deposit)
      runs.csv                  sinter-compatible: one line per run and decoder
      <experiment>/<run>/
        circuit_ideal.stim      the memory circuit with its detectors and observable (noiseless)
        circuit_noisy.stim      the calibration noise model the primary DEM was made from
                                (the ISA circuit's own measurement order; detectors in the
                                same order as circuit_ideal.stim's)
        isa.qpy, isa.qasm       the circuit that ran (QPY and OpenQASM 3), physical qubits
        measurements.b8         every shot's measurement record, in circuit_ideal.stim's order
        detection_events.b8     circuit_ideal.stim's detectors, per shot
        obs_flips_actual.b8     the observable's flip (measured XOR prepared), per shot
        decoders/<name>/error_model.dem, obs_flips_predicted.b8
        metadata.json           shots, job ID, backend, layout, calibration snapshot (embedded),
                                decoders, rates, git commit, package versions

``.b8`` files are stim's bit-packed format (``stim.read_shot_data_file(path, format="b8",
num_measurements=..., num_detectors=..., num_observables=...)``), little-endian bits per shot.
The DEMs are those the analysis decoded with (``results/decoders/``), so the predictions and
rates here are the analysis's, shot for shot.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qpuflow.analysis import AnalysisSettings, decoder_plan
from qpuflow.collect import read_markers
from qpuflow.paths import Paths
from qpuflow.records import Marker, Result, ResultStatus, write_json_atomic

FORMAT_VERSION = 1


def export_dataset(paths: Paths, settings: AnalysisSettings, out: Path, *, study: str,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the dataset of every completed run to ``out`` (replaced whole); return its summary."""
    import sinter

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    markers = read_markers(paths, problems=[])
    done = [(key, m) for key, m in sorted(markers.items())
            if paths.result(key).exists() and m.spec.get("kind") != "probe"]
    lines, runs = [sinter.CSV_HEADER], 0
    for number, (key, marker) in enumerate(done, start=1):
        result = Result.read(paths.result(key))
        if result.status is not ResultStatus.COMPLETED:
            continue
        stats = _export_run(tmp / key, marker, result, paths, settings, study)
        lines.extend(s.to_csv_line() for s in stats)
        runs += 1
        if progress is not None:
            progress(number, len(done))
    (tmp / "runs.csv").write_text("\n".join(lines) + "\n")
    (tmp / "README.md").write_text(_readme(study))
    manifest = {"study": study, "format_version": FORMAT_VERSION, "runs": runs, "files": _checksums(tmp)}
    write_json_atomic(tmp / "manifest.json", manifest)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return {"path": str(out), "runs": runs, "files": len(manifest["files"])}


def _export_run(folder: Path, marker: Marker, result: Result, paths: Paths, settings: AnalysisSettings,
                study: str) -> list[Any]:
    import pymatching
    import sinter
    import stim
    from qiskit import qasm3

    from qpuflow.measurement_map import measurement_map_of, records_from_registers
    from qpuflow.dem import isa_detector_circuit
    from qpuflow.qpyio import load_circuit

    folder.mkdir(parents=True, exist_ok=True)
    isa = load_circuit(Path(marker.isa_path))
    ideal = stim.Circuit(isa.metadata["stim_circuit"])
    mmap = measurement_map_of(isa)
    snapshot = json.loads(Path(marker.calibration_snapshot).read_text())
    (folder / "circuit_ideal.stim").write_text(str(ideal))
    (folder / "circuit_noisy.stim").write_text(str(isa_detector_circuit(isa, snapshot)))
    shutil.copyfile(marker.isa_path, folder / "isa.qpy")
    (folder / "isa.qasm").write_text(qasm3.dumps(isa))
    records = records_from_registers(result.bit_arrays(), mmap)
    converter = ideal.compile_m2d_converter()
    events, actual = converter.convert(measurements=records, separate_observables=True)
    _write_b8(folder / "measurements.b8", records)
    _write_b8(folder / "detection_events.b8", events)
    _write_b8(folder / "obs_flips_actual.b8", actual)
    decoders, stats = {}, []
    for dem, correlated, _ in decoder_plan(marker, settings, paths):
        name = _decoder_name(dem, correlated, settings, first=not decoders)
        sub = folder / "decoders" / name
        sub.mkdir(parents=True, exist_ok=True)
        dem.to_file(str(sub / "error_model.dem"))
        matching = pymatching.Matching.from_detector_error_model(dem, enable_correlations=correlated)
        predicted = np.asarray(matching.decode_batch(events, enable_correlations=correlated) if correlated
                               else matching.decode_batch(events), dtype=bool).reshape(len(events), -1)
        _write_b8(sub / "obs_flips_predicted.b8", predicted)
        errors = int(np.any(predicted != actual, axis=1).sum())
        decoders[name] = {"correlated_matching": correlated, "errors": errors, "rate": errors / len(events)}
        stats.append(sinter.TaskStats(
            strong_id=f"{marker.isa_sha256}-{name}", decoder=f"pymatching{'-correlated' if correlated else ''}",
            json_metadata={"study": study, "run": marker.run_key, "job_id": marker.job_id, "decoder": name,
                           "backend": marker.backend, **_spec_metadata(marker.spec)},
            shots=len(events), errors=errors, discards=0, seconds=0.0))
    write_json_atomic(folder / "metadata.json", {
        "study": study, "run": marker.run_key, "job_id": marker.job_id, "backend": marker.backend,
        "shots": len(events), "num_measurements": ideal.num_measurements, "num_detectors": ideal.num_detectors,
        "num_observables": ideal.num_observables, "spec": marker.spec,
        "physical_qubits": marker.physical_layout, "submission_time": marker.submission_time,
        "completion_time": result.completion_time, "usage_seconds": result.usage_seconds,
        "git_commit": marker.git_commit, "git_dirty": marker.git_dirty, "package_versions": marker.package_versions,
        "isa_sha256": marker.isa_sha256, "calibration_snapshot": snapshot, "decoders": decoders,
        "format": "stim b8 (stim.read_shot_data_file(..., format='b8'))", "format_version": FORMAT_VERSION})
    return stats


def _decoder_name(dem: Any, correlated: bool, settings: AnalysisSettings, *, first: bool) -> str:
    if first and settings.decoder_noise == "calibration":
        return "calibration-correlated" if correlated else "calibration"
    return f"uniform-p{settings.uniform_p:g}"


def _spec_metadata(spec: dict[str, Any]) -> dict[str, Any]:
    keys = ("experiment", "kind", "distance", "rounds", "logical_state", "layout", "session", "arm")
    return {k: spec.get(k) for k in keys if spec.get(k) is not None}


def _write_b8(path: Path, bits: np.ndarray) -> None:
    import stim

    bits = np.asarray(bits, dtype=bool)
    stim.write_shot_data_file(data=bits, path=str(path), format="b8",
                              num_measurements=bits.shape[1])


def _checksums(root: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out.append({"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": digest})
    return out


def _readme(study: str) -> str:
    return f"""# qpuflow dataset: {study}

Every completed run of the study, one folder per run (`<experiment>/<run>/`), written by
`snakemake dataset`. `manifest.json` lists every file with its size and SHA-256.

Re-decode a run with stim and PyMatching alone:

```python
import json, pymatching, stim
run = "<experiment>/<run>"
meta = json.load(open(f"{{run}}/metadata.json"))
circuit = stim.Circuit.from_file(f"{{run}}/circuit_ideal.stim")
m = stim.read_shot_data_file(path=f"{{run}}/measurements.b8", format="b8",
                             num_measurements=circuit.num_measurements)
events, flips = circuit.compile_m2d_converter().convert(measurements=m, separate_observables=True)
name = next(iter(meta["decoders"]))                       # the analysis's primary decoder
dem = stim.DetectorErrorModel.from_file(f"{{run}}/decoders/{{name}}/error_model.dem")
correlated = meta["decoders"][name]["correlated_matching"]
matching = pymatching.Matching.from_detector_error_model(dem, enable_correlations=correlated)
predicted = matching.decode_batch(events, enable_correlations=correlated)
print(((predicted != flips).any(axis=1)).mean(), meta["decoders"][name]["rate"])
```

`.b8` files are stim's bit-packed shot format. `runs.csv` is sinter's CSV (one line per run
and decoder, run details in `json_metadata`): `sinter plot --in runs.csv` reads it.
`circuit_noisy.stim` is the calibration noise model of the circuit that ran (the measurement
order of the ISA circuit); the primary `error_model.dem` was derived from it and its
detectors are `circuit_ideal.stim`'s, in order.
"""
