"""The embedded local backend behaves like the service: states, tags, listing, cancel, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qiskit import QuantumCircuit, qpy

from qpuflow.providers.base import JobState, ProviderError
from qpuflow.providers.local import LocalProvider, LocalSettings
from qpuflow.transpile import load_backend, transpile_isa


@pytest.fixture(scope="module")
def isa_file(tmp_path_factory) -> Path:
    """An asymmetric two-register circuit: bit 0 of 'a' is 1, bit 1 of 'a' is 0, 'b' = 1."""
    from qiskit.circuit import ClassicalRegister, QuantumRegister

    q = QuantumRegister(3, "q")
    a, b = ClassicalRegister(2, "a"), ClassicalRegister(1, "b")
    qc = QuantumCircuit(q, a, b)
    qc.x(q[0])
    qc.x(q[2])
    qc.measure(q[0], a[0])
    qc.measure(q[1], a[1])
    qc.measure(q[2], b[0])
    isa = transpile_isa(qc, load_backend("fake_fez"), seed=1)
    path = tmp_path_factory.mktemp("isa") / "c.qpy"
    with open(path, "wb") as fh:
        qpy.dump(isa, fh)
    return path


def provider(tmp_path: Path, **kw) -> LocalProvider:
    return LocalProvider(LocalSettings(store=tmp_path / "store", **kw))


def submit(p: LocalProvider, isa_file: Path, tags=("t1",), shots=200) -> str:
    return p.submit(isa_file, backend="fake_fez", shots=shots, tags=list(tags), max_execution_time=60)


def test_job_runs_and_returns_registers_by_name(tmp_path, isa_file):
    p = provider(tmp_path, noise_scale=0.0)
    job = submit(p, isa_file)
    info = p.statuses([job])[job]
    assert info.state is JobState.DONE and info.usage_seconds > 0 and info.tags == ("t1",)
    out = p.fetch(job)
    assert set(out.registers) == {"a", "b"}
    assert out.registers["a"].shape == (200, 2) and out.registers["b"].shape == (200, 1)
    assert out.registers["a"][:, 0].all() and not out.registers["a"][:, 1].any() and out.registers["b"].all()


def test_states_follow_the_simulated_clock(tmp_path, isa_file):
    p = provider(tmp_path, queue_seconds=2.0, run_seconds=2.0)  # wide margins: tests run two at a time
    job = submit(p, isa_file)
    assert p.statuses([job])[job].state is JobState.QUEUED
    with pytest.raises(ProviderError, match="not final"):
        p.fetch(job)
    time.sleep(2.1)
    assert p.statuses([job])[job].state is JobState.RUNNING
    time.sleep(2.1)
    assert p.statuses([job])[job].state is JobState.DONE


def test_cancel_and_listing_by_tag(tmp_path, isa_file):
    p = provider(tmp_path, queue_seconds=3600)
    first, second = submit(p, isa_file, tags=("x", "run-1")), submit(p, isa_file, tags=("x", "run-2"))
    assert [j.job_id for j in p.find_by_tag("run-2")] == [second]
    assert {j.job_id for j in p.jobs(tags=["x"])} == {first, second}
    assert [j.job_id for j in p.jobs(limit=1)] == [second]  # newest first
    p.cancel(first)
    info = p.statuses([first])[first]
    assert info.state is JobState.CANCELLED and "cancelled" in info.error
    with pytest.raises(ProviderError, match="already CANCELLED"):
        p.cancel(first)


def test_injected_failure_and_unknown_job(tmp_path, isa_file):
    p = provider(tmp_path, fail_tags=("doomed",))
    job = submit(p, isa_file, tags=("doomed",))
    info = p.statuses([job])[job]
    assert info.state is JobState.ERROR and "Backend went offline" in info.error
    assert p.fetch(job).registers is None
    assert p.statuses(["nosuchjob"])["nosuchjob"].state is JobState.UNKNOWN


def test_max_execution_time_is_enforced(tmp_path, isa_file):
    p = provider(tmp_path)
    job = p.submit(isa_file, backend="fake_fez", shots=100_000, tags=["t"], max_execution_time=1)
    info = p.statuses([job])[job]
    assert info.state is JobState.ERROR and "max_execution_time" in info.error


def test_jobs_are_visible_from_another_process(tmp_path, isa_file):
    p = provider(tmp_path, queue_seconds=3600)
    job = submit(p, isa_file, tags=("cross",))
    code = (
        "import json, sys; from pathlib import Path; "
        "from qpuflow.providers.local import LocalProvider, LocalSettings; "
        f"p = LocalProvider(LocalSettings(store=Path({str(tmp_path / 'store')!r}))); "
        "print(json.dumps([i.to_json() for i in p.jobs()]))"
    )
    listed = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert [(j["job_id"], j["state"], j["tags"]) for j in listed] == [(job, "QUEUED", ["cross"])]
