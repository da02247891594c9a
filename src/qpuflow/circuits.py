"""QEC memory circuits: generated in stim (its generators are the reference for detector and
observable definitions), then converted to Qiskit with a measurement map
(:mod:`qpuflow.stim_qiskit`, :mod:`qpuflow.measurement_map`).
"""

from __future__ import annotations


import numpy as np
import stim
from qiskit.circuit import QuantumCircuit

from qpuflow.measurement_map import MeasurementMap
from qpuflow.stim_qiskit import MEASURE_OPS, stim_to_qiskit

__all__ = ["LOGICAL_STATES", "CODE_KINDS", "memory_circuit", "memory_experiment", "expected_observables_for_state"]

LOGICAL_STATES = ("0", "1", "+", "-")
CODE_KINDS = ("surface_code", "repetition_code")


# --------------------------------------------------------------------------------------
# stim circuit generation
# --------------------------------------------------------------------------------------


def _check_memory_args(kind: str, distance: int, rounds: int, logical_state: str) -> None:
    if kind not in CODE_KINDS:
        raise ValueError(f"unknown code kind {kind!r}; use one of {', '.join(CODE_KINDS)}")
    if logical_state not in LOGICAL_STATES:
        raise ValueError(
            f"unknown logical state {logical_state!r}; use one of {', '.join(LOGICAL_STATES)}"
        )
    if kind == "repetition_code" and logical_state not in ("0", "1"):
        raise ValueError(
            f"logical state {logical_state!r} is not available for repetition_code: it only "
            "protects against bit flips, so only '0' and '1' are meaningful; use surface_code "
            "for '+' and '-'"
        )
    if isinstance(distance, bool) or not isinstance(distance, int):
        raise ValueError(f"distance must be an int, got {distance!r}")
    if distance < 3 or distance % 2 == 0:
        raise ValueError(
            f"distance must be odd and >= 3, got {distance}: the logical state is prepared "
            "with a transversal X/Z, which flips the logical observable only for odd distance"
        )
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")


def expected_observables_for_state(logical_state: str) -> tuple[int, ...]:
    """Ideal value of the (single) logical observable for a prepared state.

    Args:
        logical_state: one of :data:`LOGICAL_STATES`.

    Returns:
        ``(0,)`` for ``"0"`` and ``"+"``, ``(1,)`` for ``"1"`` and ``"-"``.

    >>> expected_observables_for_state("-")
    (1,)
    """
    if logical_state not in LOGICAL_STATES:
        raise ValueError(
            f"unknown logical state {logical_state!r}; use one of {', '.join(LOGICAL_STATES)}"
        )
    return (1,) if logical_state in ("1", "-") else (0,)


def _last_measurement(flat: stim.Circuit) -> stim.CircuitInstruction:
    for inst in reversed(flat):
        if inst.name in MEASURE_OPS:
            return inst
    raise ValueError("circuit has no measurement")


def uniform_model_noise(p: float) -> dict[str, float]:
    """stim's uniform circuit-level depolarizing model at ``p``, as ``stim.Circuit.generated``
    arguments: DEPOLARIZE2(p) after every CX and DEPOLARIZE1(p) after every H, DEPOLARIZE1(p)
    on the data qubits before every round, X_ERROR(p) before measurements and after resets.
    The literature's "uniform p" (e.g. the d = 3/5/7 rates 0.0008/0.00014/0.00002 at p = 1e-3)."""
    return dict(after_clifford_depolarization=p, before_round_data_depolarization=p,
                before_measure_flip_probability=p, after_reset_flip_probability=p)


def memory_circuit(kind: str, *, distance: int, rounds: int, logical_state: str,
                   uniform_p: float | None = None) -> stim.Circuit:
    """Stim memory experiment for one logical basis state, noiseless unless ``uniform_p``.

    Args:
        kind: ``"surface_code"`` (rotated, Z memory for ``0``/``1``, X memory for ``+``/``-``)
            or ``"repetition_code"`` (only ``0``/``1``).
        distance: code distance, odd and at least 3.
        rounds: number of syndrome-extraction rounds, at least 1.
        logical_state: one of :data:`LOGICAL_STATES`.
        uniform_p: add stim's uniform circuit-level noise at this p (:func:`uniform_model_noise`).

    Returns:
        The stim circuit with detectors and one observable whose ideal value is 1 for
        ``"1"``/``"-"`` and 0 otherwise. No noise instructions unless ``uniform_p`` is given.

    Raises:
        ValueError: unknown kind or state, even or too-small distance, rounds < 1.
    """
    _check_memory_args(kind, distance, rounds, logical_state)
    if kind == "surface_code":
        basis = "z" if logical_state in ("0", "1") else "x"
        task = f"surface_code:rotated_memory_{basis}"
    else:
        task = "repetition_code:memory"
    noise = uniform_model_noise(uniform_p) if uniform_p else {}
    base = stim.Circuit.generated(task, distance=distance, rounds=rounds, **noise)
    flip = {"1": "X", "-": "Z"}.get(logical_state)
    if flip is None:
        return base

    # X (Z) on every data qubit is a transversal logical X (Z): every stabilizer of the
    # opposite type overlaps the data qubits an even number of times, so no detector changes,
    # while the logical observable (weight d along a boundary) flips because d is odd.
    # Applying it right after the reset layer prepares |1> (|->) from stim's |0> (|+>).
    data = sorted(t.value for t in _last_measurement(base.flattened()).targets_copy())
    out = stim.Circuit()
    inserted = False
    for inst in base:
        # (the reset layer includes the X_ERROR after the resets of the noisy model)
        in_reset_layer = isinstance(inst, stim.CircuitInstruction) and inst.name in (
            "QUBIT_COORDS",
            "R",
            "RX",
            "X_ERROR",
            "Z_ERROR",
        )
        if not inserted and not in_reset_layer:
            out.append(flip, data)
            inserted = True
        out.append(inst)
    if not inserted:
        raise ValueError(f"stim's {task} circuit has no gates after its reset layer")
    return out


def memory_experiment(
    kind: str, *, distance: int, rounds: int, logical_state: str, name: str = "qec"
) -> tuple[QuantumCircuit, MeasurementMap]:
    """Build a memory experiment as a Qiskit circuit with its measurement map.

    Args:
        kind: see :func:`memory_circuit`.
        distance: see :func:`memory_circuit`.
        rounds: see :func:`memory_circuit`.
        logical_state: see :func:`memory_circuit`.
        name: name of the Qiskit circuit.

    Returns:
        ``(qc, mmap)`` as from :func:`stim_to_qiskit`, with ``expected_observables`` set from
        the prepared state and ``qc.metadata["experiment"]`` describing the experiment.

    Raises:
        ValueError: bad arguments, or stim's noiseless reference disagrees with the prepared
            state (a bug in the state preparation, never silently accepted).
    """
    stim_circuit = memory_circuit(kind, distance=distance, rounds=rounds, logical_state=logical_state)
    expected = expected_observables_for_state(logical_state)
    qc, mmap = stim_to_qiskit(stim_circuit, expected_observables=expected, name=name)
    ref = stim_circuit.reference_sample()
    got = tuple(int(np.bitwise_xor.reduce(ref[list(o)])) for o in mmap.observables)
    if got != expected:
        raise ValueError(
            f"{kind} d={distance} state {logical_state!r}: stim's noiseless observable is {got} "
            f"but the state needs {expected}; the state preparation is wrong"
        )
    qc.metadata["experiment"] = {
        "kind": kind,
        "distance": distance,
        "rounds": rounds,
        "logical_state": logical_state,
    }
    return qc, mmap
