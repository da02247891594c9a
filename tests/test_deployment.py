"""The deployment study end to end through Snakemake (issue 5): probe, second async boundary,
paired arms in a recorded random order on the qubits chosen for them, the schedule, statistics.

The campaign is rehearsed on the local backend with the pretend clock QPUFLOW_NOW, so days of
schedule pass in a minute. Jobs are counted at the provider (`qpuflow jobs`).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from qpuflow.transpile import physical_layout
from tests.conftest import SMALL_CONFIG, provider_jobs, snakemake, write_config

pytestmark = pytest.mark.slow

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)

# The small study's provider, account and transpiler settings, with a scheduled campaign.
CAMPAIGN = {
    **{key: value for key, value in SMALL_CONFIG.items() if key != "experiments"},
    "experiments": {
        "dep": {"kind": "deployment", "distance": 3, "rounds": 1, "sessions": 3, "shots": 400,
                "arms": ["calibration", "drift_aware"], "order_seed": 3,
                "schedule": {"every_hours": 8},
                "probe": {"shots": 400, "delays_us": [50, 100], "qubits": 8}},
    },
}


def at(study: Path, when: datetime, *args: str, **kw):
    return snakemake(study, *args, env={"QPUFLOW_NOW": when.isoformat()}, **kw)


def markers(study: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((study / "results/submitted/dep").glob("*.json"))}


def job_count(study: Path) -> int:
    return len(provider_jobs(study))


def load_isa(path: Path):
    from qiskit import qpy

    with open(path, "rb") as fh:
        return qpy.load(fh)[0]


def test_a_scheduled_campaign_with_probes_end_to_end(study: Path):
    write_config(study, CAMPAIGN)

    # Session 0 is due at once: only its probe goes out; submit says the arms wait, exits 0.
    first = at(study, T0, "submit")
    assert "the arms wait for probe session000_probe" in first.all
    assert "session 001 is due at 2026-12-01T16:00" in first.all
    assert sorted(markers(study)) == ["session000_probe"] and job_count(study) == 1

    # Before collect, another submit has nothing to do: the arms still wait.
    again = at(study, T0 + 0.5 * H, "submit")
    assert "the arms wait for probe" in again.all and job_count(study) == 1

    at(study, T0 + H, "collect")
    at(study, T0 + H, "submit")
    found = markers(study)
    assert sorted(found) == ["session000_calibration", "session000_drift_aware", "session000_probe"]
    assert job_count(study) == 3

    # Both arms carry the session's order and went out in it.
    selection = json.loads((study / "results/selection/dep/session000.json").read_text())
    order = selection["order"]
    assert sorted(order) == ["calibration", "drift_aware"]
    arms = [found[f"session000_{arm}"] for arm in order]
    assert [m["selection"]["position"] for m in arms] == [0, 1]
    assert all(m["selection"]["order"] == order for m in arms)
    log = (study / "results/ledger/submissions.jsonl").read_text().splitlines()
    accepted = [json.loads(line)["run_key"] for line in log if '"event":"accepted"' in line]
    assert accepted[-2:] == [f"dep/session000_{arm}" for arm in order]

    # The selected qubits are the ones really used: the ISA layout is the chain.
    probe = found["session000_probe"]
    for arm in order:
        marker = found[f"session000_{arm}"]
        chain = selection["arms"][arm]["chain"]
        assert marker["selection"]["chain"] == chain == marker["physical_layout"]
        assert physical_layout(load_isa(study / marker["isa_path"])) == chain
    assert set(selection["arms"]["drift_aware"]["chain"]) <= set(probe["physical_layout"])
    assert selection["arms"]["drift_aware"]["probe_job_id"] == probe["job_id"]
    assert set(selection["arms"]["drift_aware"]["estimates"]) == {str(q) for q in probe["physical_layout"]}

    # Nothing runs twice.
    rerun = at(study, T0 + 2 * H, "submit")
    assert "Nothing to be done" in rerun.all and job_count(study) == 3

    # Three slots missed: one overdue session now, the next at least min_gap (4 h) later.
    late = T0 + 40 * H
    overdue = at(study, late, "submit")
    assert "session 002 is due at 2026-12-03T04:00" in overdue.all
    assert "session001_probe" in markers(study) and "session002_probe" not in markers(study)
    assert job_count(study) == 4
    at(study, late + H, "collect")
    at(study, late + H, "submit")
    assert job_count(study) == 6 and "session002_probe" not in markers(study)

    at(study, late + 2 * H, "collect")
    at(study, late + 2 * H, "analyze")
    sessions = pd.read_csv(study / "results/analysis/sessions.csv")
    assert list(sessions["session"]) == [0, 1]
    stats = pd.read_csv(study / "results/analysis/session_stats.csv").set_index("quantity")["value"]
    assert int(float(stats["n_sessions"])) == 2
    assert (study / "results/analysis/sessions.png").stat().st_size > 0
    # Per-session rates in the table are the decoded rates of the runs table.
    runs = pd.read_csv(study / "results/analysis/runs.csv").set_index("run")
    assert sessions.loc[0, "rate_calibration"] == pytest.approx(runs.loc["session000_calibration", "decoded_rate"])


def test_a_campaign_that_does_not_fit_is_not_started(study: Path):
    config = json.loads(json.dumps(CAMPAIGN))
    config["experiments"]["dep"]["sessions"] = 60
    config["accounts"][0]["budget_seconds"] = 100
    write_config(study, config)
    refused = at(study, T0, "submit", check=False)
    assert refused.returncode != 0
    assert "not starting the campaign" in refused.all and "allow_campaign_overrun" in refused.all
    assert job_count(study) == 0

    config["budget"] = {"allow_campaign_overrun": True}
    write_config(study, config)
    at(study, T0, "submit")
    assert job_count(study) == 1  # started on the user's explicit say-so: session 0's probe
