"""Exactly-once submission on the IBM path under every fault sequence we could think of.

Each test scripts the strict emulator's answers to POST /jobs (and the listing) and drives the
library through the unmodified qiskit-ibm-runtime client, then counts jobs AT THE EMULATOR:
every pack of runs must end with exactly one job that is not cancelled, no duplicate that
qpuflow could have avoided may have run, and every duplicate must be in the ledger with its
cost. Scripts (``emu.script``): ``error:<status>[:create]``, ``drop[:create]``,
``delay:<s>[:create]``, ``429``, ``ok``; ``:create`` means the service created the job before
answering (or not answering), which is how upstream issue #1114 duplicates jobs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from qpuflow.ledger import Ledger
from qpuflow.plan import plan_runs
from tests.conftest import (BIN, TOKEN, assert_one_live_job_per_pack, ibm_env, jobs_by_pack, snakemake,
                            use_ibm, write_config)

pytestmark = pytest.mark.slow


def one_run(config: dict) -> dict:
    """The small study cut to one surface-code run: one pack, so a script is that pack's story."""
    config["experiments"] = {"sc": {**config["experiments"]["sc"], "repetitions": 1}}
    return config


def events(paths, kind: str) -> list[dict]:
    return [e for e in Ledger(paths.ledger).events() if e["event"] == kind]


def submit(config, paths):
    from qpuflow.pipeline import submit_pending

    return submit_pending(plan_runs(config), config, paths)


def posts(emu) -> list[dict]:
    return emu.requests("submit")


# ---------------------------------------------------------------------------- 5xx and 429


@pytest.mark.parametrize("script, expected_posts", [
    (["error:503:create", "error:503:create", "ok"], 1),   # the first POST created the job: never sent again
    (["error:503", "error:502", "ok"], 3),                 # nothing created: sent again after each lookup
    (["error:500:create", "429", "ok"], 1),
    (["error:503", "error:503", "429", "ok"], 4),          # 5xx x2, then 429, then through
    (["429", "429", "429", "ok"], 4),                      # a 429 storm is waited out (Retry-After)
])
def test_a_post_storm_ends_with_exactly_one_job(study, small_config, emu, in_process, script, expected_posts):
    use_ibm(study, one_run(small_config))
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", script)
    (marker,) = submit(config, paths)
    assert len(posts(emu)) == expected_posts
    kept = assert_one_live_job_per_pack(emu)
    assert [j["id"] for j in kept.values()] == [marker.job_id]
    assert len(emu.jobs()) == 1, "no duplicate was created"
    assert marker.adopted == (script[0].endswith(":create"))
    errors = events(paths, "submit_error")
    assert len(errors) == len([r for r in posts(emu) if r["status"] != 200])
    assert all(e["pack"] == marker.job_tag for e in errors)
    assert events(paths, "checked"), "the pack was checked for duplicates"
    # Before every resend the pack was looked up: a listing request between consecutive POSTs.
    kinds = [r["kind"] for r in emu.requests() if r["kind"] in ("submit", "list")]
    for i, kind in enumerate(kinds[:-1]):
        if kind == "submit":
            assert kinds[i + 1] == "list", kinds


def test_the_clients_own_post_retries_are_off(study, small_config, emu, in_process):
    """qiskit-ibm-runtime retries POST /jobs on 5xx by itself (each retry may create a job);
    qpuflow's client never repeats a POST: the one 503 reaches qpuflow, which looks first."""
    use_ibm(study, one_run(small_config), max_submit_attempts=1)
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", ["error:503", "error:503", "error:503", "ok"])
    from qpuflow.providers import ProviderError

    with pytest.raises(ProviderError, match="1 submission attempts failed"):
        submit(config, paths)
    assert len(posts(emu)) == 1 and emu.jobs() == []
    assert emu.script_left("submit") == ["error:503", "error:503", "ok"]


def test_the_services_rate_limit_is_waited_out(study, small_config, emu, in_process):
    """Eight jobs against 5 submissions per (short) window per user: the sixth gets 429 with
    Retry-After, qpuflow waits, and every run ends with one job."""
    emu.set_faults(submit_rate_per_minute=5, rate_window_seconds=4)
    small_config["experiments"] = {"sc": {**small_config["experiments"]["sc"], "repetitions": 8}}
    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    markers = submit(config, paths)
    assert len(markers) == 8 and len({m.job_id for m in markers}) == 8
    assert [r for r in posts(emu) if r["status"] == 429], "the limit was reached"
    assert len([r for r in posts(emu) if r["status"] == 200]) == 8
    assert_one_live_job_per_pack(emu)


