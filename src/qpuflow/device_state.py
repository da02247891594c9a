"""Copies of a backend's calibration (``Target``): restricted to some qubits, scaled, or
drifted to what the device is *now* rather than what it reported.

:func:`drifted_target` draws per qubit and per time period T1/T2 shorter or longer and errors
larger or smaller by a random factor; :func:`drifted_target_at` applies a
:class:`qpuflow.drift.DriftModel` (slow fluctuations plus defect events) at a moment. The local
provider samples with it when drift is configured; the backend's reported calibration stays
the static one, so the drift is what a probe job measures and a calibration-based choice
cannot see.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from qiskit.providers import QubitProperties
from qiskit.transpiler import InstructionProperties, Target


# Largest meaningful errors: a readout error of 1/2 is a coin toss, and no channel on
# d-dimensional states has an average gate infidelity above d / (d + 1).
_MAX_READOUT_ERROR = 0.5


def _scaled_error(name: str, err: float | None, factor: float, num_qubits: int) -> float | None:
    if err is None or factor == 1.0:
        return err
    dim = 2**num_qubits
    cap = _MAX_READOUT_ERROR if name == "measure" else dim / (dim + 1)
    # An error already at or above the cap (a dead coupler reported as 1.0) stays as reported.
    return min(float(err) * factor, max(cap, float(err)))


def _scaled_qubit(qp, factor: float):
    if qp is None or factor == 1.0:
        return qp
    t1 = getattr(qp, "t1", None)
    t2 = getattr(qp, "t2", None)
    # T1 and T2 are divided by the same factor, so T2 <= 2 T1 holds wherever it was reported.
    return QubitProperties(
        t1=None if t1 is None else t1 / factor,
        t2=None if t2 is None else t2 / factor,
        frequency=getattr(qp, "frequency", None),
    )


def sub_target(
    target: Target,
    physical: tuple[int, ...] | None = None,
    factors: Mapping[int, float] | None = None,
    t1_factors: Mapping[int, float] | None = None,
) -> Target:
    """Copy ``target`` onto ``physical`` (renumbered 0, 1, ...), with per-qubit noise factors.

    ``physical=None`` keeps every qubit and its number. A qubit with factor ``f`` gets T1
    and T2 divided by ``f``; an instruction on qubits ``q_1..q_k`` gets its error multiplied
    by the geometric mean of their factors (``f`` for one qubit, ``sqrt(f_a f_b)`` for two),
    clipped to 1/2 for readout and to ``d / (d + 1)`` for gates. Missing factors are 1.
    ``t1_factors``, if given, divide T1 and T2 instead of ``factors`` (a defect event takes
    a qubit's T1 without touching its gate errors).
    """
    whole = physical is None
    if whole:
        physical = tuple(range(target.num_qubits))
    factors = factors or {}
    index = {p: i for i, p in enumerate(physical)}
    qps = target.qubit_properties
    sub = Target(
        description=target.description,
        num_qubits=len(physical),
        dt=target.dt,
        granularity=target.granularity,
        min_length=target.min_length,
        pulse_alignment=target.pulse_alignment,
        acquire_alignment=target.acquire_alignment,
        qubit_properties=[_scaled_qubit(qps[p], (t1_factors if t1_factors is not None else factors).get(p, 1.0))
                          for p in physical] if qps else None,
        concurrent_measurements=target.concurrent_measurements if whole else None,
    )
    for name in target.operation_names:
        op = target.operation_from_name(name)
        if isinstance(op, type):  # control flow: kept in a full copy, useless to a noise model
            if whole:
                sub.add_instruction(op, name=name)
            continue
        props = target[name]
        if props is None or None in props:
            sub.add_instruction(op, props, name=name)
            continue
        kept = {}
        for qargs, prop in props.items():
            if not all(q in index for q in qargs):
                continue
            if prop is not None and factors:
                factor = math.prod(factors.get(q, 1.0) for q in qargs) ** (1.0 / len(qargs))
                error = _scaled_error(name, prop.error, factor, len(qargs))
                if error != prop.error:
                    prop = InstructionProperties(duration=prop.duration, error=error)
            kept[tuple(index[q] for q in qargs)] = prop
        if kept:
            sub.add_instruction(op, kept, name=name)
    return sub


def _check_factor(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def scaled_target(target: Target, scale: float) -> Target:
    """A copy of ``target`` with every error ``scale`` times larger and T1, T2 ``scale`` times shorter.

    Errors are clipped (readout to 1/2, gates to ``d / (d + 1)``); scale 1 copies the
    Target unchanged. This is how ``noise_scale`` reaches Aer's noise model, which is built
    from a Target rather than from probabilities.

    >>> from qpuflow.backends import load_backend
    >>> t = load_backend("fake_fez").target
    >>> s = scaled_target(t, 2.0)
    >>> s["sx"][(3,)].error == 2 * t["sx"][(3,)].error
    True
    >>> s.qubit_properties[3].t1 == t.qubit_properties[3].t1 / 2
    True

    Raises:
        ValueError: ``scale`` is not a finite number > 0.
    """
    scale = _check_factor("scale", scale)
    if scale == 0:
        raise ValueError("scale must be > 0: a noiseless circuit needs no Target (use noise_scale=0)")
    return sub_target(target, None, {q: scale for q in range(target.num_qubits)})


def drift_factors(num_qubits: int, *, sigma: float, seed: int, bucket: int) -> np.ndarray:
    """Per-qubit drift factors ``f_q = exp(sigma z_q)``, ``z_q ~ N(0, 1)`` seeded by ``(seed, bucket, q)``.

    Qubit ``q``'s factor depends on ``(seed, bucket, q)`` only, not on how many are asked for.

    >>> f = drift_factors(3, sigma=0.2, seed=1, bucket=5)
    >>> bool((f == drift_factors(5, sigma=0.2, seed=1, bucket=5)[:3]).all())
    True
    >>> drift_factors(2, sigma=0.0, seed=1, bucket=5).tolist()
    [1.0, 1.0]
    """
    sigma = _check_factor("drift sigma", sigma)
    for name, value in (("drift seed", seed), ("drift bucket", bucket)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if sigma == 0:
        return np.ones(num_qubits)
    z = np.array([np.random.default_rng([int(seed), int(bucket), q]).standard_normal() for q in range(num_qubits)])
    return np.exp(sigma * z)


def drifted_target(target: Target, *, sigma: float, seed: int, bucket: int) -> Target:
    """The calibration a device has in time period ``bucket``, drifted from the reported ``target``.

    Each qubit ``q`` gets a factor ``f_q`` (:func:`drift_factors`): T1 and T2 divided by
    ``f_q``, readout and one-qubit gate errors multiplied by it (clipped to 1/2 for readout,
    ``2/3`` for gates), two-qubit gate errors multiplied by ``sqrt(f_a f_b)`` (clipped to
    ``4/5``; a coupler reported dead stays dead). Durations are unchanged. ``sigma = 0``
    gives an equal copy. Pure: the same ``(target, sigma, seed, bucket)`` gives the same
    result in any process.

    This is what a job *experiences*; the calibration the backend *reports* stays ``target``.

    >>> from qpuflow.backends import load_backend
    >>> t = load_backend("fake_fez").target
    >>> d = drifted_target(t, sigma=0.3, seed=0, bucket=7)
    >>> f = drift_factors(t.num_qubits, sigma=0.3, seed=0, bucket=7)
    >>> bool(abs(d.qubit_properties[5].t1 * f[5] - t.qubit_properties[5].t1) < 1e-15)
    True
    >>> bool(abs(d["measure"][(5,)].error - t["measure"][(5,)].error * f[5]) < 1e-15)
    True

    Args:
        target: the reported calibration.
        sigma: spread of ``log f_q``; 0 means no drift.
        seed: drift seed (an int >= 0).
        bucket: time period (an int >= 0), e.g. ``floor(epoch / period)``.

    Raises:
        ValueError: negative or non-finite sigma, or a negative seed or bucket.
    """
    f = drift_factors(target.num_qubits, sigma=sigma, seed=seed, bucket=bucket)
    return sub_target(target, None, {q: float(v) for q, v in enumerate(f) if v != 1.0})


def drifted_target_at(target: Target, model: Any, epoch: float,
                      readout_pairs: tuple[tuple[float, float], ...] | None = None,
                      ) -> tuple[Target, tuple[tuple[float, float], ...] | None]:
    """The device a job at ``epoch`` runs on, under a :class:`qpuflow.drift.DriftModel`: slow
    factors on every error (T1, T2 divided by them), defect events dividing T1 and T2 further
    and raising P(0|1) through decay during readout. Returns the Target and the per-qubit
    ``(P(1|0), P(0|1))`` pairs (drifted the same way), if the device reports them.

    >>> from qpuflow.drift import DriftModel
    >>> from qpuflow.backends import load_backend
    >>> t = load_backend("fake_fez").target
    >>> d, _ = drifted_target_at(t, DriftModel(), 1e9)
    >>> d.qubit_properties[5].t1 == t.qubit_properties[5].t1
    True
    """
    from qpuflow.drift import readout_decay_increase

    n = target.num_qubits
    slow = model.slow_factors(n, epoch)
    deep = model.defect_factors(n, epoch)
    factors = {q: float(v) for q, v in enumerate(slow) if v != 1.0}
    t1 = {q: float(slow[q] * deep[q]) for q in range(n) if slow[q] * deep[q] != 1.0}
    out = sub_target(target, None, factors, t1)
    qps = target.qubit_properties or [None] * n
    extra = {}
    for q in np.flatnonzero(deep > 1):
        q = int(q)
        before = getattr(qps[q], "t1", None)
        measure = target["measure"].get((q,)) if "measure" in target.operation_names else None
        duration = getattr(measure, "duration", None)
        if before and duration:
            extra[q] = readout_decay_increase(duration, before / slow[q], before / (slow[q] * deep[q]))
            prop = out["measure"][(q,)]
            if prop is not None and prop.error is not None:
                out.update_instruction_properties("measure", (q,), InstructionProperties(
                    duration=prop.duration, error=min(_MAX_READOUT_ERROR, prop.error + extra[q] / 2)))
    pairs = None
    if readout_pairs is not None:
        pairs = tuple((min(0.5, a * slow[q]), min(0.5, b * slow[q] + extra.get(q, 0.0)))
                      for q, (a, b) in enumerate(readout_pairs))
    return out, pairs

