from __future__ import annotations

import json

import numpy as np
import pytest

from qpuflow.records import (CorruptRecordError, Marker, Result, pack_bits, unpack_bits, write_json_atomic,
                             write_marker)


def make_marker(**changes) -> Marker:
    fields = dict(
        job_id="abc123", experiment_type="surface_code", backend="fake_fez", logical_state="0", shots=100,
        circuit_hash="h" * 64, transpiled_depth=10, transpiled_gates=20,
        submission_time="2026-11-24T01:00:00+00:00", api_key_index=0, git_commit="c0ffee", status="submitted",
        run_key="sc/L0_rep0", run_id="r" * 64, job_tag="qpuflow-run-x", account="local", provider="local",
        tags=["qpuflow", "qpuflow-run-x"], isa_path="results/isa/x.qpy", isa_sha256="s" * 64,
        physical_layout=[3, 4, 5], transpiler_seed=1, optimization_level=1,
        calibration_snapshot="results/calibration/fake_fez/x.json", package_versions={"qiskit": "2"},
        git_dirty=False, estimated_qpu_seconds=3.0, max_execution_time=120, spec={"shots": 100},
    )
    fields.update(changes)
    return Marker(**fields)


SEED_FIELDS = ["job_id", "experiment_type", "backend", "logical_state", "shots", "circuit_hash", "transpiled_depth",
               "transpiled_gates", "submission_time", "api_key_index", "git_commit", "status"]


def test_marker_round_trip_has_seed_fields(tmp_path):
    marker = make_marker()
    path = tmp_path / "m.json"
    write_marker(path, marker)
    data = json.loads(path.read_text())
    assert all(field in data for field in SEED_FIELDS)
    assert Marker.read(path) == marker


@pytest.mark.parametrize("bad", [dict(job_id=""), dict(shots=0), dict(submission_time="2026-11-24T01:00:00"),
                                 dict(tags=["qpuflow"])])
def test_marker_validates(bad):
    with pytest.raises(ValueError):
        make_marker(**bad)


def test_marker_is_never_replaced_by_a_different_one(tmp_path):
    path = tmp_path / "m.json"
    write_marker(path, make_marker())
    write_marker(path, make_marker())  # identical: fine
    with pytest.raises(CorruptRecordError, match="never rewritten"):
        write_marker(path, make_marker(job_id="other"))
    assert Marker.read(path).job_id == "abc123"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"job_id": "x"})])
def test_corrupt_marker_names_its_path(tmp_path, content):
    path = tmp_path / "sc" / "L0_rep0.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(CorruptRecordError, match=str(path)):
        Marker.read(path)
    assert path.read_text() == content  # left as it was


@pytest.mark.parametrize("nbits", [1, 7, 8, 9, 33])
def test_bit_packing_round_trips(nbits):
    rng = np.random.default_rng(nbits)
    bits = rng.random((57, nbits)) < 0.3
    assert np.array_equal(unpack_bits(pack_bits(bits)), bits)


def test_result_requires_error_for_failures_and_bits_for_success():
    with pytest.raises(ValueError, match="error message"):
        Result(job_id="j", run_key="a/b", status="failed", completion_time=None, usage_seconds=None)
    with pytest.raises(ValueError, match="registers"):
        Result(job_id="j", run_key="a/b", status="completed", completion_time=None, usage_seconds=1.0)
    bits = np.eye(3, dtype=bool)
    result = Result(job_id="j", run_key="a/b", status="completed", completion_time=None, usage_seconds=1.0,
                    registers={"data": pack_bits(bits)})
    assert np.array_equal(Result.from_json(result.to_json()).bit_arrays()["data"], bits)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_json_atomic(tmp_path / "a" / "x.json", {"a": 1})
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


# ---------------------------------------------------------------------------- transpile record

_OLD_TRANSPILE_RECORD = {  # as written before circuit distances, delays and placements were recorded
    "run_key": "sc/L0_rep0", "run_id": "abc123", "backend": "fake_fez", "circuit_hash": "f" * 64,
    "isa_sha256": "e" * 64, "physical_layout": [3, 4, 5], "transpiler_seed": 7, "optimization_level": 1,
    "depth": 40, "num_gates": 120, "gate_counts": {"cz": 24, "sx": 50}, "duration_seconds": 1.2e-5,
    "calibration_snapshot": "results/calibration/fake_fez/x.json", "transpiled_time": "2026-11-01T00:00:00+00:00",
}


