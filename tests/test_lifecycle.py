"""Nothing a user does breaks the record: every stage runs at any point of a study's life, bad
records stay local, interruptions stop spending, and errors read as one paragraph.

Each test drives the workflow as a user would (Snakemake targets, the CLI, the seed scripts)
in a temporary copy of the workflow, and checks files and exit codes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, provider_jobs, run, snakemake, write_config

pytestmark = pytest.mark.slow

QPUFLOW = str(BIN / "qpuflow")
ANALYSIS = ("runs.csv", "summary.csv", "detection_rounds.csv", "provenance.csv", "logical_error_rates.png",
            "detection_rounds.png", "sessions.csv", "session_stats.csv", "sessions.png")


def with_probe(config: dict, sessions: int = 1) -> dict:
    """The small study's deployment experiment with both arms (a probe job first)."""
    config["experiments"]["dep"].update(arms=["calibration", "drift_aware"], sessions=sessions,
                                        probe={"shots": 200, "delays_us": [50, 100]})
    return config


def analyze_ok(study: Path, **kw) -> subprocess.CompletedProcess:
    out = snakemake(study, "analyze", **kw)
    for name in ANALYSIS:
        assert (study / "results" / "analysis" / name).exists(), name
    return out


def markers(study: Path) -> dict[str, dict]:
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())
            for p in sorted((study / "results" / "submitted").glob("*/*.json"))}


# ---------------------------------------------------------------------------- every stage, any time


def test_analyze_works_at_every_point_of_a_study(study: Path, small_config: dict):
    write_config(study, with_probe(small_config))
    out = analyze_ok(study)  # nothing submitted
    assert "No completed jobs to analyse yet" in out.all
    small_config["provider"]["local"]["queue_seconds"] = 3600
    write_config(study, small_config)
    snakemake(study, "submit")
    analyze_ok(study)  # submitted, nothing collected
    small_config["provider"]["local"]["queue_seconds"] = 0
    small_config["provider"]["local"]["fail_tags"] = ["run:L0_rep1"]
    write_config(study, small_config)
    for path in (study / "results" / "local_jobs" / "jobs").glob("*.json"):
        if not path.name.endswith(".result.json"):
            record = json.loads(path.read_text())
            record.update(queue_seconds=0, run_seconds=0)
            path.write_text(json.dumps(record))
    snakemake(study, "collect")
    out = analyze_ok(study)  # probe collected, no arm yet; one surface-code run failed
    runs = (study / "results" / "analysis" / "runs.csv").read_text()
    assert "failed" in runs
    assert "No session with both arms" in out.all
    snakemake(study, "submit")  # the arms
    for marker in markers(study).values():
        if marker["run_key"].endswith("_calibration"):
            os.remove(study / "results" / "local_jobs" / "jobs" / f"{marker['job_id']}.json")
    snakemake(study, "collect")
    analyze_ok(study)  # one arm of the pair collected, the other's job unknown to the provider


# ---------------------------------------------------------------------------- the config describes the data


def test_a_changed_run_definition_is_refused_then_accepted_explicitly(study: Path, small_config: dict):
    snakemake(study, "submit")
    snakemake(study, "collect")
    small_config["experiments"]["sc"].update(shots=512, repetitions=3)
    write_config(study, small_config)
    for target in ("submit", "analyze"):
        out = snakemake(study, target, check=False)
        assert out.returncode != 0, target
        assert "L0_rep0, L0_rep1" in out.all and "shots 256 -> 512" in out.all, out.all
        assert "allow_mixed_definitions" in out.all
    assert len(provider_jobs(study)) == 3, "nothing was sent"
    small_config["experiments"]["sc"]["allow_mixed_definitions"] = True
    write_config(study, small_config)
    snakemake(study, "submit")
    jobs = provider_jobs(study)
    assert len(jobs) == 4, "only the new repetition went out"
    assert markers(study)["sc/L0_rep2"]["shots"] == 512 and markers(study)["sc/L0_rep0"]["shots"] == 256
    snakemake(study, "collect")
    analyze_ok(study)
    import pandas as pd

    runs = pd.read_csv(study / "results" / "analysis" / "runs.csv").set_index("run_key")
    assert runs.loc["sc/L0_rep0", "shots"] == 256 and runs.loc["sc/L0_rep2", "shots"] == 512


