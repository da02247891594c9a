"""Surface-code layouts on heavy-hex: native vs SWAP-routed vs the square-lattice limit.

Per-round logical error of a Z-memory (|0>), SPAM-free from runs of 2 and 6 rounds
(:func:`qpuflow.per_round.fit`, 95% bootstrap interval), each point ``SHOTS`` shots, through
qpuflow's own path: logical circuit -> ISA circuit (native: :func:`qpuflow.placement.place_patch`
on the calibration; routed: the transpiler with SWAPs; square: the textbook circuit on a square
lattice, no SWAPs) -> ``sample_isa`` -> the calibration decoder (correlated matching where the
circuit keeps its distance, plain matching on the routed circuits, which do worse with it).

"native" is the default native layout (ancillas measured without reset), "native_reset" the
variant with resets (``ancilla_reset: true``).

* ``fake_fez_median``: FakeFez's heavy-hex lattice at its median calibration with every coupler
  alive; the square lattice is a 15x15 grid with the same medians. Idle (T1/T2) noise off, then on.
* ``fake_fez`` (its own per-qubit calibration, dead couplers, idle noise on, as the default
  study runs): the native d=3 patch at each of the scored placements against the routed d=3
  code at transpiler seeds 1-5: the spread is over layouts, never one best case.

The decoder's DEM always has the noise the shots were sampled with (idle on or off).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import numpy as np

from benchlib.core import Conclusion, Context, Target, benchmark

SHOTS = {"full": 100_000, "quick": 4_000}
ROUNDS = (2, 6)
SEED = 31_000
ROUTED_SEEDS = (1, 2, 3, 4, 5)
TRANSPILER_SEED = 1234


def _snapshot(backend) -> dict[str, Any]:
    from qpuflow.circuit_identity import calibration_snapshot

    return json.loads(json.dumps(calibration_snapshot(backend)))


def square_backend(median):
    """A 15x15 square lattice with ``median``'s per-qubit and per-coupler numbers."""
    from qiskit.circuit import Delay, Measure, Parameter, Reset
    from qiskit.circuit.library import CZGate, RZGate, SXGate, XGate
    from qiskit.providers import QubitProperties
    from qiskit.transpiler import InstructionProperties, Target as QTarget

    from qpuflow.backends import TargetBackend, _synthetic_couplers

    n, edges = _synthetic_couplers("grid")
    src = median.target
    qp = src.qubit_properties[0]
    out = QTarget(num_qubits=n, dt=src.dt, qubit_properties=[QubitProperties(t1=qp.t1, t2=qp.t2) for _ in range(n)])
    for name, gate in (("sx", SXGate()), ("x", XGate())):
        out.add_instruction(gate, {(q,): src[name][(0,)] for q in range(n)})
    out.add_instruction(RZGate(Parameter("theta")), {(q,): InstructionProperties(0.0, 0.0) for q in range(n)})
    cz = next(iter(src["cz"].values()))
    out.add_instruction(CZGate(), {qa: cz for a, b in edges for qa in ((a, b), (b, a))})
    out.add_instruction(Measure(), {(q,): src["measure"][(0,)] for q in range(n)})
    out.add_instruction(Reset(), {(q,): src["reset"][(0,)] for q in range(n)})
    out.add_instruction(Delay(Parameter("t")), {(q,): None for q in range(n)})
    return TargetBackend(out, "square_median", readout_pairs=tuple(median.readout_pairs[0] for _ in range(n)))


def build_isa(layout: str, distance: int, rounds: int, backend, snapshot, *, seed: int = TRANSPILER_SEED,
              nodes: tuple[int, ...] | None = None, reset: bool = False):
    from qpuflow.circuits import memory_experiment
    from qpuflow.placement import Placement, native_isa, native_logical_circuit, place_patch
    from qpuflow.transpile import transpile_isa

    if layout == "native":
        placement = place_patch("native", distance=distance, logical_state="0", backend=backend, snapshot=snapshot,
                                snapshot_key=backend.name, seed=seed, optimization_level=1, ancilla_reset=reset)
        if nodes is not None:
            placement = Placement("native", "Z", nodes, float("nan"), distance, 0, 0, 0, ())
        circuit = native_logical_circuit("native", distance=distance, rounds=rounds, logical_state="0",
                                         ancilla_reset=reset)
        return native_isa(circuit, placement, backend, seed=seed, optimization_level=1)
    circuit, _ = memory_experiment("surface_code", distance=distance, rounds=rounds, logical_state="0")
    return transpile_isa(circuit, backend, seed=seed, optimization_level=1)


