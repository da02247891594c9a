"""A circuit whose noiseless outcome is wrong is never submitted (issue 3, preflight)."""

from __future__ import annotations

from pathlib import Path

import pytest
from qiskit import qpy
from qiskit.circuit import CircuitInstruction
from qiskit.circuit.library import CXGate, HGate

from qpuflow.circuits import memory_experiment
from qpuflow.stages import PreflightError, require_preflight
from qpuflow.backends import load_backend
from qpuflow.transpile import transpile_isa
from tests.conftest import provider_jobs, snakemake

pytestmark = pytest.mark.slow


def flip_first_cnot(circuit):
    """Swap control and target of the first CX (a classic wiring bug); in a native circuit,
    which has only CZ, write the first CZ as a CX (the wrong entangler)."""
    broken = circuit.copy()
    for i, inst in enumerate(broken.data):
        if inst.operation.name == "cx":
            broken.data[i] = inst.replace(qubits=inst.qubits[::-1])
            return broken
        if inst.operation.name == "cz":
            broken.data[i] = inst.replace(operation=CXGate())
            return broken
    raise AssertionError("no cx or cz found")


def wrong_basis_readout(circuit):
    """Put an H before the first data-qubit readout: measuring in the wrong basis."""
    broken = circuit.copy()
    data = next(c for c in broken.cregs if c.name == "data")
    for i, inst in enumerate(broken.data):
        if inst.operation.name == "measure" and inst.clbits[0] in set(data):
            broken.data.insert(i, CircuitInstruction(HGate(), inst.qubits))
            return broken
    raise AssertionError("no data measurement found")


@pytest.mark.parametrize("breaker", [flip_first_cnot, wrong_basis_readout])
def test_gate_catches_broken_circuits(breaker):
    circuit, _ = memory_experiment("surface_code", distance=3, rounds=2, logical_state="0", name="x")
    backend = load_backend("fake_fez")
    require_preflight(transpile_isa(circuit, backend, seed=1), "ok/run", stage="ISA")  # the real one passes
    with pytest.raises(PreflightError, match=r"bad/run: .*(detector|observable) \d+"):
        require_preflight(transpile_isa(breaker(circuit), backend, seed=1), "bad/run", stage="ISA")


def _build_circuits(study: Path) -> None:
    snakemake(study, "results/circuits/sc/L0_rep0.qpy")


@pytest.mark.parametrize("breaker", [flip_first_cnot, wrong_basis_readout])
def test_workflow_stops_a_broken_circuit_before_submission(study: Path, breaker):
    _build_circuits(study)
    path = study / "results" / "circuits" / "sc" / "L0_rep0.qpy"
    with open(path, "rb") as fh:
        (circuit,) = qpy.load(fh)
    with open(path, "wb") as fh:
        qpy.dump(breaker(circuit), fh)
    proc = snakemake(study, "submit", check=False)
    assert proc.returncode != 0
    assert "sc/L0_rep0: the transpiled circuit fails the noiseless preflight check" in proc.all
    assert not (study / "results" / "submitted" / "sc" / "L0_rep0.json").exists()
    assert not [j for j in provider_jobs(study) if "run:L0_rep0" in j["tags"]]


def test_a_changed_isa_file_is_not_submitted(study: Path):
    snakemake(study, "results/isa/fake_fez/sc/L0_rep0.qpy")
    path = study / "results" / "isa" / "fake_fez" / "sc" / "L0_rep0.qpy"
    with open(path, "rb") as fh:
        (isa,) = qpy.load(fh)
    isa.metadata = {**isa.metadata, "edited": True}
    with open(path, "wb") as fh:
        qpy.dump(isa, fh)
    proc = snakemake(study, "submit", check=False)
    assert proc.returncode != 0 and "changed after it was transpiled" in proc.all
    assert not [j for j in provider_jobs(study) if "run:L0_rep0" in j["tags"]]
