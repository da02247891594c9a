"""The exactly-once submission core, in process (issue 14): ``submit_packs`` against the local
provider with the fault points raising where a process would die. What is on disk after a
:class:`~qpuflow.faults.SimulatedCrash` is what a killed process leaves, so each test checks
that the next call neither submits twice nor loses a job ID. The end-to-end versions (a real
SIGKILL under Snakemake, the IBM client over HTTP) live in test_workflow.py and
test_ibm_faults.py; these are fast enough to run after every change to submit.py."""

from __future__ import annotations

import pytest

from qpuflow.faults import SimulatedCrash
from qpuflow.ledger import Ledger
from qpuflow.plan import plan_runs
from qpuflow.records import Marker

pytestmark = pytest.mark.xdist_group("submit_core")


@pytest.fixture
def core(study, in_process):
    """(config, paths, surface-code runs with their ISA files, provider job listing)."""
    from qpuflow.pipeline import ensure_isa
    from qpuflow.providers import make_provider

    config, paths = in_process({})
    specs = [s for s in plan_runs(config) if s.experiment == "sc"]
    assert len(specs) == 2
    for spec in specs:
        ensure_isa(spec, config, paths)

    def jobs():
        return make_provider(config, account="local", local_store=paths.local_store).jobs()

    return config, paths, specs, jobs


def _submit(config, paths, packs):
    from qpuflow.submit import submit_packs

    return submit_packs(packs, config=config, paths=paths)


def _events(paths, kind):
    return [e for e in Ledger(paths.ledger).events() if e["event"] == kind]


def _crash_at(point, monkeypatch, config, paths, specs, jobs):
    """Submit ``specs`` as one pack, 'dying' at ``point``; return the one job the provider got."""
    monkeypatch.setenv("QPUFLOW_FAULT", f"{point}:raise")
    with pytest.raises(SimulatedCrash):
        _submit(config, paths, [specs])
    monkeypatch.delenv("QPUFLOW_FAULT")
    (job,) = jobs()
    assert _markers(paths, specs) == {}
    return job


def _markers(paths, specs):
    return {s.key: Marker.read(paths.marker(s.key)) for s in specs if paths.marker(s.key).exists()}


def test_a_crash_after_the_provider_accepted_is_adopted_not_resent(core, monkeypatch):
    config, paths, specs, jobs = core
    job = _crash_at("after_provider_accept", monkeypatch, *core)
    assert _events(paths, "accepted") == [] and len(_events(paths, "intent")) == 1
    # The next call groups the runs differently: the job at the provider still carries both.
    markers = _submit(config, paths, [[s] for s in specs])
    assert [j.job_id for j in jobs()] == [job.job_id]
    assert {m.job_id for m in markers} == {job.job_id} and all(m.adopted for m in markers)
    assert sorted(m.pub_index for m in markers) == [0, 1]
    assert _submit(config, paths, [specs]) == markers and len(jobs()) == 1  # and a rerun sends nothing


def test_a_crash_before_the_markers_are_written_is_restored_from_the_ledger(core, monkeypatch):
    config, paths, specs, jobs = core
    job = _crash_at("before_marker_write", monkeypatch, *core)
    assert len(_events(paths, "accepted")) == 2
    markers = _submit(config, paths, [specs])
    assert [j.job_id for j in jobs()] == [job.job_id]
    assert {m.job_id for m in markers} == {job.job_id} and not any(m.adopted for m in markers)
    assert _markers(paths, specs) == {m.run_key: m for m in markers}


def test_a_lost_ledger_and_lost_markers_are_recovered_from_the_provider(core):
    config, paths, specs, jobs = core
    first = _submit(config, paths, [specs])
    paths.ledger.unlink()
    for spec in specs:
        paths.marker(spec.key).unlink()
    again = _submit(config, paths, [[s] for s in specs])
    assert len(jobs()) == 1
    assert [m.job_id for m in again] == [m.job_id for m in first] and all(m.adopted for m in again)
    assert [m.pub_index for m in again] == [m.pub_index for m in first]


def test_a_run_already_sent_is_not_packed_again(core):
    config, paths, specs, jobs = core
    (alone,) = _submit(config, paths, [specs[:1]])
    both = _submit(config, paths, [specs])
    assert both[0] == alone
    assert len(jobs()) == 2 and both[1].job_id != alone.job_id and both[1].pub_index == 0
    assert _submit(config, paths, [specs]) == both and len(jobs()) == 2
