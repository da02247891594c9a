"""The workflow end to end through Snakemake, on the local backend (issue 2, points 3-5).

Jobs are counted at the provider through `qpuflow jobs`, the way a user would, so a
duplicate submission anywhere in the pipeline shows up here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import sys

from qpuflow.ledger import Ledger

from tests.conftest import BIN, REPO, provider_jobs, run, snakemake, write_config

pytestmark = pytest.mark.slow

RUN_KEYS = ["dep/session000_calibration", "sc/L0_rep0", "sc/L0_rep1"]
SEED_FIELDS = ["job_id", "experiment_type", "backend", "logical_state", "shots", "circuit_hash",
               "transpiled_depth", "transpiled_gates", "submission_time", "api_key_index", "git_commit", "status"]
PROVENANCE_FIELDS = ["account", "provider", "tags", "isa_sha256", "physical_layout", "transpiler_seed",
                     "package_versions", "git_dirty", "calibration_snapshot"]


def markers(study: Path) -> dict[str, dict]:
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())
            for p in sorted((study / "results" / "submitted").glob("*/*.json"))}


def job_ids(study: Path) -> dict[str, str]:
    return {k: m["job_id"] for k, m in markers(study).items()}


def assert_one_job_per_run(study: Path) -> None:
    jobs = provider_jobs(study)
    ids = job_ids(study)
    assert sorted(ids) == RUN_KEYS
    assert sorted(j["job_id"] for j in jobs) == sorted(ids.values()), "a job without a marker, or a duplicate"


def test_submit_is_exactly_once_and_collect_downloads_once(study: Path):
    out = snakemake(study, "submit")
    assert_one_job_per_run(study)
    first = job_ids(study)
    for key, marker in markers(study).items():
        assert all(f in marker for f in SEED_FIELDS + PROVENANCE_FIELDS), key
        assert marker["submission_time"].endswith("+00:00") and marker["status"] == "submitted"
        assert marker["job_tag"] in marker["tags"]
        assert (study / marker["calibration_snapshot"]).exists() or Path(marker["calibration_snapshot"]).exists()
    exports = list((study / "results" / "ibm_experiments").glob("submitted_jobs_*.jsonl"))
    assert len(exports) == 1
    lines = [json.loads(line) for line in exports[0].read_text().splitlines()]
    assert sorted(line["job_id"] for line in lines) == sorted(first.values())
    assert "Submission export" in out.all

    # Rerun at once, after editing rule code and the library-facing params: nothing to do.
    assert "Nothing to be done" in snakemake(study, "submit").all
    rule = study / "workflow" / "rules" / "submit.smk"
    rule.write_text(rule.read_text() + "\n# an edit that must not re-plan submitted jobs\n")
    config_path = study / "config.yaml"
    import yaml

    config = yaml.safe_load(config_path.read_text())
    config["provider"]["max_execution_time"] = 100  # a param, but not the circuit
    write_config(study, config)
    (study / "results" / "isa" / "fake_fez" / "sc" / "L0_rep0.qpy").touch()  # a newer upstream file
    assert "Nothing to be done" in snakemake(study, "submit").all
    assert job_ids(study) == first

    # Forced reruns delete the markers; the ledger writes the same ones back, submitting nothing.
    snakemake(study, "submit", "-F")
    assert job_ids(study) == first
    assert_one_job_per_run(study)
    import shutil

    shutil.rmtree(study / ".snakemake")
    (study / "results" / "submitted" / "sc" / "L0_rep1.json").unlink()
    snakemake(study, "submit")
    assert job_ids(study) == first
    assert_one_job_per_run(study)
    assert not list((study / "results" / "ibm_experiments").glob("submitted_jobs_*_1.jsonl"))

    # Collect: every job is done at once with the default zero queue delay.
    out = snakemake(study, "collect")
    assert "Completed: 3/3" in out.all and "Pending: 0/3" in out.all
    results = sorted((study / "results" / "collected").glob("*/*.json"))
    assert len(results) == 3
    for path in results:
        data = json.loads(path.read_text())
        assert data["status"] == "completed" and data["usage_seconds"] > 0 and data["registers"]
        assert data["job_id"] == first[f"{path.parent.name}/{path.stem}"]
    assert list((study / "results" / "ibm_experiments").glob("collected_results_*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in results}
    out = snakemake(study, "collect")
    assert {p: p.stat().st_mtime_ns for p in results} == stamps, "a result was downloaded twice"
    assert "Completed: 3/3" in out.all
    assert_one_job_per_run(study)


def test_collect_exits_zero_while_pending_and_records_failures(study: Path, small_config: dict):
    small_config["provider"]["local"].update(queue_seconds=3600, fail_tags=["run:L0_rep1"])
    write_config(study, small_config)
    snakemake(study, "submit")
    out = snakemake(study, "collect")
    assert "Pending: 3/3" in out.all
    assert "QUEUED" in out.all
    assert not list((study / "results" / "collected").glob("*/*.json"))

    cancelled = job_ids(study)["sc/L0_rep0"]
    run([str(BIN / "qpuflow"), "cancel", cancelled], study)
    out = snakemake(study, "collect")
    result = json.loads((study / "results" / "collected" / "sc" / "L0_rep0.json").read_text())
    assert result["status"] == "cancelled" and "cancelled" in result["error"].lower()
    assert "Pending: 2/3" in out.all

    # The injected fault fires when the job leaves the queue: shorten the queue to reach it.
    store = study / "results" / "local_jobs" / "jobs"
    for path in store.glob("*.json"):
        if not path.name.endswith(".result.json"):
            record = json.loads(path.read_text())
            record["queue_seconds"] = 0
            path.write_text(json.dumps(record))
    out = snakemake(study, "collect")
    failed = json.loads((study / "results" / "collected" / "sc" / "L0_rep1.json").read_text())
    assert failed["status"] == "failed" and "Backend went offline" in failed["error"]
    assert "Pending: 0/3" in out.all
    assert_one_job_per_run(study)


def test_kill_after_provider_accepted_is_adopted_by_tag(study: Path):
    proc = snakemake(study, "submit", env={"QPUFLOW_FAULT": "after_provider_accept:kill"}, check=False)
    assert proc.returncode != 0
    orphans = provider_jobs(study)
    assert len(orphans) == 1 and not markers(study), "exactly one job accepted, no marker written"
    # Rule bodies run inside Snakemake's process, so the kill took Snakemake down with its lock.
    snakemake(study, "--unlock")
    snakemake(study, "submit")
    assert_one_job_per_run(study)
    adopted = [m for m in markers(study).values() if m["adopted"]]
    assert [m["job_id"] for m in adopted] == [orphans[0]["job_id"]]


def test_kill9_of_the_whole_run_then_unlock_and_rerun(study: Path, tmp_path: Path):
    flag = tmp_path / "paused"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "QPUFLOW_FAULT": "before_marker_write:pause", "QPUFLOW_FAULT_FILE": str(flag)}
    proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "submit"], cwd=study, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert flag.exists(), "the submit step never reached the fault point"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(provider_jobs(study)) == 1 and not markers(study)
    snakemake(study, "--unlock")
    snakemake(study, "submit")
    assert_one_job_per_run(study)


def test_ctrl_c_mid_run_then_rerun(study: Path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "submit"], cwd=study, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not markers(study) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    proc.wait(timeout=120)
    snakemake(study, "submit")
    assert_one_job_per_run(study)


def test_bad_config_stops_before_anything_is_built(study: Path, small_config: dict):
    small_config["experiments"]["sc"]["shots"] = -5
    write_config(study, small_config)
    proc = snakemake(study, "submit", check=False)
    assert proc.returncode != 0
    assert "experiments.sc.shots" in proc.all
    assert not (study / "results").exists()


def test_corrupt_marker_is_reported_and_kept(study: Path):
    snakemake(study, "submit")
    path = study / "results" / "submitted" / "sc" / "L0_rep0.json"
    path.write_text("{ truncated")
    proc = snakemake(study, "collect", check=False)
    assert proc.returncode == 3, "done, but a record needs attention"
    assert "results/submitted/sc/L0_rep0.json" in proc.all
    assert path.read_text() == "{ truncated"
    assert not (study / "results" / "collected" / "sc" / "L0_rep0.json").exists()
    assert (study / "results" / "collected" / "sc" / "L0_rep1.json").exists(), "the others are collected"


def test_a_study_that_does_not_fit_the_budget_is_refused_before_any_job(study: Path, small_config: dict):
    # Three 256-shot jobs need about 2.1 s each; 3 s are spendable (8 s budget - 5 s reserve).
    small_config["accounts"] = [{"name": "lab", "budget_seconds": 8}]
    small_config["budget"] = {"window_days": 28, "reserve_seconds": 5}
    write_config(study, small_config)
    proc = snakemake(study, "submit", check=False)
    assert proc.returncode != 0
    assert "not submitting any of the 3 pending job(s)" in proc.all and "lab: 3.0 s spendable" in proc.all
    assert provider_jobs(study) == [] and not markers(study)
    out = run([sys.executable, str(REPO / "scripts" / "submit_async.py"), "--experiment", "both"], study, check=False)
    assert out.returncode == 2 and "Nothing was submitted" in out.all
    assert provider_jobs(study) == []

    # Enough for exactly the first batch: it goes; a later run that no longer fits is refused.
    small_config["accounts"][0]["budget_seconds"] = 12
    write_config(study, small_config)
    snakemake(study, "submit")
    assert len(provider_jobs(study)) == 3
    small_config["experiments"]["sc"]["repetitions"] = 3
    write_config(study, small_config)
    proc = snakemake(study, "submit", check=False)
    assert proc.returncode != 0 and "not submitting any of the 1 pending job(s)" in proc.all
    assert len(provider_jobs(study)) == 3


def test_failed_job_is_resubmitted_only_when_configured_and_only_once(study: Path, small_config: dict):
    small_config["provider"]["local"]["fail_tags"] = ["run:L0_rep1"]
    write_config(study, small_config)
    snakemake(study, "submit")
    snakemake(study, "collect")
    original = markers(study)["sc/L0_rep1"]
    assert json.loads((study / "results" / "collected" / "sc" / "L0_rep1.json").read_text())["status"] == "failed"
    assert "Nothing to be done" in snakemake(study, "submit").all  # retries default to 0

    small_config["provider"]["retries"] = 1
    write_config(study, small_config)
    snakemake(study, "submit")
    now = markers(study)
    assert now["sc/L0_rep1"] == original, "the original job's marker is never replaced"
    retry = now["sc/L0_rep1_a1"]
    assert retry["spec"]["attempt"] == 1 and retry["job_id"] != original["job_id"]
    assert retry["job_tag"] != original["job_tag"]
    assert len(provider_jobs(study)) == 4
    assert "Nothing to be done" in snakemake(study, "submit").all  # not retried again before collect
    out = snakemake(study, "collect")
    assert "Completed: 3/4" in out.all
    assert json.loads((study / "results" / "collected" / "sc" / "L0_rep1_a1.json").read_text())["status"] == "completed"
    assert "Nothing to be done" in snakemake(study, "submit").all
    accepted = [e for e in Ledger(study / "results" / "ledger" / "submissions.jsonl").events() if e["event"] == "accepted"]
    assert sorted(e["run_key"] for e in accepted) == ["dep/session000_calibration", "sc/L0_rep0", "sc/L0_rep1",
                                                     "sc/L0_rep1_a1"]


def test_simulate_target_runs_queued_local_jobs_for_collect(study: Path, small_config: dict):
    """Cluster rehearsals: jobs stay queued at submit; `snakemake simulate` samples them (any host)."""
    small_config["provider"]["local"]["queue_seconds"] = 86400
    write_config(study, small_config)
    snakemake(study, "submit")
    assert all(j["state"] == "QUEUED" for j in provider_jobs(study))
    snakemake(study, "simulate", "--cores", "2")
    flags = sorted(p.stem for p in (study / "results/local_jobs/simulated").glob("*/*.done"))
    assert flags == sorted(k.split("/")[1] for k in RUN_KEYS)
    assert all(j["state"] == "DONE" for j in provider_jobs(study))
    assert "Nothing to be done" in snakemake(study, "simulate").all
    snakemake(study, "collect")
    results = [json.loads(p.read_text()) for p in (study / "results/collected").glob("*/*.json")]
    assert len(results) == 3 and {r["status"] for r in results} == {"completed"}
