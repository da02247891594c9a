"""Noisy and noiseless sampling of ISA circuits, with noise taken from a backend's calibration.

Three paths produce the same output format (register name -> ``(shots, num_bits)`` bools,
column ``i`` = clbit ``i``, like SamplerV2's ``BitArray.to_bool_array(order="little")``):

* **product** (noisy circuits without any instruction on two or more qubits, barriers
  aside, e.g. readout and T1 probes): every measured qubit is simulated on its own with
  Aer and the backend's full noise model restricted to that qubit (depolarizing plus
  thermal relaxation on gates, thermal relaxation on ``delay`` through Aer's
  ``RelaxationNoisePass``, readout error), and the per-qubit samples are put back into the
  registers. Without two-qubit gates (and with no crosstalk in the model) the qubits are
  independent, so this is exact in distribution, and a qubit left waiting in |1> really
  decays to |0> (stim's Pauli twirl of the same decay would go to 1/2).
* **stim** (other Clifford ISA circuits, the default): the circuit is written as one stim
  program with a Pauli noise model derived from ``backend.target``
  (:mod:`qpuflow.stim_noise`). Sampling 4096 shots of a d=3 surface code takes milliseconds.
* **Aer** (anything else, e.g. rz(0.3) next to a cz): ``NoiseModel.from_backend`` on the
  qubits the circuit uses. It includes thermal relaxation, is exact for any circuit and
  far slower.

``noise_scale`` multiplies error probabilities on the stim path; on the Aer and product
paths it scales the Target instead (:func:`qpuflow.device_state.scaled_target`: errors times
the scale, T1 and T2 divided by it), which is the same to first order. A drifted device is a
:class:`~qpuflow.backends.TargetBackend` around :mod:`qpuflow.device_state`'s targets; the
noiseless check before submission is :mod:`qpuflow.preflight`.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import stim
from qiskit.circuit import ClassicalRegister, ControlFlowOp, QuantumCircuit

from qpuflow.circuits import memory_circuit
from qpuflow.measurement_map import detection_events, observable_flips, registers_from_records
from qpuflow.device_state import sub_target
from qpuflow.measurement_map import measurement_map_of
from qpuflow.stim_noise import (apply_readout, registers_from_samples, schedule_alap,
                                stim_translation)
from qpuflow.backends import TargetBackend, readout_pairs
from qpuflow.transpile import NonCliffordError, active_qubits, check_clifford_isa

__all__ = ["sample_isa", "sample_aer", "is_product_circuit", "uniform_model_circuit", "uniform_model_from"]


# --------------------------------------------------------------------------------------
# Aer: whole circuit, or one qubit at a time
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _noise_model(backend, physical: tuple[int, ...], scale: float = 1.0, readout: bool = True):
    from qiskit_aer.noise import NoiseModel

    # NoiseModel.from_backend on all 156 FakeFez qubits takes ~7 s and makes every run slow;
    # restricted to the qubits the circuit touches it is immediate.
    factors = {p: scale for p in physical} if scale != 1.0 else None
    sub = TargetBackend(sub_target(backend.target, physical, factors), f"{backend.name}-sub")
    return NoiseModel.from_backend(sub, readout_error=readout)


def _compact_circuit(isa: QuantumCircuit, physical: tuple[int, ...]) -> QuantumCircuit:
    index = {p: i for i, p in enumerate(physical)}
    qidx = {q: i for i, q in enumerate(isa.qubits)}
    out = QuantumCircuit(len(physical), name=isa.name)
    for creg in isa.cregs:
        out.add_register(creg)
    for inst in isa.data:
        qs = [qidx[q] for q in inst.qubits]
        if inst.operation.name == "barrier":
            qs = [q for q in qs if q in index]
            if not qs:
                continue
        elif any(q not in index for q in qs):
            continue  # delays on idle qubits
        out.append(inst.operation, [out.qubits[index[q]] for q in qs], inst.clbits)
    return out


def _need_backend(backend) -> None:
    if backend is None:
        raise ValueError("a backend is needed for noise; pass one or use noise_scale=0")


def sample_aer(
    isa: QuantumCircuit, backend, *, shots: int, seed: int | None, noise_scale: float
) -> dict[str, np.ndarray]:
    from qiskit_aer.primitives import SamplerV2

    physical = tuple(active_qubits(isa)) or (0,)
    small = _compact_circuit(isa, physical)
    options: dict[str, Any] = {}
    if noise_scale > 0:
        _need_backend(backend)
        options["backend_options"] = {"noise_model": _noise_model(backend, physical, float(noise_scale))}
    result = SamplerV2(seed=seed, options=options).run([small], shots=shots).result()
    data = result[0].data
    return {creg.name: np.asarray(data[creg.name].to_bool_array(order="little"), dtype=bool) for creg in isa.cregs}


def is_product_circuit(circuit: QuantumCircuit) -> bool:
    """True if no instruction but a barrier acts on two or more qubits (and there is no control flow).

    Such a circuit's qubits evolve independently, so they can be simulated one at a time.

    >>> qc = QuantumCircuit(2, 2)
    >>> _ = qc.x(0), qc.barrier(), qc.measure([0, 1], [0, 1])
    >>> is_product_circuit(qc)
    True
    >>> _ = qc.cz(0, 1)
    >>> is_product_circuit(qc)
    False
    """
    for inst in circuit.data:
        op = inst.operation
        if op.name == "barrier":
            continue
        if isinstance(op, ControlFlowOp) or len(inst.qubits) != 1:
            return False
    return True


def _qubit_seed(seed: int | None, physical: int) -> int | None:
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed) % 2**63, physical]).generate_state(1)[0] >> 1)


def _sample_product(
    isa: QuantumCircuit, backend, *, shots: int, seed: int | None, noise_scale: float, idle_noise: bool
) -> dict[str, np.ndarray]:
    from qiskit_aer.primitives import SamplerV2

    _need_backend(backend)
    pairs = readout_pairs(backend)
    if idle_noise and not any(i.operation.name == "delay" for i in isa.data):
        isa = schedule_alap(isa, backend.target)
    qidx = {q: i for i, q in enumerate(isa.qubits)}
    # One single-qubit circuit per measured qubit; measurement k of a qubit goes to its bit k.
    ops: dict[int, list] = {}
    meas_count: dict[int, int] = {}
    writer: dict[Any, tuple[int, int]] = {}  # clbit -> (qubit, k) of its last measurement
    for inst in isa.data:
        if inst.operation.name == "barrier":
            continue
        p = qidx[inst.qubits[0]]
        ops.setdefault(p, []).append(inst.operation)
        if inst.operation.name == "measure":
            k = meas_count.get(p, 0)
            meas_count[p] = k + 1
            writer[inst.clbits[0]] = (p, k)
    samples: dict[int, np.ndarray] = {}
    for p in sorted(meas_count):
        creg = ClassicalRegister(meas_count[p], "m")
        qc = QuantumCircuit(1, name=f"{isa.name}-q{p}")
        qc.add_register(creg)
        k = 0
        for op in ops[p]:
            if op.name == "measure":
                qc.append(op, [0], [creg[k]])
                k += 1
            else:
                qc.append(op, [0])
        # Density matrix: a 1-qubit state, no per-shot trajectories of the noise (~3x faster
        # than statevector here). Shot branching is off: it dropped readout errors when tried.
        options = {"backend_options": {
            "noise_model": _noise_model(backend, (p,), float(noise_scale), readout=pairs is None),
            "method": "density_matrix",
        }}
        result = SamplerV2(seed=_qubit_seed(seed, p), options=options).run([qc], shots=shots).result()
        samples[p] = np.asarray(result[0].data["m"].to_bool_array(order="little"), dtype=bool)
        if pairs is not None:  # the qubit's asymmetric readout, on the recorded bits
            seed_p = None if seed is None else _qubit_seed(seed, p)
            samples[p] = apply_readout(samples[p], (p,) * meas_count[p], pairs, scale=noise_scale, seed=seed_p)
    out = {}
    for creg in isa.cregs:
        arr = np.zeros((shots, creg.size), dtype=bool)
        for b, clbit in enumerate(creg):
            if clbit in writer:
                p, k = writer[clbit]
                arr[:, b] = samples[p][:, k]
        out[creg.name] = arr
    return out


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def _check_shots(shots: int) -> None:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be an int >= 1, got {shots!r}")


_METHODS = ("auto", "product", "stim", "aer")


def sample_isa(
    isa: QuantumCircuit,
    backend,
    *,
    shots: int,
    seed: int | None = None,
    noise_scale: float = 1.0,
    idle_noise: bool = False,
    method: str = "auto",
) -> dict[str, np.ndarray]:
    """Sample an ISA circuit with the backend's noise.

    With ``method="auto"``: a noisy circuit without multi-qubit instructions
    (:func:`is_product_circuit`) is sampled qubit by qubit with Aer and the full noise
    model (thermal relaxation on gates and on every ``delay``, so a waiting |1> decays to
    |0>); other Clifford circuits go through stim (see :func:`qpuflow.stim_noise.stim_translation` for the
    noise model); anything else through Aer with ``NoiseModel.from_backend`` restricted to
    the used qubits. A noiseless circuit is never sampled qubit by qubit.

    Args:
        isa: transpiled circuit.
        backend: ``BackendV2`` whose ``target`` supplies the noise (may be ``None`` when
            ``noise_scale == 0``). To simulate a drifted device, pass a
            :class:`~qpuflow.backends.TargetBackend` around :func:`qpuflow.device_state.drifted_target`.
        shots: number of shots.
        seed: makes the result reproducible (same versions and machine).
        noise_scale: multiplies every error probability (stim), or scales the Target
            (Aer and product paths, :func:`qpuflow.device_state.scaled_target`); 0 is noiseless.
        idle_noise: add T1/T2 noise on idle periods: the circuit is scheduled ALAP if it
            has no delays. On the stim path delays are noiseless without it; on the product
            path explicit delays always relax; the whole-circuit Aer path ignores it.
        method: ``"auto"``, or force ``"product"`` (needs a product circuit and noise),
            ``"stim"`` (needs a Clifford circuit) or ``"aer"``.

    Returns:
        Register name -> bool array ``(shots, num_bits)``, column ``i`` = clbit ``i``;
        clbits never measured read 0, as on hardware.

    Raises:
        ValueError: bad shots, noise_scale or method, noise asked for without a backend, or
            a forced method that does not apply.
        NonCliffordError: ``method="stim"`` on a non-Clifford circuit.
    """
    _check_shots(shots)
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}; got {method!r}")
    shots = int(shots)
    uniform = uniform_model_circuit(isa, backend, noise_scale=noise_scale) if method == "auto" else None
    if uniform is not None:
        records = _compile_and_sample(uniform, seed=seed, shots=shots)
        return registers_from_records(records, measurement_map_of(isa))
    if method == "product" or (method == "auto" and noise_scale > 0 and is_product_circuit(isa)):
        if not is_product_circuit(isa):
            raise ValueError("method='product' needs a circuit without multi-qubit instructions or control flow")
        if noise_scale == 0:
            raise ValueError("method='product' is for noisy sampling; use noise_scale > 0")
        return _sample_product(isa, backend, shots=shots, seed=seed, noise_scale=noise_scale, idle_noise=idle_noise)
    if method == "aer":
        return sample_aer(isa, backend, shots=shots, seed=seed, noise_scale=noise_scale)
    # The device's asymmetric readout (P(0|1) about 3x P(1|0) on Heron) instead of the Target's
    # mean, when the backend reports it: sampled with noiseless readout, recorded bits flipped.
    pairs = readout_pairs(backend) if backend is not None and noise_scale > 0 else None
    flips = pairs is None
    if method == "auto":
        # stim_translation checks the circuit while it walks it (a separate
        # check_clifford_isa would cost as much as the translation); only idle noise without
        # a backend is refused before the circuit is looked at, so check first there.
        try:
            if idle_noise and backend is None:
                check_clifford_isa(isa)
            tr = stim_translation(isa, backend, noise_scale=noise_scale, idle_noise=idle_noise, readout_flips=flips)
        except NonCliffordError:
            try:
                check_clifford_isa(isa)
            except NonCliffordError:
                return sample_aer(isa, backend, shots=shots, seed=seed, noise_scale=noise_scale)
            raise  # a Clifford ISA instruction stim_translation cannot write
    else:
        tr = stim_translation(isa, backend, noise_scale=noise_scale, idle_noise=idle_noise, readout_flips=flips)
    samples = _compile_and_sample(tr.circuit(), seed=seed, shots=shots)
    if pairs is not None:
        samples = apply_readout(samples, tr.measured_qubits, pairs, scale=noise_scale, seed=seed)
    return registers_from_samples(isa, samples, tr.clbit_records)


def uniform_model_circuit(isa: QuantumCircuit, backend, *, noise_scale: float = 1.0) -> stim.Circuit | None:
    """stim's uniform circuit-level model of ``isa``'s memory experiment, for a
    :class:`~qpuflow.backends.UniformNoiseBackend` (see there); None for any other backend,
    for a noiseless run, and for circuits that are not a generated memory experiment.

    The measurement record of the returned circuit is the logical circuit's, so
    :func:`~qpuflow.measurement_map.registers_from_records` turns its samples into the ISA circuit's
    registers. Idle noise is part of the model (data depolarization before each round).
    """
    from qpuflow.backends import UniformNoiseBackend

    experiment = (isa.metadata or {}).get("experiment")
    if not isinstance(backend, UniformNoiseBackend) or noise_scale == 0 or backend.p == 0 or not experiment:
        return None
    model = uniform_model_from(experiment, backend.p * noise_scale)
    if model is None or not _is_unaltered_experiment(isa, model):
        return None
    return model


def _is_unaltered_experiment(isa: QuantumCircuit, model: stim.Circuit) -> bool:
    """True when ``isa`` is its experiment's circuit without SWAPs and, run without noise,
    fires no detector and reads the prepared logical value, so that the uniform model
    describes it (a circuit with an injected fault, or a routed one, is simulated as it is)."""
    cx = model.num_measurements and sum(len(i.targets_copy()) // 2 for i in model.flattened() if i.name == "CX")
    if isa.count_ops().get("cz", 0) != cx:
        return False
    mmap = measurement_map_of(isa)
    tr = stim_translation(isa, None, noise_scale=0)
    reference = registers_from_samples(isa, tr.circuit().reference_sample()[None, :], tr.clbit_records)
    return not detection_events(reference, mmap).any() and not observable_flips(reference, mmap).any()


def uniform_model_from(experiment: Mapping[str, Any], p: float) -> stim.Circuit | None:
    """The noisy generated circuit of an ISA's ``metadata["experiment"]`` at uniform ``p``
    (None for experiments stim does not generate, such as native heavy-hex layouts)."""
    if experiment.get("kind") not in ("surface_code", "repetition_code") or experiment.get("layout", "routed") != "routed":
        return None
    return memory_circuit(experiment["kind"], distance=int(experiment["distance"]), rounds=int(experiment["rounds"]),
                          logical_state=str(experiment["logical_state"]), uniform_p=min(p, 0.5))


_STIM_FIRST_USE = threading.Lock()
_stim_ready = False


def _compile_and_sample(circuit: Any, *, seed: int, shots: int) -> np.ndarray:
    """``circuit.compile_sampler(seed).sample(shots)``, the process's first call alone.

    stim imports Python modules lazily from inside its C++ code on first use; two threads doing
    that at once (two `simulate_local_job` rules in one Snakemake process with --cores 2)
    deadlock, one holding the GIL and the other the import. After the first call it is safe.
    """
    global _stim_ready
    if not _stim_ready:
        with _STIM_FIRST_USE:
            if not _stim_ready:
                samples = circuit.compile_sampler(seed=seed).sample(shots)
                _stim_ready = True
                return samples
    return circuit.compile_sampler(seed=seed).sample(shots)


