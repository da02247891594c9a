"""What `snakemake --cores 1 collect` costs against the IBM API: requests and wall time.

N jobs are submitted (untimed) through the library into a study folder with `provider: ibm`
(markers + ledger, as after `snakemake submit`) against the local emulator of the IBM Quantum
Platform (qpuflow.emulator, real qiskit-ibm-runtime client, 127.0.0.1 only). Jobs stay queued
(a 30-day queue); then 10% of them, the oldest (a queue runs roughly first in, first out), are
completed on demand with the emulator's admin API and the rest stay queued.

Each repeat copies that study fresh (no results/collected) and times, as whole processes:

* `snakemake --cores 1 collect` (the emulator's request log counted by kind),
* the same again (a rerun must download nothing and cost only the status pages),
* a bare script: `QiskitRuntimeService` + the listing page by page (the client's own
  `jobs_get`, as the provider does, limit = the provider's page size) + per finished job one
  `job_results` (decoded as the client does) and one `job_metadata` (the documented source of
  the completion time and the charge), written, in one process.

Besides the status pages, collect lists the study's jobs once (by its study tag, to settle
duplicates and interrupted submissions: qpuflow.reconcile), so the bounds count two passes
over the listing. Targets: status of all jobs in <= 2 ceil(N / page) + 5 requests, exactly
one result download per newly finished job, all requests <= 2 ceil(N / page) + 5 + 2 x
finished, a rerun <= 2 ceil(N / page) + 5 with no download, and the collect within 2x the
bare script's wall time.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import math
import os
import pstats
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

from benchlib.core import Conclusion, Context, Metrics, Target, benchmark
from benchlib.study import BIN, snakemake, temp_study

SIZES = {"full": 1000, "quick": 50}
FINISHED_FRACTION = 0.10
SLACK = 5  # the "+ a few" requests allowed on top of ceil(N / page)
TARGET_RATIO = 2.0
TOKEN = "bench-collect-token-0c7d"  # the emulator accepts any token; never a real one
QUEUE_SECONDS = 30 * 86400

# Request kinds of the emulator's log, grouped as the report counts them.
SIGN_IN = ("iam", "search", "catalog")
BACKEND = ("backends", "configuration", "properties", "backend_status")

SUBMIT = r'''
"""Untimed set-up: submit every run once through qpuflow.pipeline.submit_pending.

Speed-ups for the set-up only (they change no file content): one provider per account and
one backend object per name, instead of a new QiskitRuntimeService and a fresh download and
decode of the 156-qubit properties per run.
"""
import time

import qpuflow.providers.ibm as ibm
import qpuflow.stages as stages
import qpuflow.submit as submit
from qpuflow.config import load_config
from qpuflow.paths import Paths
from qpuflow.pipeline import submit_pending
from qpuflow.plan import plan_runs

_providers, _backends = {}, {}
_make_provider, _stage_backend, _provider_backend = submit.make_provider, stages._ibm_backend, ibm.IBMProvider._backend


def make_provider(config, *, account, local_store):
    if account not in _providers:
        _providers[account] = _make_provider(config, account=account, local_store=local_store)
    return _providers[account]


def stage_backend(name, config):
    if ("stage", name) not in _backends:
        _backends["stage", name] = _stage_backend(name, config)
    return _backends["stage", name]


def provider_backend(self, name):
    if (self.account, name) not in _backends:
        _backends[self.account, name] = _provider_backend(self, name)
    return _backends[self.account, name]


submit.make_provider, stages._ibm_backend, ibm.IBMProvider._backend = make_provider, stage_backend, provider_backend
config = load_config("config.yaml")
started = time.perf_counter()
written = submit_pending(plan_runs(config), config, Paths.from_config(config))
print(f"SUBMITTED {len(written)} {time.perf_counter() - started:.2f}")
'''

BARE = r'''
"""The baseline: the requests collect needs, issued by hand with qiskit-ibm-runtime.

