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

from qpuflow.fileio import save_figure

ARMS: tuple[str, str] = ("calibration", "drift_aware")

# An endpoint: the runs-table columns of its count and its number of trials, and its unit.
ENDPOINTS: dict[str, tuple[str, str, str]] = {
    "detection_fraction": ("detection_events", "detector_trials", "detection-event fraction"),
    "decoded_rate": ("decoded_errors", "shots", "decoded logical error rate (per shot)"),
    "raw_rate": ("raw_errors", "shots", "raw logical error rate (per shot)"),
}
TEST = "Wilcoxon signed-rank, two-sided"
Z95 = 1.959963984540054
# Fewer events than this in an arm over the whole study and the endpoint cannot resolve a
# difference: the summary says so instead of showing derived figures.
MIN_EVENTS = 10


def session_pairs(runs: pd.DataFrame, *, experiment: str | None = None, arms: tuple[str, str] = ARMS,
                  endpoint: str = "decoded_rate") -> pd.DataFrame:
    """One row per (experiment, session) in which both arms completed.

    Columns: experiment, session, endpoint; per arm ``shots_<arm>``, ``errors_<arm>`` and
    ``rate_<arm>`` (the decoded logical rate, always kept as a secondary outcome),
    ``count_<arm>`` and ``trials_<arm>`` (the endpoint's events and chances),
    ``value_<arm>`` (the endpoint) and ``se_<arm>`` (its binomial standard error, from
    ``(count + 0.5) / (trials + 1)`` so that a zero count still has a width); ``difference``
    (endpoint of arms[1] minus arms[0]) with ``difference_ci_low``/``_high`` (95%, normal
    approximation of the two arms' binomial errors); ``log_odds_ratio`` of the decoded rates
    (0.5 added to all four cells) and its SE. A retried arm counts once, with its highest
    attempt, so a session is never weighted twice.

    >>> runs = pd.DataFrame({"experiment": "dep", "session": [0, 0], "arm": list(ARMS),
    ...     "status": "completed", "shots": 100, "decoded_errors": [10, 5], "attempt": 1})
    >>> session_pairs(runs)[["session", "rate_calibration", "rate_drift_aware", "difference"]].to_dict("records")
    [{'session': 0, 'rate_calibration': 0.1, 'rate_drift_aware': 0.05, 'difference': -0.05}]
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}")
    count, trials, _ = ENDPOINTS[endpoint]
    first, second = arms
    per_arm = ("shots", "errors", "rate", "count", "trials", "value", "se")
    columns = (["experiment", "session", "endpoint"] + [f"{q}_{a}" for a in arms for q in per_arm]
               + ["difference", "difference_ci_low", "difference_ci_high", "log_odds_ratio", "log_odds_ratio_se"])
    done = runs[(runs["status"] == "completed") & runs["session"].notna() & runs["arm"].isin(arms)]
    if experiment is not None:
        done = done[done["experiment"] == experiment]
    if done.empty:
        return pd.DataFrame(columns=columns)
    done = done.assign(session=done["session"].astype(int))
    # Stable sort so that, among equal attempts, the row order of the input decides.
    latest = (done.sort_values("attempt", kind="stable")
              .drop_duplicates(["experiment", "session", "arm"], keep="last"))
    values = list(dict.fromkeys(["shots", "decoded_errors", count, trials]))
    wide = latest.pivot(index=["experiment", "session"], columns="arm", values=values)
    # Reindex first: an arm that never completed must still show up as missing, not vanish.
    wide = wide.reindex(columns=pd.MultiIndex.from_product([values, arms])).dropna()
    out = pd.DataFrame({"experiment": wide.index.get_level_values(0),
                        "session": wide.index.get_level_values(1).astype(int), "endpoint": endpoint})
    for arm in arms:
        shots = wide[("shots", arm)].to_numpy(dtype=int)
        errors = wide[("decoded_errors", arm)].to_numpy(dtype=int)
        k, n = wide[(count, arm)].to_numpy(dtype=float), wide[(trials, arm)].to_numpy(dtype=float)
        out[f"shots_{arm}"], out[f"errors_{arm}"] = shots, errors
        out[f"rate_{arm}"] = errors / np.where(shots > 0, shots, np.nan)
        out[f"count_{arm}"], out[f"trials_{arm}"] = k.astype(int), n.astype(int)
        out[f"value_{arm}"] = k / np.where(n > 0, n, np.nan)
        smoothed = (k + 0.5) / (n + 1)
        out[f"se_{arm}"] = np.sqrt(smoothed * (1 - smoothed) / np.where(n > 0, n, np.nan))
    out["difference"] = out[f"value_{second}"] - out[f"value_{first}"]
    half = Z95 * np.sqrt(out[f"se_{first}"] ** 2 + out[f"se_{second}"] ** 2)
    out["difference_ci_low"], out["difference_ci_high"] = out["difference"] - half, out["difference"] + half
    cells = {arm: (out[f"errors_{arm}"] + 0.5, out[f"shots_{arm}"] - out[f"errors_{arm}"] + 0.5) for arm in arms}
    out["log_odds_ratio"] = (np.log(cells[second][0] / cells[second][1])
                             - np.log(cells[first][0] / cells[first][1]))
    out["log_odds_ratio_se"] = np.sqrt(sum(1 / c for pair in cells.values() for c in pair))
    return out[columns].sort_values(["experiment", "session"], ignore_index=True)


def _sd(values: np.ndarray) -> float:
    # Exactly 0 for constant values: np.std leaves ~1e-17 from rounding the mean, which would
    # turn "no spread" into a huge spurious effect size.
    if len(values) < 2:
        return math.nan
    return 0.0 if np.ptp(values) == 0 else float(np.std(values, ddof=1))


def paired_summary(pairs: pd.DataFrame, *, n_bootstrap: int = 10000, seed: int = 12345,
                   alpha: float = 0.05, arms: tuple[str, str] = ARMS) -> dict[str, Any]:
    """Across-session summary of :func:`session_pairs` output, in the endpoint's units.

    The mean paired difference with a bootstrap interval over whole sessions (the unit of
    replication), the Wilcoxon signed-rank test (the test ``qpuflow plan``'s prospective power
    is computed for), the effect size d_z and the within-pair correlation. A figure the data
    cannot support is NaN with a note saying why: no interval or test below 2 sessions, no
    correlation below 3 or with a constant arm, and, when an arm saw fewer than
    :data:`MIN_EVENTS` events in all, a note that the endpoint cannot resolve a difference.
    There is no post-hoc power: power is planned before the campaign (``qpuflow plan``).
    """
    first, second = arms
    diff = pairs["difference"].to_numpy(dtype=float)
    v1, v2 = pairs[f"value_{first}"].to_numpy(dtype=float), pairs[f"value_{second}"].to_numpy(dtype=float)
    n = len(diff)
    endpoint = str(pairs["endpoint"].iloc[0]) if n and "endpoint" in pairs else ""
    mean = float(diff.mean()) if n else math.nan
    out: dict[str, Any] = {"n_sessions": n, "endpoint": endpoint, "mean_difference": mean,
                           "ci_level": 1 - alpha, "test": TEST}
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
        out["wilcoxon_note"] = f"the test needs at least 2 sessions, got {n}"
    elif np.all(diff == 0):
        out["wilcoxon_note"] = "all paired differences are zero"
    else:
        test = stats.wilcoxon(diff, alternative="two-sided")
        out["wilcoxon_statistic"], out["wilcoxon_p_value"] = float(test.statistic), float(test.pvalue)

    s1, s2, sd_diff = _sd(v1), _sd(v2), _sd(diff)
    out.update({f"sd_{first}": s1, f"sd_{second}": s2, "sd_difference": sd_diff,
                "effect_size_dz": mean / sd_diff if sd_diff > 0 else math.nan,
                "correlation": math.nan, "correlation_note": None,
                "mean_log_odds_ratio": float(pairs["log_odds_ratio"].mean()) if n else math.nan})
    if n < 3:
        out["correlation_note"] = f"a correlation needs at least 3 sessions, got {n}"
    elif not (s1 > 0 and s2 > 0):
        out["correlation_note"] = "an arm's endpoint is the same in every session"
    else:
        out["correlation"] = float(np.corrcoef(v1, v2)[0, 1])
    out["resolution_note"] = None
    if n:
        count = ENDPOINTS[endpoint][0] if endpoint in ENDPOINTS else "events"
        fewest = min(_events(pairs, arm, endpoint) for arm in arms)
        if fewest < MIN_EVENTS:
            out["resolution_note"] = (f"an arm saw only {fewest:.0f} {count.replace('_', ' ')} in all: the endpoint "
                                      "cannot resolve a difference at these shots; choose an endpoint with more "
                                      "events (detection_fraction) or more shots (qpuflow plan)")
    return out


def _events(pairs: pd.DataFrame, arm: str, endpoint: str) -> float:
    return float(pairs[f"count_{arm}"].sum())


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


def plot_paired(pairs: pd.DataFrame, path: Path, *, arms: tuple[str, str] = ARMS,
                summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """The deployment study as a PNG, in the endpoint's units, every session visible.

    Left: each arm's endpoint per session with its 95% interval (arms side by side, the axis
    from zero). Right: the paired difference per session with its 95% interval, the zero
    line, and, from 2 sessions on, the mean difference with its bootstrap interval (from
    ``summary``, :func:`paired_summary`). With no complete pair the figure says so. Returns
    what was drawn (sessions, both panels' y ranges, the message shown if any).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = "difference" in pairs and len(pairs) > 0 and all(f"value_{a}" in pairs for a in arms)
    n = len(pairs) if complete else 0
    endpoint = str(pairs["endpoint"].iloc[0]) if n else ""
    unit = ENDPOINTS.get(endpoint, ("", "", "endpoint"))[2]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(n)
    for offset, arm, color in ((-0.15, arms[0], "C0"), (0.15, arms[1], "C1")):
        if n:
            values, se = pairs[f"value_{arm}"].to_numpy(float), pairs[f"se_{arm}"].to_numpy(float)
            left.errorbar(x + offset, values, yerr=Z95 * se, fmt="o", ms=3, color=color, capsize=2,
                          elinewidth=1, label=arm)
    left.set_ylim(bottom=0)
    left.set_xlabel("session")
    left.set_ylabel(unit)
    left.set_title(f"each arm per session (95% intervals), n = {n}")
    if n:
        left.legend(fontsize=8, loc="lower right")
        diff = pairs["difference"].to_numpy(float)
        low, high = pairs["difference_ci_low"].to_numpy(float), pairs["difference_ci_high"].to_numpy(float)
        right.errorbar(x, diff, yerr=[diff - low, high - diff], fmt="o", ms=3, color="C2", capsize=2, elinewidth=1,
                       label="per session, 95%")
        if n >= 2 and summary is not None and math.isfinite(summary.get("ci_low", math.nan)):
            mean, ci = summary["mean_difference"], (summary["ci_low"], summary["ci_high"])
            right.axhspan(*ci, color="C3", alpha=0.15)
            right.axhline(mean, color="C3", lw=1.5,
                          label=f"mean {mean:+.3g} [{ci[0]:+.3g}, {ci[1]:+.3g}]")
        span = max(np.nanmax(np.abs([low, high])), 1e-12) * 1.1
        right.set_ylim(-span, span)  # symmetric: zero in the middle, every interval whole
    else:
        right.set_ylim(-1, 1)
    right.axhline(0, color="black", lw=1, ls="--", label="zero")
    right.set_xlabel("session")
    right.set_ylabel(f"{arms[1]} - {arms[0]}")
    right.set_title("paired difference per session")
    right.legend(loc="upper right", fontsize=8)
    for ax in (left, right):
        ax.set_xlim(-0.6, max(n, 1) - 0.4)
    if n < 2:
        message = "no session with both arms completed" if n == 0 else "1 paired session: no interval or test yet"
        fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=12,
                 bbox={"facecolor": "white", "edgecolor": "0.5"})
    fig.tight_layout()
    save_figure(fig, path)
    drawn = {"sessions": n, "value_ylim": left.get_ylim(), "difference_ylim": right.get_ylim(),
             "message": message if n < 2 else None,
             "points": sum(len(line.get_xdata()) for line in right.get_lines() if line.get_marker() == "o")}
    plt.close(fig)
    return drawn
