"""Loading and validating a study's ``config.yaml``.

Validation happens in two layers: the JSON schema in ``qpuflow/schemas`` (through
``snakemake.utils.validate``, which also fills defaults) and a few checks a schema cannot say
well (odd distances, fields that make no sense for an experiment's kind, backend names).
Every failure is a :class:`ConfigError` naming the file, the field and the value.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from qpuflow.backend_names import (SYNTHETIC_MAX_ERROR, fake_backend_names, is_synthetic_backend,  # noqa: F401
                                   median_backend_base, synthetic_backend_spec)
from qpuflow.errors import QpuflowError

# Shipped inside the package, so an installed qpuflow (not only a checkout) validates configs;
# workflow/schemas/config.schema.yaml, where the snakemake-workflows catalogue looks, links here.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"

# Fields that belong to one kind only; a user who sets them elsewhere has misunderstood
# something, and silently ignoring the value would hide that.
_KIND_ONLY_FIELDS = {
    "sessions": {"deployment"},
    "arms": {"deployment"},
    "selection_weights": {"deployment"},
    "schedule": {"deployment"},
    "probe": {"deployment"},
    "order_seed": {"deployment"},
    "endpoint": {"deployment"},
    "power": {"deployment"},
    "repetitions": {"surface_code", "repetition_code"},
}


class ConfigError(QpuflowError, ValueError):
    """A study configuration that cannot be used; the message names file, field and value."""


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read, validate and default-fill a config file.

    ``overrides``: values that win over the file's (Snakemake's ``--config``), merged key by key.
    Errors name the file, the line and the field.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file. Copy config.yaml from the repository and edit it.") from None
    raw = read_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with 'provider' and 'experiments'.")
    if overrides:
        _merge(raw, overrides)
    try:
        return validate_config(raw, source=str(path))
    except ConfigError as exc:
        raise _with_line(exc, text, str(path)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: otherwise
    the second silently wins and the first, which the user may be reading, is ignored."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping (first on line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error or a repeated key names the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}. Fix the file and run the same command again.") from None


def field_line(text: str, field: str) -> int | None:
    """The line (1-based) of a dotted field path in YAML text, or None if it is not written there."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in field.split("."):
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _with_line(exc: ConfigError, text: str, source: str) -> ConfigError:
    match = re.search(r"field '([^']+)'", str(exc))
    line = field_line(text, match.group(1)) if match else None
    if line is None or not str(exc).startswith(f"{source}:"):
        return exc
    return ConfigError(f"{source}, line {line}:" + str(exc)[len(source) + 1:])


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


@dataclasses.dataclass(frozen=True)
class IBMSettings:
    """``provider.ibm`` of a validated config, typed. Defaults live in the schema alone (the
    section defaults to ``{}`` and every field to its schema default)."""

    channel: str
    local_mode: bool
    backoff_seconds: float
    request_timeout_seconds: float
    primitive: str
    max_submit_attempts: int

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "IBMSettings":
        section = config["provider"]["ibm"]
        return cls(channel=str(section["channel"]), local_mode=bool(section["local_mode"]),
                   backoff_seconds=float(section["backoff_seconds"]),
                   request_timeout_seconds=float(section["request_timeout_seconds"]),
                   primitive=str(section["primitive"]), max_submit_attempts=int(section["max_submit_attempts"]))


def validate_config(config: dict[str, Any], *, source: str = "config.yaml") -> dict[str, Any]:
    """A validated copy of ``config`` with every default filled in (``config`` itself is left
    as it is).

    Raises:
        ConfigError: naming ``source``, the dotted field path and the offending value.
    """
    filled = copy.deepcopy(config)
    _check_kind_fields(filled, source)
    _schema_validate(filled, source)
    _check_semantics(filled, source)
    return filled


def _schema_validate(config: dict[str, Any], source: str) -> None:
    import jsonschema
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA_PATH))
    except Exception as exc:  # snakemake wraps jsonschema's error in a WorkflowError
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, jsonschema.ValidationError):
            field = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
            raise ConfigError(
                f"{source}: field '{field}': {cause.message}. "
                f"See the description of '{field.split('.')[-1]}' in {SCHEMA_PATH.name}."
            ) from None
        raise ConfigError(f"{source}: {exc}") from None


