"""Shared fixtures: a study folder with the workflow copied in, and helpers to run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# A study small enough to run end to end in seconds but with both experiment kinds. One run
# per job (pubs_per_job 1), so the exactly-once tests can count jobs per run; test_batches.py
# runs the same guarantees with several runs packed into one job.
SMALL_CONFIG = {
    "provider": {"name": "local", "backend": "fake_fez", "max_execution_time": 120, "pubs_per_job": 1,
                 "local": {"queue_seconds": 0, "run_seconds": 0}},
    "accounts": [{"name": "local", "budget_seconds": 600}],
    "transpile": {"optimization_level": 1, "seed": 7},
    "experiments": {
        "sc": {"kind": "surface_code", "distance": 3, "rounds": 1, "logical_states": ["0"],
               "repetitions": 2, "shots": 256},
        "dep": {"kind": "deployment", "distance": 3, "rounds": 1, "sessions": 1, "shots": 256},
    },
}


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def fez():
    """The FakeFez backend the local simulator models (loaded once)."""
    from qpuflow.transpile import load_backend

    return load_backend("fake_fez")


@pytest.fixture
def small_config() -> dict:
    return json.loads(json.dumps(SMALL_CONFIG))


@pytest.fixture
def study(tmp_path: Path, small_config: dict) -> Path:
    """A folder laid out like the repository, holding the small study."""
    for name in ("Snakefile", "workflow", "profiles", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    write_config(tmp_path, small_config)
    return tmp_path


def run(cmd: list[str], cwd: Path, *, env: dict | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    proc.all = proc.stdout + proc.stderr  # Snakemake logs to stderr, scripts print to stdout
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr}")
    return proc


def snakemake(cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), "--cores", "1", *args], cwd, **kw)


def provider_jobs(folder: Path) -> list[dict]:
    """Every job the local provider holds, through the CLI (how a user would count them)."""
    proc = run([str(BIN / "qpuflow"), "jobs", "--json"], folder)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