Sign in, list the qpuflow-tagged jobs page by page (the provider's page size), download and
decode each finished job's result once, write it to a file.
"""
import json
import os
import sys
from pathlib import Path

from qiskit_ibm_runtime import QiskitRuntimeService
from qiskit_ibm_runtime.decoders.defaults import DEFAULT_DECODERS

page_size, out = int(sys.argv[1]), Path(sys.argv[2])
wanted = {json.loads(p.read_text())["job_id"] for p in Path("results/submitted").glob("*/*.json")}
service = QiskitRuntimeService(channel="ibm_quantum_platform", token=os.environ["EMU_TOKEN"],
                               instance=os.environ["EMU_INSTANCE"], url=os.environ["EMU_URL"])
client = service._active_api_client  # service.jobs() pages by 20 and drops the state
states, offset = {}, 0
while True:
    page = client.jobs_get(limit=page_size, skip=offset, job_tags=["qpuflow"])
    jobs = page.get("jobs", [])
    states.update({j["id"]: j["state"]["status"] for j in jobs if j["id"] in wanted})
    offset += len(jobs)
    if not jobs or offset >= int(page.get("count", 0)) or len(states) == len(wanted):
        break
out.mkdir(parents=True, exist_ok=True)
for job_id, status in sorted(states.items()):
    target = out / f"{job_id}.json"
    if status == "Completed" and not target.exists():
        result = client.job_results(job_id)
        for decoder in DEFAULT_DECODERS["executor"]:  # the executor sampler's chain (job.result())
            if decoder.is_applicable(result):
                result = decoder.decode(result)
        metrics = client.job_metadata(job_id)
        data = result[0].data
        target.write_text(json.dumps({"job_id": job_id, "status": "completed",
                                      "finished": metrics["timestamps"]["finished"], "usage": metrics["usage"],
                                      "registers": {k: getattr(data, k).get_counts() for k in data.keys()}}))
print(f"BARE listed {len(states)} downloaded {len(list(out.glob('*.json')))}")
'''


def study_config(runs: int) -> dict[str, Any]:
    """N small runs (d=3 repetition code, 1 round, 100 shots) on the IBM provider, account env:EMU,
    one run per job (the target is about N jobs)."""
    return {
        "provider": {"name": "ibm", "backend": "ibm_fez", "max_execution_time": 120, "pubs_per_job": 1,
                     "ibm": {"backoff_seconds": 0.1}},
        "accounts": [{"name": "env:EMU", "budget_seconds": 1e9}],
        "transpile": {"optimization_level": 1, "seed": 7},
        "experiments": {"rep": {"kind": "repetition_code", "distance": 3, "rounds": 1,
                                "logical_states": ["0", "1"], "repetitions": runs // 2, "shots": 100}},
    }


def start_emulator(store: Path):
    from qpuflow.emulator import EmulatorHandle

    # No usage limit (1000 jobs would exceed the Open plan's 600 s and stay queued anyway),
    # a 30-day queue, one backend, and a 1 s worker poll: the worker walks every pending job
    # each pass, so 1000 queued jobs at the default 50 ms would load a core during the timing.
    # The set-up sends 1000 jobs, so the service's 5-a-minute submission limit is off here (it
    # is tested in tests/test_ibm_faults.py); everything collect meets is strict.
    handle = EmulatorHandle(store, queue_seconds=QUEUE_SECONDS, run_seconds=0, usage_limit_seconds=None,
                            backends=["ibm_fez"], poll_seconds=1.0, submit_rate_per_minute=None).start()
    atexit.register(handle.close)
    return handle


def client_env(handle) -> dict[str, str]:
    return {**handle.client_env(), "EMU_TOKEN": TOKEN, "EMU_INSTANCE": "qpuflow-emulator", "EMU_URL": handle.api_url}


def python(script: Path, *args: str, cwd: Path, env: Mapping[str, str]) -> tuple[float, str]:
    """Run a Python script as its own process (start and imports included); (seconds, output)."""
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "python"), str(script), *args], cwd=cwd, env={**os.environ, **env},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise RuntimeError(f"{script.name} exited {proc.returncode}:\n{tail}")
    return seconds, proc.stdout


def count_requests(entries: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = collections.Counter(e["kind"] for e in entries)
    job_calls = kinds["list"] + kinds["status"] + kinds["results"]
    return {
        "total": len(entries),
        "listing": kinds["list"],
        "status": kinds["status"],
        "results": kinds["results"],
        "other": len(entries) - job_calls,
        "other_metrics": kinds["metrics"],
        "other_sign_in": sum(kinds[k] for k in SIGN_IN),
        "other_backend": sum(kinds[k] for k in BACKEND),
        "failed": sum(1 for e in entries if e["status"] is None or e["status"] >= 400),
        "by_kind": dict(sorted(kinds.items())),
    }


def timed_requests(handle, action):
    """(action's result, request counts of what it sent)."""
    handle.clear_requests()
    out = action()
    return out, count_requests(handle.requests())


def collected(study: Path) -> dict[str, dict[str, Any]]:
    """job ID -> result record, for every result file of the study."""
    records = [json.loads(p.read_text()) for p in (study / "results" / "collected").glob("*/*.json")]
    return {r["job_id"]: r for r in records}


def fresh_copy(template: Path, dest: Path) -> Path:
    """The submitted study as after `snakemake submit`: nothing collected, no Snakemake state."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(template, dest, symlinks=True,
                    ignore=shutil.ignore_patterns(".snakemake", "collected", "logs", "ibm_experiments", "bare"))
    return dest


# --------------------------------------------------------------------------------------
# set-up (once, untimed)
# --------------------------------------------------------------------------------------


def snakemake_submit_sample(scratch: Path, runs: int) -> dict[str, Any]:
    """`snakemake --cores 1 submit` of a small study on its own emulator: is the workflow fast
    enough to build the N-job state? (Measured, then the library path is used.)"""
    handle = start_emulator(scratch / "sample-store")
    try:
        with temp_study(study_config(runs), parent=scratch) as study:
            run = snakemake(study, "--cores", "1", "submit", env=client_env(handle)).check()
        jobs = len(handle.jobs())
    finally:
        handle.close()
    if jobs != runs:
        raise RuntimeError(f"snakemake submit of {runs} runs created {jobs} jobs")
    return {"runs": runs, "seconds": round(run.seconds, 2), "s_per_run": round(run.seconds / runs, 3)}


def build_state(ctx: Context) -> dict[str, Any]:
    runs = SIZES["quick" if ctx.quick else "full"]
    finished = round(runs * FINISHED_FRACTION)
    state: dict[str, Any] = {"runs": runs, "finished": finished, "stack": contextlib.ExitStack()}
    if not ctx.quick:
        ctx.log("set-up: timing `snakemake --cores 1 submit` of 50 runs against a separate emulator")
        state["snakemake_submit_sample"] = snakemake_submit_sample(ctx.scratch, 50)
        ctx.log(f"  {state['snakemake_submit_sample']}")
    handle = start_emulator(ctx.scratch / "emulator-store")
    state["stack"].callback(handle.close)
    state["handle"] = handle
    template = state["stack"].enter_context(temp_study(study_config(runs), parent=ctx.scratch))
    state["template"] = template
    env = client_env(handle)
    state["env"] = env
    script = ctx.scratch / "submit_in_process.py"
    script.write_text(SUBMIT)
    ctx.log(f"set-up: submitting {runs} runs in-process (qpuflow.pipeline.submit_pending)")
    # USAGE_DATA_OPT_OUT only during the set-up: it skips the client's per-request stack walk.
    seconds, output = python(script, cwd=template, env={**env, "USAGE_DATA_OPT_OUT": "True"})
    state["setup_submit_s"] = round(seconds, 2)
    markers = [json.loads(p.read_text()) for p in (template / "results" / "submitted").glob("*/*.json")]
    jobs = handle.jobs()  # oldest first
    if len(markers) != runs or len(jobs) != runs or {m["job_id"] for m in markers} != {j["id"] for j in jobs}:
        raise RuntimeError(f"set-up: {len(markers)} markers and {len(jobs)} emulator jobs for {runs} runs")
    if not (template / "results" / "ledger").exists():
        raise RuntimeError("set-up: no ledger was written")
    ctx.log(f"  {runs} jobs submitted in {seconds:.1f} s; completing the oldest {finished}")
    done_ids = [j["id"] for j in jobs[:finished]]
    started = time.perf_counter()
    final = handle.complete_jobs(done_ids, timeout=600)
    if any(j["status"] != "Completed" for j in final):
        raise RuntimeError(f"set-up: not all completed: {collections.Counter(j['status'] for j in final)}")
    statuses = collections.Counter(j["status"] for j in handle.jobs())
    if statuses != {"Completed": finished, "Queued": runs - finished}:
        raise RuntimeError(f"set-up: unexpected job states {dict(statuses)}")
    state["setup_complete_s"] = round(time.perf_counter() - started, 2)
    state["done_ids"] = set(done_ids)
    state["bare_script"] = ctx.scratch / "bare_collect.py"
    state["bare_script"].write_text(BARE)
    from qpuflow.providers import make_provider

    state["page_size"] = make_provider(json.loads(json.dumps(study_config(runs))), account="env:EMU",
                                       local_store=template / "results" / "local_jobs").page_size
    state["server_page_cap"] = handle.configure()["max_page_size"]
    return state


# --------------------------------------------------------------------------------------
# the measurement
# --------------------------------------------------------------------------------------


def bounds(state: Mapping[str, Any]) -> dict[str, int]:
    pages = 2 * math.ceil(state["runs"] / state["page_size"])  # the status pages and the study's listing
    return {"status_pages": pages, "status_bound": pages + SLACK,
            "total_bound": pages + SLACK + 2 * state["finished"], "rerun_bound": pages + SLACK}


def run_collect(study: Path, state: Mapping[str, Any], **kw: Any):
    return timed_requests(state["handle"], lambda: snakemake(study, "--cores", "1", "collect", env=state["env"],
                                                             **kw).check())


def check_results(study: Path, state: Mapping[str, Any], what: str) -> None:
    got = collected(study)
    if set(got) != state["done_ids"]:
        extra, missing = set(got) - state["done_ids"], state["done_ids"] - set(got)
        raise RuntimeError(f"{what}: {len(got)} result files; {len(missing)} finished job(s) missing, "
                           f"{len(extra)} for job(s) that are not finished")
    bad = [r["job_id"] for r in got.values() if r["status"] != "completed" or not r.get("registers")]
    if bad:
        raise RuntimeError(f"{what}: {len(bad)} result(s) not completed with registers, e.g. {bad[0]}")


@benchmark(
    "collect_overhead",
    title="`snakemake --cores 1 collect` of N IBM jobs (10% finished) through the emulator vs a bare client script",
    targets=(
        Target("status_requests_over_bound", "<=", 0,
               "job status of all N jobs (listing + per-job status requests) in <= 2 ceil(N / page) + 5"),
        Target("result_downloads_per_new_result", "==", 1,
               "exactly one result download per newly finished job"),
        Target("total_requests_over_bound", "<=", 0,
               "all requests of one collect <= 2 ceil(N / page) + 5 + 2 x newly finished (result + metrics)"),
        Target("rerun_requests_over_bound", "<=", 0,
               "a second collect: <= 2 ceil(N / page) + 5 requests"),
        Target("rerun_requests_results", "==", 0, "a second collect downloads nothing"),
        Target("ratio_collect_vs_bare", "<=", TARGET_RATIO,
               "collect wall time within 2x the bare script issuing the minimal requests"),
    ),
)
def collect_overhead(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    bound = bounds(state)
    study = fresh_copy(state["template"], ctx.scratch / "study")
    out: dict[str, Any] = {"load_avg_1m_before": os.getloadavg()[0]}

    def bare() -> None:
        seconds, output = python(state["bare_script"], str(state["page_size"]), "results/bare",
                                 cwd=study, env=state["env"])
        out["bare_s"] = seconds
        out["bare_output"] = output.strip().splitlines()[-1]

    def collect() -> None:
        run, counts = run_collect(study, state)
        check_results(study, state, "collect")
        out["collect_s"] = run.seconds
        out["collect"] = counts
        out["collect_summary"] = [line for line in run.output.splitlines() if "Completed:" in line or "Pending:" in line]

    # Alternate the order so that neither always runs on a warmer machine.
    for step in ((bare, collect) if ctx.repeat % 2 == 0 else (collect, bare)):
        if step is bare:
            _, out["bare"] = timed_requests(state["handle"], lambda: bare())
            written = {p.stem for p in (study / "results" / "bare").glob("*.json")}
            if written != state["done_ids"]:
                raise RuntimeError(f"bare script wrote {len(written)} results, expected the {state['finished']} finished")
        else:
            step()
    rerun, rerun_counts = run_collect(study, state)
    check_results(study, state, "second collect")
    c, b = out["collect"], out["bare"]
    out.update({
        "runs": state["runs"], "finished": state["finished"], "page_size": state["page_size"],
        "rerun_s": rerun.seconds, "rerun": rerun_counts,
        "ratio_collect_vs_bare": out["collect_s"] / out["bare_s"],
        "requests_total": c["total"], "requests_listing": c["listing"], "requests_status": c["status"],
        "requests_results": c["results"], "requests_other": c["other"], "requests_other_metrics": c["other_metrics"],
        "requests_other_sign_in": c["other_sign_in"], "requests_other_backend": c["other_backend"],
        "bare_requests_total": b["total"], "bare_requests_listing": b["listing"], "bare_requests_results": b["results"],
        "rerun_requests_total": rerun_counts["total"], "rerun_requests_listing": rerun_counts["listing"],
        "rerun_requests_results": rerun_counts["results"],
        "status_requests_over_bound": c["listing"] + c["status"] - bound["status_bound"],
        "result_downloads_per_new_result": c["results"] / state["finished"],
        "total_requests_over_bound": c["total"] - bound["total_bound"],
        "rerun_requests_over_bound": rerun_counts["total"] - bound["rerun_bound"],
        "bounds": bound,
    })
    ctx.log(f"collect {out['collect_s']:.1f} s ({c['total']} requests: {c['by_kind']}); rerun {rerun.seconds:.1f} s "
            f"({rerun_counts['total']}); bare {out['bare_s']:.1f} s ({b['total']}); "
            f"ratio {out['ratio_collect_vs_bare']:.2f}")
    shutil.rmtree(study)
    return out


@collect_overhead.setup
def _setup(ctx: Context) -> dict[str, Any]:
    return build_state(ctx)


# --------------------------------------------------------------------------------------
# where the time goes (once, after the repeats)
# --------------------------------------------------------------------------------------

# `python -m cProfile -m snakemake` (benchlib's profile_to) sees only the main thread, and
# with force-use-threads (profiles/default) the rule body runs in a worker thread: the main
# thread's profile shows it as one lock wait. This wrapper profiles every thread.
PROFILE_THREADS = r"""
import cProfile, pstats, runpy, sys, threading

out, sys.argv = sys.argv[1], ["snakemake", *sys.argv[2:]]
profiles, _run = [], threading.Thread.run


def run(self):
    prof = cProfile.Profile()
    profiles.append(prof)
    prof.enable()
    try:
        _run(self)
    finally:
        prof.disable()


threading.Thread.run = run
main, code = cProfile.Profile(), 0
main.enable()
try:
    runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
finally:
    main.disable()
    stats = pstats.Stats(main)
    for prof in profiles:
        stats.add(prof)
    stats.dump_stats(out)
sys.exit(code)
"""

# (label, file suffix, function) of the collect path; cumulative times over all threads.
HOTSPOTS = (
    ("Snakemake process, main thread (start, imports, DAG, waiting for the job)", "snakemake/__main__.py", "<module>"),
    ("Study planning at DAG time (wf.Study.from_snakemake)", "qpuflow/wf.py", "from_snakemake"),
    ("rule body: qpuflow.smk.collect", "qpuflow/smk.py", "collect"),
    ("qpuflow.pipeline.collect (poll + downloads)", "qpuflow/pipeline.py", "collect"),
    ("bulk status poll: collect.status_rows", "qpuflow/collect.py", "status_rows"),
    ("per finished job: collect.collect_result (re-poll + fetch + write)", "qpuflow/collect.py", "collect_result"),
    ("IBMProvider.statuses (bulk + one per finished job)", "qpuflow/providers/ibm.py", "statuses"),
    ("IBMProvider.fetch", "qpuflow/providers/ibm.py", "fetch"),
    ("service.job(id): GET + an IBMBackend per job", "qiskit_ibm_runtime/qiskit_runtime_service.py", "job"),
    ("IBMBackend built per job (deepcopy of the configuration)", "qiskit_ibm_runtime/qiskit_runtime_service.py",
     "_create_backend_obj"),
    ("RuntimeJobV2.result (status poll + results GET + decode)", "qiskit_ibm_runtime/runtime_job_v2.py", "result"),
    ("sign-in: providers.ibm.open_service", "qpuflow/providers/ibm.py", "open_service"),
    ("status table of every job (summary.print_status)", "qpuflow/summary.py", "print_status"),
    ("summary table", "qpuflow/summary.py", "summary_table"),
    ("collection export", "qpuflow/exports.py", "export_collection"),
    ("onsuccess: submission export", "qpuflow/wf.py", "export_submissions"),
    ("client: every HTTP request (session.request)", "qiskit_ibm_runtime/api/session.py", "request"),
    ("client: inspect.stack() per request (X-Qx-Client-Application header)", "inspect.py", "stack"),
    ("waiting for the emulator's answers (socket recv_into)", "~", "<method 'recv_into' of '_socket.socket' objects>"),
)


def profile_collect(study: Path, env: Mapping[str, str], scratch: Path) -> tuple[float, Path]:
    wrapper, prof = scratch / "profile_threads.py", scratch / "collect.prof"
    wrapper.write_text(PROFILE_THREADS)
    seconds, _ = python(wrapper, str(prof), "--cores", "1", "collect", cwd=study, env=env)
    return seconds, prof


def hotspots(prof: Path) -> list[dict[str, Any]]:
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    rows = []
    for label, suffix, func in HOTSPOTS:
        hits = [v for (f, _, fn), v in stats.items() if f.endswith(suffix) and fn == func]
        if hits:
            cc, nc, tt, ct = (sum(h[i] for h in hits) for i in range(4))
            rows.append({"what": label, "function": f"{suffix}:{func}", "calls": nc, "own_s": round(tt, 3),
                         "cumulative_s": round(ct, 3)})
    return rows


def top_own_time(prof: Path, n: int = 12) -> list[dict[str, Any]]:
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    rows = [{"function": fn if f == "~" else f"{Path(f).parent.name}/{Path(f).name}:{line}({fn})", "calls": v[1],
             "own_s": round(v[2], 3), "cumulative_s": round(v[3], 3)} for (f, line, fn), v in top
            if "acquire" not in fn and "poll" not in fn]  # idle waits of the scheduler threads
    return rows[:n]


def per_job(counts: Mapping[str, Any], state: Mapping[str, Any], bound: Mapping[str, int]) -> dict[str, float]:
    """Requests per newly finished job beyond the bulk poll (the bulk poll is ceil(N / page) pages)."""
    f = state["finished"]
    return {"listing": (counts["listing"] - bound["status_pages"]) / f, "status": counts["status"] / f,
            "metrics": counts["other_metrics"] / f, "results": counts["results"] / f}


@collect_overhead.conclude
def _conclude(ctx: Context, metrics: Metrics, details: Mapping[str, Any]) -> Conclusion:
    state = ctx.state
    bound = bounds(state)
    med = {k: v["median"] for k, v in metrics.items()}
    conclusion = Conclusion(details={
        "bounds": bound, "page_size_provider": state["page_size"], "page_size_server_cap": state["server_page_cap"],
        "finished_jobs": f"the oldest {state['finished']} of {state['runs']} (queue order), the rest Queued",
        "setup_submit_in_process_s": state["setup_submit_s"], "setup_complete_s": state["setup_complete_s"],
    })
    sample = state.get("snakemake_submit_sample")
    if sample:
        conclusion.details["setup_snakemake_submit_sample"] = sample
    try:
        ctx.log("profiling one collect (every thread) on a fresh copy")
        study = fresh_copy(state["template"], ctx.scratch / "study-profile")
        state["handle"].clear_requests()
        prof_s, prof = profile_collect(study, state["env"], ctx.scratch)
        check_results(study, state, "profiled collect")
        spots = hotspots(prof)
        raw = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
        walks = sum(v[1] for (f, _, fn), v in raw.items() if f.endswith("inspect.py") and fn == "stack")
        frames = sum(v[1] for (f, _, fn), v in raw.items() if f.endswith("inspect.py") and fn == "getframeinfo")
        conclusion.details["stack_frames_per_request"] = round(frames / walks, 1) if walks else None
        conclusion.details.update(profile_wall_s=round(prof_s, 2), profile_hotspots=spots,
                                  profile_top_own_time=top_own_time(prof))
        shutil.rmtree(study)

        ctx.log("what-if: the same collect with USAGE_DATA_OPT_OUT=True (environment only)")
        study = fresh_copy(state["template"], ctx.scratch / "study-optout")
        run, counts = run_collect(study, {**state, "env": {**state["env"], "USAGE_DATA_OPT_OUT": "True"}})
        check_results(study, state, "opt-out collect")
        conclusion.metrics["what_if_usage_data_opt_out_collect_s"] = run.seconds
        shutil.rmtree(study)

        ctx.log("floor: `snakemake -n --cores 1 collect` (start, imports, planning; no API)")
        study = fresh_copy(state["template"], ctx.scratch / "study-dry")
        dry = snakemake(study, "-n", "--cores", "1", "collect", env=state["env"]).check()
        conclusion.metrics["floor_dry_run_collect_s"] = dry.seconds
        shutil.rmtree(study)
    finally:
        state["stack"].close()

    c = details["collect"]
    jobs = per_job(c, state, bound)
    spot = {s["function"]: s["cumulative_s"] for s in spots}
    body = spot.get("qpuflow/smk.py:collect", 0.0)
    notes = [
        f"N = {state['runs']} jobs tagged `qpuflow`, {state['finished']} finished (the oldest: a queue runs first in, "
        f"first out), the rest Queued. Provider page size {state['page_size']} (IBMProvider.page_size; the emulator "
        f"caps a page at {state['server_page_cap']}). Bound for status: ceil(N / page) + {SLACK} = "
        f"{bound['status_bound']}; for a whole collect: + {state['finished']} downloads = {bound['total_bound']}.",
        f"Measured (median): collect {med['collect_s']:.1f} s with {med['requests_total']:.0f} requests "
        f"(listing {med['requests_listing']:.0f}, job status {med['requests_status']:.0f}, results "
        f"{med['requests_results']:.0f}, other {med['requests_other']:.0f} of which metrics "
        f"{med['requests_other_metrics']:.0f}, sign-in {med['requests_other_sign_in']:.0f}); rerun {med['rerun_s']:.1f} s "
        f"with {med['rerun_requests_total']:.0f}; bare script {med['bare_s']:.1f} s with {med['bare_requests_total']:.0f} "
        f"(listing {med['bare_requests_listing']:.0f}, results {med['bare_requests_results']:.0f}, the rest sign-in). "
        f"Ratio {med['ratio_collect_vs_bare']:.2f}.",
        f"Per newly finished job collect sends {jobs['listing']:.1f} listing pages, {jobs['status']:.1f} GET /jobs/{{id}}, "
        f"{jobs['metrics']:.1f} GET metrics and {jobs['results']:.1f} GET results: collect_result() asks "
        f"provider.statuses([job_id]) again (IBMProvider._list_raw pages the newest-first listing until the job "
        f"appears, so an old job costs all ceil(N / page) pages), then IBMProvider.fetch goes through service.job() "
        f"(GET + an IBMBackend with a deep copy of the configuration per job), job.status(), job.usage() (metrics), "
        f"job.result() (its own status poll + results) and _finished_time() (metrics again).",
        f"Profile of one collect (all threads, cProfile inflates cheap calls; wall {conclusion.details['profile_wall_s']} s "
        f"profiled): rule body {body:.1f} s, of which collect_result {spot.get('qpuflow/collect.py:collect_result', 0):.1f} s "
        f"(IBMProvider.statuses {spot.get('qpuflow/providers/ibm.py:statuses', 0):.1f} s in all, with the sign-in "
        f"and the qiskit_ibm_runtime import in the first call; fetch "
        f"{spot.get('qpuflow/providers/ibm.py:fetch', 0):.1f} s); every request passes through the client's "
        f"session.request ({spot.get('qiskit_ibm_runtime/api/session.py:request', 0):.1f} s), which calls inspect.stack() "
        f"to name the caller in the X-Qx-Client-Application header ({spot.get('inspect.py:stack', 0):.1f} s: inside "
        f"Snakemake's thread the stack is {conclusion.details['stack_frames_per_request']} frames deep, each looked up in "
        f"its source file); waiting for the emulator's answers "
        f"{spot.get('~:' + HOTSPOTS[-1][2], 0):.1f} s.",
        f"What-if (environment only, no code change): USAGE_DATA_OPT_OUT=True skips that stack walk: collect "
        f"{conclusion.metrics['what_if_usage_data_opt_out_collect_s']:.1f} s instead of {med['collect_s']:.1f} s. "
        f"Floor: `snakemake -n collect` (start, imports, planning {state['runs']} runs, no API) takes "
        f"{conclusion.metrics['floor_dry_run_collect_s']:.1f} s; the rerun ({med['rerun_requests_total']:.0f} requests, "
        f"no download, same table and exports) {med['rerun_s']:.1f} s.",
        f"Against the real service every request also pays its round trip (~0.1-0.3 s): at 0.1 s, collect's "
        f"{med['requests_total']:.0f} requests would add ~{0.1 * med['requests_total']:.0f} s, the bare script's "
        f"{med['bare_requests_total']:.0f} ~{0.1 * med['bare_requests_total']:.0f} s.",
        "Set-up (untimed): jobs submitted in-process with qpuflow.pipeline.submit_pending (one provider and one "
        "backend object reused, USAGE_DATA_OPT_OUT=True; markers and ledger as after `snakemake submit`) "
        f"in {state['setup_submit_s']} s"
        + (f"; `snakemake --cores 1 submit` of {sample['runs']} runs took {sample['seconds']} s "
           f"({sample['s_per_run']} s/run, ~{sample['s_per_run'] * state['runs'] / 60:.0f} min for {state['runs']}), "
           "too slow to build the state with" if sample else "")
        + f". The {state['finished']} jobs were completed with the emulator's admin API (EmulatorHandle.complete_jobs).",
        "Emulator fix made for this benchmark (src/qpuflow/emulator/server.py): the handler now sets TCP_NODELAY "
        "(disable_nagle_algorithm). Before, every answer on a keep-alive connection waited ~40 ms for the client's "
        "delayed ACK (Nagle): 44 ms per request, 2 ms after.",
        "Suggestions: (1) qpuflow/pipeline.py collect() + qpuflow/collect.py collect_result(): use the JobInfo the bulk "
        "poll (status_rows) already has instead of provider.statuses([job_id]) per job; (2) qpuflow/providers/ibm.py "
        "IBMProvider.fetch(): skip service.job()/RuntimeJobV2: take state, error, created, backend, tags, usage "
        "(`usage.quantum_seconds`) and completion time (`end_time`) from the listing entry (_info_from_raw) and download "
        "with the client's job_results(job_id) decoded by RuntimeDecoder (what job.result() does after its status "
        "poll): one request per finished job, or two if metrics must stay the source of usage/timestamps; "
        "(3) qpuflow/providers/ibm.py open_service(): os.environ.setdefault('USAGE_DATA_OPT_OUT', 'True') (also keeps "
        "the caller's file paths out of the request headers).",
    ]
    conclusion.notes = notes
    reasons = conclusion.reasons
    if med["status_requests_over_bound"] > 0:
        reasons["status_requests_over_bound"] = (
            f"{med['requests_listing'] + med['requests_status']:.0f} listing + status requests vs "
            f"{bound['status_bound']}: the bulk poll is {bound['status_pages']} page(s), but collect_result() re-polls "
            f"each finished job through the listing ({jobs['listing']:.1f} pages per job) and fetch() adds "
            f"{jobs['status']:.0f} GET /jobs/{{id}} per job (qpuflow/collect.py collect_result, providers/ibm.py fetch)")
    if med["total_requests_over_bound"] > 0:
        reasons["total_requests_over_bound"] = (
            f"{med['requests_total']:.0f} requests vs {bound['total_bound']}: per finished job "
            f"{jobs['listing'] + jobs['status'] + jobs['metrics'] + jobs['results']:.0f} requests instead of 1 "
            "(re-poll + service.job + status + 2x metrics + result); see notes")
    if med["result_downloads_per_new_result"] != 1:
        reasons["result_downloads_per_new_result"] = (
            f"{med['requests_results']:.0f} GET results for {state['finished']} newly finished jobs")
    if med["rerun_requests_over_bound"] > 0:
        reasons["rerun_requests_over_bound"] = f"a rerun sent {med['rerun_requests_total']:.0f} requests"
    if med["rerun_requests_results"] != 0:
        reasons["rerun_requests_results"] = f"a rerun downloaded {med['rerun_requests_results']:.0f} results again"
    if med["ratio_collect_vs_bare"] > TARGET_RATIO:
        reasons["ratio_collect_vs_bare"] = (
            f"{med['ratio_collect_vs_bare']:.1f}x: {med['requests_total']:.0f} requests instead of "
            f"{med['bare_requests_total']:.0f}, each paying the client's inspect.stack() walk in Snakemake's deep "
            f"stack; floor without API {conclusion.metrics['floor_dry_run_collect_s']:.1f} s (Snakemake start + "
            "planning) vs the bare script's whole run; see notes")
    return conclusion
