"""Bad input stops with an error naming the file and the field (invariant 5)."""

from __future__ import annotations

import copy

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
    assert config["budget"] == {"window_days": 28, "reserve_seconds": 30}
    assert config["experiments"]["surface_code"]["shots"] == 4096


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
