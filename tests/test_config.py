"""Bad input stops with an error naming the file and the field (invariant 5)."""

from __future__ import annotations

import copy
import re

import pytest

from qpuflow.config import ConfigError, fake_backend_names, load_config, validate_config
from tests.conftest import REPO, SMALL_CONFIG, write_config


def check(config: dict) -> dict:
    return validate_config(copy.deepcopy(config), source="study.yaml")


def with_change(path: tuple, value) -> dict:
    config = copy.deepcopy(SMALL_CONFIG)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


def test_default_config_is_valid_and_filled():
    config = load_config(REPO / "config.yaml")
    assert config["budget"] == {"window_days": 28, "reserve_seconds": 30, "allow_campaign_overrun": False}
    assert config["experiments"]["surface_code"]["shots"] == 4096
    deployment = config["experiments"]["deployment"]
    assert deployment["arms"] == ["calibration", "drift_aware"] and deployment["schedule"] == {"per_day": 3}
    assert deployment["probe"] == {"shots": 2000, "delays_us": [50, 100, 200]}


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("schedule", {"every_hours": 8, "per_day": 3}, "experiments.dep.schedule"),
        ("schedule", {"min_gap_hours": 2}, "experiments.dep.schedule"),
        ("schedule", {"every_hours": 8, "start": "next tuesday"}, "experiments.dep.schedule.start"),
        ("arms", ["calibration", "lucky"], "experiments.dep.arms"),
        ("probe", {"delays_us": [0]}, "experiments.dep.probe.delays_us"),
    ],
)
def test_bad_deployment_fields_name_the_field(field, value, expected):
    config = {"provider": {"name": "local", "backend": "fake_fez"},
              "experiments": {"dep": {"kind": "deployment", "distance": 3, "rounds": 1, "sessions": 2,
                                      "shots": 100, field: value}}}
    with pytest.raises(ConfigError, match=re.escape(expected)):
        validate_config(config, source="study.yaml")


def test_schedule_fields_on_a_memory_experiment_are_refused():
    config = {"provider": {"name": "local", "backend": "fake_fez"},
              "experiments": {"sc": {"kind": "surface_code", "distance": 3, "rounds": 1, "logical_states": ["0"],
                                     "shots": 100, "schedule": {"every_hours": 8}}}}
    with pytest.raises(ConfigError, match="experiments.sc.schedule"):
        validate_config(config)


def test_an_unquoted_yaml_start_time_is_accepted(tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"provider": {"name": "local", "backend": "fake_fez"}}) +
                    "experiments:\n  dep: {kind: deployment, distance: 3, rounds: 1, sessions: 2, shots: 100,\n"
                    "        schedule: {every_hours: 8, start: 2026-12-01T08:00:00Z}}\n")
    config = load_config(path)
    assert config["experiments"]["dep"]["schedule"]["start"].startswith("2026-12-01T08:00:00")


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("experiments", "sc", "shots"), -5, "experiments.sc.shots"),
        (("experiments", "sc", "shots"), "many", "experiments.sc.shots"),
        (("experiments", "sc", "kind"), "color_code", "experiments.sc.kind"),
        (("experiments", "sc", "distance"), 4, "experiments.sc.distance"),
        (("provider", "backend"), "fake_nowhere", "provider.backend"),
        (("provider", "name"), "aws", "provider.name"),
        (("experiments", "sc", "sessions"), 3, "experiments.sc.sessions"),
        (("experiments", "dep", "logical_states"), ["+"], "experiments.dep.logical_states"),
    ],
)
def test_bad_field_is_named(path, value, expected):
    with pytest.raises(ConfigError) as err:
        check(with_change(path, value))
    message = str(err.value)
    assert message.startswith("study.yaml: ")
    assert expected in message
    assert "\n" not in message.strip()


def test_missing_required_field_is_named():
    config = copy.deepcopy(SMALL_CONFIG)
    del config["experiments"]["sc"]["shots"]
    with pytest.raises(ConfigError, match="shots"):
        check(config)


def test_unknown_backend_lists_alternatives():
    with pytest.raises(ConfigError, match="fake_fez"):
        check(with_change(("provider", "backend"), "fake_nowhere"))
    assert "fake_fez" in fake_backend_names()


def test_yaml_syntax_error_names_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("provider: [unclosed\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_token_field_is_rejected(tmp_path):
    config = copy.deepcopy(SMALL_CONFIG)
    config["accounts"][0]["token"] = "not-allowed-here"
    with pytest.raises(ConfigError, match="accounts.0"):
        load_config(write_config(tmp_path, config))


def test_an_installed_package_validates_a_config_without_the_checkout(tmp_path: Path):
    """The schema ships inside the package (package data), not only in workflow/: a copy of the
    package alone, away from the repository, fills defaults and refuses a bad field."""
    import fnmatch
    import shutil
    import subprocess
    import sys
    import tomllib

    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch.fnmatch("schemas/config.schema.yaml", pattern) for pattern in package_data["qpuflow"])
    site = tmp_path / "site"
    shutil.copytree(REPO / "src" / "qpuflow", site / "qpuflow", ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import qpuflow, yaml\n"
        "from qpuflow.config import validate_config, ConfigError\n"
        f"assert qpuflow.__file__.startswith({str(site)!r}), qpuflow.__file__\n"
        f"config = yaml.safe_load(open({str(REPO / 'config.yaml')!r}))\n"
        "filled = validate_config(config)\n"
        "assert filled['analysis']['decoder_noise'] == 'calibration'\n"
        f"config = yaml.safe_load(open({str(REPO / 'config.yaml')!r}))\n"
        "config['experiments']['surface_code']['shots'] = -5\n"
        "try:\n    validate_config(config)\nexcept ConfigError as exc:\n    print('REFUSED', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED" in proc.stdout and "shots" in proc.stdout


def test_the_ibm_settings_come_from_the_schema_alone():
    """No provider.ibm section: every IBM setting is the schema's default, and the typed
    settings name every field the schema has (a new field cannot get a default restated in code)."""
    import dataclasses

    import yaml

    from qpuflow.config import SCHEMA_PATH, IBMSettings

    section = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["provider"]["properties"]["ibm"]["properties"]
    config = check(SMALL_CONFIG)
    settings = IBMSettings.of(config)
    assert {f.name for f in dataclasses.fields(IBMSettings)} == set(section)
    assert dataclasses.asdict(settings) == {name: field["default"] for name, field in section.items()}
    changed = with_change(("provider", "ibm"), {"channel": "ibm_cloud"})
    assert IBMSettings.of(check(changed)).channel == "ibm_cloud"
    assert IBMSettings.of(check(changed)).max_submit_attempts == section["max_submit_attempts"]["default"]


def test_validation_fills_a_copy_and_leaves_the_given_config_alone():
    raw = copy.deepcopy(SMALL_CONFIG)
    filled = validate_config(raw, source="study.yaml")
    assert raw == SMALL_CONFIG, "the caller's config (Snakemake's global one) is not changed"
    assert "budget" not in raw and filled["budget"]["window_days"] == 28
    assert filled["provider"]["ibm"]["channel"] == "ibm_quantum_platform"
