"""Run identities are the exactly-once key: they must never change for an existing study.

``tests/golden/run_ids.json`` holds the identity of every run of the default ``config.yaml``
and of the tests' small study, as computed when the file was written. A change to RunSpec,
plan_runs or the identity recipe that moves any of them would make every existing study look
new to the ledger and the provider: its runs would be submitted (and paid for) again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from qpuflow.config import load_config, validate_config
from qpuflow.plan import plan_runs
from tests.conftest import REPO, SMALL_CONFIG

GOLDEN = json.loads((Path(__file__).parent / "golden" / "run_ids.json").read_text())


def test_default_study_run_ids_are_byte_identical():
    """The default study as it was when the identities were pinned (a frozen copy: the
    repository's config.yaml may change; a study made from the old one must not)."""
    runs = {s.key: s.run_id() for s in plan_runs(load_config(Path(__file__).parent / "golden" / "config_704dd00.yaml"))}
    assert runs == GOLDEN["config.yaml"]


def test_small_study_run_ids_are_byte_identical():
    """The tests' small study as pinned, when its surface code was routed: naming the default
    layout (``layout: routed``) must not move an identity either."""
    config = json.loads(json.dumps(SMALL_CONFIG))
    config["experiments"]["sc"]["layout"] = "routed"
    runs = {s.key: s.run_id() for s in plan_runs(validate_config(config))}
    assert runs == GOLDEN["tests/conftest.py:SMALL_CONFIG"]


def test_a_study_name_gives_new_identities_and_only_then():
    config = validate_config(json.loads(json.dumps(SMALL_CONFIG)))
    plain = plan_runs(config)
    named = plan_runs({**config, "study": "repeat-2026-12"})
    assert all(a.run_id() != b.run_id() for a, b in zip(plain, named))
    assert [dataclasses.replace(b, study=None).run_id() for b in named] == [a.run_id() for a in plain]
