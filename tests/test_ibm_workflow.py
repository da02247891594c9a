"""The IBM path through the unmodified qiskit-ibm-runtime client and the local emulator.

Everything here talks HTTP to 127.0.0.1 only. One test runs the Snakemake targets unchanged
with ``provider: ibm``; the fault tests drive the same library functions in one process
(faster), still through the real client.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qpuflow.config import load_config
from qpuflow.ledger import Ledger
from qpuflow.paths import Paths
from qpuflow.plan import plan_runs
from tests.conftest import snakemake, write_config

pytestmark = pytest.mark.slow

TOKEN = "qpuflowSecretToken-7f3a9c1e5b2d4f60"  # recognisable: must never be written anywhere
TOKEN_B = "qpuflowSecretTokenB-0c4e8a2f6b1d3957"


@pytest.fixture
def emu(tmp_path):
    from qpuflow.emulator import EmulatorHandle

    with EmulatorHandle(tmp_path / "emulator-store", queue_seconds=0, run_seconds=0) as handle:
        yield handle


def ibm_env(emu, prefix="EMU", token=TOKEN, instance="qpuflow-emulator") -> dict[str, str]:
    return {**emu.client_env(), f"{prefix}_TOKEN": token, f"{prefix}_INSTANCE": instance, f"{prefix}_URL": emu.api_url}


def use_ibm(study: Path, config: dict, accounts=("EMU",), pubs_per_job: int = 1, **ibm) -> dict:
    config["provider"] = {"name": "ibm", "backend": "ibm_fez", "max_execution_time": 120, "pubs_per_job": pubs_per_job,
                          "ibm": {"backoff_seconds": 0.1, **ibm}}
    config["accounts"] = [{"name": f"env:{prefix}"} for prefix in accounts]
    write_config(study, config)
    return config


@pytest.fixture
def in_process(study, monkeypatch):
    """Run library calls from the study folder with the given environment."""
    monkeypatch.chdir(study)

    def setup(env: dict[str, str]):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = load_config(study / "config.yaml")
        return config, Paths.from_config(config, base=study)

    return setup


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
    assert all(j["state"] == "DONE" and any(t.startswith("qpuflow-run-") for t in j["tags"]) for j in listed)
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


def test_5xx_after_create_duplicates_are_cancelled(study, small_config, emu, in_process):
    from qpuflow.pipeline import submit_pending

    emu.configure(queue_seconds=30)  # duplicates must still be cancellable
    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    emu.set_faults(errors=1, error_status=503, error_after_create=True)
    specs = plan_runs(config)
    markers = submit_pending(specs, config, paths)
    provider = provider_for(config, paths)
    for spec, marker in zip(specs, markers):
        jobs = provider.find_by_tag(spec.job_tag())
        live = [j for j in jobs if j.state.value != "CANCELLED"]
        assert [j.job_id for j in live] == [marker.job_id], f"{spec.key}: {[(j.job_id, j.state) for j in jobs]}"
    duplicates = [e for e in Ledger(paths.ledger).events() if e["event"] == "duplicate"]
    assert len(duplicates) >= 1 and duplicates[0]["outcome"] == "cancelled"


def test_429_rate_limit_backs_off_and_never_duplicates(study, small_config, emu, in_process):
    from qpuflow.pipeline import submit_pending

    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    emu.set_faults(errors=2, error_status=429, error_retry_after=1)
    markers = submit_pending(plan_runs(config), config, paths)
    assert len(markers) == 3
    assert len([r for r in emu.requests("submit") if r["status"] == 429]) == 2
    assert len([r for r in emu.requests("submit") if r["status"] == 200]) == 3


def test_collect_survives_timeouts_drops_failures_and_cancellations(study, small_config, emu, in_process):
    from qpuflow.pipeline import collect, submit_pending

    small_config["tags"] = []
    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    emu.set_faults(fail_tags=["run:L0_rep1"], cancel_tags=["run:L0_rep0"])
    submit_pending(plan_runs(config), config, paths)
    emu.set_faults(drops=1000, drop_endpoints=["list", "status", "results"])
    rows = collect(config, paths)
    assert all(r.state == "?" and not r.collected for r in rows) and "reached" in rows[0].error
    assert not list((paths.root / "collected").glob("*/*.json"))
    emu.set_faults(drops=0, delays=0)
    import time

    for _ in range(100):
        rows = collect(config, paths)
        if all(r.final for r in rows):
            break
        time.sleep(0.3)
    by_run = {r.run_key: r for r in rows}
    failed = json.loads(paths.result("sc/L0_rep1").read_text())
    cancelled = json.loads(paths.result("sc/L0_rep0").read_text())
    done = json.loads(paths.result("dep/session000_calibration").read_text())
    assert failed["status"] == "failed" and "1500" in failed["error"]
    assert cancelled["status"] == "cancelled" and "cancelled" in cancelled["error"].lower()
    assert done["status"] == "completed" and done["usage_seconds"] > 0
    assert by_run["dep/session000_calibration"].collected


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
    for job_id in jobs:
        members = sorted((m for m in markers.values() if m["job_id"] == job_id), key=lambda m: m["pub_index"])
        assert [m["pub_index"] for m in members] == list(range(len(members)))
        emulated = emu.job(job_id)
        assert [t for t in emulated["tags"] if t.startswith("run:")] == [f"run:{m['run_key'].split('/')[1]}" for m in members]
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
