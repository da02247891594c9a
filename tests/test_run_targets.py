"""Every run's marker and result is a Snakemake file target (issue 14): asking for one run's
result submits its pack once and downloads it; asking again submits nothing; `--summary`
shows each run's files; a run that is not due is refused, saying why."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import provider_jobs, snakemake, write_config


def _packed(config: dict) -> dict:
    config["provider"]["pubs_per_job"] = 8
    config["experiments"]["sc"]["rounds"] = [1, 2]  # 4 runs: one pack
    return config


def test_one_runs_result_submits_its_pack_once_and_reruns_submit_nothing(study: Path, small_config: dict):
    write_config(study, _packed(small_config))
    target = "results/collected/sc/L0_r1_rep0.json"
    first = snakemake(study, target)
    assert "submit_run" in first.all and "collect_run" in first.all
    result = json.loads((study / target).read_text())
    assert result["status"] == "completed" and result["run_key"] == "sc/L0_r1_rep0"
    jobs = provider_jobs(study)
    assert len(jobs) == 1, jobs  # the run's pack: 4 runs, one job
    assert sorted(p.name for p in (study / "results/submitted/sc").glob("*.json")) == [
        "L0_r1_rep0.json", "L0_r1_rep1.json", "L0_r2_rep0.json", "L0_r2_rep1.json"]
    assert not (study / "results/submitted/dep").exists()  # nothing else was sent

    again = snakemake(study, target)
    assert "Nothing to be done" in again.all
    other = snakemake(study, "results/collected/sc/L0_r2_rep1.json")  # a pack-mate: collected, not sent
    assert "submit_run" not in other.all and "collect_run" in other.all
    assert len(provider_jobs(study)) == 1

    snakemake(study, "submit")  # the everyday target sends only what is left: the deployment session
    assert len(provider_jobs(study)) == 2
    summary = snakemake(study, "--summary", "collected").stdout
    rows = {line.split("\t")[0]: line.split("\t") for line in summary.splitlines() if "\t" in line}
    assert rows["results/collected/sc/L0_r1_rep0.json"][4] == "ok"
    assert rows["results/collected/sc/L0_r1_rep1.json"][4] == "missing"
    assert rows["results/submitted/sc/L0_r1_rep1.json"][4] == "ok"
    assert rows["results/submitted/dep/session000_calibration.json"][2] == "submit_run"


def test_a_waiting_job_fails_its_result_target_with_its_state_and_is_not_sent_again(study: Path,
                                                                                      small_config: dict):
    small_config["provider"]["local"]["queue_seconds"] = 3600
    write_config(study, _packed(small_config))
    target = "results/collected/sc/L0_r1_rep0.json"
    waiting = snakemake(study, target, check=False)
    assert waiting.returncode == 1
    assert "sc/L0_r1_rep0: job" in waiting.all and "QUEUED" in waiting.all and "collect" in waiting.all
    assert not (study / target).exists()
    snakemake(study, target, check=False)
    assert len(provider_jobs(study)) == 1


def test_an_arm_waiting_for_its_probe_is_refused_naming_the_probe(study: Path, small_config: dict):
    small_config["experiments"]["dep"]["arms"] = ["calibration", "drift_aware"]
    write_config(study, small_config)
    proc = snakemake(study, "results/submitted/dep/session000_calibration.json", check=False)
    assert proc.returncode == 1
    assert "dep/session000_calibration is not to be submitted now" in proc.all
    assert "probe" in proc.all
    assert provider_jobs(study) == []


def test_the_finished_target_polls_once_and_collects_exactly_the_ended_jobs(study: Path, small_config: dict):
    """Checkpoint poll_jobs: the DAG learns after polling which results can exist; the runs
    whose jobs ended are collected (each its own collect_run), the waiting ones are not
    targets, and the run exits 0."""
    from qpuflow.config import load_config
    from qpuflow.paths import Paths
    from qpuflow.providers.local import LocalProvider, LocalSettings
    from qpuflow.records import Marker

    small_config["provider"]["local"]["queue_seconds"] = 3600
    write_config(study, _packed(small_config))
    snakemake(study, "submit")
    assert len(provider_jobs(study)) == 2  # the surface-code pack and the deployment session
    config = load_config(study / "config.yaml")
    paths = Paths.from_config(config, base=study)
    sc_job = Marker.read(paths.marker("sc/L0_r1_rep0")).job_id
    LocalProvider(LocalSettings.from_config(config, paths.local_store)).run_now(sc_job)

    out = snakemake(study, "finished")
    assert "poll_jobs" in out.all and out.all.count("rule collect_run:") == 4, out.all
    assert sorted(p.name for p in (study / "results/collected/sc").glob("*.json")) == [
        "L0_r1_rep0.json", "L0_r1_rep1.json", "L0_r2_rep0.json", "L0_r2_rep1.json"]
    assert not (study / "results/collected/dep").exists()
    assert "1 wait" in out.all and "dep/session000_calibration (QUEUED)" in out.all
    again = snakemake(study, "finished")  # polls again; nothing new has ended
    assert "rule collect_run:" not in again.all and len(list((study / "results/ledger/poll").glob("*.json"))) == 1
    assert len(provider_jobs(study)) == 2
