"""The default study on the IBM path: config.yaml with only `provider.name: ibm`, against the
strict emulator (the service's documented contract), through the unmodified client.

Runs the README's loop (submit, collect, submit, collect, analyze) as a user would, with
Snakemake in a temporary copy of the workflow and the study's account `local` saved as a
qiskit account that reaches the emulator. Two variants: the default (executor sampler, 8 runs
per job) and one run per job with SamplerV2, which meets the service's limit of 5 submissions
a minute. Records, per variant, the jobs sent, their tags (count and longest), what the
emulator charged, the requests of each step by kind and how long each step took.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib.core import Conclusion, Context, Metrics, Target, benchmark
from benchlib.study import REPO

VARIANTS = {
    "packed": {},
    "single": {"pubs_per_job": 1, "ibm": {"primitive": "sampler_v2"}},
}
STEPS = ("submit", "collect", "submit", "collect", "analyze")


@benchmark(
    "ibm_rehearsal",
    title="the default study switched to provider: ibm, against the strict emulator",
    targets=(
        Target("max_tags_per_job", "<=", 8, "every job carries at most 8 tags (IBM's OpenAPI)"),
        Target("longest_tag_chars", "<=", 86, "every tag has at most 86 characters"),
        Target("extra_jobs", "==", 0, "one job per pack of runs, under the real rate limit"),
        Target("runs_completed_fraction", "==", 1, "every run of the study is collected as completed"),
    ),
    max_repeats=1,
)
def ibm_rehearsal(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, changes in VARIANTS.items():
        for key, value in run_variant(ctx, name, changes).items():
            out[f"{key}_{name}"] = value
    out["max_tags_per_job"] = max(out[f"max_tags_{n}"] for n in VARIANTS)
    out["longest_tag_chars"] = max(out[f"longest_tag_{n}"] for n in VARIANTS)
    out["extra_jobs"] = sum(out[f"extra_jobs_{n}"] for n in VARIANTS)
    out["runs_completed_fraction"] = min(out[f"completed_fraction_{n}"] for n in VARIANTS)
    return out


def run_variant(ctx: Context, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    import yaml

    from qpuflow.emulator import EmulatorHandle, save_emulator_account

    folder = ctx.scratch / f"ibm_{name}_{ctx.repeat}"
    study = folder / "study"
    study.mkdir(parents=True)
    for item in ("Snakefile", "workflow", "profiles", "envs", "config.yaml"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, study / item)
    config = yaml.safe_load((study / "config.yaml").read_text())
    config["provider"]["name"] = "ibm"
    config["provider"].update(changes)
    (study / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    out: dict[str, Any] = {}
    with EmulatorHandle(folder / "emulator", queue_seconds=0, run_seconds=0) as emu:
        save_emulator_account(folder / "home" / ".qiskit" / "qiskit-ibm.json", config["accounts"][0]["name"], emu,
                              "bench-token", "qpuflow-emulator")
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, **emu.client_env(), "HOME": str(folder / "home"),
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        for number, step in enumerate(STEPS, start=1):
            emu.clear_requests()
            start = time.perf_counter()
            proc = subprocess.run([str(bin_dir / "snakemake"), "--cores", "1", step], cwd=study, env=env,
                                  capture_output=True, text=True)
            out[f"step{number}_{step}_s"] = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"{step} failed:\n{proc.stderr[-3000:]}")
            requests = emu.requests()
            kinds = collections.Counter(r["kind"] for r in requests)
            ctx.log(f"{name}: {step} in {out[f'step{number}_{step}_s']:.1f} s; requests {dict(sorted(kinds.items()))}")
            out[f"step{number}_{step}_requests"] = len(requests)
            out["rate_limited_posts"] = out.get("rate_limited_posts", 0) + sum(
                1 for r in requests if r["kind"] == "submit" and r["status"] == 429)
            for job in emu.jobs():
                emu.wait_for(job["id"])
            time.sleep(2.2)  # the strict emulator's billing stays pending 2 s after a job ends
        jobs = emu.jobs()
    packs = {next(t for t in j["tags"] if t.startswith("qpuflow-pack-")) for j in jobs}
    runs = pd.read_csv(study / "results" / "analysis" / "runs.csv")
    out.update(jobs=len(jobs), extra_jobs=len(jobs) - len(packs), max_tags=max(len(j["tags"]) for j in jobs),
               longest_tag=max(len(t) for j in jobs for t in j["tags"]),
               charged_s=sum(float(j["usage_seconds"] or 0) for j in jobs),
               completed_fraction=float((runs["status"] == "completed").mean()))
    return out


@ibm_rehearsal.conclude
def _conclude(ctx: Context, metrics: Metrics, details: Any) -> Conclusion:
    def m(key: str) -> float:
        return metrics[key]["median"]

    notes = [
        f"Default packing, executor sampler: {m('jobs_packed'):.0f} jobs, at most {m('max_tags_packed'):.0f} tags "
        f"of at most {m('longest_tag_packed'):.0f} characters, {m('charged_s_packed'):.0f} QPU s charged; steps "
        + ", ".join(f"{m(f'step{i}_{s}_s_packed'):.1f} s" for i, s in enumerate(STEPS, start=1)) + ".",
        f"One run per job, SamplerV2: {m('jobs_single'):.0f} jobs, {m('charged_s_single'):.0f} QPU s charged; the "
        f"first submit took {m('step1_submit_s_single'):.0f} s: {m('rate_limited_posts_single'):.0f} submission(s) "
        f"refused with 429 (5 a minute per user) were waited out, and no job was made twice.",
    ]
    return Conclusion(notes=notes)