def test_a_transpile_record_from_an_older_study_reads_with_the_newer_fields_unset(tmp_path):
    from qpuflow.records import TranspileRecord

    path = tmp_path / "L0_rep0.json"
    path.write_text(json.dumps(_OLD_TRANSPILE_RECORD))
    record = TranspileRecord.read(path)
    assert record.gate_counts["cz"] == 24 and record.duration_seconds == 1.2e-5
    assert record.circuit_distance is None and record.placement is None and record.selection is None
    assert TranspileRecord.from_json(record.to_json()) == record


def test_a_transpile_record_missing_a_field_is_corrupt_naming_the_file_and_field(tmp_path):
    from qpuflow.records import CorruptRecordError, TranspileRecord

    path = tmp_path / "L0_rep0.json"
    path.write_text(json.dumps({k: v for k, v in _OLD_TRANSPILE_RECORD.items() if k != "isa_sha256"}))
    with pytest.raises(CorruptRecordError, match=r"L0_rep0.json.*isa_sha256"):
        TranspileRecord.read(path)


def test_the_transpile_record_file_keeps_its_keys(tmp_path, small_config):
    """What transpile_run writes is what earlier versions wrote (readers outside qpuflow rely on it)."""
    from qpuflow.config import validate_config
    from qpuflow.paths import Paths
    from qpuflow.plan import plan_runs
    from qpuflow.stages import ensure_transpiled

    config = validate_config(small_config, source="test")
    paths = Paths.from_config(config, base=tmp_path)
    spec = next(s for s in plan_runs(config) if s.experiment == "sc")
    record = ensure_transpiled(spec, config=config, paths=paths)
    written = json.loads(paths.isa_info(spec).read_text())
    assert set(written) == set(_OLD_TRANSPILE_RECORD) | {"delays_seconds", "chosen_chain", "circuit_distance",
                                                         "selection", "placement"}
    assert written["circuit_distance"]["distance"] == 3 and record.circuit_distance == written["circuit_distance"]


# ---------------------------------------------------------------------------- session selection

_SELECTION = {  # as select_session has written it since sessions existed
    "experiment": "dep", "session": 3, "backend": "fake_fez", "selected_time": "2026-12-01T16:00:00+00:00",
    "order": ["drift_aware", "calibration"], "calibration_snapshot": "results/calibration/fake_fez/x.json",
    "properties_last_update": None,
    "arms": {"calibration": {"chain": [1, 2, 3], "source": "reported calibration"},
             "drift_aware": {"chain": [5, 6, 7], "source": "probe", "probe_run": "session003_probe",
                             "probe_job_id": "j1", "probe_completion_time": "2026-12-01T15:50:00+00:00",
                             "estimates": {"5": {"t1": 1e-4, "readout_error": 0.01}}}},
}


def test_a_session_selection_reads_and_writes_the_same_file(tmp_path):
    from qpuflow.records import SessionSelection

    path = tmp_path / "session003.json"
    path.write_text(json.dumps(_SELECTION))
    selection = SessionSelection.read(path)
    assert selection.arms["drift_aware"].probe_job_id == "j1" and selection.arms["calibration"].probe_run is None
    assert selection.to_json() == _SELECTION
    chosen = selection.for_arm("calibration", path)
    assert chosen["chain"] == [1, 2, 3] and chosen["position"] == 1 and chosen["selection_file"] == str(path)


def test_a_selection_without_the_arm_or_a_field_is_refused_naming_the_file(tmp_path):
    from qpuflow.records import CorruptRecordError, SessionSelection

    path = tmp_path / "session003.json"
    path.write_text(json.dumps({k: v for k, v in _SELECTION.items() if k != "order"}))
    with pytest.raises(CorruptRecordError, match=r"session003.json.*order"):
        SessionSelection.read(path)
    path.write_text(json.dumps({**_SELECTION, "arms": {"calibration": _SELECTION["arms"]["calibration"]}}))
    with pytest.raises(CorruptRecordError, match=r"session003.json.*'drift_aware'"):
        SessionSelection.read(path).for_arm("drift_aware", path)
