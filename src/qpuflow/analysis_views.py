"""What the analysis shows: the figures (error rates per round count, detection events per
round) and the summaries printed at the end of ``snakemake analyze``, from the tables
:mod:`qpuflow.analysis` computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from qpuflow.fileio import save_figure
from qpuflow.stats import wilson_interval


def plot_error_rates(summary: pd.DataFrame, out: Path) -> None:
    """Raw vs decoded logical error rate per logical state, one panel per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiments = list(dict.fromkeys(summary["experiment"])) if not summary.empty else []
    fig, axes = plt.subplots(1, max(1, len(experiments)), figsize=(4.2 * max(1, len(experiments)), 4), squeeze=False)
    order = {state: i for i, state in enumerate(("0", "1", "+", "-"))}  # as configs list them
    for ax, name in zip(axes[0], experiments):
        frame = summary[summary["experiment"] == name]
        frame = frame.assign(_order=frame["logical_state"].astype(str).map(order)).sort_values(
            ["_order", "rounds"], kind="stable").reset_index(drop=True)
        x = range(len(frame))
        for offset, prefix, label, marker in ((-0.12, "raw", "raw (no decoding)", "o"),
                                              (0.12, "decoded", "decoded (PyMatching)", "s")):
            rate = frame[f"{prefix}_rate"].to_numpy(dtype=float)
            err = np.clip([rate - frame[f"{prefix}_ci_low"].to_numpy(dtype=float),
                           frame[f"{prefix}_ci_high"].to_numpy(dtype=float) - rate], 0, None)
            ax.errorbar([i + offset for i in x], rate, yerr=err, fmt=marker, capsize=4, label=label)
        first = frame.iloc[0]
        several = frame["rounds"].nunique() > 1
        ax.set_title(f"{name}\n{first['kind']} d={first['distance']}, {first['backend']}", fontsize=10)
        ax.set_xticks(list(x), [f"|{s}>" + (f"\n{r} rounds" if several else f", {r} rounds" if i == 0 else "")
                                for i, (s, r) in enumerate(zip(frame["logical_state"], frame["rounds"]))])
        ax.set_xlim(-0.6, len(frame) - 0.4)
        ax.set_xlabel("prepared logical state")
        ax.set_ylabel("logical error rate per shot (95% CI)")
        rates = frame[["raw_rate", "decoded_rate"]].to_numpy(dtype=float)
        positive = rates[rates > 0]
        if positive.size and positive.max() / positive.min() > 30:  # rates spanning decades: log axis
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    if not experiments:
        axes[0][0].text(0.5, 0.5, "no completed jobs yet", ha="center", va="center")
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)


def plot_detection_rounds(rounds: pd.DataFrame, out: Path) -> None:
    """Fraction of detectors that fired, per round, pooled per experiment and logical state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    if rounds.empty:
        ax.text(0.5, 0.5, "no completed jobs yet", ha="center", va="center")
    else:
        pooled = rounds.groupby(["experiment", "logical_state", "round"], sort=True)[["events", "detectors", "shots"]].sum()
        for (experiment, state), frame in pooled.groupby(level=[0, 1]):
            frame = frame.droplevel([0, 1])
            # detectors x shots per job, summed over jobs: events / trials is the pooled fraction
            trials = (rounds[(rounds["experiment"] == experiment) & (rounds["logical_state"] == state)]
                      .assign(trials=lambda f: f["detectors"] * f["shots"]).groupby("round")["trials"].sum())
            fraction = (frame["events"] / trials).to_numpy(dtype=float)
            bounds = np.array([wilson_interval(int(e), int(t)) for e, t in zip(frame["events"], trials)])
            err = np.clip([fraction - bounds[:, 0], bounds[:, 1] - fraction], 0, None)
            ax.errorbar(frame.index.to_numpy(), fraction, yerr=err, marker="o", capsize=3, label=f"{experiment} |{state}>")
        ax.set_xticks(sorted(rounds["round"].unique()))
        ax.legend(fontsize=8)
    ax.set_xlabel("round (last = from the final data readout)")
    ax.set_ylabel("detection-event fraction (95% CI)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)


def print_decoded_summary(summary: pd.DataFrame, console: Any = None) -> None:
    """The pooled table a person reads first: raw and decoded rates with 95% intervals."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if summary.empty:
        console.print("No completed jobs to analyse yet: run `snakemake --cores 1 collect` first.")
        return
    # Fits 80 columns: the raw rate's interval is in summary.csv.
    table = Table(title="Logical error rate per shot (pooled over runs; decoded with 95% Wilson CI)")
    for name in ("experiment", "d", "r", "state", "shots", "raw", "decoded", "95% CI"):
        table.add_column(name, justify="left" if name == "experiment" else "right", no_wrap=True)
    for row in summary.itertuples():
        table.add_row(
            row.experiment, str(row.distance), str(row.rounds), f"|{row.logical_state}>", str(row.shots),
            f"{row.raw_rate:.4f}", f"{row.decoded_rate:.4f}", f"{row.decoded_ci_low:.4f}-{row.decoded_ci_high:.4f}",
        )
    console.print(table)


