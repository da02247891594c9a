"""A throwaway study folder laid out like the repository (as tests/conftest.py does), and
running Snakemake in it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOW_PARTS = ("Snakefile", "workflow", "profiles", "envs")


def surface_code_config(*, runs: int, distance: int = 3, rounds: int = 3, shots: int = 100,
                        states: Sequence[str] = ("0", "+")) -> dict[str, Any]:
    """One surface-code experiment on the local provider with ``runs`` runs in all."""
    if runs % len(states):
        raise ValueError(f"runs ({runs}) must be a multiple of the number of states ({len(states)})")
    return {
        "provider": {"name": "local", "backend": "fake_fez", "max_execution_time": 120,
                     "local": {"queue_seconds": 0, "run_seconds": 0}},
        "accounts": [{"name": "local", "budget_seconds": 600}],
        "transpile": {"optimization_level": 1, "seed": 7},
        "experiments": {
            "sc": {"kind": "surface_code", "distance": distance, "rounds": rounds,
                   "logical_states": list(states), "repetitions": runs // len(states), "shots": shots},
        },
    }


@contextlib.contextmanager
def temp_study(config: Mapping[str, Any], *, parent: Path | None = None) -> Iterator[Path]:
    """A temporary folder holding the repository's workflow and ``config`` as config.yaml."""
    with tempfile.TemporaryDirectory(prefix="qpuflow-bench-", dir=parent) as tmp:
        folder = Path(tmp)
        for name in WORKFLOW_PARTS:
            src = REPO / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, folder / name)
        (folder / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
        yield folder


@dataclasses.dataclass(frozen=True)
class SnakemakeRun:
    command: list[str]
    returncode: int
    seconds: float
    output: str  # stdout + stderr (Snakemake logs to stderr)

    def check(self) -> "SnakemakeRun":
        if self.returncode != 0:
            tail = "\n".join(self.output.splitlines()[-25:])
            raise RuntimeError(f"{' '.join(self.command)} exited {self.returncode}:\n{tail}")
        return self


def snakemake(study: Path, *args: str, pythonpath: Sequence[Path] = (), profile_to: Path | None = None,
              env: Mapping[str, str] | None = None, timeout: float = 1800) -> SnakemakeRun:
    """Run Snakemake in ``study`` and time it (wall clock, process start included).

    ``profile_to`` runs it under cProfile (``python -m cProfile -o FILE -m snakemake``).
    ``pythonpath`` prepends folders (e.g. an executor plugin installed with ``pip --target``).
    """
    if profile_to is None:
        command = [str(BIN / "snakemake"), *args]
    else:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m", "snakemake", *args]
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    if pythonpath:
        paths = [*map(str, pythonpath), *filter(None, [full_env.get("PYTHONPATH")])]
        full_env["PYTHONPATH"] = os.pathsep.join(paths)
    with tempfile.TemporaryFile("w+") as log:  # dry runs of 5000 jobs print ~100k lines
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=study, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        seconds = time.perf_counter() - started
        log.seek(0)
        output = log.read()
    return SnakemakeRun(command, proc.returncode, seconds, output)


def job_stats(output: str) -> dict[str, int]:
    """The ``Job stats`` table of a Snakemake run: rule -> job count (with ``total``)."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return counts
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


@dataclasses.dataclass(frozen=True)
class DryRunJob:
    """One job of a dry-run listing: its rule and its ``input:``, ``output:``, ``resources:`` ... lines."""

    rule: str
    fields: dict[str, str]

    def files(self, field: str) -> list[str]:
        return [f for f in self.fields.get(field, "").split(", ") if f]

    def resources(self) -> dict[str, str]:
        items = self.fields.get("resources", "").split(", ")
        return dict(item.split("=", 1) for item in items if "=" in item)


def dry_run_jobs(output: str) -> list[DryRunJob]:
    """The jobs a ``snakemake -n`` listing prints, in order."""
    jobs = []
    for block in re.split(r"\n(?=\s*(?:local)?(?:rule|checkpoint) \w+:)", output):
        head = re.match(r"\s*(?:local)?(?:rule|checkpoint) (\w+):", block)
        if head:
            fields = dict(re.findall(r"^\s+(\w+): ([^\n]*)$", block, flags=re.M))
            jobs.append(DryRunJob(head.group(1), fields))
    return jobs