def per_round(layout: str, distance: int, backend, snapshot, *, idle: bool, shots: int, seed: int,
              transpiler_seed: int = TRANSPILER_SEED, nodes: tuple[int, ...] | None = None,
              reset: bool = False) -> dict[str, Any]:
    """Per-round error (and interval) of one layout, from 2- and 6-round runs."""
    from qpuflow.measurement_map import MeasurementMap
    from qpuflow.decode import decode_registers
    from qpuflow.dem import calibration_decoder
    from qpuflow.distance import circuit_distance
    from qpuflow.per_round import fit
    from qpuflow.simulate import sample_isa

    errors, cz, correlated, dist = [], [], None, None
    for k, rounds in enumerate(ROUNDS):
        isa = build_isa(layout, distance, rounds, backend, snapshot, seed=transpiler_seed, nodes=nodes, reset=reset)
        if dist is None:
            dist = circuit_distance(isa, backend, idle_noise=idle).distance
        registers = sample_isa(isa, backend, shots=shots, seed=seed + k, idle_noise=idle)
        keeps = dist >= distance
        dem, correlated = calibration_decoder(isa, snapshot, correlated=keeps, idle_noise=idle)
        run = decode_registers(registers, MeasurementMap.from_json(isa.metadata["measurement_map"]), dem,
                               stim_circuit_text=isa.metadata["stim_circuit"], correlated=correlated)
        errors.append(run.decoded_errors)
        cz.append(isa.count_ops().get("cz", 0))
    eps, low, high = fit(np.array(ROUNDS, dtype=float), np.full(len(ROUNDS), float(shots)),
                         np.array(errors, dtype=float), seed=seed)
    return {"per_round": eps, "ci_low": low, "ci_high": high, "cz_per_round": (cz[1] - cz[0]) / (ROUNDS[1] - ROUNDS[0]),
            "circuit_distance": dist, "correlated": correlated, "errors": errors, "shots": shots}


