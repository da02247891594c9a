"""Paired deployment-study statistics: pairing, bootstrap, Wilcoxon, power, plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qpuflow.paired import ARMS, paired_summary, plot_paired, required_sessions, session_pairs, summary_table


def run(session, arm, errors, *, shots=1000, status="completed", attempt=1, experiment="dep"):
    return {"experiment": experiment, "session": session, "arm": arm, "status": status,
            "shots": shots, "decoded_errors": errors, "attempt": attempt}


def pairs_from_rates(cal, drift, shots=100000):
    """Pairs built through session_pairs so summaries are tested on the real column layout."""
    rows = [run(s, "calibration", round(c * shots), shots=shots) for s, c in enumerate(cal)]
    rows += [run(s, "drift_aware", round(d * shots), shots=shots) for s, d in enumerate(drift)]
    return session_pairs(pd.DataFrame(rows))


def independent_power(d, n, alpha=0.05):
    df, nc = n - 1, d * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


# -- required_sessions -------------------------------------------------------------------

@pytest.mark.parametrize("d, expected", [(0.5, 34), (0.8, 15), (0.2, 199)])
def test_required_sessions_matches_textbook_values(d, expected):
    # G*Power, paired t-test (matched pairs), two-sided alpha .05, power .8.
    assert required_sessions(d) == expected
    assert required_sessions(-d) == expected
    assert independent_power(d, expected) >= 0.8 > independent_power(d, expected - 1)


def test_required_sessions_edge_cases():
    assert required_sessions(0.0) is None
    assert required_sessions(1e-4, max_n=1000) is None
    assert required_sessions(0.5, power=0.9) > required_sessions(0.5)
    assert required_sessions(0.5, alpha=0.01) > required_sessions(0.5)
    assert required_sessions(10.0) >= 2


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
    assert summary["power_inputs"]["sd_difference"] == pytest.approx(summary["sd_difference"])
    assert summary["effect_size_dz"] == pytest.approx(summary["mean_difference"] / summary["sd_difference"])


def test_sessions_needed_uses_observed_correlation():
    cal = np.array([0.06, 0.08, 0.09, 0.10, 0.11, 0.12, 0.13, 0.14])
    # drift_aware = a permutation of cal minus 0.01: equal marginal sds and equal mean
    # difference in both datasets, so only the within-pair correlation differs.
    drift_high = cal[[1, 0, 2, 3, 4, 5, 7, 6]] - 0.01  # two neighbour swaps
    drift_low = cal[[1, 0, 3, 2, 5, 4, 7, 6]] - 0.01  # four neighbour swaps
    high = paired_summary(pairs_from_rates(cal, drift_high), n_bootstrap=100)
    low = paired_summary(pairs_from_rates(cal, drift_low), n_bootstrap=100)
    assert high["sd_drift_aware"] == pytest.approx(low["sd_drift_aware"])
    assert high["sd_calibration"] == pytest.approx(low["sd_calibration"])
    assert high["mean_difference"] == pytest.approx(low["mean_difference"])
    assert high["correlation"] > low["correlation"] > 0
    assert high["sessions_needed"] < low["sessions_needed"]
    for summary in (high, low):
        inputs = summary["power_inputs"]
        s1, s2, r = inputs["sd_calibration"], inputs["sd_drift_aware"], inputs["correlation"]
        assert inputs["sd_difference"] == pytest.approx(math.sqrt(s1**2 + s2**2 - 2 * r * s1 * s2))
        d = inputs["mean_difference"] / inputs["sd_difference"]
        assert summary["sessions_needed"] == required_sessions(d)
        assert independent_power(abs(d), summary["sessions_needed"]) >= 0.8


def test_degenerate_inputs_give_nan_and_notes():
    empty = paired_summary(session_pairs(pd.DataFrame([run(0, "calibration", 1)])))
    assert empty["n_sessions"] == 0 and math.isnan(empty["mean_difference"])
    assert empty["sessions_needed"] is None and empty["power_note"] and empty["wilcoxon_note"]
    one = paired_summary(pairs_from_rates([0.1], [0.05]))
    assert one["n_sessions"] == 1 and one["mean_difference"] == pytest.approx(-0.05)
    assert math.isnan(one["wilcoxon_p_value"]) and one["wilcoxon_note"]
    assert one["sessions_needed"] is None and one["power_note"]
    same = paired_summary(pairs_from_rates([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]))
    assert same["mean_difference"] == 0 and math.isnan(same["wilcoxon_statistic"]) and same["wilcoxon_note"]
    assert same["sessions_needed"] is None and "zero" in same["power_note"]
    constant_shift = paired_summary(pairs_from_rates([0.1, 0.2, 0.3], [0.09, 0.19, 0.29]))
    assert constant_shift["sd_difference"] == 0 and math.isnan(constant_shift["effect_size_dz"])
    assert constant_shift["sessions_needed"] is None and "sd" in constant_shift["power_note"]
    flat = paired_summary(pairs_from_rates([0.1, 0.1, 0.1], [0.05, 0.06, 0.07]))
    assert math.isnan(flat["correlation"]) and flat["sessions_needed"] is not None


def test_summary_is_json_serialisable_and_tabulates(shifted):
    for pairs in (shifted, shifted.iloc[:1], shifted.iloc[:0]):
        summary = paired_summary(pairs, n_bootstrap=100)
        json.dumps(summary)
        table = summary_table(summary)
        assert list(table.columns) == ["quantity", "value"]
        assert {"n_sessions", "mean_difference", "sessions_needed", "power_inputs.correlation"} <= set(table["quantity"])
        json.dumps(table.to_dict("records"))


# -- plot_paired -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 6])
def test_plot_writes_png(tmp_path, shifted, n):
    path = tmp_path / "sub" / "paired.png"
    plot_paired(shifted.iloc[:n], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
