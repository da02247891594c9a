"""The bodies of the Snakemake rules, run by :func:`run_step` from each rule's one-line ``run:``.

Each takes one job's input, output, params, wildcards, log and config (as Snakemake passes
them). Kept here, not in the Snakefile, so that they are importable, typed and tested.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from qpuflow.paths import Paths
from qpuflow.plan import RunSpec


@contextlib.contextmanager
def _job_logging(smk: Any) -> Iterator[None]:
    """Send qpuflow's log lines to the job's log file and stderr for the length of one job.

    Rules run inside Snakemake's own process (``run:`` with ``force-use-threads``, see
    profiles/default), so the root logger, which is Snakemake's, is left alone: handlers go on
    the ``qpuflow`` logger and come off again when the job ends.
    """
    logger = logging.getLogger("qpuflow")
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setLevel(logging.INFO)  # a line per stage and what needs a word; per-run details go to the log
    handlers: list[logging.Handler] = [terminal]
    if smk.log:
        Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(smk.log[0]))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logging.getLogger("qiskit").setLevel(logging.WARNING)  # its pass timings drown our lines
    # The client's notices ("Loading account with the given token") and urllib3's retry lines:
    # qpuflow reports what they mean itself.
    logging.getLogger("qiskit_ibm_runtime").setLevel(logging.ERROR)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


STEPS = ("build_circuit", "transpile", "transpile_batch", "select_qubits", "submit_batch", "submit_run",
         "budget_precheck", "budget_check", "collect", "collect_run", "poll_jobs", "analyze", "dataset",
         "simulate_local")


# The messages of this run's refusals, printed once more at the very end (Snakefile onerror),
# below Snakemake's own report of the failed job.
REFUSALS: list[str] = []
# Records the rules skipped because they are corrupt or unreadable: the run goes on with the
# others, and ends with exit code 3 listing them (Snakefile onsuccess).
ATTENTION: list[str] = []


def run_step(step: str, smk: Any) -> None:
    """Run one rule's body. ``smk`` has the job's input, output, params, wildcards, log, config.

    An error meant for the user (:class:`~qpuflow.errors.QpuflowError`, or a file-system
    failure: permissions, a full disk) fails the job with its message alone, no traceback.
    """
    from snakemake.exceptions import WorkflowError

    from qpuflow.errors import QpuflowError, describe_os_error

    if step not in STEPS:
        raise ValueError(f"unknown workflow step {step!r}; expected one of {STEPS}")
    with _job_logging(smk):
        try:
            globals()[step](smk)
        except QpuflowError as exc:
            message = str(exc)
        except OSError as exc:
            message = describe_os_error(exc)
        else:
            return
    REFUSALS.append(message)
    raise WorkflowError(message) from None


def _spec(smk: Any) -> RunSpec:
    return RunSpec.from_json(dict(smk.params.spec))


def build_circuit(smk: Any) -> None:
    from qpuflow.stages import build_circuit as build

    build(_spec(smk), Path(smk.output.circuit))


def transpile(smk: Any) -> None:
    from qpuflow.stages import build_circuit, transpile_run

    spec = _spec(smk)
    circuit = Path(smk.params.circuit)
    if not circuit.exists():
        build_circuit(spec, circuit)
    selection = list(smk.input.selection)
    transpile_run(spec, circuit, Path(smk.output.isa), Path(smk.output.info),
                  config=smk.config, paths=Paths.from_config(smk.config),
                  selection_path=Path(selection[0]) if selection else None)


def transpile_batch(smk: Any) -> None:
    """Transpile (and preflight) each run of one job to submit, unless its ISA files exist."""
    from qpuflow.records import write_json_atomic
    from qpuflow.stages import ensure_transpiled

    paths = Paths.from_config(smk.config)
    specs = [RunSpec.from_json(dict(spec)) for spec in smk.params.specs]
    selection = list(smk.input.selection)
    log = logging.getLogger("qpuflow.transpile")
    from qpuflow.interrupts import raise_if_stopped

    entries = []
    for number, spec in enumerate(specs, start=1):
        raise_if_stopped(f"transpiling {spec.key}")
        info = ensure_transpiled(spec, config=smk.config, paths=paths,
                                 selection_path=Path(selection[0]) if selection else None)
        log.debug("%s: transpiled and checked (%d/%d of batch %s): depth %s, layout %s", spec.key, number,
                  len(specs), smk.wildcards.batch, info.depth, info.physical_layout)
        entries.append({"run_key": spec.key, "isa": str(paths.isa(spec)), "isa_sha256": info.isa_sha256})
    log.info("transpile: %d run(s) of %s/%s ready and checked (noiseless preflight)", len(specs),
             smk.wildcards.exp, smk.wildcards.batch)
    write_json_atomic(Path(smk.output.manifest), {"batch": smk.wildcards.batch, "runs": entries})


def submit_batch(smk: Any) -> None:
    """Send the batch's provider jobs, each carrying its runs as PUBs (each once, ever); write
    the runs' markers and the batch file."""
    from qpuflow.batches import write_batch_file
    from qpuflow.submit import submit_packs

    paths = Paths.from_config(smk.config)
    specs = {spec.key: spec for spec in (RunSpec.from_json(dict(data)) for data in smk.params.specs)}
    markers = submit_packs([[specs[key] for key in job] for job in smk.params.jobs], config=smk.config, paths=paths)
    write_batch_file(Path(smk.output.batch), smk.wildcards.batch, markers)
    jobs = {m.job_id for m in markers}
    logging.getLogger("qpuflow.submit").info(
        "submit: %d run(s) of %s/%s in %d job(s): %s", len(markers), smk.wildcards.exp, smk.wildcards.batch,
        len(jobs), ", ".join(sorted(jobs)[:4]) + (" ..." if len(jobs) > 4 else ""))


