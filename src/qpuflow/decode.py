"""Decoding memory experiments: detector error models and PyMatching on collected registers.

Two detector error models (DEMs) can decode the same data:

* :func:`uniform_dem` — the logical stim circuit with a textbook uniform circuit-level noise
  model (:func:`with_uniform_noise`). It needs nothing but the circuit, so it is the
  baseline and the fallback when no calibration was saved.
* :func:`calibration_dem` — the transpiled (ISA) circuit, after routing, with the noise of a
  calibration snapshot saved at transpile time (:func:`qpuflow.circuit_identity.calibration_snapshot`
  as stored on disk). The channels are those of :func:`qpuflow.stim_noise.stim_translation`
  (DEPOLARIZE1(1.5 r) after sx/x, DEPOLARIZE2(1.25 r) after cz, readout error on the
  recorded bit), so for data from the local simulator it is the exact model, and for
  hardware data it is the device as it was calibrated when the circuit was compiled.

Both have the detectors and observables of the circuit's
:class:`~qpuflow.circuits.MeasurementMap`, in its order, so either decodes the detection
events :func:`decode_registers` computes from the registers of a result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pymatching
import stim
from qiskit.circuit import Delay, Measure, Parameter, QuantumCircuit, Reset
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.providers import QubitProperties
from qiskit.transpiler import InstructionProperties, Target

from qpuflow.circuits import MeasurementMap, detection_events, observable_flips
from qpuflow.stim_noise import stim_translation

__all__ = [
    "with_uniform_noise",
    "uniform_dem",
    "isa_detector_circuit",
    "calibration_dem",
    "target_from_snapshot",
    "detector_rounds",
    "DecodedRun",
    "decode_registers",
]

# --------------------------------------------------------------------------------------
# uniform circuit-level noise on the logical circuit
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# calibration noise on the ISA circuit
# --------------------------------------------------------------------------------------


class _SnapshotBackend:
    """What :func:`qpuflow.stim_noise.stim_translation` reads from a backend: a name and a Target."""

    def __init__(self, name: str | None, target: Target):
        self.name = name
        self.target = target


def _snapshot_field(snapshot: Mapping[str, Any], key: str) -> Any:
    if key not in snapshot:
        raise ValueError(
            f"calibration snapshot has no {key!r} field (keys: {sorted(snapshot)}); pass the JSON "
            "written from qpuflow.circuit_identity.calibration_snapshot"
        )
    return snapshot[key]


def _props(error: Any, duration: Any = None) -> InstructionProperties:
    err = None if error is None else float(error)
    dur = None if duration is None else float(duration)
    return InstructionProperties(duration=dur, error=err)


def target_from_snapshot(snapshot: Mapping[str, Any]) -> Target:
    """Rebuild the error-bearing part of a Target from a saved calibration snapshot.

    Holds what the stim translation reads: sx, x and id (the snapshot has no id error; IBM
    reports the sx error for it, so that is used), measure (readout error and duration), the
    two-qubit gates on their directed couplers, and T1/T2 per qubit. Missing numbers stay
    ``None``, which the translation treats as no error, as it does for a live Target.
    """
    if not isinstance(snapshot, Mapping):
        raise ValueError(f"calibration snapshot must be a JSON object, got {type(snapshot).__name__}")
    n = int(_snapshot_field(snapshot, "num_qubits"))
    qubits = _snapshot_field(snapshot, "qubits")
    two_qubit = _snapshot_field(snapshot, "two_qubit")
    if len(qubits) != n:
        raise ValueError(f"calibration snapshot lists {len(qubits)} qubits but num_qubits is {n}")
    by_index = {int(q["qubit"]): q for q in qubits}
    if sorted(by_index) != list(range(n)):
        raise ValueError(f"calibration snapshot qubits are not numbered 0..{n - 1}")
    rows = [by_index[q] for q in range(n)]
    target = Target(
        num_qubits=n,
        dt=snapshot.get("dt"),
        qubit_properties=[
            QubitProperties(t1=r.get("t1"), t2=r.get("t2"), frequency=r.get("frequency")) for r in rows
        ],
    )
    gates = get_standard_gate_name_mapping()
    target.add_instruction(gates["sx"], {(q,): _props(r.get("sx_error"), r.get("sx_duration"))
                                         for q, r in enumerate(rows)})
    target.add_instruction(gates["x"], {(q,): _props(r.get("x_error"), r.get("x_duration")) for q, r in enumerate(rows)})
    target.add_instruction(gates["id"], {(q,): _props(r.get("sx_error"), r.get("sx_duration"))
                                         for q, r in enumerate(rows)})
    target.add_instruction(
        Measure(), {(q,): _props(r.get("readout_error"), r.get("readout_duration")) for q, r in enumerate(rows)}
    )
    # Virtual rz, reset and delays: what scheduling the circuit's idle time needs (snapshots
    # written before durations were recorded leave them None: then no idle noise is added).
    target.add_instruction(gates["rz"], {(q,): _props(0.0, 0.0) for q in range(n)})
    target.add_instruction(Reset(), {(q,): _props(None, r.get("reset_duration")) for q, r in enumerate(rows)})
    target.add_instruction(Delay(Parameter("t")), {(q,): None for q in range(n)})
    per_gate: dict[str, dict[tuple[int, ...], InstructionProperties]] = {}
    for row in two_qubit:
        name = str(row["gate"])
        if name not in gates:
            raise ValueError(f"calibration snapshot has two-qubit gate {name!r}, which qiskit does not know")
        per_gate.setdefault(name, {})[tuple(int(q) for q in row["qubits"])] = _props(
            row.get("error"), row.get("duration")
        )
    for name, props in per_gate.items():
        target.add_instruction(gates[name], props)
    return target


def _check_same_device(isa: QuantumCircuit, snapshot: Mapping[str, Any]) -> None:
    n = int(_snapshot_field(snapshot, "num_qubits"))
    if isa.num_qubits != n:
        raise ValueError(
            f"circuit {isa.name!r} has {isa.num_qubits} qubits but the calibration snapshot of "
            f"{snapshot.get('backend')!r} has {n}; use the snapshot saved when the circuit was transpiled"
        )
    compiled_for = ((isa.metadata or {}).get("transpile") or {}).get("backend")
    if compiled_for and snapshot.get("backend") and compiled_for != snapshot["backend"]:
        raise ValueError(
            f"circuit {isa.name!r} was transpiled for {compiled_for!r} but the calibration snapshot "
            f"is of {snapshot['backend']!r}; use the snapshot saved when the circuit was transpiled"
        )


def _logical_detector_coords(isa: QuantumCircuit, num_detectors: int) -> dict[int, list[float]]:
    text = (isa.metadata or {}).get("stim_circuit")
    if not text:
        return {}
    circuit = stim.Circuit(text)
    if circuit.num_detectors != num_detectors:
        return {}
    return circuit.get_detector_coordinates()


def isa_detector_circuit(
    isa: QuantumCircuit, calibration: Any, *, noise_scale: float = 1.0, idle_noise: bool = True
) -> stim.Circuit:
    """The noisy stim program the local simulator runs for ``isa``, with detectors attached.

    The program is :func:`qpuflow.stim_noise.stim_translation` of the ISA circuit (routing
    included); the detectors and observables of ``isa.metadata["measurement_map"]`` are
    appended, each record index translated through the classical bit it was stored in (never
    by position: the transpiler may reorder measurements). Detector coordinates are copied
    from the logical stim circuit.

    Args:
        isa: transpiled circuit carrying its measurement map.
        calibration: a calibration snapshot (the JSON dict of
            :func:`qpuflow.circuit_identity.calibration_snapshot`) or a backend with a ``target``.
        noise_scale: multiplies every error probability, as in :func:`qpuflow.simulate.sample_isa`.
        idle_noise: T1/T2 noise on idle time, as the local simulator (and the device) has it.
            Needs the instruction durations (snapshots taken before they were recorded fall
            back to no idle noise).

    Returns:
        The circuit; sampling it with ``compile_detector_sampler`` gives detection events and
        observable flips directly.

    Raises:
        ValueError: the snapshot does not fit the circuit, or a record of the measurement
            map is never measured in the circuit.
    """
    meta = isa.metadata or {}
    if "measurement_map" not in meta:
        raise ValueError(
            f"circuit {isa.name!r} has no 'measurement_map' in its metadata; build it with "
            "qpuflow.circuits.memory_experiment and transpile with transpile_isa"
        )
    mmap = MeasurementMap.from_json(meta["measurement_map"])
    if isinstance(calibration, Mapping):
        _check_same_device(isa, calibration)
        backend = _SnapshotBackend(calibration.get("backend"), target_from_snapshot(calibration))
    else:
        backend = calibration
    idle = idle_noise and _has_durations(backend.target)
    tr = stim_translation(isa, backend, noise_scale=noise_scale, idle_noise=idle)
    missing = [k for k, rb in enumerate(mmap.record) if tuple(rb) not in tr.clbit_records]
    if missing:
        raise ValueError(
            f"records {mmap.describe_records(missing[:5])} of the measurement map are never "
            f"measured in circuit {isa.name!r}"
        )
    rec = [tr.clbit_records[tuple(rb)] for rb in mmap.record]
    n = tr.num_measurements
    coords = _logical_detector_coords(isa, mmap.num_detectors)
    lines = [tr.text]
    for j, det in enumerate(mmap.detectors):
        c = coords.get(j)
        args = f"({', '.join(repr(float(x)) for x in c)})" if c else ""
        lines.append(f"DETECTOR{args} " + " ".join(f"rec[{rec[i] - n}]" for i in det))
    for j, obs in enumerate(mmap.observables):
        lines.append(f"OBSERVABLE_INCLUDE({j}) " + " ".join(f"rec[{rec[i] - n}]" for i in obs))
    return stim.Circuit("\n".join(lines))


def _has_durations(target: Target) -> bool:
    for name in ("sx", "measure"):
        if name not in target.operation_names:
            return False
        if any(props is None or props.duration is None for props in target[name].values()):
            return False
    return True


def calibration_dem(
    isa: QuantumCircuit, snapshot: Mapping[str, Any], *, noise_scale: float = 1.0, idle_noise: bool = True,
    correlated: bool = True,
) -> stim.DetectorErrorModel:
    """Detector error model of the ISA circuit with the noise of a saved calibration snapshot.

    Args:
        isa: transpiled circuit carrying its measurement map (see :func:`isa_detector_circuit`).
        snapshot: the calibration snapshot saved at transpile time, as read back from JSON
            (not a live backend: the decoder must use the numbers the circuit was compiled
            against, which a backend object refreshes).
        noise_scale: multiplies every error probability; use the one the data was sampled
            with. Must be > 0 (a DEM without errors cannot weight a matching).
        idle_noise: include T1/T2 noise on idle time (see :func:`isa_detector_circuit`).
        correlated: the DEM for PyMatching's correlated matching: errors keep their
            decomposition into graphlike parts (``^``), which correlated matching uses to
            re-weight edges; parts that fire no detector are folded into a neighbour. False:
            one edge per detector set (:func:`resolve_parallel_edges`), for plain matching.

    Returns:
        The DEM, detectors and observables in the measurement map's order.

    Raises:
        ValueError: see :func:`isa_detector_circuit`; ``noise_scale`` not > 0.
    """
    if not isinstance(snapshot, Mapping):
        raise ValueError(
            f"calibration_dem needs the calibration snapshot (a JSON dict), got {type(snapshot).__name__}; "
            "for a live backend use qpuflow.circuit_identity.calibration_snapshot(backend)"
        )
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale > 0):
        raise ValueError(f"noise_scale must be a finite number > 0, got {noise_scale!r}")
    uniform = _uniform_model(isa, snapshot, noise_scale)
    if uniform is not None:  # the model the data was sampled with, exactly
        dem = uniform.detector_error_model(decompose_errors=True)
        return dem if correlated else resolve_parallel_edges(dem)
    circuit = isa_detector_circuit(isa, snapshot, noise_scale=noise_scale, idle_noise=idle_noise)
    # Routing SWAPs (three cz each) and the cz-based CX make some two-qubit errors flip
    # three or more detectors in a way that is not a sum of graphlike errors. Those
    # hyperedges are kept undecomposed instead of failing; PyMatching leaves them out of
    # its graph, which costs a little accuracy on routed circuits and nothing elsewhere.
    dem = circuit.detector_error_model(decompose_errors=True, ignore_decomposition_failures=True,
                                       approximate_disjoint_errors=True)  # idle PAULI_CHANNEL_1
    return fold_undetectable_parts(dem) if correlated else resolve_parallel_edges(dem)


def _uniform_model(isa: QuantumCircuit, snapshot: Mapping[str, Any], noise_scale: float) -> stim.Circuit | None:
    """stim's uniform model of the run when its snapshot says the backend simulates it
    (:class:`~qpuflow.backends.UniformNoiseBackend`)."""
    from qpuflow.simulate import uniform_model_from
    from qpuflow.circuit_identity import UNIFORM_MODEL

    model = snapshot.get("noise_model") or {}
    experiment = (isa.metadata or {}).get("experiment")
    if model.get("name") != UNIFORM_MODEL or not experiment:
        return None
    return uniform_model_from(experiment, float(model["p"]) * noise_scale)


def calibration_decoder(isa: QuantumCircuit, snapshot: Mapping[str, Any], *, correlated: bool = True,
                        noise_scale: float = 1.0, idle_noise: bool = True) -> tuple[stim.DetectorErrorModel, bool]:
    """(DEM, use correlated matching) for a run: correlated matching when asked (the caller
    asks only for circuits that keep their distance) and no decomposed error has a part that
    fires no detector; otherwise plain matching on :func:`resolve_parallel_edges`. On a
    SWAP-routed circuit correlated matching does worse (routed d=3 on FakeFez, 1 round,
    20k shots: 0.101 against 0.050 with plain matching; 3 rounds: 0.155 against 0.154)."""
    if _uniform_model(isa, snapshot, noise_scale) is not None:
        return calibration_dem(isa, snapshot, noise_scale=noise_scale, correlated=correlated), correlated
    return decoder_for(isa_detector_circuit(isa, snapshot, noise_scale=noise_scale, idle_noise=idle_noise),
                       correlated=correlated)


def decoder_for(circuit: stim.Circuit, *, correlated: bool) -> tuple[stim.DetectorErrorModel, bool]:
    """(DEM, use correlated matching) of a noisy circuit with detectors, as
    :func:`calibration_decoder` chooses them."""
    raw = circuit.detector_error_model(decompose_errors=True, ignore_decomposition_failures=True,
                                       approximate_disjoint_errors=True)
    if correlated and not _has_undetectable_parts(raw):
        return fold_undetectable_parts(raw), True
    return resolve_parallel_edges(raw), False


def _has_undetectable_parts(dem: stim.DetectorErrorModel) -> bool:
    for inst in dem.flattened():
        if inst.type != "error":
            continue
        part_has_detector, part_has_observable = False, False
        for target in [*inst.targets_copy(), stim.target_separator()]:
            if target.is_separator():
                if part_has_observable and not part_has_detector:
                    return True
                part_has_detector, part_has_observable = False, False
            elif target.is_relative_detector_id():
                part_has_detector = True
            elif target.is_logical_observable_id():
                part_has_observable = True
    return False


def fold_undetectable_parts(dem: stim.DetectorErrorModel) -> stim.DetectorErrorModel:
    """The DEM with every part of a decomposed error that fires no detector folded into the
    error's first detectable part (its observable flips go with it); errors with no
    detectable part at all (undetectable logical faults: the circuit's distance is lower
    than the code's there) are dropped, as no decoder can see them. PyMatching's correlated
    matching refuses such parts; a routed circuit's DEM has them, a native one's does not.
    """
    out = stim.DetectorErrorModel()
    for inst in dem.flattened():
        if inst.type != "error":
            out.append(inst)
            continue
        parts: list[list[stim.DemTarget]] = [[]]
        for target in inst.targets_copy():
            if target.is_separator():
                parts.append([])
            else:
                parts[-1].append(target)
        detectable = [p for p in parts if any(t.is_relative_detector_id() for t in p)]
        if not detectable:
            continue
        stray = [t for p in parts if p not in detectable for t in p if t.is_logical_observable_id()]
        if stray:
            first = detectable[0]
            flips = {t.val for t in first if t.is_logical_observable_id()} ^ {t.val for t in stray}
            detectable[0] = [t for t in first if t.is_relative_detector_id()] + [
                stim.target_logical_observable_id(k) for k in sorted(flips)]
        targets: list[stim.DemTarget] = []
        for k, part in enumerate(detectable):
            if k:
                targets.append(stim.target_separator())
            targets.extend(part)
        out.append("error", inst.args_copy(), targets)
    return out


# --------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------


def _xor_probability(p: float, q: float) -> float:
    """Probability that exactly one of two independent events happens."""
    return p * (1 - q) + q * (1 - p)


def resolve_parallel_edges(dem: stim.DetectorErrorModel) -> stim.DetectorErrorModel:
    """One edge per detector set, carrying the observable flip that is most likely there.

    SWAP routing lowers the circuit's effective distance: the same detector (or pair) can be
    fired by a fault that flips the logical observable and by one that does not. PyMatching
    keeps a single edge per detector set, and which parallel edge survives is not the most
    likely one: on a routed d=3 code on FakeFez this doubled the decoded error rate
    (0.077 vs 0.036). Here each graphlike component is grouped by its detectors; within a
    group, probabilities of the same observable mask combine as independent XORs, the most
    probable mask wins, and the edge gets the total probability of the group. Components
    that fire no detector (undetectable logical faults) cannot be decoded and are dropped.
    Hyperedges that stim could not decompose are kept whole (PyMatching ignores them).
    """
    groups: dict[tuple[int, ...], dict[tuple[int, ...], float]] = {}
    others: list[str] = []
    for inst in dem.flattened():
        if inst.type != "error":
            if inst.type in ("detector", "logical_observable"):
                others.append(str(inst))
            continue
        p = inst.args_copy()[0]
        components: list[tuple[list[int], list[int]]] = [([], [])]
        for target in inst.targets_copy():
            if target.is_separator():
                components.append(([], []))
            elif target.is_relative_detector_id():
                components[-1][0].append(target.val)
            elif target.is_logical_observable_id():
                components[-1][1].append(target.val)
        for dets, obs in components:
            if not dets:
                continue
            if len(dets) > 2:
                others.append(f"error({p!r}) " + " ".join(f"D{d}" for d in dets) + "".join(f" L{o}" for o in obs))
                continue
            by_mask = groups.setdefault(tuple(sorted(dets)), {})
            mask = tuple(sorted(set(o for o in obs if obs.count(o) % 2)))
            by_mask[mask] = _xor_probability(by_mask.get(mask, 0.0), p)
    lines = []
    for dets, by_mask in sorted(groups.items()):
        best = max(by_mask.items(), key=lambda item: (item[1], item[0]))[0]
        total = 0.0
        for q in by_mask.values():
            total = _xor_probability(total, q)
        total = min(total, 0.5 - 1e-9)
        lines.append(f"error({total!r}) " + " ".join(f"D{d}" for d in dets) + "".join(f" L{o}" for o in best))
    return stim.DetectorErrorModel("\n".join(lines + others))


def detector_rounds(stim_circuit_text: str) -> np.ndarray:
    """Round index of each detector: its time coordinate (the last DETECTOR coordinate).

    stim's memory circuits put the first round's detectors at t = 0 and shift t by one per
    round, so with ``r`` rounds the data-readout detectors are round ``r``.

    Returns:
        Int array ``(num_detectors,)``.

    Raises:
        ValueError: a detector has no coordinates or a time that is not a whole number >= 0.
    """
    circuit = stim.Circuit(stim_circuit_text)
    coords = circuit.get_detector_coordinates()
    out = np.zeros(circuit.num_detectors, dtype=np.int64)
    for k in range(circuit.num_detectors):
        c = coords.get(k)
        if not c:
            raise ValueError(f"detector {k} has no coordinates, so its round is unknown")
        t = float(c[-1])
        if t < 0 or t != round(t):
            raise ValueError(f"detector {k} has time coordinate {t}; rounds must be whole numbers >= 0")
        out[k] = int(round(t))
    return out


@dataclasses.dataclass(frozen=True)
class DecodedRun:
    """Decoding outcome of one job.

    Attributes:
        shots: number of shots.
        raw_errors: shots whose observables, read straight from the data measurements,
            differ from the ideal value (any observable).
        decoded_errors: shots still wrong after PyMatching's correction (any observable).
        detection_events_per_round: fired detectors per round, summed over shots.
        detectors_per_round: detectors per round, so the detection fraction of round ``k``
            is ``events[k] / (detectors[k] * shots)``.
    """

    shots: int
    raw_errors: int
    decoded_errors: int
    detection_events_per_round: tuple[int, ...]
    detectors_per_round: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "detection_events_per_round", tuple(int(v) for v in self.detection_events_per_round))
        object.__setattr__(self, "detectors_per_round", tuple(int(v) for v in self.detectors_per_round))
        for f in ("shots", "raw_errors", "decoded_errors"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"DecodedRun.{f} must be an int >= 0, got {v!r}")
            object.__setattr__(self, f, int(v))
        if self.raw_errors > self.shots or self.decoded_errors > self.shots:
            raise ValueError(
                f"DecodedRun has {self.raw_errors} raw / {self.decoded_errors} decoded errors in {self.shots} shots"
            )
        if len(self.detection_events_per_round) != len(self.detectors_per_round):
            raise ValueError("detection_events_per_round and detectors_per_round differ in length")

    @property
    def raw_error_rate(self) -> float:
        return self.raw_errors / self.shots if self.shots else float("nan")

    @property
    def decoded_error_rate(self) -> float:
        return self.decoded_errors / self.shots if self.shots else float("nan")

    def detection_fraction_per_round(self) -> tuple[float, ...]:
        """Fraction of detectors that fired, per round."""
        return tuple(
            e / (n * self.shots) if n and self.shots else float("nan")
            for e, n in zip(self.detection_events_per_round, self.detectors_per_round)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "shots": self.shots,
            "raw_errors": self.raw_errors,
            "decoded_errors": self.decoded_errors,
            "detection_events_per_round": list(self.detection_events_per_round),
            "detectors_per_round": list(self.detectors_per_round),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DecodedRun:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: missing or unknown keys, or inconsistent values.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"decoded run must be a JSON object, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing, extra = sorted(fields - set(d)), sorted(set(d) - fields)
        if missing or extra:
            raise ValueError(
                f"decoded run JSON has missing keys {missing} and unknown keys {extra}; "
                f"expected exactly {sorted(fields)}"
            )
        return cls(**{f: d[f] for f in fields})


def decode_registers(
    registers: Mapping[str, np.ndarray],
    mmap: MeasurementMap,
    dem: stim.DetectorErrorModel,
    *,
    stim_circuit_text: str,
    correlated: bool = False,
) -> DecodedRun:
    """Decode one job's registers with PyMatching (see :func:`decode_batch`)."""
    return decode_batch([registers], mmap, dem, stim_circuit_text=stim_circuit_text, correlated=correlated)[0]


def build_matching(dem: stim.DetectorErrorModel, *, correlated: bool) -> pymatching.Matching:
    """PyMatching's decoder for ``dem``; ``correlated`` turns on its correlated matching (it
    re-weights edges from the DEM's decomposed hyperedges, see :func:`calibration_dem`)."""
    if correlated:
        return pymatching.Matching.from_detector_error_model(dem, enable_correlations=True)
    return pymatching.Matching.from_detector_error_model(dem)


def decode_batch(
    registers_list: Sequence[Mapping[str, np.ndarray]],
    mmap: MeasurementMap,
    dem: stim.DetectorErrorModel,
    *,
    stim_circuit_text: str,
    correlated: bool = False,
    matching: pymatching.Matching | None = None,
) -> list[DecodedRun]:
    """Decode several jobs of one circuit at once: one matching graph, one ``decode_batch``.

    Detection events and observable flips (measured XOR ideal) come from the registers
    through the measurement map; PyMatching, built from ``dem`` (or ``matching``, built
    already), predicts the observable flip of each shot; a shot is a decoded error when
    measured flip XOR prediction is non-zero on any observable.

    Args:
        registers_list: per job, register name -> bool array ``(shots, num_bits)``.
        mmap: the circuit's measurement map (the same circuit for every job).
        dem: a DEM with the measurement map's detectors and observables, e.g. from
            :func:`uniform_dem` or :func:`calibration_dem`.
        stim_circuit_text: the logical stim circuit, for the round of each detector.
        correlated: decode with PyMatching's correlated matching.

    Raises:
        ValueError: the DEM or the circuit does not fit the measurement map, or the
            registers do not fit it (see :func:`qpuflow.circuits.records_from_registers`).
    """
    if dem.num_detectors != mmap.num_detectors or dem.num_observables != mmap.num_observables:
        raise ValueError(
            f"the detector error model has {dem.num_detectors} detectors and {dem.num_observables} "
            f"observables but the measurement map has {mmap.num_detectors} and {mmap.num_observables}; "
            "build the DEM from the same circuit"
        )
    rounds = detector_rounds(stim_circuit_text)
    if len(rounds) != mmap.num_detectors:
        raise ValueError(
            f"the stim circuit has {len(rounds)} detectors but the measurement map has "
            f"{mmap.num_detectors}; pass the circuit's own metadata['stim_circuit']"
        )
    events = [detection_events(r, mmap) for r in registers_list]
    flips = [observable_flips(r, mmap) for r in registers_list]
    if not events:
        return []
    matching = matching or build_matching(dem, correlated=correlated)
    predicted = _predict(matching, np.concatenate(events).astype(np.uint8), mmap.num_observables,
                         correlated=correlated)
    n_rounds = int(rounds.max()) + 1 if len(rounds) else 0
    per_round_detectors = tuple(int(v) for v in np.bincount(rounds, minlength=n_rounds))
    out, start = [], 0
    for ev, fl in zip(events, flips):
        shots = ev.shape[0]
        pred = predicted[start:start + shots]
        start += shots
        per_round_events = np.bincount(rounds, weights=ev.sum(axis=0), minlength=n_rounds)
        out.append(DecodedRun(
            shots=int(shots),
            raw_errors=int(fl.any(axis=1).sum()),
            decoded_errors=int((fl ^ pred).any(axis=1).sum()),
            detection_events_per_round=tuple(int(round(v)) for v in per_round_events),
            detectors_per_round=per_round_detectors,
        ))
    return out


def _predict(matching: pymatching.Matching, stacked: np.ndarray, num_observables: int, *,
             correlated: bool) -> np.ndarray:
    """PyMatching's predicted observable flips, shots x ``num_observables`` (bool)."""
    try:
        if correlated:
            predicted = matching.decode_batch(stacked, enable_correlations=True)
        else:
            predicted = matching.decode_batch(stacked)
    except ValueError as exc:
        raise ValueError(
            f"PyMatching found no correction for some shots ({exc}); the detector error model "
            "has no errors that explain their detection events. Decode with a DEM of a noisy "
            "model of this circuit (uniform_dem with p > 0, or calibration_dem of a noisy snapshot)"
        ) from None
    predicted = np.asarray(predicted, dtype=bool)
    if predicted.ndim == 1:
        predicted = predicted.reshape(len(stacked), -1)
    predicted = predicted[:, :num_observables]
    if predicted.shape[1] < num_observables:  # observables no error can flip
        predicted = np.pad(predicted, ((0, 0), (0, num_observables - predicted.shape[1])))
    return predicted
