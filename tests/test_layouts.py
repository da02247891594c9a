"""Layouts on heavy-hex: routed circuits that lose distance are refused, native ones keep it,
are placed off dead couplers, and decode to the rate stim and PyMatching give directly."""

from __future__ import annotations

import json

import numpy as np
import pymatching
import pytest

from qpuflow.measurement_map import MeasurementMap
from qpuflow.decode import decode_registers
from qpuflow.dem import calibration_dem
from qpuflow.distance import circuit_distance
from qpuflow.native import coupling_from_target, find_patches, median_fez_noise, native_memory_circuit
from qpuflow.placement import NoCleanRegion, native_isa, native_logical_circuit, place_patch
from qpuflow.simulate import sample_isa
from qpuflow.backends import excluded_couplers, load_backend
from qpuflow.circuit_identity import calibration_snapshot
from tests.conftest import provider_jobs, snakemake, write_config


def _snapshot(backend) -> dict:
    return json.loads(json.dumps(calibration_snapshot(backend)))  # as stored and read back


def test_routed_surface_code_is_refused_before_submission_and_native_goes_out(study, small_config):
    """The routed d=3 code has circuit distance 2 on FakeFez: submit refuses it, naming run,
    distances and cause, and sends nothing; accepted explicitly, it goes out."""
    small_config["experiments"] = {"sc": {**small_config["experiments"]["sc"], "layout": "routed", "repetitions": 1}}
    write_config(study, small_config)
    refused = snakemake(study, "submit", check=False)
    assert refused.returncode != 0
    assert "sc/L0_rep0" in refused.all and "circuit-level distance 2, below the code distance 3" in refused.all
    assert "SWAPs" in refused.all and "accept_distance_loss" in refused.all
    assert provider_jobs(study) == []

    small_config["experiments"]["sc"]["accept_distance_loss"] = True
    write_config(study, small_config)
    snakemake(study, "submit")
    assert len(provider_jobs(study)) == 1
    marker = json.loads((study / "results" / "submitted" / "sc" / "L0_rep0.json").read_text())
    assert marker["circuit_distance"] == 2 and marker["placement"] is None


@pytest.mark.parametrize("state", ["0", "+"])
def test_native_d3_on_fake_fez_keeps_its_distance_and_avoids_dead_couplers(fez, state):
    snapshot = _snapshot(fez)
    placement = place_patch("native", distance=3, logical_state=state, backend=fez, snapshot=snapshot,
                            snapshot_key="fez", seed=7, optimization_level=1)
    circuit = native_logical_circuit("native", distance=3, rounds=3, logical_state=state)
    isa = native_isa(circuit, placement, fez, seed=7, optimization_level=1)
    dead = set(excluded_couplers(fez))
    used = {tuple(sorted(isa.find_bit(q).index for q in inst.qubits)) for inst in isa.data if inst.operation.name == "cz"}
    assert used and not used & dead
    assert isa.count_ops()["cz"] == circuit.count_ops()["cz"]  # no SWAP
    assert circuit_distance(isa, fez).distance == 3
    # The chosen placement is the best the scoring saw, and the scores differ across regions.
    scores = [e for _, e in placement.scored]
    assert placement.predicted_error == min(scores) and len(set(scores)) > 1
    # Noiseless, it never fails (its detectors and observable are right on the device).
    registers = sample_isa(isa, fez, shots=200, seed=1, noise_scale=0)
    run = decode_registers(registers, MeasurementMap.from_json(isa.metadata["measurement_map"]),
                           calibration_dem(isa, snapshot), stim_circuit_text=isa.metadata["stim_circuit"])
    assert run.raw_errors == 0 and sum(run.detection_events_per_round) == 0


def test_no_clean_d5_region_on_fake_fez_is_said_not_worked_around(fez):
    with pytest.raises(NoCleanRegion, match=r"all 24 placements use an excluded coupler.*68-69"):
        place_patch("native", distance=5, logical_state="0", backend=fez, snapshot=_snapshot(fez),
                    snapshot_key="fez", seed=7, optimization_level=1)


@pytest.mark.slow
def test_native_d3_rate_agrees_with_direct_stim_and_pymatching():
    """The whole local path (stim -> Qiskit circuit -> transpiled at its placement -> simulator
    -> registers -> measurement map -> calibration DEM -> correlated PyMatching) against the same
    patch's stim circuit with a separately written noise model (qpuflow.native.noise, FakeFez
    medians), sampled and decoded by stim and PyMatching directly. Idle noise off on both
    sides: the two idle models schedule differently by design."""
    shots = 200_000
    backend = load_backend("fake_fez_median")
    snapshot = _snapshot(backend)
    placement = place_patch("native", distance=3, logical_state="0", backend=backend, snapshot=snapshot,
                            snapshot_key="median", seed=7, optimization_level=1)
    isa = native_isa(native_logical_circuit("native", distance=3, rounds=3, logical_state="0"), placement,
                     backend, seed=7, optimization_level=1)
    registers = sample_isa(isa, backend, shots=shots, seed=5, idle_noise=False)
    local = decode_registers(registers, MeasurementMap.from_json(isa.metadata["measurement_map"]),
                             calibration_dem(isa, snapshot, idle_noise=False), correlated=True,
                             stim_circuit_text=isa.metadata["stim_circuit"]).decoded_errors

    edges, n, _ = coupling_from_target(backend.target)
    patch = next(p for p in find_patches(edges, n, distance=3, basis="Z") if p.qubits == placement.nodes)
    noisy = median_fez_noise(native_memory_circuit(patch, rounds=3, logical_state="0", reset=False))
    events, flips = noisy.compile_detector_sampler(seed=9).sample(shots, separate_observables=True)
    matching = pymatching.Matching.from_detector_error_model(noisy.detector_error_model(decompose_errors=True),
                                                             enable_correlations=True)
    direct = int((matching.decode_batch(events, enable_correlations=True).astype(bool) ^ flips).any(axis=1).sum())
    sigma = np.sqrt(local * (1 - local / shots) + direct * (1 - direct / shots))
    print(f"\nnative d=3, 3 rounds, fake_fez_median, no idle, {shots} shots: local {local / shots:.5f}, "
          f"direct {direct / shots:.5f} ({(local - direct) / sigma:+.1f} sigma)")
    assert abs(local - direct) < 4 * sigma
    assert 0.005 < local / shots < 0.03
