"""The runs a study defines, each with a content-hash identity.

A run is one job's worth of work: one circuit, one backend, one shot count. Its identity
(:meth:`RunSpec.run_id`) is what makes submission exactly-once: the job tag is derived from
it, and the ledger refuses to reuse a job for a run whose identity changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from typing import Any, Callable, Sequence

# Bump when the recipe that turns a RunSpec into a circuit changes meaning.
CIRCUIT_RECIPE_VERSION = 1

_STATE_NAMES = {"0": "0", "1": "1", "+": "plus", "-": "minus"}
_OPTIONAL_FIELDS = ("probe_delays_us", "probe_qubits", "study", "layout", "ancilla_reset")
# Probe delays (microseconds) for the T1 decay curve: a spread around Heron T1s of 100-300 us.
DEFAULT_PROBE_DELAYS_US = (50.0, 100.0, 200.0)
PROBE_ARM = "drift_aware"  # the arm whose qubits are chosen from a probe job


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything that defines one job. No paths, timestamps, accounts or job IDs."""

    experiment: str
    run: str
    kind: str
    distance: int
    rounds: int
    logical_state: str
    shots: int
    backend: str
    provider: str
    transpiler_seed: int
    optimization_level: int
    repetition: int = 0
    session: int | None = None
    arm: str | None = None
    attempt: int = 0  # automatic resubmission number after a failed job (0 = the original)
    # Probe runs of the deployment study only (left out of the identity when None, so the
    # identities of other runs did not change when they were added).
    probe_delays_us: tuple[float, ...] | None = None
    probe_qubits: int | None = None
    # The study's name (``study:`` in config.yaml), left out of the identity when unset: a
    # deliberate repeat of a study under a new name takes new data instead of adopting the
    # first study's jobs, and existing studies keep their run identities.
    study: str | None = None
    # How the code is laid out on the device: None = by the transpiler (with SWAPs), or a
    # heavy-hex-native layout ("native", "native_subsystem"; see qpuflow.placement). Left out
    # of the identity when None, like the fields above.
    layout: str | None = None
    # Native layouts only: whether syndrome and bridge qubits are reset after each readout.
    ancilla_reset: bool | None = None

    def __post_init__(self) -> None:
        if self.probe_delays_us is not None:
            object.__setattr__(self, "probe_delays_us", tuple(float(t) for t in self.probe_delays_us))
        if self.logical_state not in _STATE_NAMES:
            raise ValueError(f"logical_state must be one of {sorted(_STATE_NAMES)}, got {self.logical_state!r}")
        if self.shots < 1:
            raise ValueError(f"shots must be positive, got {self.shots}")
        if self.distance < 3 or self.distance % 2 == 0:
            raise ValueError(f"distance must be odd and at least 3, got {self.distance}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if self.attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {self.attempt}")

    @property
    def key(self) -> str:
        """``experiment/run``: the path stem of this run's files."""
        return f"{self.experiment}/{self.run}"

    @property
    def is_probe(self) -> bool:
        return self.kind == "probe"

    @property
    def chain_length(self) -> int:
        """Physical qubits of a repetition-code chain of this distance (data + ancilla)."""
        return 2 * self.distance - 1

    @property
    def experiment_type(self) -> str:
        """The seed's ``experiment_type`` (the kind of experiment)."""
        return self.kind

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown RunSpec fields {sorted(unknown)}")
        return cls(**data)

    def run_id(self) -> str:
        """SHA-256 of the canonical JSON of what defines the run.

        In it: every field of the spec (experiment and run names included, so two experiments
        with equal parameters still get distinct jobs; the study name when one is set) and the
        circuit recipe version. Not in
        it: paths, timestamps, accounts, job IDs, package versions: changing those must not
        make a submitted run look new.

        >>> spec = RunSpec(experiment="e", run="L0_rep0", kind="surface_code", distance=3,
        ...                rounds=3, logical_state="0", shots=100, backend="fake_fez",
        ...                provider="local", transpiler_seed=1, optimization_level=1)
        >>> spec.run_id() == spec.run_id() and len(spec.run_id())
        64
        >>> spec.run_id() == dataclasses.replace(spec, shots=101).run_id()
        False
        """
        fields = {k: v for k, v in self.to_json().items() if not (k in _OPTIONAL_FIELDS and v is None)}
        payload = {"recipe": CIRCUIT_RECIPE_VERSION, **fields}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def job_tag(self) -> str:
        """The per-run tag jobs carried before the service's tag limits were respected
        (``qpuflow.packs`` reads it to adopt such jobs); new jobs carry pack tags instead."""
        return f"qpuflow-run-{self.run_id()[:24]}"