def test_a_409_usage_limit_is_a_budget_refusal(study, small_config, emu, in_process):
    from qpuflow.budget import BudgetExceeded

    use_ibm(study, one_run(small_config))
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", ["error:409"])
    with pytest.raises(BudgetExceeded, match="used up its QPU time .*409"):
        submit(config, paths)
    assert emu.jobs() == [] and len(posts(emu)) == 1
    assert not events(paths, "accepted")


# ---------------------------------------------------------------------------- no answer


def test_a_dropped_answer_that_created_the_job_is_adopted(study, small_config, emu, in_process):
    use_ibm(study, one_run(small_config), request_timeout_seconds=1)
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", ["drop:create"])
    (marker,) = submit(config, paths)
    assert marker.adopted and len(posts(emu)) == 1 and len(emu.jobs()) == 1


def test_a_dropped_answer_that_created_nothing_is_sent_again_once(study, small_config, emu, in_process):
    use_ibm(study, one_run(small_config), request_timeout_seconds=1)
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", ["drop", "ok"])
    (marker,) = submit(config, paths)
    assert not marker.adopted and len(posts(emu)) == 2
    assert_one_live_job_per_pack(emu) and len(emu.jobs()) == 1


def test_a_slow_post_is_cut_off_by_the_timeout_and_its_late_job_adopted(study, small_config, emu, in_process):
    """The client would wait 900 s for a POST; qpuflow's timeout applies to it too. The job the
    slow POST created appears while qpuflow waits for it, and is adopted: no second POST."""
    use_ibm(study, one_run(small_config), request_timeout_seconds=1)
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", ["delay:3"])  # the service creates the job 3 s after the request
    start = time.monotonic()
    (marker,) = submit(config, paths)
    assert time.monotonic() - start < 30
    assert marker.adopted and len(posts(emu)) == 1 and len(emu.jobs()) == 1


def test_server_down_mid_submit_then_up_again(study, small_config, emu, in_process):
    from qpuflow.providers import ProviderError

    use_ibm(study, small_config, request_timeout_seconds=2)
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", ["ok", "delay:5"])

    def stop_during_second_post():
        while len(emu.requests("submit")) < 1:
            time.sleep(0.05)
        time.sleep(1.0)
        emu.stop()

    killer = threading.Thread(target=stop_during_second_post)
    killer.start()
    with pytest.raises(ProviderError):
        submit(config, paths)
    killer.join()
    assert len(events(paths, "accepted")) == 1
    emu.start()
    submit(config, paths)
    assert len(events(paths, "accepted")) == 3
    kept = assert_one_live_job_per_pack(emu)
    assert len(kept) == 3 and len(emu.jobs()) == 3


# ---------------------------------------------------------------------------- duplicates


