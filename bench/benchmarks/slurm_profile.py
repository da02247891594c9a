"""The SLURM profile (workflow/profiles/slurm) checked with the real executor plugin, in a dry run.

The plugin is installed with ``pip install --target`` into a cache folder outside the
project's venv (never into .venv, never into pyproject) and put on PYTHONPATH for the
Snakemake process only. A dry run of `submit` in a temporary study with
``--profile workflow/profiles/slurm`` then shows the DAG and each job's resources. Which
rules would run on the login node cannot be seen in a dry run (Snakemake prints no
local/remote decision there), so the study's copy of the Snakefile gets a probe rule whose
input function records, while the DAG is built, each rule's group and local-rule status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from benchlib.core import Conclusion, Context, Metrics, Target, benchmark
from benchlib.study import dry_run_jobs, job_stats, snakemake, temp_study

PROFILE = "workflow/profiles/slurm"
PLUGINS = ("snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep")
# Rules that call the provider API; any rule declaring the ibm_api resource counts too.
API_RULES = ("submit_batch", "budget_check", "collect")
COMPUTE_RESOURCES = ("runtime", "mem_mb", "cpus_per_task")

STUDY_CONFIG: dict[str, Any] = {
    "provider": {"name": "local", "backend": "fake_fez", "max_execution_time": 120,
                 "local": {"queue_seconds": 0, "run_seconds": 0}},
    "accounts": [{"name": "local", "budget_seconds": 600}],
    "transpile": {"optimization_level": 1, "seed": 7},
    "experiments": {
        "sc7": {"kind": "surface_code", "distance": 7, "rounds": 3, "logical_states": ["0", "+"],
                "repetitions": 25, "shots": 4096},
        "dep": {"kind": "deployment", "distance": 5, "rounds": 3, "sessions": 2, "shots": 4096},
    },
}

PROBE_RULE = '''

# --- appended by bench/benchmarks/slurm_profile.py to a temporary copy, never to the repo ---
def _bench_rule_probe(wildcards):
    import json, os

    # Same test as Workflow.is_local() under a cluster executor (the dry run's own executor
    # is local, so is_local() itself would say True for every rule).
    json.dump({r.name: {"group": r.group, "login_node": r.group is None and (r.name in workflow._localrules or r.norun),
                        "resources": sorted(r.resources)} for r in workflow.rules},
              open(os.environ["QPUFLOW_BENCH_RULE_PROBE"], "w"))
    return []


rule bench_rule_probe:
    input:
        _bench_rule_probe,
'''


# --------------------------------------------------------------------------------------
# the plugin, outside the project's venv
# --------------------------------------------------------------------------------------


def plugin_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "qpuflow-bench" / "slurm-executor-plugin"


def _installed_versions(folder: Path) -> dict[str, str]:
    return {d.metadata["Name"]: d.version for d in metadata.distributions(path=[str(folder)])}


def ensure_plugin() -> dict[str, Any]:
    """Install the plugin (no dependencies: the venv has Snakemake's) into the cache folder."""
    folder = plugin_dir()
    versions = _installed_versions(folder) if folder.exists() else {}
    if all(name in versions for name in PLUGINS):
        return {"folder": str(folder), "source": "cache", "versions": versions, "unmet_requirements": _unmet(folder)}
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--target", str(folder), "--no-deps", "--upgrade", *PLUGINS]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if "is ignored" not in line][-5:]
        raise RuntimeError(f"pip could not install {', '.join(PLUGINS)}: {' | '.join(errors)}")
    return {"folder": str(folder), "source": f"pip install --target (took {time.perf_counter() - started:.0f} s)",
            "versions": _installed_versions(folder), "unmet_requirements": _unmet(folder)}


def _unmet(folder: Path) -> list[str]:
    """Requirements of the plugins that the project's venv does not satisfy."""
    from packaging.requirements import Requirement

    unmet = []
    for dist in metadata.distributions(path=[str(folder)]):
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if req.name.replace("_", "-").lower() in PLUGINS:
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                unmet.append(f"{req} (not installed)")
                continue
            if not req.specifier.contains(have, prereleases=True):
                unmet.append(f"{req} (have {have})")
    return unmet


# --------------------------------------------------------------------------------------
# the dry run
# --------------------------------------------------------------------------------------


def first_resources(output: str) -> dict[str, dict[str, str]]:
    """Rule -> the resources of its first job in a dry-run listing."""
    found: dict[str, dict[str, str]] = {}
    for job in dry_run_jobs(output):
        found.setdefault(job.rule, job.resources())
    return found


def probe(study: Path, snakefile: str, plugin: Path, extra: str = "") -> tuple[Any, dict[str, Any]]:
    """Dry-run `submit` with the profile and the probe appended to ``snakefile`` (the study's own text)."""
    (study / "Snakefile").write_text(snakefile + PROBE_RULE + extra)
    probe_file = study / "rule_probe.json"
    run = snakemake(study, "-n", "--profile", PROFILE, "submit", "bench_rule_probe", pythonpath=[plugin],
                    env={"QPUFLOW_BENCH_RULE_PROBE": str(probe_file)}).check()
    rules = json.loads(probe_file.read_text())
    rules.pop("bench_rule_probe", None)
    return run, rules


def api_rules(rules: Mapping[str, Any]) -> list[str]:
    return sorted({r for r in API_RULES if r in rules} | {r for r, v in rules.items() if "ibm_api" in v["resources"]})


@benchmark(
    "slurm_profile",
    title="SLURM profile: plugin installable, dry run, resources, API rules on the login node",
    max_repeats=1,
    targets=(
        Target("plugin_installed", "==", 1, "snakemake-executor-plugin-slurm pip-installs (outside .venv)"),
        Target("dry_run_ok", "==", 1, "`snakemake -n --profile workflow/profiles/slurm submit` plans the DAG"),
        Target("compute_rules_missing_resources", "==", 0,
               "every SLURM job has runtime, mem_mb and cpus_per_task"),
        Target("api_rules_on_compute_nodes", "==", 0,
               "rules that talk to the provider API (submit_batch, budget_check, collect) run on the login node"),
    ),
)
def slurm_profile(ctx: Context) -> dict[str, Any]:
    plugin = ctx.state
    with temp_study(STUDY_CONFIG, parent=ctx.scratch) as study:
        snakefile = (study / "Snakefile").read_text()
        run, rules = probe(study, snakefile, Path(plugin["folder"]))
        stats = job_stats(run.output)
        resources = first_resources(run.output)
        api = api_rules(rules)
        remote = [r for r in api if not rules[r]["login_node"]]
        compute = sorted(r for r in stats if r in rules and not rules[r]["login_node"])
        missing = {r: [k for k in COMPUTE_RESOURCES if k not in resources.get(r, {})] for r in compute}
        missing = {r: keys for r, keys in missing.items() if keys}
        out: dict[str, Any] = {
            "plugin_installed": 1, "dry_run_ok": 1, "slurm_dry_run_s": run.seconds,
            "api_rules_on_compute_nodes": len(remote), "compute_rules_missing_resources": len(missing),
            "job_stats": {k: v for k, v in stats.items() if k != "bench_rule_probe"},
            "profiles_used": next((line for line in run.output.splitlines() if line.startswith("Using profile")), ""),
            "rules": {name: {"login_node": v["login_node"], "group": v["group"]} for name, v in rules.items()},
            "resources_per_rule": resources, "api_rules": api, "api_rules_on_compute_nodes_list": remote,
            "compute_rules": compute, "missing_resources": missing,
        }
        if remote:
            ctx.log(f"{', '.join(remote)} would run on compute nodes; checking the fix `localrules: ...` in a copy")
            _, fixed = probe(study, snakefile, Path(plugin["folder"]), extra=f"\n\nlocalrules: {', '.join(remote)}\n")
            out["api_rules_on_compute_nodes_with_fix"] = sum(not fixed[r]["login_node"] for r in api)
    return out


@slurm_profile.setup
def _setup(ctx: Context) -> dict[str, Any]:
    ctx.log(f"installing {', '.join(PLUGINS)} into {plugin_dir()} (not the venv)")
    return ensure_plugin()


@slurm_profile.conclude
def _conclude(ctx: Context, metrics: Metrics, details: Mapping[str, Any]) -> Conclusion:
    plugin: dict[str, Any] = ctx.state
    conclusion = Conclusion(details={"plugin": plugin, "command": f"snakemake -n --profile {PROFILE} submit",
                                     "study": STUDY_CONFIG["experiments"]})
    if plugin["unmet_requirements"]:
        conclusion.notes.append("Plugin requirements the venv does not meet (it was installed with --no-deps): "
                                + "; ".join(plugin["unmet_requirements"]))
    stats = metrics.get("api_rules_on_compute_nodes")
    if stats and stats["median"] > 0:
        fixed = metrics.get("api_rules_on_compute_nodes_with_fix")
        conclusion.reasons["api_rules_on_compute_nodes"] = (
            f"{', '.join(details.get('api_rules_on_compute_nodes_list', []))} would be sent to SLURM: it lacks "
            "`localrule: True` in workflow/rules, and a profile cannot make a rule local (Snakemake has no "
            "--local-rules option)"
            + (f"; with `localrules:` added in a copy, {int(fixed['median'])} remain remote" if fixed else ""))
    missing = metrics.get("compute_rules_missing_resources")
    if missing and missing["median"] > 0:
        conclusion.reasons["compute_rules_missing_resources"] = (
            f"{int(missing['median'])} rule(s) would go to SLURM without runtime/mem_mb/cpus_per_task "
            "(missing_resources in the JSON); add them to default-resources or set-resources in the profile")
    return conclusion
