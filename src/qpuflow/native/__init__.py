"""Heavy-hex-native QEC memory circuits: no SWAPs, every gate on a device coupler.

* :func:`find_patches` — every placement of a native patch (data, syndrome and bridge
  qubits) on a coupling list, avoiding excluded couplers.
* :func:`native_memory_circuit` — the noiseless stim memory experiment of a placement
  (stim qubit = physical qubit; gates R, RX, H, CZ, X, Z, M, MX; detectors, one
  observable, qubit coordinates).
* :func:`uniform_noise`, :func:`median_fez_noise`, :func:`add_noise` — circuit-level Pauli
  noise for validation; :func:`logical_error_probability`, :func:`per_round_rate` —
  PyMatching (correlated by default) on the noisy circuits.

The constructions are described in :mod:`qpuflow.native.surface` (rotated surface code:
bridge trees and fold-unfold) and :mod:`qpuflow.native.subsystem` (heavy-hex subsystem code).
"""

from qpuflow.native.analysis import graphlike_dem, logical_error_probability, per_round_error, per_round_rate
from qpuflow.native.device import DeviceGraph, coupling_from_target, embeddings, fez_coupling
from qpuflow.native.noise import NoiseParams, add_noise, fez_median_params, median_fez_noise, uniform_noise
from qpuflow.native.patches import (
    KINDS,
    Patch,
    PatchSearch,
    find_patches,
    native_memory_circuit,
    patch_cost,
    template_for,
)

__all__ = [
    "KINDS",
    "Patch",
    "PatchSearch",
    "find_patches",
    "native_memory_circuit",
    "patch_cost",
    "template_for",
    "DeviceGraph",
    "coupling_from_target",
    "embeddings",
    "fez_coupling",
    "NoiseParams",
    "add_noise",
    "fez_median_params",
    "median_fez_noise",
    "uniform_noise",
    "graphlike_dem",
    "logical_error_probability",
    "per_round_error",
    "per_round_rate",
]
