"""The IBM path through the unmodified qiskit-ibm-runtime client and the local emulator.

Everything here talks HTTP to 127.0.0.1 only. One test runs the Snakemake targets unchanged
with ``provider: ibm``; the fault tests drive the same library functions in one process
(faster), still through the real client.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qpuflow.ledger import Ledger
from qpuflow.plan import plan_runs
from tests.conftest import TOKEN, TOKEN_B, assert_one_live_job_per_pack, ibm_env, snakemake, use_ibm, write_config

pytestmark = pytest.mark.slow

def _planned(study):
    from qpuflow.config import load_config

    return plan_runs(load_config(study / "config.yaml"))


def tagged(emu_jobs, tag):
    return [j for j in emu_jobs if tag in j.tags]


def provider_for(config, paths, account="env:EMU"):
    from qpuflow.providers import make_provider

    return make_provider(config, account=account, local_store=paths.local_store)


def test_workflow_targets_run_unchanged_against_the_emulator_and_no_secret_is_written(study, small_config, emu):
    use_ibm(study, small_config)
    env = ibm_env(emu)
    outputs = [snakemake(study, "submit", env=env), snakemake(study, "submit", env=env),
               snakemake(study, "collect", env=env), snakemake(study, "analyze", env=env)]
    assert "Nothing to be done" in outputs[1].all
    assert "Completed: 3/3" in outputs[2].all
    markers = [json.loads(p.read_text()) for p in (study / "results" / "submitted").glob("*/*.json")]
    assert len(markers) == 3 and {m["provider"] for m in markers} == {"ibm"}
    assert {m["account"] for m in markers} == {"env:EMU"} and {m["backend"] for m in markers} == {"ibm_fez"}
    submits = [r for r in emu.requests("submit") if r["status"] == 200]
    assert len(submits) == 3, "exactly one accepted POST /jobs per run"
    for path in (study / "results" / "collected").glob("*/*.json"):
        assert json.loads(path.read_text())["status"] == "completed"
    from tests.conftest import BIN, run

    listing = run([str(BIN / "qpuflow"), "jobs", "--json"], study, env=env)
    outputs.append(listing)
    listed = [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]
    assert sorted(j["job_id"] for j in listed) == sorted(m["job_id"] for m in markers)
    assert all(j["state"] == "DONE" and any(t.startswith("qpuflow-pack-") for t in j["tags"]) for j in listed)
    assert sorted(r for j in listed for r in j["runs"]) == sorted(m["run_key"] for m in markers)
    # Invariant 3: the token appears in no file and no output.
    for out in outputs:
        assert TOKEN not in out.all
    for path in study.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"token written to {path}"


def test_kill_between_post_and_marker_is_adopted_by_tag(study, small_config, emu):
    use_ibm(study, small_config)
    env = ibm_env(emu)
    proc = snakemake(study, "submit", env={**env, "QPUFLOW_FAULT": "after_provider_accept:kill"}, check=False)
    assert proc.returncode != 0
    first = [r for r in emu.requests("submit") if r["status"] == 200]
    assert len(first) == 1
    snakemake(study, "--unlock", env=env)  # the kill took Snakemake (and its lock) down too
    snakemake(study, "submit", env=env)
    submits = [r for r in emu.requests("submit") if r["status"] == 200]
    assert len(submits) == 3, "the killed submission was adopted, not repeated"
    adopted = [json.loads(p.read_text()) for p in (study / "results" / "submitted").glob("*/*.json")]
    assert [m["job_id"] for m in adopted if m["adopted"]] == [first[0]["job_id"]]


def test_collect_survives_timeouts_drops_failures_and_cancellations(study, small_config, emu, in_process):
    """Collect reports an unreachable service and writes nothing; later it records a failed and a
    service-cancelled job with the service's reason (their results are 204: only the metrics are
    read) and a completed one with its charge and completion time."""
    import time

    from qpuflow.pipeline import collect, submit_pending

    emu.configure(queue_seconds=60)
    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    markers = {m.run_key: m for m in submit_pending(plan_runs(config), config, paths)}
    emu.fail_job(markers["sc/L0_rep1"].job_id, reason_code=1500, reason="Internal error (emulated)")
    emu.cancel_job(markers["sc/L0_rep0"].job_id)
    emu.complete_job(markers["dep/session000_calibration"].job_id)
    emu.set_faults(drops=1000, drop_endpoints=["list", "status", "results", "metrics"])
    rows = collect(config, paths)
    assert all(r.state == "?" and not r.collected for r in rows) and "reached" in rows[0].error
    assert not list((paths.root / "collected").glob("*/*.json"))
    emu.set_faults(drops=0, delays=0)
    emu.clear_requests()
    for _ in range(100):
        rows = collect(config, paths)
        if all(r.collected for r in rows):
            break
        time.sleep(0.3)
    by_run = {r.run_key: r for r in rows}
    failed = json.loads(paths.result("sc/L0_rep1").read_text())
    cancelled = json.loads(paths.result("sc/L0_rep0").read_text())
    done = json.loads(paths.result("dep/session000_calibration").read_text())
    assert failed["status"] == "failed" and "1500" in failed["error"] and failed["completion_time"]
    assert cancelled["status"] == "cancelled" and "cancelled" in cancelled["error"].lower()
    assert failed["usage_seconds"] == cancelled["usage_seconds"] == 0, "the system's failures cost nothing"
    assert done["status"] == "completed" and done["completion_time"]
    assert by_run["dep/session000_calibration"].collected
    results = emu.requests("results")
    assert [r["path"].split("/")[-2] for r in results] == [markers["dep/session000_calibration"].job_id], \
        "only the completed job's result is downloaded"


def test_charged_usage_is_read_once_billing_is_final_and_the_budget_uses_it(study, small_config, emu, in_process):
    """The charge is usage.qpu_charge_time_seconds once its billing status is no longer pending:
    a result collected while billing is pending says so, and a later collect fills the charge
    in without downloading the result again; `qpuflow budget` then counts charges."""
    import time

    from qpuflow.pipeline import collect, submit_pending
    from tests.conftest import BIN, run

    emu.configure(billing_delay_seconds=4)
    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    markers = submit_pending(plan_runs(config), config, paths)
    for marker in markers:
        emu.wait_for(marker.job_id)
    collect(config, paths)
    pending = [json.loads(paths.result(m.run_key).read_text()) for m in markers]
    assert all(r["status"] == "completed" and r["usage_final"] is False and r["usage_seconds"] is None
               and r["completion_time"] for r in pending)
    time.sleep(4.5)
    emu.clear_requests()
    collect(config, paths)
    assert not emu.requests("results") and not emu.requests("metrics"), "the listing carries the charge"
    charged = {j["id"]: j["usage_seconds"] for j in emu.jobs()}
    final = [json.loads(paths.result(m.run_key).read_text()) for m in markers]
    assert [r["usage_seconds"] for r in final] == [charged[m.job_id] for m in markers]
    assert all(r["usage_final"] for r in final)
    assert [r["registers"] for r in final] == [r["registers"] for r in pending], "the data is untouched"
    budget = run([str(BIN / "qpuflow"), "budget"], paths.root.parent, env=ibm_env(emu)).stdout
    assert f"{sum(charged.values()):.1f}" in budget


def test_service_down_is_a_clear_error_and_nothing_is_recorded_wrongly(study, small_config, emu, in_process):
    from qpuflow.pipeline import collect, ensure_isa, submit_pending
    from qpuflow.providers import ProviderError

    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    specs = plan_runs(config)
    for spec in specs:
        ensure_isa(spec, config, paths)
    emu.stop()
    with pytest.raises(ProviderError, match="could not be reached|could not be opened"):
        submit_pending(specs, config, paths)
    assert not list((paths.root / "submitted").glob("*/*.json"))
    assert not [e for e in Ledger(paths.ledger).events() if e["event"] == "accepted"]
    emu.start()
    submit_pending(specs, config, paths)
    assert len([r for r in emu.requests("submit") if r["status"] == 200]) == 3
    emu.stop()
    rows = collect(config, paths)
    assert all(r.state == "?" for r in rows)  # reported, nothing written, no crash


def test_budget_from_the_instance_usage_refuses_before_sending(study, small_config, emu, in_process):
    from qpuflow.budget import BudgetExceeded
    from qpuflow.pipeline import submit_pending

    emu.instances([{"name": "tiny", "usage_limit_seconds": 35, "tokens": None}])  # 5 s above the reserve
    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu, instance="tiny"))
    with pytest.raises(BudgetExceeded, match=r"need about 7 QPU seconds .* can spend 5.0 s"):
        submit_pending(plan_runs(config), config, paths)
    assert not [r for r in emu.requests("submit")]


def test_jobs_spread_over_accounts_by_remaining_budget(study, small_config, emu, in_process):
    from qpuflow.pipeline import collect, submit_pending

    emu.instances([{"name": "lab-a", "tokens": [TOKEN], "usage_limit_seconds": 600},
                   {"name": "lab-b", "tokens": [TOKEN_B], "usage_limit_seconds": 600}])
    small_config["experiments"]["sc"]["repetitions"] = 3
    use_ibm(study, small_config, accounts=("LABA", "LABB"))
    config, paths = in_process({**ibm_env(emu, "LABA", TOKEN, "lab-a"), **ibm_env(emu, "LABB", TOKEN_B, "lab-b")})
    markers = submit_pending(plan_runs(config), config, paths)
    accounts = [m.account for m in markers]
    assert set(accounts) == {"env:LABA", "env:LABB"}, accounts
    assert abs(accounts.count("env:LABA") - accounts.count("env:LABB")) <= 1
    import time

    for _ in range(100):
        rows = collect(config, paths)
        if all(r.collected for r in rows):
            break
        time.sleep(0.3)
    assert all(r.collected for r in rows)


def test_dropped_post_that_created_the_job_is_adopted_in_the_same_run(study, small_config, emu, in_process):
    from qpuflow.pipeline import submit_pending

    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    emu.set_faults(drops=1, drop_endpoints=["submit"], drop_after_create=True)
    markers = submit_pending(plan_runs(config), config, paths)
    assert len(markers) == 3 and sum(m.adopted for m in markers) == 1
    assert len({m.job_id for m in markers}) == 3
    provider = provider_for(config, paths)
    assert len(provider.jobs(tags=["qpuflow"])) == 3, "no orphan, no duplicate"


def test_a_hung_status_answer_times_out_instead_of_blocking(study, small_config, emu, in_process, caplog):
    import time

    from qpuflow.pipeline import collect, submit_pending

    use_ibm(study, small_config, request_timeout_seconds=1)
    config, paths = in_process(ibm_env(emu))
    submit_pending(plan_runs(config), config, paths)
    emu.set_faults(delays=1, delay_seconds=4, delay_endpoints=["list"])
    start = time.monotonic()
    rows = collect(config, paths)
    assert time.monotonic() - start < 60
    assert len(rows) == 3
    assert "read timeout=1.0" in caplog.text, "the client's read timeout was not set"
    assert all(r.final for r in rows) or all(r.state in ("QUEUED", "RUNNING", "?") for r in rows if not r.final)


def test_a_revoked_token_is_replaced_by_signing_in_again(study, small_config, emu, in_process):
    from qpuflow.collect import provider_factory
    from qpuflow.pipeline import submit_pending

    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    markers = submit_pending(plan_runs(config), config, paths)
    provider = provider_factory(config, paths)("ibm", "env:EMU")
    provider.statuses([m.job_id for m in markers])  # signed in once
    emu.expire_tokens()  # every token issued so far now gets 401
    infos = provider.statuses([m.job_id for m in markers])
    assert all(info.state.value in ("QUEUED", "RUNNING", "DONE") for info in infos.values())
    assert [r for r in emu.requests() if r["status"] == 401], "the old token was really refused"


def test_packed_runs_through_the_real_client_one_post_one_download_per_job(study, small_config, emu):
    """Several runs as the PUBs of one IBM job: one accepted POST and one result download per
    job, each run's result from its own PUB, and the usage the service charges close to the
    estimate (it rounds each job up to whole seconds)."""
    small_config["experiments"]["sc"]["repetitions"] = 3
    small_config["experiments"]["sc"]["logical_states"] = ["0", "+"]
    use_ibm(study, small_config, pubs_per_job=4)
    env = ibm_env(emu)
    snakemake(study, "submit", env=env)
    assert "Nothing to be done" in snakemake(study, "submit", env=env).all
    markers = {m["run_key"]: m for m in (json.loads(p.read_text()) for p in (study / "results" / "submitted").glob("*/*.json"))}
    assert len(markers) == 7  # 6 surface-code runs (4 + 2 PUBs) and one deployment arm
    submits = [r for r in emu.requests("submit") if r["status"] == 200]
    jobs = {m["job_id"] for m in markers.values()}
    assert len(submits) == len(jobs) == 3
    from qpuflow.packs import composition

    for job_id in jobs:
        members = sorted((m for m in markers.values() if m["job_id"] == job_id), key=lambda m: m["pub_index"])
        assert [m["pub_index"] for m in members] == list(range(len(members)))
        emulated = emu.job(job_id)
        assert len(emulated["tags"]) <= 8 and all(len(t) <= 86 for t in emulated["tags"])
        from_tags = [s.key for s in composition(emulated["tags"], job_id, _planned(study))]
        assert from_tags == [m["run_key"] for m in members], "the job's tags name its runs in PUB order"
    for job in emu.jobs():
        emu.wait_for(job["id"])
    time.sleep(2.2)  # the strict emulator's billing stays pending for 2 s after a job ends
    emu.clear_requests()
    out = snakemake(study, "collect", env=env)
    assert "Completed: 7/7" in out.all
    assert len(emu.requests("results")) == 3, "one download per job, not per run"
    charged = {j["id"]: j["usage_seconds"] for j in emu.jobs()}
    for key, marker in markers.items():
        result = json.loads((study / "results" / "collected" / f"{key}.json").read_text())
        assert result["job_id"] == marker["job_id"] and result["usage_seconds"] == charged[marker["job_id"]]
        estimate = marker["estimated_qpu_seconds"]
        assert estimate <= charged[marker["job_id"]] <= estimate + 1
    # Each run decodes as its own logical state would: |0> and |+> share jobs, so a swapped
    # PUB would put a |+> shot record under a |0> run (the observables differ).
    analysis = snakemake(study, "analyze", env=env)
    assert analysis.returncode == 0
    import pandas as pd

    runs = pd.read_csv(study / "results" / "analysis" / "runs.csv")
    sc = runs[runs["experiment"] == "sc"]
    assert len(sc) == 6 and (sc["decoded_rate"] < 0.2).all()


def _default_study_on_ibm(tmp_path: Path, emu, **provider_changes) -> tuple[Path, dict[str, str]]:
    """The repository's own config.yaml with only ``provider.name: ibm`` changed (plus what the
    caller changes), and its account ``local`` saved as a qiskit account that reaches the emulator."""
    import shutil

    import yaml

    from qpuflow.emulator import save_emulator_account
    from tests.conftest import REPO

    folder = tmp_path / "default-study"
    folder.mkdir()
    for name in ("Snakefile", "workflow", "profiles", "envs", "config.yaml"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, folder / name)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["provider"]["name"] = "ibm"
    for key, value in provider_changes.items():
        config["provider"][key] = value
    if provider_changes.get("pubs_per_job") == 1:
        # One run per job, the default campaign does not fit one window (README, budget planning);
        # this test is about the service's contract, so it starts the campaign anyway.
        config["budget"]["allow_campaign_overrun"] = True
    write_config(folder, config)
    home = tmp_path / "home"
    save_emulator_account(home / ".qiskit" / "qiskit-ibm.json", config["accounts"][0]["name"], emu, TOKEN,
                          "qpuflow-emulator")
    return folder, {**emu.client_env(), "HOME": str(home)}


@pytest.mark.parametrize("changes", [
    {},                                                        # executor sampler, 8 runs per job
    {"pubs_per_job": 1, "ibm": {"primitive": "sampler_v2"}},   # SamplerV2, one run per job (hits the rate limit)
], ids=["default", "one-run-per-job-samplerv2"])
def test_the_default_study_runs_on_ibm_against_the_strict_emulator(tmp_path, emu, changes):
    """DESIGN's main loop on the default study, switched to provider: ibm: submit (surface code and
    the first session's probe), collect, submit (the session's arms), collect, analyze, through
    the unmodified client against the emulator in its strict mode (8 tags of 86 characters, 5
    submissions a minute, 204 results, pending billing ...)."""
    import pandas as pd

    folder, env = _default_study_on_ibm(tmp_path, emu, **changes)
    if changes.get("pubs_per_job") == 1:
        # Still the service's 5 submissions per user, in a 10 s window instead of 60 s: the 9
        # jobs of the first submit meet the limit and wait it out, in a test of bearable length
        # (bench/benchmarks/ibm_rehearsal.py runs the real minute).
        emu.set_faults(rate_window_seconds=10)
    snakemake(folder, "submit", env=env, timeout=900)
    for job in emu.jobs():
        emu.wait_for(job["id"])
    out = snakemake(folder, "collect", env=env)
    assert "Completed: 9/9" in out.all  # 8 surface-code runs (2 round counts x 2 states x 2) + the probe
    snakemake(folder, "submit", env=env, timeout=900)
    for job in emu.jobs():
        emu.wait_for(job["id"])
    out = snakemake(folder, "collect", env=env)
    assert "Completed: 11/11" in out.all
    snakemake(folder, "analyze", env=env)
    jobs = emu.jobs()
    per_job = changes.get("pubs_per_job", 8)
    assert len(jobs) == (11 if per_job == 1 else 3)
    for job in jobs:
        assert len(job["tags"]) <= 8 and all(len(t) <= 86 for t in job["tags"]), job["tags"]
        assert job["status"] == "Completed"
        assert job["program"]["id"] == ("sampler" if changes else "executor")
    assert_one_live_job_per_pack(emu)
    runs = pd.read_csv(folder / "results" / "analysis" / "runs.csv")
    assert len(runs) == 10 and (runs["status"] == "completed").all()  # the probe is not a memory run
    surface = runs[runs["experiment"] == "surface_code"]
    assert (surface["decoded_rate"] < surface["raw_rate"]).all()
    if per_job == 1:
        assert [r for r in emu.requests("submit") if r["status"] == 429], "the rate limit was met and waited out"
