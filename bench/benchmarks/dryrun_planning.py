"""How planning time grows with the number of runs: `snakemake -n submit` at N and 10 N runs.

Each repeat plans a fresh temporary study (local provider, `--cores 1`) of one d=3 surface-code
experiment with N runs (two logical states, N/2 repetitions each). Planning should be linear:
10x the runs in under 10x the time. Once, after the repeats, the larger size is profiled
with cProfile to say where the time goes, and (if the DAG has a fan-in/fan-out node) both
sizes are planned again with that node split, to measure what the split would save.
"""

from __future__ import annotations

import dataclasses
import pstats
import re
from pathlib import Path
from typing import Any, Mapping

from benchlib.core import Conclusion, Context, Metrics, Target, benchmark
from benchlib.study import dry_run_jobs, job_stats, snakemake, surface_code_config, temp_study

SIZES = {"full": (500, 5000), "quick": (50, 500)}
TARGET_RATIO = 10.0

# (label, file suffix, function): where a dry run of this workflow was seen to spend time.
HOTSPOTS = (
    ("DAG.update: find each input's producer", "snakemake/dag.py", "update"),
    ("IOFile.__eq__ (list membership tests)", "snakemake/io/__init__.py", "__eq__"),
    ("dry-run listing of every job (Job.log_info)", "snakemake/jobs.py", "log_info"),
    ("`script:` source lookup per job (get_source)", "snakemake/script/__init__.py", "get_source"),
    ("`conda:` env spec per job (update_conda_envs)", "snakemake/dag.py", "update_conda_envs"),
    ("params per job (expand_params)", "snakemake/rules.py", "expand_params"),
    ("resources per job (expand_resources)", "snakemake/rules.py", "expand_resources"),
    ("input functions (apply_input_function)", "snakemake/rules.py", "apply_input_function"),
    ("qpuflow RunSpec.to_json (get_spec, per params call)", "qpuflow/plan.py", "to_json"),
    ("qpuflow Study: validate + plan runs", "qpuflow/wf.py", "from_snakemake"),
)


def _sizes(ctx: Context) -> tuple[int, int]:
    return SIZES["quick" if ctx.quick else "full"]


def plan(runs: int, scratch: Path, *, profile_to: Path | None = None,
         patch: bool = False) -> tuple[float, dict[str, int], str]:
    """Dry-run `submit` for a study of ``runs`` runs; returns (seconds, job stats, output)."""
    with temp_study(surface_code_config(runs=runs), parent=scratch) as study:
        if patch and not split_budget_fan_in(study):
            raise RuntimeError("the budget_check rule no longer has the expected shape; "
                               "the what-if patch does not apply")
        run = snakemake(study, "-n", "--cores", "1", "submit", profile_to=profile_to).check()
    stats = job_stats(run.output)
    import json

    from qpuflow.batches import plan_batches, pubs_per_job
    from qpuflow.config import validate_config
    from qpuflow.plan import plan_runs

    config = validate_config(json.loads(json.dumps(surface_code_config(runs=runs))))
    expected = len(plan_batches(plan_runs(config), pubs_per_job(config)))  # one submit_batch per <= 50 runs
    if stats.get("submit_batch") != expected:
        raise RuntimeError(f"expected {expected} submit_batch jobs for {runs} runs in the dry run, got {stats}")
    return run.seconds, stats, run.output


@benchmark(
    "dryrun_planning",
    title="Snakemake dry-run planning time, N vs 10N runs",
    targets=(Target("ratio_10x_runs", "<", TARGET_RATIO,
                    "planning 10x the runs (500 -> 5000; --quick: 50 -> 500) takes < 10x the time "
                    "(linear, not quadratic)"),),
)
def dryrun_planning(ctx: Context) -> dict[str, Any]:
    small, large = _sizes(ctx)
    out: dict[str, Any] = {}
    for runs in (small, large):
        seconds, stats, _ = plan(runs, ctx.scratch)
        ctx.log(f"{runs} runs: {seconds:.2f} s ({stats.get('total')} jobs)")
        out[f"plan_{runs}_runs_s"] = seconds
        out[f"jobs_planned_{runs}_runs"] = stats.get("total", 0)
    out["ratio_10x_runs"] = out[f"plan_{large}_runs_s"] / out[f"plan_{small}_runs_s"]
    out["sizes"] = [small, large]
    return out