@benchmark(
    "surface_layouts",
    title="surface code per round on heavy-hex: native vs routed vs the square-lattice limit (stim + PyMatching)",
    targets=(
        Target("median_noidle_native_d3", "<=", 0.016, "fake_fez_median, no idle: native d=3 per round <= 1.6%"),
        Target("median_noidle_native_d5", "<=", 0.006, "fake_fez_median, no idle: native d=5 per round <= 0.6%"),
        Target("median_noidle_native_lambda", ">=", 2.6, "fake_fez_median, no idle: Lambda = d3 / d5 per round >= 2.6"),
        Target("median_idle_native_d5_over_d3", "<=", 1.0, "fake_fez_median, idle on: native d=5 per round <= d=3"),
        Target("fez_native_min_distance_minus_d", "==", 0, "fake_fez: every native d=3 placement keeps circuit distance 3"),
        Target("fez_native_over_routed", "<=", 0.5,
               "fake_fez, idle on: native d=3 per round (median over placements) <= half the routed (median over seeds)"),
    ),
    max_repeats=1,
)
def surface_layouts(ctx: Context) -> dict[str, Any]:
    from qpuflow.backends import load_backend

    shots = SHOTS["quick" if ctx.quick else "full"]
    out: dict[str, Any] = {}
    median = load_backend("fake_fez_median")
    square = square_backend(median)
    snapshots = {"median": _snapshot(median), "square": _snapshot(square)}
    distances = (3,) if ctx.quick else (3, 5)
    points = {}
    for idle in (False, True):
        tag = "idle" if idle else "noidle"
        for layout, backend, snap in (("native", median, snapshots["median"]),
                                      ("native_reset", median, snapshots["median"]),
                                      ("routed", median, snapshots["median"]),
                                      ("square", square, snapshots["square"])):
            for d in distances:
                ctx.log(f"{layout} d={d} idle={idle}")
                point = per_round({"square": "routed", "native_reset": "native"}.get(layout, layout), d, backend, snap,
                                  idle=idle, shots=shots, seed=SEED + d, reset=layout == "native_reset")
                points[f"median_{tag}_{layout}_d{d}"] = point
                out[f"median_{tag}_{layout}_d{d}"] = point["per_round"]
        if 5 in distances:
            out[f"median_{tag}_native_lambda"] = out[f"median_{tag}_native_d3"] / out[f"median_{tag}_native_d5"]
            out[f"median_{tag}_native_reset_lambda"] = (out[f"median_{tag}_native_reset_d3"]
                                                        / out[f"median_{tag}_native_reset_d5"])
            out[f"median_{tag}_square_lambda"] = out[f"median_{tag}_square_d3"] / out[f"median_{tag}_square_d5"]
            out[f"median_{tag}_native_d5_over_d3"] = out[f"median_{tag}_native_d5"] / out[f"median_{tag}_native_d3"]

    fez = load_backend("fake_fez")
    fez_snap = _snapshot(fez)
    from qpuflow.placement import place_patch

    chosen = place_patch("native", distance=3, logical_state="0", backend=fez, snapshot=fez_snap,
                         snapshot_key="fake_fez", seed=TRANSPILER_SEED, optimization_level=1)
    native, routed = [], []
    for nodes, _ in chosen.scored:
        ctx.log(f"fake_fez native d=3 at {nodes[:3]}...")
        native.append(per_round("native", 3, fez, fez_snap, idle=True, shots=shots, seed=SEED + 7, nodes=nodes))
    for seed in ROUTED_SEEDS[: 2 if ctx.quick else None]:
        ctx.log(f"fake_fez routed d=3 transpiler seed {seed}")
        routed.append(per_round("routed", 3, fez, fez_snap, idle=True, shots=shots, seed=SEED + 9, transpiler_seed=seed))
    points["fez_native_d3"] = native
    points["fez_routed_d3"] = routed
    out["fez_native_min_distance_minus_d"] = min(p["circuit_distance"] for p in native) - 3
    out["fez_routed_max_distance"] = max(p["circuit_distance"] for p in routed)
    out["fez_native_d3_median"] = statistics.median(p["per_round"] for p in native)
    out["fez_native_d3_chosen"] = native[[n for n, _ in chosen.scored].index(chosen.nodes)]["per_round"]
    out["fez_routed_d3_median"] = statistics.median(p["per_round"] for p in routed)
    out["fez_native_over_routed"] = out["fez_native_d3_median"] / out["fez_routed_d3_median"]
    out["points"] = points
    out["shots_per_point"] = shots
    return out


@surface_layouts.conclude
def _conclude(ctx: Context, metrics, details) -> Conclusion:
    c = Conclusion()
    points = details.get("points", {})
    rows = []
    for key, point in points.items():
        for p in point if isinstance(point, list) else [point]:
            rows.append(f"{key}: {p['per_round']:.4f} [{p['ci_low']:.4f}, {p['ci_high']:.4f}] per round, "
                        f"{p['cz_per_round']:.0f} CZ/round, circuit distance {p['circuit_distance']}, "
                        f"{'correlated' if p['correlated'] else 'plain'} matching")
    c.notes.extend(rows)
    def m(name: str) -> float:
        return metrics.get(name, {}).get("median", float("nan"))

    c.reasons["median_noidle_native_lambda"] = (
        f"the native d=5 patch wins on absolute rate (below the 0.6% target) but gains only "
        f"{m('median_noidle_native_lambda'):.2f}x over d=3 ({m('median_noidle_native_reset_lambda'):.2f}x with "
        f"ancilla reset; the square lattice with the same errors gains {m('median_noidle_square_lambda'):.2f}x): "
        "every data qubit takes part in fold-unfold and cat gadgets with more than twice the CZ of a "
        "square-lattice round (60 vs 24 CZ at d=3, 208 vs 80 at d=5), so the bulk gadgets, not the boundary, "
        "set the rate; a bulk gadget with fewer data-touching CZ is the open construction problem")
    c.reasons["median_idle_native_d5_over_d3"] = (
        "with T1/T2 noise the data qubits idle through the ancillas' readout (1.56 us per measurement layer, "
        "two layers per fold-unfold round, plus 1.58 us per reset with ancilla_reset) while the gates of a "
        "round take well under 1 us; idle errors grow with the patch faster than matching corrects them "
        f"(even the square lattice gains only {m('median_idle_square_lambda'):.2f}x with idle noise). "
        "No dynamical decoupling is modelled (a device would run it), so this is pessimistic")
    c.reasons["fez_native_over_routed"] = "see the per-layout figures in the notes"
    return c
