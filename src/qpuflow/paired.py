"""Paired statistics for the deployment study: does drift_aware beat calibration?

Every session runs both qubit-selection arms of the same memory experiment, so sessions are
the unit of replication and the arms are compared within a session. That removes the
session-to-session drift of the device from the comparison, which is the point of pairing:
the stronger the within-session correlation of the two arms, the fewer sessions are needed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ARMS: tuple[str, str] = ("calibration", "drift_aware")


def session_pairs(runs: pd.DataFrame, *, experiment: str | None = None,
                  arms: tuple[str, str] = ARMS) -> pd.DataFrame:
    """One row per (experiment, session) in which both arms completed.

    Columns: experiment, session, shots_<arm>, errors_<arm>, rate_<arm> for both arms,
    difference (rate of arms[1] minus arms[0]), log_odds_ratio (arms[1] over arms[0], 0.5
    added to all four cells so zero counts stay finite) and log_odds_ratio_se.
    A retried arm counts once, with its highest attempt, so a session is never weighted twice.

    >>> runs = pd.DataFrame({"experiment": "dep", "session": [0, 0], "arm": list(ARMS),
    ...     "status": "completed", "shots": 100, "decoded_errors": [10, 5], "attempt": 1})
    >>> session_pairs(runs)[["session", "rate_calibration", "rate_drift_aware", "difference"]].to_dict("records")
    [{'session': 0, 'rate_calibration': 0.1, 'rate_drift_aware': 0.05, 'difference': -0.05}]
    """
    first, second = arms
    columns = ["experiment", "session"] + [f"{q}_{a}" for a in arms for q in ("shots", "errors", "rate")] + [
        "difference", "log_odds_ratio", "log_odds_ratio_se"]
    done = runs[(runs["status"] == "completed") & runs["session"].notna() & runs["arm"].isin(arms)]
    if experiment is not None:
        done = done[done["experiment"] == experiment]
    if done.empty:
        return pd.DataFrame(columns=columns)
    done = done.assign(session=done["session"].astype(int))
    # Stable sort so that, among equal attempts, the row order of the input decides.
    latest = (done.sort_values("attempt", kind="stable")
              .drop_duplicates(["experiment", "session", "arm"], keep="last"))
    wide = latest.pivot(index=["experiment", "session"], columns="arm", values=["shots", "decoded_errors"])
    # Reindex first: an arm that never completed must still show up as missing, not vanish.
    wide = wide.reindex(columns=pd.MultiIndex.from_product([["shots", "decoded_errors"], arms])).dropna()
    out = pd.DataFrame({"experiment": wide.index.get_level_values(0),
                        "session": wide.index.get_level_values(1).astype(int)})
    for arm in arms:
        shots = wide[("shots", arm)].to_numpy(dtype=int)
        errors = wide[("decoded_errors", arm)].to_numpy(dtype=int)
        out[f"shots_{arm}"], out[f"errors_{arm}"] = shots, errors
        out[f"rate_{arm}"] = errors / np.where(shots > 0, shots, np.nan)
    out["difference"] = out[f"rate_{second}"] - out[f"rate_{first}"]
    cells = {arm: (out[f"errors_{arm}"] + 0.5, out[f"shots_{arm}"] - out[f"errors_{arm}"] + 0.5) for arm in arms}
    out["log_odds_ratio"] = (np.log(cells[second][0] / cells[second][1])
                             - np.log(cells[first][0] / cells[first][1]))
    out["log_odds_ratio_se"] = np.sqrt(sum(1 / c for pair in cells.values() for c in pair))
    return out[columns].sort_values(["experiment", "session"], ignore_index=True)


def _power(effect_size: float, n: int, alpha: float) -> float:
    """Two-sided paired t-test power: P(|T'| > t_crit), T' ~ nct(n-1, d*sqrt(n))."""
    df, nc = n - 1, abs(effect_size) * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    wrong_side = float(stats.nct.cdf(-crit, df, nc))
    # scipy's nct returns NaN instead of ~0 deep in the tail opposite to the effect; that tail
    # is bounded by the (finite) mass below +crit, so NaN there only ever means "negligible".
    if math.isnan(wrong_side):
        wrong_side = 0.0
    return float(stats.nct.sf(crit, df, nc)) + wrong_side


def required_sessions(effect_size: float, *, alpha: float = 0.05, power: float = 0.8,
                      max_n: int = 100000) -> int | None:
    """Smallest n >= 2 at which a two-sided paired t-test with effect d_z reaches `power`.

    None if the effect is zero (or not finite) or even `max_n` sessions are not enough.

    >>> [required_sessions(d) for d in (0.8, 0.5, 0.2)]  # G*Power's values
    [15, 34, 199]
    """
    if not math.isfinite(effect_size) or effect_size == 0:
        return None
    # Power grows with n for a fixed effect: doubling then bisection needs O(log n) power
    # evaluations, all near the answer rather than in the extreme tails where nct is fragile.
    low, high = 1, 2  # invariant: power(low) < target (n=1 has no test), power(high) >= target
    while _power(effect_size, high, alpha) < power:
        if high >= max_n:
            return None
        low, high = high, min(2 * high, max_n)
    while high - low > 1:
        mid = (low + high) // 2
        if _power(effect_size, mid, alpha) >= power:
            high = mid
        else:
            low = mid
    return high


def _sd(values: np.ndarray) -> float:
    # Exactly 0 for constant values: np.std leaves ~1e-17 from rounding the mean, which would
    # turn "no spread" into a huge spurious effect size.
    if len(values) < 2:
        return math.nan
    return 0.0 if np.ptp(values) == 0 else float(np.std(values, ddof=1))


def paired_summary(pairs: pd.DataFrame, *, n_bootstrap: int = 10000, seed: int = 12345,
                   alpha: float = 0.05, power: float = 0.8, arms: tuple[str, str] = ARMS) -> dict[str, Any]:
    """Across-session summary of `session_pairs` output: effect, uncertainty, test and power.

    The bootstrap resamples whole sessions (the unit of replication). The power analysis uses
    the observed arm sds and their observed correlation, since pairing only pays off through
    that correlation. Undefined quantities are NaN (or None for sessions_needed) with a note.
    """
    first, second = arms
    diff = pairs["difference"].to_numpy(dtype=float)
    r1, r2 = pairs[f"rate_{first}"].to_numpy(dtype=float), pairs[f"rate_{second}"].to_numpy(dtype=float)
    n = len(diff)
    mean = float(diff.mean()) if n else math.nan
    out: dict[str, Any] = {"n_sessions": n, "mean_difference": mean, "ci_level": 1 - alpha}

    if n >= 2:
        rng = np.random.default_rng(seed)
        means = diff[rng.integers(0, n, size=(n_bootstrap, n))].mean(axis=1)
        low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        out["ci_low"], out["ci_high"] = float(low), float(high)
    else:
        out["ci_low"] = out["ci_high"] = math.nan

    out["wilcoxon_statistic"] = out["wilcoxon_p_value"] = math.nan
    out["wilcoxon_note"] = None
    if n < 2:
        out["wilcoxon_note"] = f"Wilcoxon test needs at least 2 sessions, got {n}"
    elif np.all(diff == 0):
        out["wilcoxon_note"] = "all paired differences are zero"
    else:
        test = stats.wilcoxon(diff, alternative="two-sided")
        out["wilcoxon_statistic"], out["wilcoxon_p_value"] = float(test.statistic), float(test.pvalue)

    s1, s2, sd_diff = _sd(r1), _sd(r2), _sd(diff)
    defined = n >= 2 and s1 > 0 and s2 > 0
    corr = float(np.corrcoef(r1, r2)[0, 1]) if defined else math.nan
    out.update({f"sd_{first}": s1, f"sd_{second}": s2, "correlation": corr, "sd_difference": sd_diff,
                "effect_size_dz": mean / sd_diff if sd_diff > 0 else math.nan,
                "mean_log_odds_ratio": float(pairs["log_odds_ratio"].mean()) if n else math.nan})

    # A constant arm has no defined r, but then the cross term is zero whatever r is.
    cross = 2 * corr * s1 * s2 if defined else 0.0
    sd_model = math.sqrt(max(s1 ** 2 + s2 ** 2 - cross, 0.0)) if n >= 2 else math.nan
    out["power_inputs"] = {"mean_difference": mean, f"sd_{first}": s1, f"sd_{second}": s2,
                           "correlation": corr, "sd_difference": sd_model, "alpha": alpha, "power": power}
    out["sessions_needed"], out["power_note"] = None, None
    if n < 2:
        out["power_note"] = f"power analysis needs at least 2 sessions, got {n}"
    elif mean == 0:
        out["power_note"] = "observed mean difference is zero"
    elif not (sd_model > 0 and sd_diff > 0):  # the formula can leave ~1e-10 of rounding
        out["power_note"] = "observed sd of the differences is zero"
    else:
        out["sessions_needed"] = required_sessions(mean / sd_model, alpha=alpha, power=power)
        if out["sessions_needed"] is None:
            out["power_note"] = "target power not reached within the search limit"
    return out


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Flatten the summary into (quantity, value) rows; nested power inputs get a prefix.

    >>> summary_table({"n_sessions": 3, "power_inputs": {"alpha": 0.05}}).values.tolist()
    [['n_sessions', 3], ['power_inputs.alpha', 0.05]]
    """
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if isinstance(value, dict):
            rows.extend((f"{key}.{k}", v) for k, v in value.items())
        else:
            rows.append((key, value))
    # object dtype keeps counts as ints (not 34.0) next to floats, strings and None.
    return pd.DataFrame(rows, columns=["quantity", "value"], dtype=object)


def plot_paired(pairs: pd.DataFrame, path: Path, *, arms: tuple[str, str] = ARMS) -> None:
    """Paired rates per session (left) and the distribution of differences (right) as a PNG.

    With fewer than two sessions there is nothing to compare, so the figure says so instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    complete = all(f"rate_{arm}" in pairs for arm in arms) and "difference" in pairs
    n = len(pairs) if complete else 0  # no pair yet: the table has no rate columns
    rates = [pairs[f"rate_{arm}"].to_numpy(dtype=float) if complete else np.zeros(0) for arm in arms]
    diff = pairs["difference"].to_numpy(dtype=float) if complete else np.zeros(0)
    for r1, r2 in zip(*rates):
        left.plot([0, 1], [r1, r2], color="0.7", lw=1, zorder=1)
    for x, (arm, values) in enumerate(zip(arms, rates)):
        left.scatter(np.full(n, x), values, s=18, zorder=2)
        if n:
            left.hlines(values.mean(), x - 0.15, x + 0.15, color="black", lw=2.5, zorder=3)
    left.set_xticks([0, 1], list(arms))
    left.set_xlim(-0.5, 1.5)
    left.set_ylabel("decoded logical error rate")
    left.set_title("per-session paired rates (bar: mean)")

    if n:
        right.hist(diff, bins=min(20, max(3, n // 2)), color="C0", alpha=0.4)
        # Jittered strip along the bottom so individual sessions stay visible in small studies.
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, n)
        right.scatter(diff, jitter * 0.5, color="C0", s=14, zorder=3)
        right.axvline(diff.mean(), color="C3", label=f"mean {diff.mean():+.4f}")
    right.axvline(0, color="black", lw=1, ls="--", label="zero")
    right.set_xlabel(f"rate {arms[1]} - rate {arms[0]}")
    right.set_title("paired differences")
    right.legend(loc="upper right", fontsize=8)
    if n < 2:
        message = "no sessions with both arms completed" if n == 0 else "only 1 paired session: no distribution"
        fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=12,
                 bbox={"facecolor": "white", "edgecolor": "0.5"})
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
