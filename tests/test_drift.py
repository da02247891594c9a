"""The local device's drift model (issue 15): its statistics are what it documents, it is a
pure function of time (a probe and its arms see one device), and defect events reach the
Target a job is simulated on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qpuflow.drift import DAY_S, DriftModel, state_epoch
from qpuflow.device_state import drifted_target_at
from qpuflow.backends import load_backend

HOUR = 3600.0


def test_slow_drift_has_its_spread_at_any_time_and_is_continuous():
    m = DriftModel(sigma=0.3, period_hours=24.0, seed=11)
    n = 4000
    for offset in (0.0, 0.25, 0.5, 0.9):  # at a knot and between knots: the same spread
        logs = np.log(m.slow_factors(n, (40 + offset) * DAY_S))
        assert abs(logs.std() - 0.3) < 0.02 and abs(logs.mean()) < 0.02, (offset, logs.std(), logs.mean())
    t = 40.3 * DAY_S
    now, soon, later = (np.log(m.slow_factors(n, t + dt)) for dt in (0.0, 600.0, 2 * DAY_S))
    assert np.corrcoef(now, soon)[0, 1] > 0.999  # ten minutes later: the same device
    assert abs(np.corrcoef(now, later)[0, 1]) < 0.1  # two periods later: a new draw


def test_defect_events_occur_at_their_rate_with_their_depth_and_duration():
    m = DriftModel(defect_rate_per_day=0.5, defect_depth=(3.0, 20.0), defect_hours=6.0, seed=3)
    events = [e for q in range(200) for e in m.defects(q, 10 * DAY_S, 110 * DAY_S)]
    starts = [e for e in events if e[0] >= 10 * DAY_S]
    expected = 0.5 * 100 * 200
    assert abs(len(starts) - expected) < 4 * math.sqrt(expected)
    depths = np.array([d for _, _, d in events])
    assert depths.min() >= 3 and depths.max() <= 20
    assert abs(np.median(np.log(depths)) - np.log(math.sqrt(60))) < 0.1  # log-uniform: median sqrt(3*20)
    hours = np.array([(end - start) / HOUR for start, end, _ in starts])
    assert abs(hours.mean() - 6.0) < 4 * 6.0 / math.sqrt(len(hours))
    # The fraction of qubits with an active defect at a random time: 1 - exp(-rate * mean duration).
    active = np.mean([(m.defect_factors(200, t * DAY_S) > 1).mean() for t in np.linspace(20.1, 100.7, 40)])
    assert abs(active - (1 - math.exp(-0.5 * 6 / 24))) < 0.03, active


def test_an_event_persists_across_drift_periods_and_time_alone_decides_the_state():
    m = DriftModel(sigma=0.3, defect_rate_per_day=1.0, defect_hours=12.0, seed=5)
    long_one = next((q, s, e, d) for q in range(156) for s, e, d in m.defects(q, 3 * DAY_S, 30 * DAY_S)
                    if e - s > 4 * HOUR and math.floor(s / DAY_S) != math.floor(e / DAY_S))
    q, start, end, depth = long_one  # an event crossing midnight, a drift period's edge
    before_midnight = math.floor(end / DAY_S) * DAY_S - 60
    after_midnight = before_midnight + 120
    for t in (before_midnight, after_midnight):
        if start < t < end:
            assert m.defect_factors(156, t)[q] >= depth
    # A fresh model object (another process) gives the same state at the same time.
    again = DriftModel(sigma=0.3, defect_rate_per_day=1.0, defect_hours=12.0, seed=5)
    assert np.array_equal(again.defect_factors(156, start + 1), m.defect_factors(156, start + 1))
    # A probe and an arm submitted minutes apart share the state grid point, or are minutes apart.
    assert state_epoch(start + 1) == state_epoch(start + 2)


def test_a_defect_reaches_the_simulated_device_t1_and_readout():
    fez = load_backend("fake_fez")
    m = DriftModel(defect_rate_per_day=1.0, defect_hours=8.0, seed=9)
    t = 50 * DAY_S
    deep = m.defect_factors(fez.num_qubits, t)
    q = int(np.argmax(deep))
    assert deep[q] >= 3
    target, pairs = drifted_target_at(fez.target, m, t, ((0.01, 0.02),) * fez.num_qubits)
    assert target.qubit_properties[q].t1 == pytest.approx(fez.target.qubit_properties[q].t1 / deep[q])
    assert target["measure"][(q,)].error > fez.target["measure"][(q,)].error
    assert pairs[q][1] > 0.02 and pairs[q][0] == 0.01  # decay during readout: P(0|1) only
    untouched = int(np.flatnonzero(deep == 1)[0])
    assert target.qubit_properties[untouched].t1 == fez.target.qubit_properties[untouched].t1
    pair = next(qargs for qargs in fez.target["cz"] if q in qargs)
    assert target["cz"][pair].error == fez.target["cz"][pair].error  # gate errors move only with the slow drift


def test_bad_drift_settings_name_the_field():
    with pytest.raises(ValueError, match="provider.local.drift.defects.hours"):
        DriftModel(defect_hours=0)
    with pytest.raises(ValueError, match="provider.local.drift.defects.depth"):
        DriftModel(defect_depth=(5.0, 2.0))
