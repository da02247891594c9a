"""The ibm provider, smoke-tested through qiskit-ibm-runtime's own local testing mode.

No network: local mode runs SamplerV2 against a fake backend in this process. The full
IBM path (HTTP, accounts, faults) is tested against a local emulator of the service.
"""

from __future__ import annotations

import pytest
from qiskit import QuantumCircuit, qpy
from qiskit.circuit import ClassicalRegister, QuantumRegister

from qpuflow.providers.base import JobState, ProviderError
from qpuflow.providers.ibm import IBMProvider, open_service, to_state
from qpuflow.backends import load_backend
from qpuflow.transpile import transpile_isa


def test_local_mode_submit_status_fetch(tmp_path):
    q = QuantumRegister(2, "q")
    a, b = ClassicalRegister(1, "a"), ClassicalRegister(9, "b")
    qc = QuantumCircuit(q, a, b)
    qc.x(q[1])
    qc.measure(q[0], a[0])
    qc.measure(q[1], b[8])  # bit 8 of a 9-bit register: crosses a byte boundary
    path = tmp_path / "c.qpy"
    with open(path, "wb") as fh:
        qpy.dump(transpile_isa(qc, load_backend("fake_fez"), seed=3), fh)
    provider = IBMProvider("local-test", local_mode=True)
    job_id = provider.submit([path], backend="fake_fez", shots=[300], tags=["qpuflow", "tag-x"], max_execution_time=60)
    info = provider.statuses([job_id])[job_id]
    assert info.state in (JobState.QUEUED, JobState.RUNNING, JobState.DONE)
    assert [j.job_id for j in provider.find_by_tag("tag-x")] == [job_id]
    import time

    for _ in range(600):
        if provider.statuses([job_id])[job_id].state.final:
            break
        time.sleep(0.1)
    out = provider.fetch(job_id)
    assert out.info.state is JobState.DONE
    assert out.registers(0)["a"].shape == (300, 1) and out.registers(0)["b"].shape == (300, 9)
    # Noisy device model: mostly the prepared values, bit 8 set and bits 0-7 clear.
    assert out.registers(0)["b"][:, 8].mean() > 0.8 and out.registers(0)["b"][:, :8].mean() < 0.05
    assert out.registers(0)["a"].mean() < 0.2


def test_status_words_are_converted_once():
    assert to_state("DONE") is JobState.DONE and to_state("Queued") is JobState.QUEUED
    with pytest.raises(ProviderError, match="unexpected job status"):
        to_state("EXPLODED")


def test_missing_environment_account_is_named_without_network(monkeypatch):
    monkeypatch.delenv("MYLAB_TOKEN", raising=False)
    with pytest.raises(ProviderError, match="MYLAB_TOKEN is not set"):
        open_service("env:MYLAB")
