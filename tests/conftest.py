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
               "repetitions": 2, "shots": 256, "layout": "native"},
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
    from qpuflow.backends import load_backend

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


# ---------------------------------------------------------------------------- the IBM path
# Every IBM-path test talks to the project's emulator in its strict mode (the service's
# documented contract: tag limits, rate limit, error bodies, billing, 204 results ...), through
# the unmodified qiskit-ibm-runtime client, on 127.0.0.1 only.

TOKEN = "qpuflowSecretToken-7f3a9c1e5b2d4f60"  # recognisable: must never be written anywhere
TOKEN_B = "qpuflowSecretTokenB-0c4e8a2f6b1d3957"


@pytest.fixture
def emu(tmp_path):
    from qpuflow.emulator import EmulatorHandle

    with EmulatorHandle(tmp_path / "emulator-store", queue_seconds=0, run_seconds=0) as handle:
        assert handle.strict
        yield handle


def ibm_env(emu, prefix: str = "EMU", token: str = TOKEN, instance: str = "qpuflow-emulator") -> dict[str, str]:
    return {**emu.client_env(), f"{prefix}_TOKEN": token, f"{prefix}_INSTANCE": instance, f"{prefix}_URL": emu.api_url}


def use_ibm(study: Path, config: dict, accounts=("EMU",), pubs_per_job: int = 1, **ibm) -> dict:
    config["provider"] = {"name": "ibm", "backend": "ibm_fez", "max_execution_time": 120, "pubs_per_job": pubs_per_job,
                          "ibm": {"backoff_seconds": 0.1, **ibm}}
    config["accounts"] = [{"name": f"env:{prefix}"} for prefix in accounts]
    write_config(study, config)
    return config


@pytest.fixture
def in_process(study, monkeypatch):
    """Run library calls from the study folder with the given environment."""
    from qpuflow.config import load_config
    from qpuflow.paths import Paths

    monkeypatch.chdir(study)

    def setup(env: dict[str, str]):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = load_config(study / "config.yaml")
        return config, Paths.from_config(config, base=study)

    return setup


def jobs_by_pack(emu) -> dict[str, list[dict]]:
    """The emulator's jobs grouped by their pack tag (one pack = one set of runs)."""
    out: dict[str, list[dict]] = {}
    for job in emu.jobs():
        pack = next((t for t in job["tags"] if t.startswith("qpuflow-pack-")), None)
        out.setdefault(pack, []).append(job)
    return out


def assert_one_live_job_per_pack(emu) -> dict[str, dict]:
    """Every pack of runs has exactly one job that is not cancelled; returns pack -> that job."""
    kept = {}
    for pack, jobs in jobs_by_pack(emu).items():
        live = [j for j in jobs if j["status"] != "Cancelled"]
        assert len(live) == 1, f"{pack}: {[(j['id'], j['status']) for j in jobs]}"
        kept[pack] = live[0]
    return kept