def test_a_renamed_experiment_is_new_data(study: Path, small_config: dict):
    snakemake(study, "submit")
    small_config["experiments"]["sc2"] = {**small_config["experiments"].pop("sc"), "rounds": 2}
    write_config(study, small_config)
    snakemake(study, "submit")
    assert len(provider_jobs(study)) == 5


# ---------------------------------------------------------------------------- unknown jobs


def test_a_vanished_job_store_is_unknown_not_failed_and_restoring_it_completes_the_runs(study: Path,
                                                                                       small_config: dict):
    small_config["provider"]["retries"] = 1
    small_config["provider"]["local"]["queue_seconds"] = 3600
    write_config(study, small_config)
    snakemake(study, "submit")
    store = study / "results" / "local_jobs"
    moved = study / "local_jobs.moved"
    shutil.move(store, moved)
    out = snakemake(study, "collect")
    assert "UNKNOWN" in out.all and "Pending: 3/3" in out.all
    assert not list((study / "results" / "collected").glob("*/*.json")), "no final result for an unknown job"
    out = snakemake(study, "submit")
    assert "Nothing to be done" in out.all or not list((study / "results" / "local_jobs").glob("jobs/*.json")), \
        "an unknown job is not retried"
    shutil.rmtree(study / "results" / "local_jobs", ignore_errors=True)
    shutil.move(moved, store)
    for path in (store / "jobs").glob("*.json"):
        if not path.name.endswith(".result.json"):
            record = json.loads(path.read_text())
            record["queue_seconds"] = 0
            path.write_text(json.dumps(record))
    out = snakemake(study, "collect")
    assert "Completed: 3/3" in out.all
    assert len(provider_jobs(study)) == 3


# ---------------------------------------------------------------------------- bad records stay local


def test_one_corrupt_marker_among_many_is_reported_and_the_rest_goes_on(study: Path, small_config: dict):
    small_config["experiments"]["sc"]["repetitions"] = 6
    write_config(study, small_config)
    snakemake(study, "submit")
    bad = study / "results" / "submitted" / "sc" / "L0_rep3.json"
    ledger = study / "results" / "ledger" / "submissions.jsonl"
    saved = ledger.read_text()
    ledger.unlink()  # no ledger line to restore it from
    bad.write_text("{ truncated")
    out = snakemake(study, "collect", check=False)
    assert out.returncode == 3, out.all
    assert "sc/L0_rep3.json" in out.all and "need attention" in out.all
    assert len(list((study / "results" / "collected").glob("*/*.json"))) == 6, "every other run was collected"
    assert bad.read_text() == "{ truncated", "the bad file is left as it is"
    out = snakemake(study, "analyze", check=False)
    assert out.returncode == 3 and (study / "results" / "analysis" / "runs.csv").exists()
    status = run([QPUFLOW, "status"], study, check=False)
    assert status.returncode == 3 and "L0_rep3" in status.all
    out = snakemake(study, "submit", check=False)
    assert out.returncode == 3 and "L0_rep3.json" in out.all
    assert len(provider_jobs(study)) == 7, "the run with the corrupt marker is not sent again"
    # With the ledger back, submit restores the marker from it (the bad file is kept aside).
    ledger.write_text(saved)
    snakemake(study, "submit")
    assert json.loads(bad.read_text())["run_key"] == "sc/L0_rep3"
    assert bad.with_name("L0_rep3.json.corrupt").read_text() == "{ truncated"


