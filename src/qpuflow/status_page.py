"""``results/status.html``: the study at a glance, rewritten by every ``collect``.

For a campaign run from cron, a page to open in a browser: jobs by state (failed ones first,
with the provider's message), the QPU seconds each account has used and has left in its
window, and what waits (the next session's due time, arms waiting for a probe). Plain HTML
and CSS, no script; it reloads itself every five minutes.
"""

from __future__ import annotations

import html
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from qpuflow.collect import JobStatusRow
from qpuflow.fileio import atomic_file

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 1.8rem; }
.meta { color: #666; } table { border-collapse: collapse; margin-top: 0.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.ERROR, .CANCELLED, .UNKNOWN { color: #a40000; font-weight: 600; } .DONE { color: #1a6b1a; }
.QUEUED, .RUNNING { color: #8a5a00; } .counts span { margin-right: 1.4rem; font-size: 1.1rem; }
"""

_ORDER = {"ERROR": 0, "CANCELLED": 1, "UNKNOWN": 2, "?": 3, "RUNNING": 4, "QUEUED": 5, "DONE": 6}


def render(rows: Sequence[JobStatusRow], *, study: str, at: datetime, usage: Iterable[Any],
           waiting: Sequence[str], window_days: float) -> str:
    """The page for ``rows`` (one per submitted run), account ``usage``
    (:class:`qpuflow.budget.AccountUsage`) and the notes of what waits."""
    counts = Counter(row.state for row in rows)
    esc = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta http-equiv='refresh' content='300'><title>{esc(study)}: status</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>{esc(study)}</h1><p class='meta'>Status at {esc(at.isoformat(timespec='minutes'))}, "
             f"written by <code>snakemake collect</code>; {len(rows)} submitted run(s).</p>",
             "<p class='counts'>" + "".join(
                 f"<span class='{esc(state)}'>{esc(_label(state))}: {n}</span>"
                 for state, n in sorted(counts.items(), key=lambda kv: _ORDER.get(kv[0], 9))) + "</p>"]
    parts.append(f"<h2>Budget (QPU seconds in the last {window_days:g} days)</h2><table><tr><th>account</th>"
                 "<th class='num'>limit</th><th class='num'>used</th><th class='num'>left</th>"
                 "<th class='num'>spendable (after reserve)</th></tr>")
    for u in usage:
        parts.append(f"<tr><td>{esc(u.account)}</td><td class='num'>{u.limit_seconds:.0f}</td>"
                     f"<td class='num'>{u.used_seconds:.1f}</td><td class='num'>{u.remaining_seconds:.1f}</td>"
                     f"<td class='num'>{u.spendable_seconds:.1f}</td></tr>")
    parts.append("</table><h2>What waits</h2>")
    parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in waiting) + "</ul>" if waiting
                 else "<p>Nothing is scheduled to wait: every due run has been submitted.</p>")
    parts.append("<h2>Jobs</h2><table><tr><th>state</th><th>run</th><th>job</th><th>result</th><th>message</th></tr>")
    for row in sorted(rows, key=lambda r: (_ORDER.get(r.state, 9), r.run_key)):
        parts.append(f"<tr><td class='{esc(row.state)}'>{esc(_label(row.state))}</td><td>{esc(row.run_key)}</td>"
                     f"<td><code>{esc(row.job_id)}</code></td><td>{'collected' if row.collected else ''}</td>"
                     f"<td>{esc(row.error or '')}</td></tr>")
    parts.append("</table></body></html>\n")
    return "".join(parts)


def _label(state: str) -> str:
    return {"DONE": "done", "ERROR": "failed", "CANCELLED": "cancelled", "QUEUED": "queued", "RUNNING": "running",
            "UNKNOWN": "unknown to the provider", "?": "provider unreachable"}.get(state, state.lower())


def write_status_page(config: Mapping[str, Any], paths: Any, rows: Sequence[JobStatusRow], *, at: datetime,
                      waiting: Sequence[str]) -> Path:
    """Render the page for the study and write it to ``results/status.html`` (atomically)."""
    from qpuflow.budget import usage_by_account
    from qpuflow.ledger import Ledger

    ledger = Ledger(paths.ledger)
    usage = usage_by_account(dict(config), ledger.accepted_markers(), paths.result, duplicates=ledger.duplicates())
    text = render(rows, study=str(config.get("study") or Path.cwd().name), at=at, usage=usage.values(),
                  waiting=waiting, window_days=float(config["budget"]["window_days"]))
    out = paths.root / "status.html"
    with atomic_file(out) as fh:
        fh.write(text)
    return out
