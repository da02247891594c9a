"""How far idle noise and asymmetric readout move the default study's surface-code rates.

The default surface-code experiment (native d=3 Z memory on ``fake_fez``, placed by
:func:`qpuflow.placement.place_patch`, ancillas measured without reset) sampled under four noise
models: idle (T1/T2 on scheduled idle time) off or on, readout symmetric (the Target's mean
error on both outcomes) or asymmetric (the calibration's P(1|0) and P(0|1)). Each variant is
decoded with the calibration decoder of its own noise (correlated matching). Reported: the
decoded rate of a 2-round and a 6-round job and the SPAM-free rate per round
(:func:`qpuflow.per_round.fit`, 95% bootstrap interval), ``SHOTS`` shots per point.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from benchlib.core import Conclusion, Context, benchmark

SHOTS = {"full": 100_000, "quick": 4_000}
ROUNDS = (2, 6)
SEED = 41_000
TRANSPILER_SEED = 1234


def _variants():
    from qpuflow.backends import TargetBackend, load_backend

    fez = load_backend("fake_fez")
    symmetric = TargetBackend(fez.target, "fake_fez")  # same name: the snapshot check compares names
    for idle in (False, True):
        for name, backend in (("symmetric", symmetric), ("asymmetric", fez)):
            yield f"idle_{'on' if idle else 'off'}_readout_{name}", backend, idle


@benchmark("noise_effects",
           title="default surface-code experiment on fake_fez: idle noise and asymmetric readout, on and off",
           max_repeats=1)
def noise_effects(ctx: Context) -> dict[str, Any]:
    from qpuflow.measurement_map import MeasurementMap
    from qpuflow.decode import decode_registers
    from qpuflow.dem import calibration_decoder
    from qpuflow.per_round import fit
    from qpuflow.placement import native_isa, native_logical_circuit, place_patch
    from qpuflow.simulate import sample_isa
    from qpuflow.backends import load_backend
    from qpuflow.circuit_identity import calibration_snapshot

    shots = SHOTS["quick" if ctx.quick else "full"]
    fez = load_backend("fake_fez")
    fez_snap = json.loads(json.dumps(calibration_snapshot(fez)))
    placement = place_patch("native", distance=3, logical_state="0", backend=fez, snapshot=fez_snap,
                            snapshot_key="fake_fez", seed=TRANSPILER_SEED, optimization_level=1)
    isas = {r: native_isa(native_logical_circuit("native", distance=3, rounds=r, logical_state="0"),
                          placement, fez, seed=TRANSPILER_SEED, optimization_level=1) for r in ROUNDS}
    out: dict[str, Any] = {"placement": list(placement.nodes), "shots_per_point": shots}
    for key, backend, idle in _variants():
        ctx.log(key)
        snap = json.loads(json.dumps(calibration_snapshot(backend)))
        errors = []
        for k, rounds in enumerate(ROUNDS):
            isa = isas[rounds]
            registers = sample_isa(isa, backend, shots=shots, seed=SEED + k, idle_noise=idle)
            dem, correlated = calibration_decoder(isa, snap, correlated=True, idle_noise=idle)
            run = decode_registers(registers, MeasurementMap.from_json(isa.metadata["measurement_map"]), dem,
                                   stim_circuit_text=isa.metadata["stim_circuit"], correlated=correlated)
            errors.append(run.decoded_errors)
            out[f"{key}_r{rounds}_rate"] = run.decoded_errors / shots
        eps, low, high = fit(np.array(ROUNDS, dtype=float), np.full(len(ROUNDS), float(shots)),
                             np.array(errors, dtype=float), seed=SEED)
        out[f"{key}_per_round"] = eps
        out[f"{key}_per_round_ci"] = [low, high]
    return out


@noise_effects.conclude
def _conclude(ctx: Context, metrics, details) -> Conclusion:
    c = Conclusion()
    def m(name: str) -> float:
        return metrics.get(name, {}).get("median", float("nan"))

    for key, _, _ in _variants():
        lo, hi = details.get(f"{key}_per_round_ci", [float("nan")] * 2)
        c.notes.append(f"{key}: per round {m(f'{key}_per_round'):.4f} [{lo:.4f}, {hi:.4f}]; "
                       + ", ".join(f"{r} rounds {m(f'{key}_r{r}_rate'):.4f}" for r in ROUNDS))
    return c
