"""The seed's command-line tools work on the same library and files (issue 2, points 6-7)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, provider_jobs, run, snakemake, write_config

pytestmark = pytest.mark.slow


def script(study: Path, name: str, *args: str, check: bool = True):
    return run([sys.executable, str(REPO / "scripts" / name), *args], study, check=check)


def test_submit_async_and_collect_results_share_markers_with_snakemake(study: Path, small_config: dict):
    small_config["accounts"] = [{"name": "alpha"}, {"name": "beta"}]
    write_config(study, small_config)
    out = script(study, "submit_async.py", "--experiment", "surface_code", "--api-key-index", "1")
    exports = sorted((study / "results" / "ibm_experiments").glob("submitted_jobs_*.jsonl"))
    assert len(exports) == 1, out.all
    lines = [json.loads(line) for line in exports[0].read_text().splitlines()]
    assert len(lines) == 2 and {line["experiment_type"] for line in lines} == {"surface_code"}
    assert {(line["account"], line["api_key_index"]) for line in lines} == {("beta", 1)}

    # Nothing is resubmitted by the script, and Snakemake only submits what is left.
    assert "already had a marker" in script(study, "submit_async.py", "--submit-all", "--experiment", "both").all
    assert len(provider_jobs(study)) == 3
    assert "Nothing to be done" in snakemake(study, "submit").all
    assert len(provider_jobs(study)) == 3

    out = script(study, "collect_results.py", "--jobs-file", exports[0].name)
    assert "Completed: 2/2" in out.all
    assert len(list((study / "results" / "collected").glob("sc/*.json"))) == 2
    assert not list((study / "results" / "collected").glob("dep/*.json"))

    job_id = json.loads((study / "results" / "submitted" / "dep" / "session000_calibration.json").read_text())["job_id"]
    out = script(study, "collect_results.py", "--job-id", job_id)
    assert f"Job {job_id}: DONE" in out.all and "Completed: 1/1" in out.all
    out = script(study, "collect_results.py", "--poll-all", "--watch", "--interval", "0.1")
    assert "Completed: 3/3" in out.all
    assert len(list((study / "results" / "ibm_experiments").glob("collected_results_*.json"))) >= 3


def test_watch_ends_when_every_job_failed(study: Path, small_config: dict):
    small_config["provider"]["local"]["fail_tags"] = ["qpuflow"]  # every job fails
    write_config(study, small_config)
    script(study, "submit_async.py", "--experiment", "deployment")
    out = script(study, "collect_results.py", "--poll-all", "--watch", "--interval", "0.1", "--timeout", "60")
    assert "Failed or cancelled: 1/1" in out.all
    export = sorted((study / "results" / "ibm_experiments").glob("collected_results_*.json"))[-1]
    assert [j["status"] for j in json.loads(export.read_text())["jobs"]] == ["failed"]


def test_bad_arguments_are_reported(study: Path):
    out = script(study, "submit_async.py", "--api-key-index", "5", check=False)
    assert out.returncode == 2 and "--api-key-index 5" in out.all and "accounts" in out.all
    out = script(study, "collect_results.py", "--job-id", "nosuchjob", check=False)
    assert out.returncode == 2 and "nosuchjob" in out.all


def test_jobs_listing_recovers_lost_ids(study: Path):
    snakemake(study, "submit")
    jobs = provider_jobs(study)
    assert len(jobs) == 3
    for job in jobs:
        assert set(job) >= {"job_id", "state", "tags", "created"} and job["state"] == "DONE"
        assert any(t.startswith("qpuflow-pack-") for t in job["tags"]) and len(job["runs"]) == 1
    assert sorted(r for job in jobs for r in job["runs"]) == ["dep/session000_calibration", "sc/L0_rep0", "sc/L0_rep1"]
    table = run([str(BIN / "qpuflow"), "jobs"], study).stdout
    assert all(job["job_id"] in table for job in jobs)
    tagged = run([str(BIN / "qpuflow"), "jobs", "--json", "--run", "sc/L0_rep1"], study).stdout.splitlines()
    assert len(tagged) == 1 and json.loads(tagged[0])["runs"] == ["sc/L0_rep1"]