def test_a_late_duplicate_is_found_by_collect_cancelled_while_queued_and_counted(study, small_config, emu, in_process):
    """A POST that timed out is processed after qpuflow gave up waiting and sent again: two jobs.
    The next collect finds the late one, keeps the recorded one, cancels the late one while it is
    queued, and records it (cost 0) in the ledger and the budget."""
    from qpuflow.pipeline import collect

    emu.configure(queue_seconds=60)
    use_ibm(study, one_run(small_config), request_timeout_seconds=1)
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", ["delay:9", "ok"])  # created 9 s after the first POST: after the 6 s qpuflow waits
    (marker,) = submit(config, paths)
    assert not marker.adopted
    deadline = time.monotonic() + 30
    while len(emu.jobs()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(emu.jobs()) == 2 and len(posts(emu)) == 2, "the late job appeared"
    collect(config, paths)
    kept = assert_one_live_job_per_pack(emu)
    assert [j["id"] for j in kept.values()] == [marker.job_id]
    (dup,) = Ledger(paths.ledger).duplicates()
    assert dup["outcome"] == "cancelled" and dup["usage_seconds"] == 0 and dup["kept"] == marker.job_id
    assert not [j for j in emu.jobs() if j["status"] in ("Running", "Completed") and j["id"] != marker.job_id]


def test_a_listing_outage_at_the_duplicate_check_is_finished_by_collect(study, small_config, emu, in_process):
    """The duplicate check after a POST cannot list (the listing is down): the submission stands,
    and the next collect checks, finds the extra job the service made, and cancels it."""
    from qpuflow.pipeline import collect

    emu.configure(queue_seconds=60)
    use_ibm(study, one_run(small_config))
    config, paths = in_process(ibm_env(emu))
    emu.script("list", ["ok", "drop", "drop", "drop", "drop"])  # the census, then the check fails
    (marker,) = submit(config, paths)
    assert not events(paths, "checked")
    # The service made a second job for this pack (as a client retry would): same tags.
    extra = _post_like(emu, marker)
    collect(config, paths)
    assert events(paths, "checked")
    kept = assert_one_live_job_per_pack(emu)
    assert [j["id"] for j in kept.values()] == [marker.job_id]
    assert emu.job(extra)["status"] == "Cancelled"
    assert [d["job_id"] for d in Ledger(paths.ledger).duplicates()] == [extra]


def test_a_running_duplicate_is_not_cancelled_but_its_cost_is_counted(study, small_config, emu, in_process):
    from qpuflow.budget import usage_by_account
    from qpuflow.pipeline import collect

    emu.configure(queue_seconds=60)
    use_ibm(study, one_run(small_config))
    config, paths = in_process(ibm_env(emu))
    emu.script("list", ["ok", "drop", "drop", "drop", "drop"])
    (marker,) = submit(config, paths)
    extra = _post_like(emu, marker)
    emu.complete_job(extra)  # the duplicate already ran
    collect(config, paths)
    # The recorded job still waits while the extra one completed: the extra is kept (its data is
    # in), the waiting one is cancelled, and the run's marker follows the job that ran.
    kept = assert_one_live_job_per_pack(emu)
    assert [j["id"] for j in kept.values()] == [extra]
    assert json.loads(paths.marker("sc/L0_rep0").read_text())["job_id"] == extra
    (dup,) = Ledger(paths.ledger).duplicates()
    assert dup["job_id"] == marker.job_id and dup["outcome"] == "cancelled"
    usage = usage_by_account(config, Ledger(paths.ledger).accepted_markers(), paths.result,
                             duplicates=Ledger(paths.ledger).duplicates())
    assert usage["env:EMU"].used_seconds == pytest.approx(marker.estimated_qpu_seconds, abs=1.0)


def test_adoption_after_a_duplicate_and_a_lost_results_folder_keeps_the_job_that_ran(study, small_config, emu,
                                                                                    in_process):
    import shutil

    from qpuflow.pipeline import collect

    emu.configure(queue_seconds=60)
    use_ibm(study, one_run(small_config), request_timeout_seconds=1)
    config, paths = in_process(ibm_env(emu))
    emu.script("submit", ["delay:9", "ok"])
    (marker,) = submit(config, paths)
    while len(emu.jobs()) < 2:
        time.sleep(0.2)
    collect(config, paths)  # cancels the late duplicate
    emu.complete_job(marker.job_id)
    (late,) = [j["id"] for j in emu.jobs() if j["id"] != marker.job_id]
    assert emu.job(late)["status"] == "Cancelled" and emu.job(marker.job_id)["status"] == "Completed"
    shutil.rmtree(paths.root)
    (again,) = submit(config, paths)
    assert again.job_id == marker.job_id and again.adopted, "the job that ran, not the cancelled one"
    assert emu.job(marker.job_id)["status"] == "Completed" and len(posts(emu)) == 2
    collect(config, paths)
    assert json.loads(paths.result("sc/L0_rep0").read_text())["status"] == "completed"


# ---------------------------------------------------------------------------- kills


def test_a_kill_between_the_post_and_the_duplicate_check_ends_with_one_job(study, small_config, emu):
    use_ibm(study, small_config, pubs_per_job=4)
    env = ibm_env(emu)
    proc = snakemake(study, "submit", env={**env, "QPUFLOW_FAULT": "after_provider_accept:kill"}, check=False)
    assert proc.returncode != 0 and len(emu.jobs()) == 1
    orphan = emu.jobs()[0]["id"]  # whichever job went first (the pack or the arm), killed before its markers
    snakemake(study, "--unlock", env=env)
    snakemake(study, "submit", env=env)
    kept = assert_one_live_job_per_pack(emu)
    assert len(kept) == len(emu.jobs()) == 2  # the 2 surface-code runs in one job, the arm in another
    markers = [json.loads(p.read_text()) for p in (study / "results" / "submitted").glob("*/*.json")]
    assert len(markers) == 3
    assert all(m["adopted"] == (m["job_id"] == orphan) for m in markers)  # the orphan's runs adopted, the rest sent
    assert any(m["job_id"] == orphan for m in markers)


def test_a_slow_post_killed_and_rerun_ends_with_one_job(study, small_config, emu):
    """The user kills a submit stuck in a slow POST and runs it again at once: the rerun waits for
    the job the slow POST may still create, finds it and adopts it."""
    config = use_ibm(study, one_run(small_config), request_timeout_seconds=20)
    env = ibm_env(emu)
    emu.script("submit", ["delay:6"])
    full = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "submit"], cwd=study, env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ledger = study / "results" / "ledger" / "submissions.jsonl"
    deadline = time.monotonic() + 120
    while not (ledger.exists() and '"intent"' in ledger.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)  # the intent is flushed just before the POST goes out
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert emu.jobs() == [], "killed before the service created the job"
    snakemake(study, "--unlock", env=env)
    out = snakemake(study, "submit", env=env)
    assert "waiting up to" in out.all
    assert len(posts(emu)) == 1 and len(emu.jobs()) == 1
    marker = json.loads((study / "results" / "submitted" / "sc" / "L0_rep0.json").read_text())
    assert marker["adopted"] and marker["job_id"] == emu.jobs()[0]["id"]
    assert config["provider"]["ibm"]["request_timeout_seconds"] == 20


