"""Delays keep their duration through QPY files and transpilation (QPY drops a Delay's unit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit, qpy

from qpuflow.qpyio import DelayError, check_isa_delays, delays_of, dump_circuit, load_circuit


def waiting_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.x([0, 1])
    qc.delay(50, 0, unit="us")
    qc.delay(2.5, 1, unit="ms")
    qc.delay(300, 0, unit="ns")
    qc.delay(17, 1)  # dt
    qc.measure([0, 1], [0, 1])
    return qc


def test_plain_qpy_drops_the_unit_and_ours_does_not(tmp_path: Path):
    qc = QuantumCircuit(1)
    qc.delay(50, 0, unit="us")
    with open(tmp_path / "plain.qpy", "wb") as fh:
        qpy.dump(qc, fh)
    with open(tmp_path / "plain.qpy", "rb") as fh:
        (plain,) = qpy.load(fh)
    assert delays_of(plain) == [[0, 50, "dt"]], "the bug this module exists for: 50 us read back as 50 dt"
    dump_circuit(tmp_path / "ours.qpy", waiting_circuit())
    back = load_circuit(tmp_path / "ours.qpy")
    assert [(d, u) for _, d, u in delays_of(back)] == [(50, "us"), (2.5, "ms"), (300, "ns"), (17, "dt")]


def test_the_transpiled_probe_waits_as_asked(fez, tmp_path: Path):
    from qpuflow.transpile import transpile_isa

    dump_circuit(tmp_path / "logical.qpy", waiting_circuit())
    logical = load_circuit(tmp_path / "logical.qpy")
    isa = transpile_isa(logical, fez, seed=1, initial_layout=[3, 4])
    seconds = check_isa_delays(logical, isa, fez.target.dt, run="x/y")
    assert np.allclose(sorted(seconds), sorted([50e-6, 2.5e-3, 300e-9, 17 * fez.target.dt]), rtol=0, atol=fez.target.dt)
    dump_circuit(tmp_path / "isa.qpy", isa)
    again = load_circuit(tmp_path / "isa.qpy")
    assert check_isa_delays(logical, again, fez.target.dt, run="x/y") == seconds


def test_an_isa_circuit_that_waits_too_short_is_refused(fez, tmp_path: Path):
    from qpuflow.transpile import transpile_isa

    logical = QuantumCircuit(1, 1)
    logical.x(0)
    logical.delay(50, 0, unit="us")
    logical.measure(0, 0)
    with open(tmp_path / "plain.qpy", "wb") as fh:
        qpy.dump(logical, fh)
    with open(tmp_path / "plain.qpy", "rb") as fh:
        (unit_lost,) = qpy.load(fh)  # what the pipeline did before: 50 us became 50 dt
    isa = transpile_isa(unit_lost, fez, seed=1, initial_layout=[3])
    with pytest.raises(DelayError, match="x/y: a delay of 50.000 us was asked for"):
        check_isa_delays(logical, isa, fez.target.dt, run="x/y")
    assert check_isa_delays(logical, transpile_isa(logical, fez, seed=1, initial_layout=[3]), fez.target.dt,
                            run="x/y") == pytest.approx([50e-6])


def test_a_file_whose_delays_disagree_with_its_record_is_refused(tmp_path: Path):
    qc = QuantumCircuit(1, 1)
    qc.delay(40, 0)
    qc.delay(8, 0)
    qc.metadata = {"qpuflow_delays": [[0, 40, "dt"]]}  # a record that lists one delay of two
    with open(tmp_path / "bad.qpy", "wb") as fh:
        qpy.dump(qc, fh)
    with pytest.raises(DelayError, match="not where its record says"):
        load_circuit(tmp_path / "bad.qpy")
    qc.metadata = {"qpuflow_delays": [[0, 40, "dt"], [1, 9, "dt"]]}  # a duration edited since
    with open(tmp_path / "bad.qpy", "wb") as fh:
        qpy.dump(qc, fh)
    with pytest.raises(DelayError, match="delay 1 is stored as 8"):
        load_circuit(tmp_path / "bad.qpy")
