"""The embedded local backend behaves like the service: states, tags, listing, cancel, persistence."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qiskit import QuantumCircuit, qpy

from qpuflow.providers.base import JobState, ProviderError
from qpuflow.drift import DriftModel
from qpuflow.providers.local import LocalProvider, LocalSettings
from qpuflow.backends import load_backend
from qpuflow.transpile import transpile_isa


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
    return p.submit([isa_file], backend="fake_fez", shots=[shots], tags=list(tags), max_execution_time=60)


def test_job_runs_and_returns_registers_by_name(tmp_path, isa_file):
    p = provider(tmp_path, noise_scale=0.0)
    job = submit(p, isa_file)
    info = p.statuses([job])[job]
    assert info.state is JobState.DONE and info.usage_seconds > 0 and info.tags == ("t1",)
    out = p.fetch(job)
    assert set(out.registers(0)) == {"a", "b"}
    assert out.registers(0)["a"].shape == (200, 2) and out.registers(0)["b"].shape == (200, 1)
    assert out.registers(0)["a"][:, 0].all() and not out.registers(0)["a"][:, 1].any() and out.registers(0)["b"].all()


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
    assert p.fetch(job).registers(0) is None
    assert p.statuses(["nosuchjob"])["nosuchjob"].state is JobState.UNKNOWN


def test_max_execution_time_is_enforced(tmp_path, isa_file):
    p = provider(tmp_path)
    job = p.submit([isa_file], backend="fake_fez", shots=[100_000], tags=["t"], max_execution_time=1)
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


# --------------------------------------------------------------------------------------
# drift: the noise a job sees differs from the reported calibration
# --------------------------------------------------------------------------------------

READOUT_QUBITS = (3, 12, 15, 32, 41, 43, 49, 51)  # reported readout errors 1.6% - 5.8%


@pytest.fixture(scope="module", params=["product", "stim"])
def readout_file(request, tmp_path_factory) -> tuple[str, Path]:
    """Measure |0> on READOUT_QUBITS (P(1) = readout error); the 'stim' variant adds a cz elsewhere."""
    from qiskit.circuit import ClassicalRegister, QuantumRegister

    fez = load_backend("fake_fez")
    qc = QuantumCircuit(QuantumRegister(fez.num_qubits, "q"), ClassicalRegister(len(READOUT_QUBITS), "ro"))
    if request.param == "stim":
        qc.cz(100, 101)  # a two-qubit gate: the whole circuit goes through stim
        assert fez.target["cz"][(100, 101)].error < 0.05
    for i, q in enumerate(READOUT_QUBITS):
        qc.measure(q, i)
    path = tmp_path_factory.mktemp("ro") / f"{request.param}.qpy"
    with open(path, "wb") as fh:
        qpy.dump(qc, fh)
    return request.param, path


def _p1_given_0(backend, qubit: int) -> float:
    """What a prepared |0> reads as 1: the device's P(1|0) (prob_meas1_prep0), not the mean
    readout error of the Target (FakeFez's P(0|1) is about 3x larger)."""
    from qpuflow.backends import readout_pairs

    return readout_pairs(backend)[qubit][0]


def _z(observed: float, expected: float, shots: int) -> float:
    return (observed - expected) / (expected * (1 - expected) / shots) ** 0.5


def test_drift_settings_are_read_from_config_and_checked(tmp_path):
    config = {"provider": {"name": "local", "local": {"drift": {"sigma": 0.3, "period_hours": 6, "seed": 4}}}}
    s = LocalSettings.from_config(config, tmp_path)
    assert (s.drift.sigma, s.drift.period_hours, s.drift.seed) == (0.3, 6.0, 4)
    s = LocalSettings.from_config({"provider": {"name": "local"}}, tmp_path)
    assert (s.drift.sigma, s.drift.period_hours, s.drift.seed) == (0.0, 24.0, 0)
    with pytest.raises(ValueError, match="provider.local.drift.sigma"):
        LocalSettings.from_config({"provider": {"local": {"drift": {"sigma": -1}}}}, tmp_path)
    with pytest.raises(ValueError, match="provider.local.drift.period_hours"):
        LocalSettings.from_config({"provider": {"local": {"drift": {"period_hours": 0}}}}, tmp_path)


def test_drift_changes_the_readout_error_a_job_sees(tmp_path, readout_file):
    from qpuflow.providers.local import drift_bucket
    from qpuflow.device_state import drift_factors

    _, path = readout_file
    fez = load_backend("fake_fez")
    # A period longer than the epoch: bucket 0 whenever the test runs, so the factors are fixed.
    p = provider(tmp_path, drift=DriftModel(sigma=1.0, period_hours=1e9, seed=5))
    shots = 20000
    job = submit(p, path, shots=shots)
    record = json.loads((p.jobs_dir / f"{job}.json").read_text())
    assert (record["drift_sigma"], record["drift_period_hours"], record["drift_seed"]) == (1.0, 1e9, 5)
    ro = p.fetch(job).registers(0)["ro"]
    bucket = drift_bucket(record["created_epoch"], 1e9)
    assert bucket == 0
    f = drift_factors(fez.num_qubits, sigma=1.0, seed=5, bucket=bucket)
    for i, q in enumerate(READOUT_QUBITS):
        reported = _p1_given_0(fez, q)
        assert abs(_z(ro[:, i].mean(), min(reported * f[q], 0.5), shots)) < 5, (q, ro[:, i].mean(), reported, f[q])
    # The qubit that drifted most reads visibly off its reported error, in the factor's direction.
    i, q = max(enumerate(READOUT_QUBITS), key=lambda iq: abs(math.log(f[iq[1]])))
    z = _z(ro[:, i].mean(), _p1_given_0(fez, q), shots)
    assert abs(z) > 5 and (z > 0) == (f[q] > 1), (q, f[q], z)


def test_no_drift_keeps_the_reported_readout_error(tmp_path, readout_file):
    _, path = readout_file
    fez = load_backend("fake_fez")
    p = provider(tmp_path)  # no drift by default
    shots = 20000
    ro = p.fetch(submit(p, path, shots=shots)).registers(0)["ro"]
    for i, q in enumerate(READOUT_QUBITS):
        reported = _p1_given_0(fez, q)
        assert abs(_z(ro[:, i].mean(), reported, shots)) < 5, (q, ro[:, i].mean(), reported)


def test_records_without_drift_fields_still_run(tmp_path, isa_file):
    """Job records written before drift and batches existed have no drift keys and one circuit
    named after the job; they run, without drift."""
    import shutil

    from qpuflow.providers.local import _simulate

    shutil.copyfile(isa_file, tmp_path / "legacyjob.qpy")
    record = {"job_id": "legacyjob", "backend": "fake_fez", "shots": 100, "created_epoch": time.time(),
              "noise_scale": 0.0, "idle_noise": False}
    (registers,), usage = _simulate(record, tmp_path)
    assert registers["a"][:, 0].all() and not registers["a"][:, 1].any() and registers["b"].all() and usage > 0


def test_drifted_backend_keeps_the_reported_calibration_apart():
    from qpuflow.drift import DriftModel
    from qpuflow.providers.local import job_backend

    static = load_backend("fake_fez")
    assert job_backend("fake_fez") is static
    model = DriftModel(sigma=0.5, seed=1)
    drifted = job_backend("fake_fez", model, 864000.0)
    assert drifted is job_backend("fake_fez", model, 864000.0)  # cached per device state
    assert drifted.target is not static.target
    assert drifted.target.qubit_properties[7].t1 != static.target.qubit_properties[7].t1
    # The reported calibration (what transpilation and chain selection read) is untouched.
    assert static.target.qubit_properties[7].t1 == load_backend("fake_fez").target.qubit_properties[7].t1


def test_tag_lookups_use_the_index_and_never_miss_a_job(tmp_path, isa_file):
    import shutil

    p = provider(tmp_path, queue_seconds=3600)
    a = submit(p, isa_file, tags=("run-a", "study"))
    b = submit(p, isa_file, tags=("run-b", "study"))
    assert [j.job_id for j in p.find_by_tag("run-a")] == [a]
    assert {j.job_id for j in p.jobs(tags=["study"])} == {a, b}
    assert {j.job_id for j in p.jobs(tags=["study", "run-b"])} == {b}
    # A store written before the index existed is indexed on first use, not missed.
    shutil.rmtree(p.settings.store / "tags")
    assert [j.job_id for j in LocalProvider(p.settings).find_by_tag("run-b")] == [b]
    # An index entry whose record was never written (a submission killed in between) is no job.
    p._tag_entry("run-c", "nosuchjob").touch()
    assert p.find_by_tag("run-c") == []


def test_drift_follows_the_workflow_clock(tmp_path, isa_file, monkeypatch):
    """A QPUFLOW_NOW rehearsal spans days in minutes; the drift period must follow that clock."""
    from qpuflow.providers.local import drift_bucket

    p = provider(tmp_path, drift=DriftModel(sigma=0.5), queue_seconds=3600)
    monkeypatch.setenv("QPUFLOW_NOW", "2026-12-01T08:00:00Z")
    first = json.loads((p.jobs_dir / f"{submit(p, isa_file)}.json").read_text())
    monkeypatch.setenv("QPUFLOW_NOW", "2026-12-03T08:00:00Z")
    second = json.loads((p.jobs_dir / f"{submit(p, isa_file)}.json").read_text())
    assert second["drift_epoch"] - first["drift_epoch"] == 2 * 86400
    assert drift_bucket(second["drift_epoch"], 24.0) == drift_bucket(first["drift_epoch"], 24.0) + 2


def _run_now_and_report(store: str, job_id: str, barrier, out) -> None:
    p = LocalProvider(LocalSettings(store=Path(store)))
    barrier.wait()  # all at once, as array tasks on several nodes would
    assert p.run_now(job_id) is JobState.DONE
    out.put(json.loads((p.jobs_dir / f"{job_id}.json").read_text())["simulated_on"])


def test_run_now_from_many_processes_simulates_a_job_once(tmp_path, isa_file):
    """Cluster rehearsals: several hosts may ask for one job; the per-job lock lets one simulate."""
    import multiprocessing

    p = provider(tmp_path, queue_seconds=86400)  # would stay queued for a day
    job = submit(p, isa_file)
    assert p.statuses([job])[job].state is JobState.QUEUED
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_run_now_and_report, args=(str(p.settings.store), job, barrier, out))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    seen = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert len(set(seen)) == 1, f"simulated more than once: {seen}"
    assert p.fetch(job).registers(0)["b"].mean() > 0.9  # b is prepared in |1>; noise flips a few