# ---------------------------------------------------------------------------- tokens


def test_a_token_revoked_mid_submit_is_replaced_once(study, small_config, emu, in_process):
    use_ibm(study, small_config)
    config, paths = in_process(ibm_env(emu))
    from qpuflow.pipeline import ensure_isa

    for spec in plan_runs(config):
        ensure_isa(spec, config, paths)
    from qpuflow.providers import make_provider

    provider = make_provider(config, account="env:EMU", local_store=paths.local_store)
    provider.jobs(tags=["qpuflow"])  # signed in
    emu.expire_tokens()
    from qpuflow.submit import submit_packs

    markers = submit_packs([[s] for s in plan_runs(config)], config=config, paths=paths,
                           provider_factory=lambda name: provider)
    assert len(markers) == 3 and len(emu.jobs()) == 3
    assert [r for r in emu.requests() if r["status"] == 401], "the old token was really refused"


def test_a_token_refused_twice_says_so(study, small_config, emu, in_process):
    from qpuflow.providers import ProviderError

    use_ibm(study, one_run(small_config))
    config, paths = in_process(ibm_env(emu))
    from qpuflow.pipeline import ensure_isa

    for spec in plan_runs(config):
        ensure_isa(spec, config, paths)
    emu.script("list", ["error:401"] * 4)
    with pytest.raises(ProviderError, match="refused the access token .* twice"):
        submit(config, paths)
    assert emu.jobs() == []


# ---------------------------------------------------------------------------- study identity


def test_a_second_study_folder_adopts_loudly_and_a_new_study_name_takes_new_data(study, small_config, emu,
                                                                               tmp_path, caplog):
    import shutil

    from qpuflow.config import load_config
    from qpuflow.paths import Paths
    from qpuflow.pipeline import submit_pending

    use_ibm(study, one_run(small_config))
    env = ibm_env(emu)
    snakemake(study, "submit", env=env)
    first = emu.jobs()
    assert len(first) == 1
    twin = tmp_path / "twin"
    shutil.copytree(study, twin, ignore=shutil.ignore_patterns("results", ".snakemake"))
    out = snakemake(twin, "submit", env=env)
    assert "never recorded" in out.all and first[0]["id"] in out.all, "adoption is announced with the job"
    assert len(emu.jobs()) == 1
    repeat = json.loads(json.dumps(small_config))
    repeat["study"] = "repeat-2026-11"
    write_config(twin, repeat)
    shutil.rmtree(twin / "results")
    snakemake(twin, "submit", env=env)
    assert len(emu.jobs()) == 2, "a deliberate repeat takes new data"
    assert len(jobs_by_pack(emu)) == 2


def _post_like(emu, marker) -> str:
    """Create a job at the emulator with the same tags as ``marker``'s job, as the service would
    for a retried POST (through the unmodified client)."""
    import warnings

    from qiskit import qpy
    from qiskit_ibm_runtime import QiskitRuntimeService, SamplerV2

    service = QiskitRuntimeService(**emu.service_kwargs(token=TOKEN, instance="qpuflow-emulator"))
    with open(marker.isa_path, "rb") as fh:
        (isa,) = qpy.load(fh)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = SamplerV2(mode=service.backend("ibm_fez"))
        sampler.options.environment.job_tags = list(marker.tags)
        return sampler.run([(isa, None, 64)]).job_id()


def test_a_lost_results_folder_readopts_packed_jobs_with_their_pubs(study, small_config, emu, in_process):
    import shutil

    small_config["experiments"]["sc"]["repetitions"] = 5
    use_ibm(study, small_config, pubs_per_job=4)
    config, paths = in_process(ibm_env(emu))
    before = {m.run_key: (m.job_id, m.pub_index) for m in submit(config, paths)}
    assert len({job for job, _ in before.values()}) == 3  # 4 + 1 surface-code runs, and the arm
    shutil.rmtree(paths.root)
    after = submit(config, paths)
    assert {m.run_key: (m.job_id, m.pub_index) for m in after} == before
    assert all(m.adopted for m in after) and len(posts(emu)) == 3