def test_a_deleted_ledger_is_rebuilt_and_the_campaign_goes_on(study: Path, small_config: dict):
    small_config["experiments"]["dep"].update(sessions=3, schedule={"every_hours": 8})
    write_config(study, small_config)
    t0 = "2026-12-01T08:00:00Z"
    snakemake(study, "submit", env={"QPUFLOW_NOW": t0})
    assert "dep/session000_calibration" in markers(study)
    (study / "results" / "ledger" / "submissions.jsonl").unlink()
    for batch in (study / "results" / "submitted").glob("*/batches/*.json"):
        batch.unlink()
    out = snakemake(study, "submit", env={"QPUFLOW_NOW": "2026-12-01T16:30:00Z"})
    assert "written back from their markers" in out.all
    assert "dep/session001_calibration" in markers(study), "session 1 is due 8 h after session 0"
    assert len(provider_jobs(study)) == 4
    out = run([QPUFLOW, "rebuild"], study)
    assert "batch record" in out.stdout
    assert list((study / "results" / "submitted" / "sc" / "batches").glob("*.json"))
    out = run([QPUFLOW, "rebuild"], study)
    assert "nothing to rebuild" in out.stdout


def test_a_failed_submit_does_not_poison_the_next(study: Path, small_config: dict):
    write_config(study, with_probe(small_config))
    snakemake(study, "submit")
    snakemake(study, "collect")
    small_config["provider"]["max_execution_time"] = 2  # the arms' job needs more: refused after the budget check
    write_config(study, small_config)
    out = snakemake(study, "submit", check=False)
    assert out.returncode != 0 and "max_execution_time" in out.all
    small_config["provider"]["max_execution_time"] = 120
    write_config(study, small_config)
    snakemake(study, "submit")
    assert {"dep/session000_calibration", "dep/session000_drift_aware"} <= set(markers(study))


# ---------------------------------------------------------------------------- stop means stop


