"""Paired deployment-study statistics: pairing, endpoints, bootstrap, Wilcoxon, plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qpuflow.paired import ARMS, paired_summary, plot_paired, session_pairs, summary_table


def run(session, arm, errors, *, shots=1000, status="completed", attempt=1, experiment="dep"):
    return {"experiment": experiment, "session": session, "arm": arm, "status": status,
            "shots": shots, "decoded_errors": errors, "attempt": attempt}


def pairs_from_rates(cal, drift, shots=100000):
    """Pairs built through session_pairs so summaries are tested on the real column layout."""
    rows = [run(s, "calibration", round(c * shots), shots=shots) for s, c in enumerate(cal)]
    rows += [run(s, "drift_aware", round(d * shots), shots=shots) for s, d in enumerate(drift)]
    return session_pairs(pd.DataFrame(rows))


# -- session_pairs -----------------------------------------------------------------------

def test_session_pairs_keeps_latest_attempt_and_drops_incomplete_sessions():
    runs = pd.DataFrame([
        run(0, "calibration", 50, attempt=1), run(0, "calibration", 40, attempt=2),
        run(0, "drift_aware", 30),
        run(1, "calibration", 60), run(1, "drift_aware", 20, status="failed"),  # no drift_aware
        run(2, "calibration", 70), run(2, "drift_aware", 10, attempt=3),
        run(2, "drift_aware", 99, attempt=2, status="completed"),
        run(3, "drift_aware", 10),  # no calibration at all
        run(float("nan"), "calibration", 5), run(float("nan"), "drift_aware", 5),
        run(4, None, 5), run(4, "drift_aware", 5, status="pending"),
    ])
    pairs = session_pairs(runs)
    assert pairs["session"].tolist() == [0, 2]
    assert pairs["errors_calibration"].tolist() == [40, 70]
    assert pairs["errors_drift_aware"].tolist() == [30, 10]
    assert np.allclose(pairs["rate_calibration"], [0.04, 0.07])
    assert np.allclose(pairs["difference"], [0.03 - 0.04, 0.01 - 0.07])


def test_session_pairs_filters_experiment():
    runs = pd.DataFrame([run(0, a, 1, experiment=e) for e in ("a", "b") for a in ARMS])
    assert len(session_pairs(runs)) == 2
    assert session_pairs(runs, experiment="b")["experiment"].tolist() == ["b"]
    assert session_pairs(runs, experiment="missing").empty


def test_session_pairs_with_only_one_arm_is_empty():
    pairs = session_pairs(pd.DataFrame([run(s, "calibration", 3) for s in range(3)]))
    assert pairs.empty and "difference" in pairs.columns


def test_log_odds_ratio_hand_computed():
    pairs = session_pairs(pd.DataFrame([run(0, "calibration", 20, shots=100), run(0, "drift_aware", 10, shots=100)]))
    # drift_aware 10.5/90.5 over calibration 20.5/80.5
    assert pairs["log_odds_ratio"][0] == pytest.approx(math.log((10.5 / 90.5) / (20.5 / 80.5)))
    assert pairs["log_odds_ratio_se"][0] == pytest.approx(math.sqrt(1 / 10.5 + 1 / 90.5 + 1 / 20.5 + 1 / 80.5))


def test_zero_counts_give_finite_log_odds():
    pairs = session_pairs(pd.DataFrame([run(0, "calibration", 0, shots=50), run(0, "drift_aware", 50, shots=50)]))
    assert np.isfinite(pairs[["log_odds_ratio", "log_odds_ratio_se"]].to_numpy()).all()
    assert pairs["log_odds_ratio"][0] == pytest.approx(2 * math.log(50.5 / 0.5))


# -- paired_summary ----------------------------------------------------------------------

@pytest.fixture
def shifted():
    """drift_aware 0.01 +- 0.003 lower than calibration in every session (mean shift 0.01)."""
    cal = np.random.default_rng(3).uniform(0.05, 0.15, 12)
    jitter = np.linspace(-0.003, 0.003, 12)  # symmetric, so the true mean shift is exactly 0.01
    return pairs_from_rates(cal, cal - 0.01 + jitter)


def test_known_shift_is_detected(shifted):
    summary = paired_summary(shifted, n_bootstrap=2000)
    assert summary["n_sessions"] == 12
    assert summary["mean_difference"] == pytest.approx(-0.01, abs=1e-4)
    assert summary["ci_low"] <= summary["mean_difference"] <= summary["ci_high"] < 0
    assert summary["ci_low"] <= -0.01 <= summary["ci_high"]
    assert summary["ci_high"] - summary["ci_low"] < 0.004  # differences vary by only +-0.003
    # All 12 differences negative: exact two-sided p = 2 / 2**12.
    assert summary["wilcoxon_p_value"] == pytest.approx(2 / 2**12) and summary["wilcoxon_note"] is None
    assert summary["wilcoxon_statistic"] == 0
    assert summary["correlation"] > 0.99
    assert summary["mean_log_odds_ratio"] < 0


def test_bootstrap_is_reproducible_per_seed():
    cal = np.random.default_rng(1).uniform(0.05, 0.15, 10)
    drift = cal + np.random.default_rng(2).normal(-0.01, 0.01, 10)
    pairs = pairs_from_rates(cal, drift)
    a = paired_summary(pairs, n_bootstrap=1000, seed=7)
    b = paired_summary(pairs, n_bootstrap=1000, seed=7)
    c = paired_summary(pairs, n_bootstrap=1000, seed=8)
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])


def test_correlation_and_sds_match_numpy():
    cal = np.random.default_rng(4).uniform(0.05, 0.15, 8)
    pairs = pairs_from_rates(cal, 0.5 * cal + np.random.default_rng(5).uniform(0, 0.05, 8))
    summary = paired_summary(pairs, n_bootstrap=200)
    r1, r2 = pairs["rate_calibration"], pairs["rate_drift_aware"]
    assert summary["correlation"] == pytest.approx(np.corrcoef(r1, r2)[0, 1])
    assert summary["sd_calibration"] == pytest.approx(np.std(r1, ddof=1))
    assert summary["sd_difference"] == pytest.approx(np.std(r2 - r1, ddof=1))
    assert summary["effect_size_dz"] == pytest.approx(summary["mean_difference"] / summary["sd_difference"])


def test_no_post_hoc_power_and_figures_the_data_cannot_support_are_left_out():
    empty = paired_summary(session_pairs(pd.DataFrame([run(0, "calibration", 1)])))
    assert empty["n_sessions"] == 0 and math.isnan(empty["mean_difference"]) and empty["wilcoxon_note"]
    assert "sessions_needed" not in empty and "power_inputs" not in empty
    one = paired_summary(pairs_from_rates([0.1], [0.05]))
    assert one["n_sessions"] == 1 and one["mean_difference"] == pytest.approx(-0.05)
    assert math.isnan(one["wilcoxon_p_value"]) and one["wilcoxon_note"] and math.isnan(one["ci_low"])
    two = paired_summary(pairs_from_rates([0.1, 0.2], [0.05, 0.12]))
    assert math.isnan(two["correlation"]) and "3 sessions" in two["correlation_note"]  # r = +-1 from 2 points
    same = paired_summary(pairs_from_rates([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]))
    assert same["mean_difference"] == 0 and math.isnan(same["wilcoxon_statistic"]) and same["wilcoxon_note"]
    constant_shift = paired_summary(pairs_from_rates([0.1, 0.2, 0.3], [0.09, 0.19, 0.29]))
    assert constant_shift["sd_difference"] == 0 and math.isnan(constant_shift["effect_size_dz"])
    flat = paired_summary(pairs_from_rates([0.1, 0.1, 0.1], [0.05, 0.06, 0.07]))
    assert math.isnan(flat["correlation"]) and "same in every session" in flat["correlation_note"]
    assert one["test"] == "Wilcoxon signed-rank, two-sided"


def test_an_endpoint_with_almost_no_events_says_it_cannot_resolve_a_difference():
    # The d=5 repetition code's decoded rate on the local model: ~0.2 errors per 4096-shot arm.
    rows = [run(s, arm, e, shots=4096) for s in range(42) for arm, e in
            (("calibration", int(s % 5 == 0)), ("drift_aware", int(s % 7 == 0)))]
    summary = paired_summary(session_pairs(pd.DataFrame(rows)), n_bootstrap=200)
    assert summary["resolution_note"] and "cannot resolve" in summary["resolution_note"]
    rich = paired_summary(pairs_from_rates([0.1, 0.2, 0.15], [0.09, 0.18, 0.12]), n_bootstrap=200)
    assert rich["resolution_note"] is None


def test_detection_fraction_endpoint_uses_event_counts_with_per_session_intervals():
    rows = []
    for s, (cal, drift) in enumerate([(3000, 2600), (2900, 2950), (3100, 2700)]):
        for arm, events in (("calibration", cal), ("drift_aware", drift)):
            rows.append({**run(s, arm, 1, shots=4096), "detection_events": events, "detector_trials": 4096 * 16})
    pairs = session_pairs(pd.DataFrame(rows), endpoint="detection_fraction")
    assert pairs["endpoint"].tolist() == ["detection_fraction"] * 3
    assert pairs["value_calibration"].tolist() == pytest.approx([3000 / 65536, 2900 / 65536, 3100 / 65536])
    assert pairs["difference"][0] == pytest.approx(-400 / 65536)
    assert (pairs["difference_ci_low"] < pairs["difference"]).all() and (pairs["difference"] < pairs["difference_ci_high"]).all()
    se = math.sqrt(sum(p * (1 - p) / 65536 for p in ((3000.5 / 65537), (2600.5 / 65537))))
    assert pairs["difference_ci_high"][0] - pairs["difference"][0] == pytest.approx(1.96 * se, rel=1e-3)
    assert pairs["rate_calibration"].tolist() == pytest.approx([1 / 4096] * 3)  # the secondary outcome stays
    with pytest.raises(ValueError, match="endpoint must be one of"):
        session_pairs(pd.DataFrame(rows), endpoint="fidelity")


def test_summary_is_json_serialisable_and_tabulates(shifted):
    for pairs in (shifted, shifted.iloc[:2], shifted.iloc[:1], shifted.iloc[:0]):
        summary = paired_summary(pairs, n_bootstrap=100)
        json.dumps(summary)
        table = summary_table(summary)
        assert list(table.columns) == ["quantity", "value"]
        assert {"n_sessions", "mean_difference", "test", "correlation_note"} <= set(table["quantity"])
        json.dumps(table.to_dict("records"))


# -- plot_paired -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2, 12])
def test_plot_shows_every_session_with_zero_in_view(tmp_path, shifted, n):
    path = tmp_path / "sub" / "paired.png"
    pairs = shifted.iloc[:n]
    drawn = plot_paired(pairs, path, summary=paired_summary(pairs, n_bootstrap=200) if n else None)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    assert drawn["sessions"] == n and drawn["points"] == n  # one marker per session, none hidden
    assert drawn["value_ylim"][0] == 0  # the arms' axis starts at zero
    low, high = drawn["difference_ylim"]
    assert low < 0 < high and low == pytest.approx(-high)  # zero in the middle of the differences
    if n:
        assert high >= np.abs(pairs[["difference_ci_low", "difference_ci_high"]].to_numpy()).max()
    assert (drawn["message"] is not None) == (n < 2)
