"""``results/analysis/overview.html``: the study on one page, for a physicist at a glance.

Written by ``analyze`` and attached to Snakemake's report (category "Overview"): what the
study is, the headline rates with their intervals and units (per round where the study has
several round counts, per shot always), the budget used and left, runs completed, pending and
failed, the deployment study's answer, then every figure inline with its caption and the
tables rendered. One self-contained file (figures embedded), no script.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from qpuflow.fileio import atomic_file

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #555; } table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.95rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.headline td.value { font-size: 1.15rem; font-weight: 600; } figure { margin: 1.2rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; } figcaption { color: #444; max-width: 60rem; }
.scroll { overflow-x: auto; }
"""

FIGURES = (
    ("error_rates", "Logical error rate per shot, raw and decoded, per prepared state (95% Wilson intervals)."),
    ("rounds_plot", "Detection-event fraction per round: flat means steady noise; the last point includes "
                    "the final data readout."),
    ("sessions_plot", "Deployment study: each arm's endpoint per session, and the paired difference per "
                      "session with the mean and its bootstrap interval."),
)


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.3g}%"


def headline_rows(tables: Mapping[str, pd.DataFrame]) -> list[tuple[str, str, str]]:
    """(what, value, detail) rows of the headline: rates per round and per shot, the study's answer."""
    rows = []
    per_round = tables.get("per_round", pd.DataFrame())
    for _, r in per_round.iterrows():
        what = f"{r['experiment']}: |{r['logical_state']}>, d={r['distance']}, {r['layout']} on {r['backend']}"
        rows.append((what, f"{_pct(r['per_round_error'])} per round",
                     f"95% CI {_pct(r['ci_low'])} to {_pct(r['ci_high'])}; rounds {r['round_counts']}; "
                     f"{int(r['shots'])} shots; {r['method']}"))
    summary = tables.get("summary", pd.DataFrame())
    for _, r in summary.iterrows():
        if r["kind"] == "deployment":
            continue
        rows.append((f"{r['experiment']}: |{r['logical_state']}>, {r['rounds']} rounds",
                     f"{_pct(r['decoded_rate'])} per shot (decoded)",
                     f"95% CI {_pct(r['decoded_ci_low'])} to {_pct(r['decoded_ci_high'])}; raw {_pct(r['raw_rate'])}; "
                     f"{int(r['shots'])} shots in {int(r['jobs'])} run(s)"))
    stats = tables.get("session_stats", pd.DataFrame())
    for experiment, frame in (stats.groupby("experiment") if not stats.empty else ()):
        value = dict(zip(frame["quantity"], frame["value"]))
        n = int(value.get("n_sessions", 0))
        endpoint = str(value.get("endpoint") or "").replace("_", " ")
        if n >= 2:
            mean, low, high = (float(value[k]) for k in ("mean_difference", "ci_low", "ci_high"))
            p = value.get("wilcoxon_p_value")
            test = f"Wilcoxon p = {float(p):.3g}" if p is not None and not pd.isna(p) else str(value.get("wilcoxon_note"))
            rows.append((f"{experiment}: drift_aware − calibration ({endpoint})", f"{mean:+.3g}",
                         f"95% bootstrap CI {low:+.3g} to {high:+.3g}; {test}; {n} sessions"))
        else:
            rows.append((f"{experiment}: deployment study", f"{n} complete session(s)",
                         "at least 2 are needed for an interval and a test"))
    return rows


def render(tables: Mapping[str, pd.DataFrame], *, study: str, at: datetime, usage: Iterable[Any],
           window_days: float, figures: Mapping[str, Path]) -> str:
    esc = html.escape
    runs = tables.get("runs", pd.DataFrame())
    counts = runs["status"].value_counts().to_dict() if "status" in runs else {}
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(study)}: overview</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>{esc(study)}</h1><p class='meta'>Analysed {esc(at.isoformat(timespec='minutes'))}. "
             "Quantum-error-correction memory experiments, each run submitted exactly once and decoded with "
             "PyMatching from its calibration snapshot; intervals are 95%.</p>",
             "<h2>Headline</h2><table class='headline'><tr><th>what</th><th class='num'>value</th><th>detail</th></tr>"]
    for what, value, detail in headline_rows(tables):
        parts.append(f"<tr><td>{esc(what)}</td><td class='num value'>{esc(value)}</td><td>{esc(detail)}</td></tr>")
    parts.append("</table><h2>Runs and budget</h2><p>"
                 + ", ".join(f"{esc(str(status))}: {n}" for status, n in sorted(counts.items())) + "</p>")
    parts.append(f"<table><tr><th>account</th><th class='num'>limit</th><th class='num'>used (last {window_days:g} "
                 "days)</th><th class='num'>left</th></tr>")
    for u in usage:
        parts.append(f"<tr><td>{esc(u.account)}</td><td class='num'>{u.limit_seconds:.0f} s</td>"
                     f"<td class='num'>{u.used_seconds:.1f} s</td><td class='num'>{u.remaining_seconds:.1f} s</td></tr>")
    parts.append("</table><h2>Figures</h2>")
    for name, caption in FIGURES:
        path = figures.get(name)
        if path is None or not Path(path).exists():
            continue
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts.append("<h2>Tables</h2>")
    for name, title in (("per_round", "Logical error per round"), ("summary", "Rates per experiment and state"),
                        ("session_stats", "Deployment study: paired statistics")):
        frame = tables.get(name)
        if frame is None or frame.empty:
            continue
        parts.append(f"<h3>{esc(title)}</h3><div class='scroll'>"
                     + frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}", na_rep="")
                     + "</div>")
    parts.append("<p class='meta'>Every table is also a CSV in results/analysis/; the per-run numbers and the "
                 "provenance of every job are in runs.csv and provenance.csv.</p></body></html>\n")
    return "".join(parts)


def write_overview(tables: Mapping[str, pd.DataFrame], config: Mapping[str, Any], paths: Any,
                   figures: Mapping[str, Path], out: Path, *, at: datetime) -> Path:
    from qpuflow.budget import usage_by_account
    from qpuflow.ledger import Ledger

    ledger = Ledger(paths.ledger)
    usage = usage_by_account(dict(config), ledger.accepted_markers(), paths.result, duplicates=ledger.duplicates())
    text = render(tables, study=str(config.get("study") or Path.cwd().name), at=at, usage=usage.values(),
                  window_days=float(config["budget"]["window_days"]), figures=figures)
    with atomic_file(out) as fh:
        fh.write(text)
    return out
