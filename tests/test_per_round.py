"""Per-round logical error: recovered from counts whose answer is known, with honest intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qpuflow.per_round import fit, per_round_table
from qpuflow.plan import plan_runs
from qpuflow.config import ConfigError, validate_config


def _failure(eps: float, rounds: int, spam: float) -> float:
    """P(r) for 1 - 2P = (1 - 2 spam)(1 - 2 eps)^r."""
    return (1 - (1 - 2 * spam) * (1 - 2 * eps) ** rounds) / 2


def test_spam_free_fit_recovers_the_per_round_error_and_ignores_spam() -> None:
    eps, spam, shots = 0.02, 0.05, 200_000
    rng = np.random.default_rng(7)
    rounds = np.array([2, 6, 10])
    errors = rng.binomial(shots, [_failure(eps, r, spam) for r in rounds])
    estimate, low, high = fit(rounds, np.full(3, shots), errors.astype(float), seed=1)
    assert low <= eps <= high
    assert estimate == pytest.approx(eps, rel=0.05)
    assert high - low < 0.004
    # One round count cannot separate SPAM from the rounds: the naive figure is biased upwards.
    naive, _, _ = fit(rounds[:1], np.full(1, shots), errors[:1].astype(float))
    assert naive > 0.03


def test_interval_covers_truth_in_most_repeats() -> None:
    eps, spam, shots = 0.01, 0.02, 20_000
    rng = np.random.default_rng(3)
    covered = 0
    for repeat in range(40):
        errors = rng.binomial(shots, [_failure(eps, r, spam) for r in (2, 6)])
        _, low, high = fit(np.array([2, 6]), np.full(2, shots), errors.astype(float), seed=repeat)
        covered += low <= eps <= high
    assert covered >= 34  # 95% nominal; 34/40 is far below what a right interval gives by chance


def test_table_groups_by_layout_and_labels_the_method() -> None:
    rows = []
    for layout, eps in (("native", 0.01), ("routed", 0.05)):
        for r in (2, 6):
            rows.append(dict(experiment=f"sc_{layout}", kind="surface_code", logical_state="0", distance=3,
                             layout=layout, backend="fake_fez", rounds=r, status="completed", shots=100_000,
                             decoded_errors=round(100_000 * _failure(eps, r, 0.03))))
    table = per_round_table(pd.DataFrame(rows)).set_index("layout")
    assert table.loc["native", "per_round_error"] == pytest.approx(0.01, rel=0.05)
    assert table.loc["routed", "per_round_error"] == pytest.approx(0.05, rel=0.05)
    assert set(table["method"]) == {"SPAM-free fit over round counts"}


def _config(rounds, kind="surface_code"):
    exp = {"kind": kind, "distance": 3, "rounds": rounds, "shots": 100}
    if kind == "deployment":
        exp["sessions"] = 2
    else:
        exp["logical_states"] = ["0"]
    return validate_config({"provider": {"name": "local", "backend": "fake_fez"}, "experiments": {"e": exp}})


def test_rounds_list_plans_one_run_per_count_and_keeps_single_count_names() -> None:
    listed = plan_runs(_config([2, 6]))
    assert [(r.run, r.rounds) for r in listed] == [("L0_r2_rep0", 2), ("L0_r6_rep0", 6)]
    single = plan_runs(_config(3))
    assert [(r.run, r.rounds) for r in single] == [("L0_rep0", 3)]


def test_deployment_refuses_a_rounds_list() -> None:
    with pytest.raises(ConfigError, match=r"experiments\.e\.rounds"):
        _config([2, 6], kind="deployment")