def submit_run(smk: Any) -> None:
    """One run's marker on request (``snakemake results/submitted/<exp>/<run>.json``): its
    provider job (the run and its pack-mates) transpiled, checked, paid for and sent, each run
    once, ever; a run already accepted gets its marker back from the ledger instead."""
    from qpuflow.stages import ensure_transpiled
    from qpuflow.submit import check_pending_budget, submit_packs

    from qpuflow.errors import Refusal

    if smk.params.pack["refusal"]:
        raise Refusal(smk.params.pack["refusal"])
    paths = Paths.from_config(smk.config)
    pack = [RunSpec.from_json(dict(spec)) for spec in smk.params.pack["pack"]]
    selection = list(smk.input.selection)
    for spec in pack:
        ensure_transpiled(spec, config=smk.config, paths=paths,
                          selection_path=Path(selection[0]) if selection else None)
    check_pending_budget(pack, config=smk.config, paths=paths)
    markers = submit_packs([pack], config=smk.config, paths=paths)
    logging.getLogger("qpuflow.submit").info(
        "submit: %s in job %s (%d run(s) in the job)", smk.wildcards.run, markers[0].job_id, len(markers))


def collect_run(smk: Any) -> None:
    """One run's result on request (``snakemake results/collected/<exp>/<run>.json``): its job
    polled and, once final, its result downloaded; a job still waiting fails this target with
    its state (rerun later, or use the collect target, which never fails for waiting jobs)."""
    from qpuflow.errors import QpuflowError
    from qpuflow.pipeline import collect as collect_runs

    key = f"{smk.wildcards.exp}/{smk.wildcards.run}"
    problems: list[str] = []
    rows = collect_runs(smk.config, Paths.from_config(smk.config), keys=[key], problems=problems)
    ATTENTION.extend(problems)
    if not Path(smk.output.result).exists():
        row = next((r for r in rows if r.run_key == key), None)
        state = f"is {row.state}" + (f" ({row.error})" if row.error else "") if row else "could not be asked for"
        job = row.job_id if row else "?"
        raise QpuflowError(f"{key}: job {job} {state}; its result does not exist yet. Ask again later, or run "
                           "`snakemake --cores 1 collect`, which waits without failing.")


