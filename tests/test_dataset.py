"""The reviewer's dataset (issue 16): `snakemake dataset` writes every completed run in a layout
that stim and PyMatching alone re-decode to the analysis's own predictions and rates."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pymatching
import pytest
import stim

from conftest import REPO, snakemake


def _read_b8(path: Path, width: int) -> np.ndarray:
    return stim.read_shot_data_file(path=str(path), format="b8", num_measurements=width)


def _redecode(folder: Path) -> dict[str, int]:
    """What a reviewer does with one run's folder, with stim and PyMatching only."""
    meta = json.loads((folder / "metadata.json").read_text())
    circuit = stim.Circuit.from_file(str(folder / "circuit_ideal.stim"))
    measurements = _read_b8(folder / "measurements.b8", circuit.num_measurements)
    assert measurements.shape == (meta["shots"], circuit.num_measurements)
    events, flips = circuit.compile_m2d_converter().convert(measurements=measurements, separate_observables=True)
    assert np.array_equal(events, _read_b8(folder / "detection_events.b8", circuit.num_detectors))
    assert np.array_equal(flips, _read_b8(folder / "obs_flips_actual.b8", circuit.num_observables))
    errors = {}
    for name, decoder in meta["decoders"].items():
        dem = stim.DetectorErrorModel.from_file(str(folder / "decoders" / name / "error_model.dem"))
        correlated = decoder["correlated_matching"]
        matching = pymatching.Matching.from_detector_error_model(dem, enable_correlations=correlated)
        predicted = matching.decode_batch(events, enable_correlations=correlated)
        shipped = _read_b8(folder / "decoders" / name / "obs_flips_predicted.b8", circuit.num_observables)
        assert np.array_equal(predicted.astype(bool), shipped), (folder, name)
        errors[name] = int(np.any(predicted != flips, axis=1).sum())
        assert errors[name] == decoder["errors"]
    return errors


def _check_dataset(study: Path) -> int:
    root = next((study / "datasets").iterdir())
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest["files"]:  # the checksums describe the files as deposited
        data = (root / entry["path"]).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
    with open(study / "results" / "analysis" / "runs.csv") as fh:
        analysis = {row["run_key"]: row for row in csv.DictReader(fh) if row["status"] == "completed"}
    redecoded = {}
    for meta_path in root.glob("*/*/metadata.json"):
        run = json.loads(meta_path.read_text())["run"]
        redecoded[run] = _redecode(meta_path.parent)
    probes = {k for k in analysis if "probe" in k}
    assert set(redecoded) == set(analysis) - probes and manifest["runs"] == len(redecoded)
    for run, errors in redecoded.items():
        primary, uniform = list(errors.values())[0], list(errors.values())[-1]
        assert primary == int(analysis[run]["decoded_errors"]), run
        assert uniform == int(analysis[run]["decoded_uniform_errors"]), run
    lines = (root / "runs.csv").read_text().splitlines()
    assert lines[0].split(",")[0].strip() == "shots" and len(lines) - 1 == sum(len(e) for e in redecoded.values())
    return len(redecoded)


def _whole_loop(study: Path, steps: tuple[str, ...] = ("submit", "collect", "submit", "collect")) -> None:
    for step in steps:
        snakemake(study, step)
    out = snakemake(study, "dataset")
    assert "Dataset:" in out.all


@pytest.fixture(scope="module")
def default_study(tmp_path_factory) -> Path:
    """The repository's default study, run once for this module: submit, collect (twice, for the
    deployment arms), analyze, dataset."""
    folder = tmp_path_factory.mktemp("default")
    for name in ("Snakefile", "workflow", "profiles", "envs", "config.yaml"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, folder / name)
    _whole_loop(folder)
    return folder


@pytest.mark.xdist_group("default_study")  # one worker runs the study once for both tests
def test_the_default_studys_dataset_redecodes_to_the_analysis(default_study: Path):
    assert _check_dataset(default_study) == 10  # 8 native surface-code runs and the first session's two arms


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _in_browser(page: Path, screenshot: Path) -> tuple[str, str]:
    """(DOM text, console log lines) of ``page`` rendered by headless Chromium at 80% zoom, and
    its screenshot."""
    import subprocess

    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", "--force-device-scale-factor=0.8", "--window-size=1280,2400"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    shot = subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=180)
    console = [line for line in (dom.stderr + shot.stderr).splitlines() if "CONSOLE" in line]
    return dom.stdout, "\n".join(console)


@pytest.mark.xdist_group("default_study")
@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (.ci/run installs it)")
def test_the_overview_and_status_pages_render_in_a_browser_with_the_headline_numbers(default_study: Path,
                                                                                      tmp_path: Path):
    import pandas as pd

    analysis = default_study / "results" / "analysis"
    dom, console = _in_browser(analysis / "overview.html", tmp_path / "overview.png")
    assert console == "", console  # no console errors (or messages at all)
    png = (tmp_path / "overview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    for _, row in pd.read_csv(analysis / "per_round.csv").iterrows():  # the headline: rates per round
        assert f"{100 * row['per_round_error']:.3g}% per round" in dom
        assert f"95% CI {100 * row['ci_low']:.3g}% to {100 * row['ci_high']:.3g}%" in dom
    assert dom.count("data:image/png;base64,") == 3  # every figure inline
    assert "completed: 10" in dom and "<td>local</td>" in dom
    status_dom, console = _in_browser(default_study / "results" / "status.html", tmp_path / "status.png")
    assert console == "" and "done: 11" in status_dom and "session 001 is due at" in status_dom


def test_a_subsystem_code_study_redecodes_to_the_analysis(study: Path, small_config: dict):
    from conftest import write_config

    small_config["experiments"]["sc"]["layout"] = "native_subsystem"
    del small_config["experiments"]["dep"]
    write_config(study, small_config)
    _whole_loop(study, ("submit", "collect"))  # no deployment: one submit, one collect
    assert _check_dataset(study) == 2


def test_every_collect_writes_a_status_page_with_failures_budget_and_what_waits(study: Path, small_config: dict):
    from conftest import write_config

    small_config["provider"]["local"]["fail_tags"] = ["run:L0_rep1"]
    small_config["experiments"]["dep"].update(sessions=2, arms=["calibration", "drift_aware"],
                                              schedule={"per_day": 3})
    write_config(study, small_config)
    snakemake(study, "submit")
    out = snakemake(study, "collect")
    assert "Status page: results/status.html" in out.all
    page = (study / "results" / "status.html").read_text()
    assert "failed: 1" in page and "done: 2" in page  # sc/L0_rep1 failed; sc/L0_rep0 and the probe done
    failed_row = page.index("sc/L0_rep1")
    assert failed_row < page.index("sc/L0_rep0")  # failures first
    assert "ERROR" in page[failed_row - 200:failed_row] and "Backend went offline" in page[failed_row:failed_row + 400]
    assert "<td>local</td>" in page and "QPU seconds in the last 28 days" in page
    assert "session 001 is due at" in page  # the schedule: what waits, and when
    snakemake(study, "submit")  # the arms of session 0, now that its probe is collected
    snakemake(study, "collect")
    again = (study / "results" / "status.html").read_text()
    assert "done: 4" in again and again != page