def _check_kind_fields(config: dict[str, Any], source: str) -> None:
    experiments = config.get("experiments")
    if not isinstance(experiments, dict):
        return  # the schema reports it
    for name, exp in experiments.items():
        if not isinstance(exp, dict):
            continue
        kind = exp.get("kind")
        schedule = exp.get("schedule")
        if isinstance(schedule, dict) and isinstance(schedule.get("start"), (datetime.date, datetime.datetime)):
            # YAML reads an unquoted timestamp as a datetime; the schema wants its text.
            start = schedule["start"]
            if isinstance(start, datetime.datetime) and start.tzinfo is None:
                start = start.replace(tzinfo=datetime.timezone.utc)
            schedule["start"] = start.isoformat()
        for key, kinds in _KIND_ONLY_FIELDS.items():
            if key in exp and kind in _ALL_KINDS and kind not in kinds:
                raise ConfigError(
                    f"{source}: field 'experiments.{name}.{key}' does not apply to kind '{kind}' "
                    f"(only to {', '.join(sorted(kinds))}); remove it."
                )


_ALL_KINDS = {"surface_code", "repetition_code", "deployment"}


def _check_semantics(config: dict[str, Any], source: str) -> None:
    provider = config["provider"]
    for name, exp in config["experiments"].items():
        if exp["distance"] % 2 == 0:
            raise ConfigError(
                f"{source}: field 'experiments.{name}.distance' is {exp['distance']}; "
                "the memory experiments need an odd distance (3, 5, 7, ...)."
            )
        backend = exp.get("backend", provider["backend"])
        if provider["name"] == "local" or IBMSettings.of(config).local_mode:
            known = fake_backend_names()
            # Synthetic uniform-noise backends only exist in qpuflow's own simulator; the
            # IBM client's local mode runs backend.run(), which they do not implement.
            synthetic_ok = provider["name"] == "local" and is_synthetic_backend(backend)
            if backend not in known and not synthetic_ok:
                field = f"experiments.{name}.backend" if "backend" in exp else "provider.backend"
                import difflib

                close = difflib.get_close_matches(backend, known, n=3, cutoff=0.5)
                suggestion = ", ".join(dict.fromkeys([*close, "fake_fez"]))
                synthetic = (
                    "synthetic backends (uniform_grid_p<digits>, uniform_line_p<digits>, fake_<name>_median) only work "
                    "with provider 'local'"
                    if provider["name"] != "local"
                    else "or a synthetic backend: uniform noise uniform_grid_p<digits> / "
                    "uniform_line_p<digits> with p = 0.<digits> <= 0.5, e.g. uniform_grid_p001, or a fake "
                    "device at its median calibration with every coupler alive, e.g. fake_fez_median"
                )
                raise ConfigError(
                    f"{source}: field '{field}' is '{backend}', which the local simulator does not know. "
                    f"Use a fake IBM backend such as {suggestion} ({len(known)} in all; "
                    f"'qpuflow backends' lists them), {synthetic}."
                )
        if exp.get("layout", "routed") != "routed" and exp["kind"] != "surface_code":
            raise ConfigError(f"{source}: field 'experiments.{name}.layout' is {exp['layout']!r}; native layouts "
                              f"exist for surface_code experiments, and a {exp['kind']} chain is laid out on "
                              "neighbouring qubits already. Remove the field.")
        _check_deployment_fields(name, exp, source)
    names = [a["name"] for a in config["accounts"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: field 'accounts' names an account twice: {names}.")
    _check_tag_room(config, source)


def _check_tag_room(config: dict[str, Any], source: str) -> None:
    """The config's tags must fit beside qpuflow's own within the service's 8 tags per job."""
    from qpuflow.packs import MAX_TAGS, fixed_tag_count

    per_job = int(config["provider"]["pubs_per_job"])
    room = MAX_TAGS - fixed_tag_count(per_job)
    tags = config.get("tags", [])
    if len(tags) > room:
        raise ConfigError(
            f"{source}: field 'tags' lists {len(tags)} tags, but IBM accepts at most {MAX_TAGS} per job and "
            f"qpuflow needs {fixed_tag_count(per_job)} of them with provider.pubs_per_job {per_job} (its study, "
            f"pack and run identities), so at most {room} fit. Remove {len(tags) - room} tag(s)"
            + (" or lower provider.pubs_per_job." if per_job > 8 else ".")
        )


def _check_deployment_fields(name: str, exp: dict[str, Any], source: str) -> None:
    if exp["kind"] != "deployment":
        return
    if isinstance(exp["rounds"], list):
        raise ConfigError(f"{source}: field 'experiments.{name}.rounds' is a list {exp['rounds']}; a deployment "
                          "experiment compares arms at one round count, so give one number.")
    start = (exp.get("schedule") or {}).get("start")
    if start is not None:
        from qpuflow.provenance import parse_time

        try:
            parse_time(str(start))
        except ValueError:
            raise ConfigError(f"{source}: field 'experiments.{name}.schedule.start' is {start!r}, not an "
                              "ISO-8601 time; write e.g. 2026-12-01T08:00:00Z.") from None
