"""Decoding memory experiments with PyMatching on collected registers.

Two detector error models (DEMs) can decode the same data: :func:`qpuflow.uniform_noise.uniform_dem`
(the logical circuit with uniform circuit-level noise) and :func:`qpuflow.dem.calibration_dem`
(the ISA circuit with its calibration snapshot's noise). Both have the detectors and
observables of the circuit's :class:`~qpuflow.measurement_map.MeasurementMap`, in its order, so either
decodes the detection events :func:`decode_registers` computes from the registers of a result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pymatching
import stim

from qpuflow.measurement_map import MeasurementMap, detection_events, observable_flips


# --------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------


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
            registers do not fit it (see :func:`qpuflow.measurement_map.records_from_registers`).
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

