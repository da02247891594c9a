"""Analysis end to end: decoded rates, tables, plots and the HTML report (issue 3)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import snakemake, write_config

pytestmark = pytest.mark.slow


def analysis_dir(study):
    return study / "results" / "analysis"


def test_noiseless_backend_gives_zero_logical_errors(study, small_config):
    small_config["provider"]["local"]["noise_scale"] = 0.0
    small_config["experiments"]["sc"]["logical_states"] = ["0", "1", "+", "-"]
    small_config["experiments"]["sc"]["repetitions"] = 1
    small_config["experiments"]["sc"]["rounds"] = 2
    write_config(study, small_config)
    snakemake(study, "submit")
    snakemake(study, "collect")
    snakemake(study, "analyze")
    runs = pd.read_csv(analysis_dir(study) / "runs.csv")
    assert len(runs) == 5 and (runs["status"] == "completed").all()
    assert (runs["raw_errors"] == 0).all() and (runs["decoded_errors"] == 0).all()
    assert (runs["detection_fraction"] == 0).all()
    assert set(runs["logical_state"].astype(str)) == {"0", "1", "+", "-"}


def test_noisy_study_tables_plots_and_report(study, small_config):
    small_config["experiments"]["sc"]["shots"] = 2000
    small_config["experiments"]["dep"]["shots"] = 2000
    write_config(study, small_config)
    snakemake(study, "submit")
    out = snakemake(study, "analyze")
    assert "Nothing to be done" not in out.all  # runs on whatever is collected (nothing yet)
    assert len(pd.read_csv(analysis_dir(study) / "runs.csv")) == 3
    snakemake(study, "collect")
    snakemake(study, "analyze")  # new results are newer than the tables: analysis reruns
    runs = pd.read_csv(analysis_dir(study) / "runs.csv")
    assert (runs["status"] == "completed").all() and (runs["shots"] == 2000).all()
    for prefix in ("raw", "decoded"):
        assert (runs[f"{prefix}_ci_low"] <= runs[f"{prefix}_rate"]).all()
        assert (runs[f"{prefix}_rate"] <= runs[f"{prefix}_ci_high"]).all()
    rep = runs[runs["experiment"] == "dep"].iloc[0]
    assert rep["decoded_rate"] < rep["raw_rate"], "decoding must help a repetition code on this device model"
    summary = pd.read_csv(analysis_dir(study) / "summary.csv")
    sc = summary[summary["experiment"] == "sc"].iloc[0]
    assert sc["jobs"] == 2 and sc["shots"] == 4000
    assert sc["decoded_errors"] == runs[runs["experiment"] == "sc"]["decoded_errors"].sum()
    rounds = pd.read_csv(analysis_dir(study) / "detection_rounds.csv")
    assert set(rounds["round"]) == {0, 1} and (rounds["fraction"] > 0).all()
    provenance = pd.read_csv(analysis_dir(study) / "provenance.csv")
    assert set(provenance["job_id"]) == set(runs["job_id"])
    assert provenance["physical_qubits"].str.split().map(len).min() >= 5
    for png in ("logical_error_rates.png", "detection_rounds.png"):
        assert (analysis_dir(study) / png).read_bytes()[:4] == b"\x89PNG"
    snakemake(study, "analyze", "--report", "results/report.html")
    html = (study / "results" / "report.html").read_text()
    for name in ("runs.csv", "summary.csv", "provenance.csv", "logical_error_rates.png", "detection_rounds.png"):
        assert name in html, f"{name} missing from the report"
    assert "physical qubits" in html  # the provenance caption


def test_calibration_decoder_uses_the_saved_snapshot(study, small_config, monkeypatch):
    from qpuflow.analysis import AnalysisSettings, analyse
    from qpuflow.paths import Paths

    small_config["experiments"]["sc"]["shots"] = 3000
    small_config["experiments"]["dep"]["shots"] = 3000
    write_config(study, small_config)
    snakemake(study, "submit")
    snakemake(study, "collect")
    monkeypatch.chdir(study)
    paths = Paths.from_config({"results_dir": "results", "provider": {}}, base=study)
    uniform = analyse(paths, AnalysisSettings("uniform"))["runs"].set_index("run_key")
    calibrated = analyse(paths, AnalysisSettings("calibration"))["runs"].set_index("run_key")
    # Both keep their distance (native surface code, repetition chain): correlated matching.
    assert calibrated.loc["dep/session000_calibration", "decoder"] == "pymatching-correlated/calibration"
    assert calibrated.loc["sc/L0_rep0", "decoder"] == "pymatching-correlated/calibration"
    assert (calibrated["circuit_distance"] == 3).all() and set(calibrated["layout"]) == {"native", "routed"}
    assert (calibrated["raw_errors"] == uniform["raw_errors"]).all()  # same data, only the decoder differs
    assert (calibrated["decoded_rate"] < calibrated["raw_rate"]).all()
    # The device-aware model knows where the noise is (idle time, readout asymmetry): not worse.
    sc = [k for k in calibrated.index if k.startswith("sc/")]
    assert calibrated.loc[sc, "decoded_errors"].sum() <= uniform.loc[sc, "decoded_errors"].sum() * 1.1