def poll_jobs(smk: Any) -> None:
    """The poll checkpoint: ask the provider once (downloads nothing) which submitted runs'
    jobs have ended, and write them, so the finished target asks for exactly those results.
    Earlier poll files are removed: each is read by the invocation that wrote it."""
    from qpuflow.collect import provider_factory, read_markers, status_rows
    from qpuflow.provenance import utc_now
    from qpuflow.records import write_json_atomic

    paths = Paths.from_config(smk.config)
    problems: list[str] = []
    rows = status_rows(paths, read_markers(paths, problems=problems), provider_factory(smk.config, paths),
                       problems=problems)
    ATTENTION.extend(problems)
    out = Path(smk.output.finished)
    for old in out.parent.glob("*.json"):
        if old != out:
            old.unlink(missing_ok=True)
    finished = sorted(r.run_key for r in rows if r.final)
    waiting = sorted(f"{r.run_key} ({r.state})" for r in rows if not r.final)
    write_json_atomic(out, {"time": utc_now(), "finished": finished, "waiting": waiting})
    logging.getLogger("qpuflow.collect").info(
        "poll: %d of %d submitted run(s) have ended; %d wait%s", len(finished), len(rows), len(waiting),
        (": " + ", ".join(waiting[:5]) + (" ..." if len(waiting) > 5 else "")) if waiting else "")


def select_qubits(smk: Any) -> None:
    from qpuflow.stages import select_session

    inputs = {name: Path(getattr(smk.input, name)) for name in ("probe_marker", "probe_result")
              if hasattr(smk.input, name)}
    record = select_session(smk.wildcards.exp, int(smk.wildcards.session), Path(smk.output.selection),
                            config=smk.config, paths=Paths.from_config(smk.config), **inputs)
    for arm, chosen in record.arms.items():
        logging.getLogger("qpuflow.selection").info(
            "%s session %s, arm %s: chain %s (from %s)", smk.wildcards.exp, smk.wildcards.session, arm,
            chosen.chain, chosen.source)


def simulate_local(smk: Any) -> None:
    """Simulate one submitted local job now, on whatever host runs this (cluster rehearsals)."""
    from qpuflow.providers.local import LocalProvider, LocalSettings
    from qpuflow.records import Marker

    if smk.config["provider"]["name"] != "local":
        raise ValueError("rule simulate_local only applies to provider: local (real jobs run on the service)")
    paths = Paths.from_config(smk.config)
    marker = Marker.read(Path(smk.input.marker))
    state = LocalProvider(LocalSettings.from_config(smk.config, paths.local_store)).run_now(marker.job_id)
    logging.getLogger("qpuflow.local").info("%s: job %s is %s", marker.run_key, marker.job_id, state.value)
    Path(smk.output.flag).parent.mkdir(parents=True, exist_ok=True)
    Path(smk.output.flag).write_text(f"{marker.job_id} {state.value}\n")


def budget_precheck(smk: Any) -> None:
    """Refuse, before hundreds of circuits are transpiled, what the budget cannot pay for."""
    from qpuflow.campaign import check_campaign_start
    from qpuflow.ledger import Ledger
    from qpuflow.schedule import now
    from qpuflow.submit import check_pending_budget

    paths = Paths.from_config(smk.config)
    specs = [RunSpec.from_json(dict(spec)) for spec in smk.params.specs]
    log = logging.getLogger("qpuflow.budget")
    log.info("budget: estimating %d pending run(s) from representative circuits", len(specs))
    plan = check_campaign_start(smk.config, paths, Ledger(paths.ledger).events(), now())
    if plan is not None:
        log.info("campaign plan: %s", plan.verdict())
    costs = check_pending_budget(specs, config=smk.config, paths=paths, estimated=True)
    log.info("about %.1f QPU seconds in %d job(s): within budget; transpiling", sum(costs.values()), len(costs))
    Path(smk.output.flag).write_text(f"{len(costs)} jobs, {sum(costs.values()):.1f} s (estimated)\n")


def budget_check(smk: Any) -> None:
    from qpuflow.submit import check_pending_budget

    paths = Paths.from_config(smk.config)
    specs = [RunSpec.from_json(dict(spec)) for spec in smk.params.specs]
    log = logging.getLogger("qpuflow.budget")
    costs = check_pending_budget(specs, config=smk.config, paths=paths)
    log.info("%d job(s) carrying %d run(s) to submit, about %.1f QPU seconds in all: within budget",
             len(costs), len(specs), sum(costs.values()))
    Path(smk.output.flag).write_text(f"{len(costs)} jobs, {len(specs)} runs, {sum(costs.values()):.1f} s\n")


