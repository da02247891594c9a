"""A textbook uniform circuit-level noise model on a logical stim circuit, and its detector
error model: the baseline decoder, which needs nothing but the circuit, and the fallback when
no calibration was saved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import stim


_PASS_THROUGH = frozenset({"DETECTOR", "OBSERVABLE_INCLUDE", "QUBIT_COORDS", "SHIFT_COORDS", "MPAD"})
# Pauli that flips the outcome of a measurement (or the state of a reset) in each basis.
_FLIP = {
    "R": "X_ERROR", "RZ": "X_ERROR", "M": "X_ERROR", "MZ": "X_ERROR", "MR": "X_ERROR", "MRZ": "X_ERROR",
    "RX": "Z_ERROR", "MX": "Z_ERROR", "MRX": "Z_ERROR",
    "RY": "X_ERROR", "MY": "X_ERROR", "MRY": "X_ERROR",
}
_RESETS = frozenset({"R", "RZ", "RX", "RY"})
_MEASUREMENTS = frozenset({"M", "MZ", "MX", "MY"})
_MEASURE_RESETS = frozenset({"MR", "MRZ", "MRX", "MRY"})
_MAX_UNIFORM_P = 0.5


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 <= p <= _MAX_UNIFORM_P:
        raise ValueError(f"noise strength p must be a number in [0, {_MAX_UNIFORM_P}], got {p!r}")
    return float(p)


def _qubit_targets(inst: stim.CircuitInstruction) -> list[int]:
    out = []
    for t in inst.targets_copy():
        if not t.is_qubit_target:
            raise ValueError(
                f"with_uniform_noise supports plain qubit targets only; {inst} has target {t!r}"
            )
        out.append(t.value)
    return out


def _used_qubits(flat: stim.Circuit) -> list[int]:
    used = set()
    for inst in flat:
        if inst.name in _PASS_THROUGH or inst.name == "TICK" or _is_noise_channel(stim.gate_data(inst.name)):
            continue  # an existing noise channel does not make a qubit part of the code
        used.update(t.value for t in inst.targets_copy() if t.is_qubit_target)
    return sorted(used)


def _is_noise_channel(data: stim.GateData) -> bool:
    # Measurements also take a probability argument (is_noisy_gate), but they are not noise.
    return data.is_noisy_gate and not data.produces_measurements


def _noisy(flat: stim.Circuit, p: float, qubits: Sequence[int]) -> stim.Circuit:
    out = stim.Circuit()
    touched: set[int] = set()

    def end_layer() -> None:
        # A layer that did nothing (only annotations) is not a time step; otherwise every
        # qubit the layer left alone waits for the layer's duration.
        if touched:
            idle = [q for q in qubits if q not in touched]
            if idle:
                out.append("DEPOLARIZE1", idle, p)
        touched.clear()

    for inst in flat:
        name = inst.name
        if name == "TICK":
            end_layer()
            out.append(inst)
            continue
        data = stim.gate_data(name)
        if name in _PASS_THROUGH or _is_noise_channel(data):
            out.append(inst)  # annotations, and noise already in the circuit, as they are
            continue
        if name in _RESETS:
            rule = "reset"
        elif name in _MEASUREMENTS:
            rule = "measure"
        elif name in _MEASURE_RESETS:
            rule = "measure-reset"
        elif data.is_unitary and data.is_single_qubit_gate:
            rule = "1q"
        elif data.is_unitary and data.is_two_qubit_gate:
            rule = "2q"
        else:
            raise ValueError(
                f"with_uniform_noise has no noise rule for {name} ({inst}); it handles one- and "
                "two-qubit Clifford gates and single-qubit resets and measurements"
            )
        qs = _qubit_targets(inst)
        touched.update(qs)
        if rule in ("measure", "measure-reset"):
            out.append(_FLIP[name], qs, p)
        out.append(inst)
        if rule in ("reset", "measure-reset"):
            out.append(_FLIP[name], qs, p)
        elif rule == "1q":
            out.append("DEPOLARIZE1", qs, p)
        elif rule == "2q":
            out.append("DEPOLARIZE2", qs, p)
    end_layer()
    return out


def with_uniform_noise(stim_circuit: stim.Circuit, p: float) -> stim.Circuit:
    """The circuit with standard uniform circuit-level depolarizing noise of strength ``p``.

    The model (all probabilities ``p``, the usual "SD6"-style uniform model, not SI1000):

    * ``DEPOLARIZE1(p)`` after every one-qubit Clifford gate (H, X, Z, S, ...);
    * ``DEPOLARIZE2(p)`` after every two-qubit Clifford gate (CX, CZ, ...);
    * a flip after every reset (``X_ERROR`` after R, ``Z_ERROR`` after RX) and before every
      measurement (``X_ERROR`` before M, ``Z_ERROR`` before MX); MR gets both;
    * idling: at the end of each layer (the instructions between two TICKs)
      ``DEPOLARIZE1(p)`` on every qubit of the circuit the layer did not touch. Layers with
      only annotations add nothing.

    Annotations (DETECTOR, OBSERVABLE_INCLUDE, coordinates) and noise channels already in
    the circuit are kept as they are. REPEAT blocks are flattened: stim's memory circuits
    measure the data in the same layer as the last round's ancillas, just after the block,
    so a layer can span a block boundary and the noise differs between iterations.

    Args:
        stim_circuit: a noiseless stim circuit, e.g. ``qc.metadata["stim_circuit"]`` parsed.
        p: error probability, 0 <= p <= 0.5. ``p == 0`` returns an unchanged copy.

    Returns:
        A new circuit; the argument is not modified.

    Raises:
        ValueError: bad ``p``, or an instruction the model has no rule for (e.g. MPP).
    """
    p = _check_p(p)
    if p == 0:
        return stim_circuit.copy()
    flat = stim_circuit.flattened()
    return _noisy(flat, p, _used_qubits(flat))


def uniform_dem(stim_circuit_text: str, p: float = 1e-3) -> stim.DetectorErrorModel:
    """Detector error model of the logical circuit under :func:`with_uniform_noise` ``(p)``.

    Args:
        stim_circuit_text: the noiseless logical circuit (``qc.metadata["stim_circuit"]``).
        p: uniform error probability, 0 < p <= 0.5. Only the relative weights of the
            decoding graph depend on it, so any value near the device's error rate works.

    Returns:
        The DEM with ``decompose_errors=True`` (every error is a sum of graphlike pieces,
        which is what matching needs; the unrouted logical circuits always decompose).

    Raises:
        ValueError: ``p`` is not in (0, 0.5] (a DEM without errors cannot weight a matching).
    """
    p = _check_p(p)
    if p == 0:
        raise ValueError("uniform_dem needs p > 0: a model without errors gives the decoder nothing to match")
    circuit = with_uniform_noise(stim.Circuit(stim_circuit_text), p)
    return circuit.detector_error_model(decompose_errors=True)