# --------------------------------------------------------------------------------------
# where the time goes
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FanInOut:
    """A job with many inputs whose output is an input of many jobs: Snakemake checks
    `file in producer.input` (a list scan) once per consumer, so this costs inputs x consumers."""

    rule: str
    inputs: int
    output: str
    consumers: int


def find_fan_in_out(output: str, runs: int) -> list[FanInOut]:
    """Jobs with >= runs/2 inputs whose output >= runs/2 jobs consume (the O(N^2) pattern)."""
    jobs = dry_run_jobs(output)
    consumers: dict[str, int] = {}
    for job in jobs:
        for f in set(job.files("input")):
            consumers[f] = consumers.get(f, 0) + 1
    found = []
    for job in jobs:
        inputs = job.files("input")
        if len(inputs) >= runs / 2:
            found += [FanInOut(job.rule, len(inputs), f, consumers.get(f, 0)) for f in job.files("output")
                      if consumers.get(f, 0) >= runs / 2]
    return found


def split_budget_fan_in(study: Path) -> bool:
    """What-if patch of the study's copy: budget_check reads one manifest instead of N files.

    The manifest rule has the N ISA-info inputs and a single consumer, so the N submit
    jobs that need the budget flag each scan a 1-file input list instead of N.
    """
    path = study / "workflow" / "rules" / "submit.smk"
    text = path.read_text()
    new, count = re.subn(r"(rule budget_check:.*?input:\s*\n\s*)get_pending_isa_infos,",
                         r'\1f"{R}/ledger/pending_isa_infos.txt",', text, count=1, flags=re.S)
    if count != 1:
        return False
    manifest = ('rule pending_isa_infos:\n    input:\n        get_pending_isa_infos,\n    output:\n'
                '        temp(f"{R}/ledger/pending_isa_infos.txt"),\n    localrule: True\n'
                '    shell:\n        "printf \'%s\\\\n\' {input} > {output}"\n\n\n')
    path.write_text(manifest + new)
    return True


def profile_hotspots(prof: Path) -> tuple[float, list[dict[str, Any]], list[dict[str, Any]]]:
    """Total profiled time, the named hot spots, and the top 12 functions by own time."""
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, _, ct, _) in stats.values())
    spots = []
    for label, suffix, func in HOTSPOTS:
        rows = [v for (f, _, fn), v in stats.items() if f.endswith(suffix) and fn == func]
        if rows:
            cc, nc, tt, ct = (sum(r[i] for r in rows) for i in range(4))
            spots.append({"what": label, "function": f"{suffix}:{func}", "primitive_calls": cc, "calls": nc,
                          "own_s": round(tt, 3), "cumulative_s": round(ct, 3), "share": round(ct / total, 3)})
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    own = [{"function": fn if f == "~" else f"{Path(f).parent.name}/{Path(f).name}:{line}({fn})", "calls": v[1],
            "own_s": round(v[2], 3), "cumulative_s": round(v[3], 3)} for (f, line, fn), v in top]
    return total, spots, own


