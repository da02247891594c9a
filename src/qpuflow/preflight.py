"""The noiseless check every circuit passes before it may be submitted: each detector is
deterministically 0 and each observable deterministically its expected value.

For Clifford circuits the check is exact (stim's error analysis of the noiseless translation
with the detectors and observables attached); other circuits are sampled noiselessly with Aer.
"""

from __future__ import annotations

import numpy as np
import stim
from qiskit.circuit import QuantumCircuit

from qpuflow.measurement_map import MeasurementMap, detection_events, records_from_registers
from qpuflow.simulate import sample_aer
from qpuflow.measurement_map import measurement_map_of
from qpuflow.stim_noise import stim_translation
from qpuflow.transpile import NonCliffordError

_PREFLIGHT_SHOTS = 256


def _describe(kind: str, j: int, indices, mmap: MeasurementMap) -> str:
    return f"{kind} {j} (records {mmap.describe_records(indices)})"


def preflight_check(isa: QuantumCircuit, backend=None) -> list[str]:
    """Check that the noiseless circuit gives every detector 0 and every observable its ideal value.

    For Clifford circuits the check is exact: the noiseless stim translation gets the
    detectors and observables of ``isa.metadata["measurement_map"]`` attached (through the
    classical bits, so a reordered measurement is handled), stim's error analysis lists every
    detector or observable that a random measurement outcome can flip (non-deterministic),
    and stim's reference sample gives the value of the deterministic ones. Non-Clifford
    circuits are sampled noiselessly with Aer (256 shots) instead.

    Args:
        isa: transpiled circuit whose metadata holds the measurement map.
        backend: unused for Clifford circuits; accepted so callers need not care.

    Returns:
        Human-readable problems; empty means the circuit may be submitted.
    """
    try:
        mmap = measurement_map_of(isa)
    except ValueError as exc:
        return [str(exc)]
    problems = _register_problems(isa, mmap)
    if problems:
        return problems

    try:
        tr = stim_translation(isa, None, noise_scale=0.0)
    except NonCliffordError:
        return _preflight_sampled(isa, mmap)

    rec = []
    for k, (name, bit) in enumerate(mmap.record):
        if (name, bit) not in tr.clbit_records:
            problems.append(f"record {k} ({name}[{bit}]) is never measured in the circuit")
        rec.append(tr.clbit_records.get((name, bit)))
    if problems:
        return problems

    n = tr.num_measurements
    lines = [tr.text]
    groups = [("detector", j, d) for j, d in enumerate(mmap.detectors)] + [
        ("observable", j, o) for j, o in enumerate(mmap.observables)
    ]
    # Observables are attached as extra detectors: stim refuses to analyse a circuit with a
    # non-deterministic observable, but reports gauge detectors when asked to.
    for _, _, idx in groups:
        lines.append("DETECTOR " + " ".join(f"rec[{rec[i] - n}]" for i in idx))
    circuit = stim.Circuit("\n".join(lines))
    dem = circuit.detector_error_model(allow_gauge_detectors=True)
    random = set()
    for inst in dem.flattened():
        if inst.type == "error":
            for t in inst.targets_copy():
                if t.is_relative_detector_id():
                    random.add(t.val)
    ref = circuit.reference_sample()
    for d, (kind, j, idx) in enumerate(groups):
        label = _describe(kind, j, idx, mmap)
        if d in random:
            problems.append(f"{label} is not deterministic")
            continue
        value = int(np.bitwise_xor.reduce(ref[[rec[i] for i in idx]])) if idx else 0
        want = 0 if kind == "detector" else mmap.expected_observables[j]
        if value != want:
            if kind == "detector":
                problems.append(f"{label} is always 1 but must be 0")
            else:
                problems.append(f"{label} is {value} but the prepared state needs {want}")
    return problems


def _register_problems(isa: QuantumCircuit, mmap: MeasurementMap) -> list[str]:
    """The measurement map's registers that the circuit lacks or has at another size."""
    regs = {c.name: c.size for c in isa.cregs}
    return [f"register {name!r} of the measurement map ({size} bits) is "
            f"{'missing' if name not in regs else f'{regs[name]} bits'} in the circuit"
            for name, size in mmap.registers if regs.get(name) != size]

def _preflight_sampled(isa: QuantumCircuit, mmap: MeasurementMap) -> list[str]:
    # Aer gives samples, not an analysis: a random detector is caught with probability
    # 1 - 2^-(shots-1), which is certainty for practical purposes.
    regs = sample_aer(isa, None, shots=_PREFLIGHT_SHOTS, seed=1234, noise_scale=0)
    dets = detection_events(regs, mmap)
    problems = []
    for j, d in enumerate(mmap.detectors):
        col = dets[:, j]
        if col.any():
            what = "is not deterministic" if not col.all() else "is always 1 but must be 0"
            problems.append(f"{_describe('detector', j, d, mmap)} {what}")
    records = records_from_registers(regs, mmap)
    for j, o in enumerate(mmap.observables):
        col = np.bitwise_xor.reduce(records[:, list(o)], axis=1) if o else np.zeros(len(records), bool)
        want = mmap.expected_observables[j]
        if not (col == want).all():
            got = "random" if col.any() and not col.all() else str(int(col[0]))
            problems.append(
                f"{_describe('observable', j, o, mmap)} is {got} but the prepared state needs {want}"
            )
    return problems