def print_per_round_summary(per_round: pd.DataFrame, console: Any = None) -> None:
    """Logical error per round, per experiment and state, with its 95% bootstrap interval."""
    from rich.console import Console
    from rich.table import Table

    if per_round.empty:
        return
    console = console or Console()
    table = Table(title="Logical error per round (decoded; * = includes preparation and readout)")
    for name in ("experiment", "d", "rounds", "state", "per round", "95% CI"):
        table.add_column(name, justify="left" if name == "experiment" else "right", no_wrap=True)
    for row in per_round.itertuples():
        spam = "" if " " in str(row.round_counts) else "*"
        table.add_row(row.experiment, str(row.distance), str(row.round_counts), f"|{row.logical_state}>",
                      f"{row.per_round_error:.4f}{spam}", f"{row.ci_low:.4f}-{row.ci_high:.4f}")
    console.print(table)


def print_session_summary(stats: pd.DataFrame, console: Any = None, runs: pd.DataFrame | None = None,
                          experiments: Iterable[str] = ()) -> None:
    """The deployment study's answer in a few lines: difference, interval, test; for a
    deployment experiment (of ``experiments``) without a complete pair yet, what is there."""
    from rich.console import Console

    console = console or Console()
    have = set(stats["experiment"]) if not stats.empty else set()
    for experiment in experiments:
        if experiment in have:
            continue
        frame = runs[runs["experiment"] == experiment] if runs is not None and "experiment" in runs else None
        counts = frame["status"].value_counts().to_dict() if frame is not None and not frame.empty else {}
        detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none submitted yet"
        console.print(f"{experiment}: No session with both arms completed yet (arm runs: {detail}); the paired "
                      f"statistics need at least one complete pair", highlight=False, soft_wrap=True)
    if stats.empty:
        return
    for experiment, frame in stats.groupby("experiment", sort=True):
        value = dict(zip(frame["quantity"], frame["value"]))
        n = int(value["n_sessions"])
        line = f"{experiment}: {n} complete session pair(s)"
        if n >= 2:
            p_value = float(value["wilcoxon_p_value"])
            test = f"Wilcoxon p = {p_value:.3g}" if not pd.isna(p_value) else f"no test: {value.get('wilcoxon_note')}"
            line += (f"; drift_aware - calibration {str(value.get('endpoint', '')).replace('_', ' ')} "
                     f"{float(value['mean_difference']):+.3g} (95% bootstrap CI {float(value['ci_low']):+.3g} to "
                     f"{float(value['ci_high']):+.3g}), {test}")
            if value.get("resolution_note"):
                line += f"; {value['resolution_note']}"
        else:
            line += "; at least 2 are needed for an interval (see results/analysis/session_stats.csv)"
        console.print(line, highlight=False, soft_wrap=True)