def plan_runs(config: dict[str, Any]) -> list[RunSpec]:
    """Expand a validated config into its runs, in a stable order."""
    provider = config["provider"]
    transpile = config["transpile"]
    runs: list[RunSpec] = []
    for name, exp in config["experiments"].items():
        common = dict(
            experiment=name,
            kind=exp["kind"],
            distance=exp["distance"],
            shots=exp["shots"],
            backend=exp.get("backend", provider["backend"]),
            provider=provider["name"],
            transpiler_seed=transpile["seed"],
            optimization_level=transpile["optimization_level"],
            study=config.get("study") or None,
            layout=None if exp.get("layout", "routed") == "routed" else exp["layout"],
            ancilla_reset=None if exp.get("layout", "routed") == "routed" else bool(exp.get("ancilla_reset", False)),
        )
        if exp["kind"] == "deployment":
            runs.extend(_deployment_runs(exp, {**common, "rounds": exp["rounds"]}))
            continue
        listed = isinstance(exp["rounds"], list)
        for rounds in round_counts(exp):
            for state in exp["logical_states"]:
                for rep in range(exp["repetitions"]):
                    # One round count keeps the names (and so the identities) runs always had.
                    part = f"_r{rounds}" if listed else ""
                    runs.append(
                        RunSpec(run=f"L{_STATE_NAMES[state]}{part}_rep{rep}", logical_state=state,
                                repetition=rep, rounds=rounds, **common)
                    )
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):  # pragma: no cover - names are built to be unique
        raise ValueError(f"duplicate run keys in plan: {keys}")
    return runs


def round_counts(exp: dict[str, Any]) -> list[int]:
    """The round counts of an experiment: ``rounds`` as a list, or the one count it names.

    >>> round_counts({"rounds": 3}), round_counts({"rounds": [2, 6]})
    ([3], [2, 6])
    """
    rounds = exp["rounds"]
    return [int(r) for r in rounds] if isinstance(rounds, list) else [int(rounds)]


def _deployment_runs(exp: dict[str, Any], common: dict[str, Any]) -> list[RunSpec]:
    """Per session: a probe job if an arm needs one, then one run per arm."""
    state = exp.get("logical_states", ["0"])[0]
    probe = exp.get("probe", {})
    runs = []
    for session in range(exp["sessions"]):
        if PROBE_ARM in exp["arms"]:
            runs.append(RunSpec(
                **{**common, "kind": "probe", "shots": int(probe.get("shots", 2000))},
                run=session_run(session, "probe"), logical_state="0", session=session,
                probe_delays_us=tuple(probe.get("delays_us", DEFAULT_PROBE_DELAYS_US)),
                probe_qubits=int(probe.get("qubits") or 2 * (2 * exp["distance"] - 1)),
            ))
        for arm in exp["arms"]:
            runs.append(RunSpec(run=session_run(session, arm), logical_state=state,
                                session=session, arm=arm, **common))
    return runs


def session_run(session: int, part: str) -> str:
    """``session003_calibration``: the run name of one part (an arm or the probe) of a session."""
    return f"session{session:03d}_{part}"


def arm_order(experiment: str, session: int, arms: Sequence[str], seed: int) -> list[str]:
    """The order in which a session's arms are submitted: random, but fixed by ``seed``.

    Drawn from a hash of (seed, experiment, session), so planning it twice, in two processes
    or two weeks apart, gives the same order; it is recorded in every arm's marker.

    >>> arm_order("dep", 0, ["calibration", "drift_aware"], 0) == arm_order("dep", 0, ["calibration", "drift_aware"], 0)
    True
    >>> sorted(arm_order("dep", 3, ["calibration", "drift_aware"], 1))
    ['calibration', 'drift_aware']
    """
    digest = hashlib.sha256(f"{seed}:{experiment}:{session}".encode()).digest()
    order = list(arms)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


def configured_arm_order(config: dict[str, Any], experiment: str, session: int) -> list[str]:
    """:func:`arm_order` of a session of a configured deployment experiment."""
    section = config["experiments"][experiment]
    return arm_order(experiment, session, section["arms"], int(section.get("order_seed", 0)))


def retry_of(spec: RunSpec) -> RunSpec:
    """The next attempt of a run: same circuit, new name and identity (so a new tag)."""
    base = spec.run if spec.attempt == 0 else spec.run.rsplit("_a", 1)[0]
    return dataclasses.replace(spec, attempt=spec.attempt + 1, run=f"{base}_a{spec.attempt + 1}")


def plan_retries(runs: list[RunSpec], failed: "Callable[[str], bool]", max_retries: int) -> list[RunSpec]:
    """Attempts to add because earlier attempts failed, up to ``max_retries`` per run.

    ``failed(key)`` says whether a run's collected result is a failure. An attempt is planned
    only once the previous one is known to have failed, so a rerun of submit plans nothing new
    until collect has recorded a failure, and the original job is never replaced.
    """
    out = []
    for spec in runs:
        current = spec
        while current.attempt < max_retries and failed(current.key):
            current = retry_of(current)
            out.append(current)
    return out


def select_experiments(runs: list[RunSpec], choice: str) -> list[RunSpec]:
    """The seed's ``--experiment {surface_code,deployment,both}`` filter, by kind."""
    if choice == "both":
        return list(runs)
    if choice not in {"surface_code", "deployment", "repetition_code"}:
        raise ValueError(f"--experiment must be surface_code, deployment or both, got {choice!r}")
    kinds = {choice, "probe"} if choice == "deployment" else {choice}
    return [r for r in runs if r.kind in kinds]
