"""The bit order of every register, end to end through each provider and the result file.

A noiseless all-zero check cannot see a reversed register, so the circuit is made
asymmetric: an X just before the measurement that writes bit 0 of every register. For the
repetition code in state 0 every recorded bit is otherwise 0, so exactly bit 0 of each
register must read 1; a reversed register would show it at the last position instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import qpy
from qiskit.circuit import CircuitInstruction
from qiskit.circuit.library import XGate

from qpuflow.circuits import memory_experiment
from qpuflow.collect import collect_result
from qpuflow.providers import ProviderError
from qpuflow.providers.ibm import IBMProvider
from qpuflow.providers.local import LocalProvider, LocalSettings
from qpuflow.records import Result
from qpuflow.backends import load_backend
from qpuflow.transpile import transpile_isa
from tests.test_records import make_marker


def flag_bit_zero_of_every_register(circuit):
    flagged = circuit.copy()
    targets = {creg[0] for creg in flagged.cregs}
    i = 0
    while i < len(flagged.data):
        inst = flagged.data[i]
        if inst.operation.name == "measure" and inst.clbits[0] in targets:
            flagged.data.insert(i, CircuitInstruction(XGate(), inst.qubits))
            targets.discard(inst.clbits[0])
            i += 1
        i += 1
    assert not targets
    return flagged


@pytest.fixture(scope="module")
def flagged_isa(tmp_path_factory):
    circuit, mmap = memory_experiment("repetition_code", distance=3, rounds=2, logical_state="0", name="flag")
    assert len(mmap.registers) == 3 and all(size > 1 for _, size in mmap.registers)
    isa = transpile_isa(flag_bit_zero_of_every_register(circuit), load_backend("fake_fez"), seed=5)
    path = tmp_path_factory.mktemp("flag") / "flag.qpy"
    with open(path, "wb") as fh:
        qpy.dump(isa, fh)
    return path, dict(mmap.registers)


def expected_bits(size: int) -> np.ndarray:
    return np.arange(size) == 0


def test_local_provider_and_result_file_keep_every_register_in_order(tmp_path, flagged_isa):
    path, registers = flagged_isa
    provider = LocalProvider(LocalSettings(store=tmp_path / "store", noise_scale=0.0))
    job = provider.submit([path], backend="fake_fez", shots=[64], tags=["flag"], max_execution_time=60)
    marker = make_marker(job_id=job, run_key="flag/run")
    result = collect_result(marker, tmp_path / "result.json", provider)
    assert result is not None and result.status == "completed"
    for bits_by_register in (provider.fetch(job).registers(0), Result.read(tmp_path / "result.json").bit_arrays()):
        assert set(bits_by_register) == set(registers)
        for name, size in registers.items():
            bits = bits_by_register[name]
            assert bits.shape == (64, size)
            assert (bits == expected_bits(size)).all(), f"register {name} out of order: {bits[0].astype(int)}"


def test_ibm_sampler_path_keeps_every_register_in_order(flagged_isa):
    path, registers = flagged_isa
    provider = IBMProvider("local-test", local_mode=True)  # SamplerV2 BitArrays, FakeFez noise
    job = provider.submit([path], backend="fake_fez", shots=[400], tags=["flag"], max_execution_time=60)
    import time

    for _ in range(600):
        if provider.statuses([job])[job].state.final:
            break
        time.sleep(0.1)
    out = provider.fetch(job).registers(0)
    for name, size in registers.items():
        majority = out[name].mean(axis=0) > 0.5
        assert (majority == expected_bits(size)).all(), f"register {name}: {out[name].mean(axis=0)}"


@pytest.mark.parametrize("primitive", ["executor_sampler", "sampler_v2"])
def test_emulator_download_from_the_listing_keeps_every_register_in_order(flagged_isa, tmp_path, monkeypatch, primitive):
    """collect downloads with the status it already polled (the result and the metrics, nothing
    else), through either primitive; the same bits as the job path, in the same order."""
    from qpuflow.emulator import EmulatorHandle

    path, registers = flagged_isa
    with EmulatorHandle(tmp_path / "emu", queue_seconds=0, run_seconds=0, billing_delay_seconds=0) as emu:
        for key, value in {**emu.client_env(), "EMU_TOKEN": "bit-order", "EMU_INSTANCE": "qpuflow-emulator",
                           "EMU_URL": emu.api_url}.items():
            monkeypatch.setenv(key, value)
        provider = IBMProvider("env:EMU", primitive=primitive)
        job = provider.submit([path], backend="ibm_fez", shots=[400], tags=["qpuflow", "flag"], max_execution_time=60,
                              metadata=[{"qpuflow_run": "x/y", "qpuflow_run_id": "f" * 64}])
        emu.wait_for(job)
        known = provider.statuses([job])[job]
        assert known.state.final and known.usage_seconds and known.usage_final
        assert known.finished is None, "the documented job record has no completion time"
        emu.clear_requests()
        fast = provider.fetch(job, known=known)
        kinds = sorted(r["kind"] for r in emu.requests())
        assert kinds == ["metrics", "results"], f"the result and its metrics, not {kinds}"
        slow = provider.fetch(job)
    assert fast.completion_time and fast.completion_time == slow.completion_time
    assert fast.info.usage_seconds == slow.info.usage_seconds == known.usage_seconds
    assert fast.info.program == ("executor" if primitive == "executor_sampler" else "sampler")
    assert fast.pub_run_ids == ["f" * 64], "the run identity travels in the circuit metadata"
    with pytest.raises(ProviderError, match="holds run"):
        fast.registers(0, run_id="e" * 64)
    for name, size in registers.items():
        assert (fast.registers(0)[name] == slow.registers(0)[name]).all()
        majority = fast.registers(0)[name].mean(axis=0) > 0.5
        assert (majority == expected_bits(size)).all(), f"register {name}: {fast.registers(0)[name].mean(axis=0)}"
