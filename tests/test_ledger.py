from __future__ import annotations

import multiprocessing
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from qpuflow.budget import BudgetExceeded, choose_account, estimate_qpu_seconds, usage_by_account
from qpuflow.ledger import Ledger


def test_history_tracks_intent_and_acceptance(tmp_path):
    ledger = Ledger(tmp_path / "l.jsonl")
    ledger.append("intent", run_key="a/b", run_id="r", tag="t", account="x", provider="local", time="t0")
    assert ledger.history("a/b").dangling_intent["tag"] == "t"
    ledger.append("accepted", run_key="a/b", run_id="r", job_id="J", time="t1", marker={"job_id": "J"})
    history = ledger.history("a/b")
    assert history.dangling_intent is None and history.accepted["job_id"] == "J"
    assert ledger.history("a/c").accepted is None


def test_torn_last_line_is_skipped_and_not_glued(tmp_path):
    path = tmp_path / "l.jsonl"
    ledger = Ledger(path)
    ledger.append("intent", run_key="a/b", run_id="r", tag="t", account="x", provider="local", time="t0")
    with open(path, "a") as fh:  # what a kill -9 in the middle of a write leaves
        fh.write('{"event":"accepted","run_key":"a/b","job_')
    # A line without its newline may still be being written: it is not read yet.
    assert ledger.history("a/b").dangling_intent is not None
    ledger.append("accepted", run_key="a/b", run_id="r", job_id="J", time="t1", marker={})
    with pytest.warns(UserWarning, match="unreadable ledger line"):
        assert ledger.history("a/b").accepted["job_id"] == "J"
    # Another process (no cache) reads the same: the torn line skipped, the rest intact.
    fresh = subprocess.run([sys.executable, "-c", "from qpuflow.ledger import Ledger; import sys; "
                            "print([e['event'] for e in Ledger(sys.argv[1]).events()])", str(path)],
                           capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == "['intent', 'accepted']"


def test_events_read_incrementally_see_every_append(tmp_path):
    path = tmp_path / "l.jsonl"
    ledger = Ledger(path)
    for i in range(5):
        ledger.append("intent", run_key=f"a/{i}", run_id="r", tag="t", account="x", provider="local", time="t")
        assert [e["run_key"] for e in ledger.events()] == [f"a/{k}" for k in range(i + 1)]
    # Another Ledger object on the same file, and a replaced file, are read correctly too.
    assert len(Ledger(path).events()) == 5
    path.unlink()
    Ledger(path).append("intent", run_key="b/0", run_id="r", tag="t", account="x", provider="local", time="t")
    assert [e["run_key"] for e in ledger.events()] == ["b/0"]


def _append_many(path: str, worker: int) -> None:
    ledger = Ledger(path)
    for i in range(50):
        with ledger.locked():
            ledger.append("intent", run_key=f"w{worker}/{i}", run_id="r", tag="t", account="x", provider="p", time="t")


def test_concurrent_appends_keep_every_line(tmp_path):
    path = tmp_path / "l.jsonl"
    procs = [multiprocessing.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert len(Ledger(path).events()) == 200


def _marker(job_id: str, account: str, age_days: float, estimate: float) -> dict:
    when = datetime.now(timezone.utc) - timedelta(days=age_days)
    return {"job_id": job_id, "account": account, "submission_time": when.isoformat(),
            "run_key": f"e/{job_id}", "estimated_qpu_seconds": estimate}


def test_usage_counts_only_the_window_and_refuses_overspending(tmp_path):
    config = {"accounts": [{"name": "a", "budget_seconds": 100}, {"name": "b", "budget_seconds": 100}],
              "budget": {"window_days": 28, "reserve_seconds": 10}}
    markers = [_marker("1", "a", 1, 60), _marker("2", "a", 40, 90), _marker("3", "b", 2, 85)]
    usage = usage_by_account(config, markers, lambda key: tmp_path / "none.json")
    assert usage["a"].used_seconds == 60 and usage["b"].used_seconds == 85
    assert usage["a"].spendable_seconds == 30 and usage["b"].spendable_seconds == 5
    assert choose_account(usage, 20, run_key="e/x") == "a"
    with pytest.raises(BudgetExceeded) as err:
        choose_account(usage, 31, run_key="e/x")
    assert "needs about 31" in str(err.value) and "a: 40.0 s left" in str(err.value)
    with pytest.raises(BudgetExceeded):
        choose_account(usage, 6, run_key="e/x", preferred="b")


def test_estimate_grows_with_shots():
    assert estimate_qpu_seconds(shots=100, circuit_duration=1e-5) < estimate_qpu_seconds(shots=10000, circuit_duration=1e-5)