def _notes(runs: int, total: float, spots: list[dict[str, Any]], fan: list[FanInOut], per_job_ms: float,
           what_if: Mapping[str, float] | None) -> list[str]:
    notes = [f"Marginal planning cost: {per_job_ms:.2f} ms per planned job (between the two sizes)."]
    eq = next((s for s in spots if s["function"].endswith("io/__init__.py:__eq__")), None)
    if eq is not None:
        notes.append(f"Profile at {runs} runs: IOFile.__eq__ ran {eq['primitive_calls']:,} times "
                     f"= {eq['primitive_calls'] / runs**2:.2f} x N^2, {eq['cumulative_s']:.1f} s of "
                     f"{total:.1f} s profiled (cProfile inflates cheap calls); that term grows with N^2.")
    for f in fan:
        notes.append(f"Quadratic cause: rule `{f.rule}` has {f.inputs} inputs and its output `{f.output}` is an "
                     f"input of {f.consumers} jobs. For each consumer DAG.update tests `file in producer.input` "
                     f"(a list scan over all {f.inputs} inputs): inputs x consumers comparisons.")
    if what_if:
        notes.append(f"What-if (study copy patched, not the repo): budget_check reading one manifest file produced "
                     f"by a rule with the N inputs plans {what_if['runs']:,} runs in {what_if['patched_s']:.1f} s "
                     f"instead of {what_if['as_is_s']:.1f} s (ratio 10x runs: {what_if['ratio']:.1f}x).")
    linear = [s for s in spots if s["share"] >= 0.05 and not s["function"].endswith(("dag.py:update", "__eq__"))]
    if linear:
        notes.append("Linear per-job costs in the profile: " + "; ".join(
            f"{s['what']} {s['share']:.0%}" for s in sorted(linear, key=lambda s: -s["share"])) + ".")
    return notes


@dryrun_planning.conclude
def _conclude(ctx: Context, metrics: Metrics, details: Mapping[str, Any]) -> Conclusion:
    small, large = _sizes(ctx)
    prof = ctx.scratch / f"dryrun_{large}.prof"
    ctx.log(f"profiling the {large}-run dry run with cProfile (slower than unprofiled)")
    _, _, output = plan(large, ctx.scratch, profile_to=prof)
    total, spots, own = profile_hotspots(prof)
    fan = find_fan_in_out(output, large)
    t_small, t_large = metrics[f"plan_{small}_runs_s"]["median"], metrics[f"plan_{large}_runs_s"]["median"]
    jobs_small = metrics[f"jobs_planned_{small}_runs"]["median"]
    jobs_large = metrics[f"jobs_planned_{large}_runs"]["median"]
    per_job_ms = 1000 * (t_large - t_small) / (jobs_large - jobs_small)
    conclusion = Conclusion(
        metrics={"marginal_ms_per_planned_job": per_job_ms},
        details={"profile_runs": large, "profile_total_s": round(total, 2), "profile_hotspots": spots,
                 "profile_top_own_time": own, "fan_in_out": [dataclasses.asdict(f) for f in fan]},
    )
    what_if = None
    if any(f.rule == "budget_check" for f in fan):  # the what-if patch knows this rule only
        ctx.log(f"what-if: planning {large} and {small} runs with budget_check's fan-in split (study copy only)")
        try:
            patched, _, _ = plan(large, ctx.scratch, patch=True)
            patched_small, _, _ = plan(small, ctx.scratch, patch=True)
            what_if = {"runs": large, "patched_s": patched, "as_is_s": t_large, "ratio": patched / patched_small}
            conclusion.metrics[f"what_if_split_plan_{large}_runs_s"] = patched
            conclusion.metrics["what_if_split_ratio_10x_runs"] = patched / patched_small
        except RuntimeError as exc:
            conclusion.notes.append(f"What-if not measured: {exc}")
    conclusion.notes[:0] = _notes(large, total, spots, fan, per_job_ms, what_if)
    ratio = metrics["ratio_10x_runs"]["median"]
    if ratio >= TARGET_RATIO:
        cause = (f"rule `{fan[0].rule}` ({fan[0].inputs} inputs) feeds `{fan[0].output}` to {fan[0].consumers} jobs, "
                 "so Snakemake's DAG build is O(N^2) (see notes)") if fan else \
            "superlinear growth without a fan-in/fan-out node; see the profile in the JSON"
        conclusion.reasons["ratio_10x_runs"] = f"{ratio:.1f}x: {cause}"
    return conclusion