def test_ctrl_c_during_a_40_run_submit_sends_nothing_after_the_one_in_flight(study: Path, small_config: dict, emu):
    """Forty runs, one job each, each POST taking 0.4 s at the service. Ctrl-C after a few:
    at most the POST in flight completes, and every job created is recorded."""
    from tests.conftest import ibm_env, use_ibm

    emu.set_faults(submit_rate_per_minute=1000)  # this test is about Ctrl-C, not the rate limit
    emu.script("submit", ["delay:0.4"] * 40)
    small_config["experiments"] = {"sc": {**small_config["experiments"]["sc"], "repetitions": 40, "shots": 64,
                                          "kind": "repetition_code", "logical_states": ["0"], "layout": "routed"}}
    use_ibm(study, small_config)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **ibm_env(emu)}
    proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "submit"], cwd=study, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(emu.jobs()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    signalled = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    jobs = emu.jobs()
    late = [j for j in jobs if _epoch(j["created"]) > signalled + 0.05]
    assert len(late) <= 1, f"{len(late)} jobs created after Ctrl-C"
    assert 3 <= len(jobs) < 40
    recorded = {e["job_id"] for e in _ledger(study) if e["event"] == "accepted"}
    assert {j["id"] for j in jobs} <= recorded, "every job that was created is recorded"
    snakemake(study, "submit", env=ibm_env(emu))
    assert len(emu.jobs()) == 40 and len({j["id"] for j in emu.jobs()}) == 40


def test_two_collects_at_once_download_each_job_once(study: Path, small_config: dict, emu):
    from tests.conftest import ibm_env, use_ibm

    small_config["experiments"]["sc"]["repetitions"] = 4
    use_ibm(study, small_config)
    env = ibm_env(emu)
    snakemake(study, "submit", env=env)
    for job in emu.jobs():
        emu.wait_for(job["id"])
    time.sleep(2.2)  # billing final, so the second collect has nothing left to ask for either
    emu.clear_requests()
    emu.script("results", ["delay:1"] * 10)  # slow downloads: the two collects overlap
    full = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    procs = [subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "collect"], cwd=study, env=full,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([str(BIN / "python"),
                               str(Path(__file__).resolve().parents[1] / "scripts" / "collect_results.py"),
                               "--poll-all"], cwd=study, env=full, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0]
    assert len(emu.requests("results")) == 5, "one download per job"
    assert len(list((study / "results" / "collected").glob("*/*.json"))) == 5


# ---------------------------------------------------------------------------- clocks, errors, files


def test_qpuflow_now_with_an_offset_is_utc_and_a_bad_value_is_named(study: Path):
    snakemake(study, "submit", env={"QPUFLOW_NOW": "2026-12-01T17:00:00+01:00"})
    times = {m["submission_time"] for m in markers(study).values()}
    assert times == {"2026-12-01T16:00:00+00:00"}
    out = snakemake(study, "collect", env={"QPUFLOW_NOW": "yesterday"}, check=False)
    assert out.returncode != 0 and "QPUFLOW_NOW='yesterday'" in out.all and "Traceback (most recent" not in out.all


def test_config_errors_name_file_line_and_field_through_snakemake(study: Path):
    text = (study / "config.yaml").read_text()
    (study / "config.yaml").write_text(text.replace("shots: 256", "shots: -5", 1))
    out = snakemake(study, "submit", check=False)
    assert out.returncode != 0
    assert "config.yaml, line" in out.all and "experiments.sc.shots" in out.all
    (study / "config.yaml").write_text(text.replace("  max_execution_time: 120", "  max_execution_time: 120\n"
                                                                                 "  max_execution_time: 60", 1))
    out = snakemake(study, "submit", check=False)
    assert out.returncode != 0 and "appears twice" in out.all and "line" in out.all


def test_a_refusal_is_one_paragraph_without_a_traceback(study: Path, small_config: dict):
    small_config["accounts"] = [{"name": "local", "budget_seconds": 8}]
    small_config["budget"] = {"reserve_seconds": 5}
    write_config(study, small_config)
    out = snakemake(study, "submit", check=False)
    assert out.returncode != 0
    assert "Traceback (most recent call last)" not in out.all
    assert "\nqpuflow: not submitting any of the 3 pending job(s)" in out.all, "the refusal, said again at the end"


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def test_a_read_only_results_folder_stops_cleanly(study: Path):
    results = study / "results"
    if not _mount_tmpfs(results, "16m"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights); as root, chmod does not stop writes")
    try:
        snakemake(study, "submit")
        subprocess.run(["mount", "-o", "remount,ro", str(results)], check=True, timeout=30)
        out = snakemake(study, "collect", check=False)
        assert out.returncode != 0
        assert "read-only" in out.all.lower() and "Traceback (most recent call last)" not in out.all
        assert not list((results / "collected").glob("*/*.json"))
        out = snakemake(study, "analyze", check=False)
        assert out.returncode != 0 and "read-only" in out.all.lower() and "Traceback (most recent" not in out.all
    finally:
        _umount(results)


def test_a_full_disk_stops_cleanly_with_nothing_half_written(study: Path, small_config: dict):
    results = study / "results"
    if not _mount_tmpfs(results, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        small_config["experiments"]["sc"]["repetitions"] = 6
        write_config(study, small_config)
        out = snakemake(study, "submit", check=False)
        filler = results / "filler"
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass
        out = snakemake(study, "collect", check=False)
        assert out.returncode != 0 and "disk is full" in out.all, out.all
        assert "Traceback (most recent call last)" not in out.all
        for path in (results / "collected").glob("*/*.json"):
            json.loads(path.read_text())  # whole, or not there
        assert not list((results / "collected").glob("*/.*.tmp"))
        filler.unlink()
        out = snakemake(study, "collect")
        assert "Completed: 7/7" in out.all
    finally:
        _umount(results)


# ---------------------------------------------------------------------------- seed scripts and output


def test_seed_scripts_run_as_the_readme_writes_them(study: Path):
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    out = run(["python3", str(scripts / "submit_async.py"), "--experiment", "both"], study)
    assert "Output:" in out.stdout and "passmanager" not in out.all
    missing = run(["python3", str(scripts / "collect_results.py"), "--jobs-file", "/missing.jsonl"], study, check=False)
    assert missing.returncode == 2 and "no such jobs file" in missing.all and "Traceback" not in missing.all


def test_watch_times_out_non_zero_with_one_export(study: Path, small_config: dict):
    small_config["provider"]["local"]["queue_seconds"] = 3600
    write_config(study, small_config)
    snakemake(study, "submit")
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    out = run([str(BIN / "python"), str(scripts / "collect_results.py"), "--poll-all", "--watch", "--interval", "0.3",
               "--timeout", "1.5"], study, check=False)
    assert out.returncode == 1 and "still pending" in out.stdout
    assert len(list((study / "results" / "ibm_experiments").glob("collected_results_*.json"))) == 1


def test_output_is_short_and_pipes_closed_early_are_fine(study: Path, small_config: dict):
    small_config["experiments"]["sc"]["repetitions"] = 30
    small_config["provider"]["local"]["queue_seconds"] = 3600
    write_config(study, small_config)
    snakemake(study, "submit")
    out = snakemake(study, "collect")
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) < 30, f"{len(lines)} lines for 31 pending jobs"
    assert "Pending: 31/31 (31 QUEUED)" in out.all
    piped = subprocess.run(f"{QPUFLOW} status | head -2", shell=True, cwd=study, capture_output=True, text=True,
                           env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr
    jobs = run([QPUFLOW, "jobs"], study, env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in jobs.splitlines()) <= 80
    assert len(jobs.splitlines()) < 31 + 8


def test_a_study_too_big_for_the_budget_is_refused_before_transpiling(study: Path, small_config: dict):
    small_config["experiments"] = {"big": {"kind": "surface_code", "distance": 3, "rounds": 3,
                                           "logical_states": ["0", "+"], "repetitions": 300, "shots": 4096}}
    small_config["provider"]["pubs_per_job"] = 8
    write_config(study, small_config)
    start = time.monotonic()
    out = snakemake(study, "submit", check=False)
    assert out.returncode != 0 and "not submitting any of the" in out.all
    assert time.monotonic() - start < 60
    assert not list((study / "results" / "isa").rglob("*.qpy")), "nothing was transpiled for submission"


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _ledger(study: Path) -> list[dict]:
    lines = (study / "results" / "ledger" / "submissions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# ---------------------------------------------------------------------------- the README, in its own order


def readme_loop_commands() -> list[list[str]]:
    """The commands of the README's "The loop" block, in order (what a new user types)."""
    from tests.conftest import REPO

    text = (REPO / "README.md").read_text()
    block = text.split("## The loop", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        command = line.split("#", 1)[0].split()
        if any(part.startswith("[") for part in command):  # optional arguments: leave them out
            command = command[:next(i for i, part in enumerate(command) if part.startswith("["))]
        if command and "JOB_ID" not in command:
            commands.append([str(BIN / c.removeprefix(".venv/bin/")) if c.startswith(".venv/bin/") else c
                             for c in command])
    return commands


def test_a_fresh_clone_walks_the_readme_in_its_own_order(tmp_path: Path):
    """Every tracked file of the checkout (a fresh clone, as the user gets it), then the README's
    loop in order: submit, collect, analyze, report, status, budget, plan; then the next steps
    of the default study: the session's arms, and eight hours later the next session."""
    from tests.conftest import REPO

    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(("tests/", "bench/")):
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    commands = readme_loop_commands()
    assert [c[1:] for c in commands][:4] == [["--cores", "1", "submit"], ["--cores", "1", "collect"],
                                             ["--cores", "1", "analyze"], ["analyze", "--report", "results/report.html"]]
    now = {"QPUFLOW_NOW": "2026-12-01T08:00:00Z"}
    outputs = {}
    for command in commands:
        proc = run(command, clone, env=now, check=False)
        outputs[" ".join(command[1:])] = proc
        assert proc.returncode == 0, f"{' '.join(command)} exited {proc.returncode}:\n{proc.all[-3000:]}"
    assert "the arms wait for probe session000_probe" in outputs["--cores 1 submit"].all
    assert "Completed: 9/9" in outputs["--cores 1 collect"].all
    assert (clone / "results" / "report.html").stat().st_size > 10000
    assert "fits" in outputs["plan"].all
    # The session's arms (the probe is collected), then the next session 8 h later.
    for step in ("submit", "collect", "analyze"):
        snakemake(clone, step, env=now)
    assert "Completed: 11/11" in snakemake(clone, "collect", env=now).all
    later = {"QPUFLOW_NOW": "2026-12-01T16:05:00Z"}
    out = snakemake(clone, "submit", env=later)
    assert "session001_probe" in out.all
    assert (clone / "results" / "submitted" / "deployment" / "session001_probe.json").exists()