def collect(smk: Any) -> None:
    """The collect target: poll, download what finished, print the status and the summary."""
    from rich.console import Console

    from qpuflow.collect import read_markers
    from qpuflow.exports import export_collection
    from qpuflow.pipeline import collect as collect_all
    from qpuflow.summary import print_status, print_summary, summary_table

    paths = Paths.from_config(smk.config)
    problems: list[str] = []
    rows = collect_all(smk.config, paths, problems=problems)
    ATTENTION.extend(problems)
    console = Console(record=True)  # printed for the user, and kept in the rule's log
    if not rows:
        console.print("No submitted jobs yet: run `snakemake --cores 1 submit` first.")
    else:
        print_status(rows, console)
        print_summary(summary_table(paths, read_markers(paths, problems=[])), console)
        export = export_collection(paths, rows)
        console.print(f"Collection export: {os.path.relpath(export)}", highlight=False, soft_wrap=True)
        page = _status_page(smk.config, paths, rows)
        console.print(f"Status page: {os.path.relpath(page)}", highlight=False, soft_wrap=True)
    Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
    with open(smk.log[0], "a") as fh:
        fh.write(console.export_text())


def analyze(smk: Any) -> None:
    from qpuflow.analysis import TABLES, AnalysisSettings, analyse, write_tables
    from qpuflow.analysis_views import (plot_detection_rounds, plot_error_rates, print_decoded_summary,
                                        print_per_round_summary, print_session_summary)
    from qpuflow.paired import plot_paired

    problems: list[str] = []
    tables = analyse(Paths.from_config(smk.config), AnalysisSettings.from_config(smk.config), problems=problems)
    ATTENTION.extend(problems)
    write_tables(tables, {name: Path(getattr(smk.output, name)) for name in TABLES})
    plot_error_rates(tables["summary"], Path(smk.output.error_rates))
    plot_detection_rounds(tables["detection_rounds"], Path(smk.output.rounds_plot))
    stats = tables["session_stats"]
    one = not stats.empty and stats["experiment"].nunique() == 1
    plot_paired(tables["sessions"], Path(smk.output.sessions_plot),
                summary=dict(zip(stats["quantity"], stats["value"])) if one else None)
    from qpuflow.overview import write_overview
    from qpuflow.schedule import now

    figures = {name: Path(getattr(smk.output, name)) for name in ("error_rates", "rounds_plot", "sessions_plot")}
    write_overview(tables, smk.config, Paths.from_config(smk.config), figures, Path(smk.output.overview), at=now())
    logging.getLogger("qpuflow.analysis").info("analysed %d run(s)", len(tables["runs"]))
    print_decoded_summary(tables["summary"])
    print_per_round_summary(tables["per_round"])
    deployment = [name for name, exp in smk.config["experiments"].items() if exp["kind"] == "deployment"]
    print_session_summary(tables["session_stats"], runs=tables["runs"], experiments=deployment)
    print(f"Tables and plots: {Path(smk.output.runs).parent}/ ; the study on one page: {smk.output.overview} "
          "(snakemake analyze --report results/report.html)")


def dataset(smk: Any) -> None:
    """The reviewer's dataset of every completed run (see :mod:`qpuflow.dataset`)."""
    from qpuflow.analysis import AnalysisSettings
    from qpuflow.dataset import export_dataset

    log = logging.getLogger("qpuflow.dataset")

    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            log.info("dataset: %d/%d run(s) written", done, total)

    out = Path(smk.output.manifest).parent
    summary = export_dataset(Paths.from_config(smk.config), AnalysisSettings.from_config(smk.config), out,
                             study=str(smk.config.get("study") or "study"), progress=progress)
    print(f"Dataset: {summary['runs']} run(s), {summary['files']} files in {out}/ (manifest.json has their "
          "checksums; README.md says how to re-decode)")


def _status_page(config: Any, paths: Paths, rows: Any) -> Path:
    """results/status.html for a browser (see :mod:`qpuflow.status_page`), with what waits.
    Read-only: collect never rewrites a record (the planner's survey would restore a corrupt
    marker), so the waiting notes come from the schedule and the ledger as they are."""
    from qpuflow.ledger import Ledger
    from qpuflow.planner import planned_runs
    from qpuflow.schedule import now
    from qpuflow.sessions import plan_submissions
    from qpuflow.status_page import write_status_page

    at = now()
    waiting = plan_submissions(planned_runs(config, paths), config, paths, Ledger(paths.ledger).events(), at).notes
    return write_status_page(config, paths, rows, at=at, waiting=waiting)
