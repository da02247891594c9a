"""``qpuflow``: look at what the provider and the workflow know.

    qpuflow jobs [--json] [--tag T] [--limit N]   jobs the provider holds (recover lost IDs)
    qpuflow status [--json]                       every submitted run and its job's state
    qpuflow cancel JOB_ID                         cancel a queued or running job
    qpuflow budget                                QPU seconds used and left per account
    qpuflow plan [--jobs]                         does the whole campaign fit the budget, and when
    qpuflow rebuild                               write back lost ledger lines, markers, batch records
    qpuflow backends                              backends the local simulator knows
    qpuflow emulator [--port P] [--store DIR]     a local IBM Quantum Platform emulator to rehearse on
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from qpuflow.config import fake_backend_names, load_config
from qpuflow.paths import Paths
from qpuflow.providers import make_provider
from qpuflow.records import CorruptRecordError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qpuflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml", type=Path, help="study config (default: config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    jobs = sub.add_parser("jobs", help="list jobs the provider holds")
    jobs.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    jobs.add_argument("--tag", action="append", default=[], help="only jobs with this tag (repeatable)")
    jobs.add_argument("--run", default=None, help="only jobs carrying this run (experiment/run, e.g. sc/L0_rep1)")
    jobs.add_argument("--limit", type=int, default=None, help="at most this many (newest first)")
    jobs.add_argument("--account", default=None, help="account name (default: the first in config)")
    status = sub.add_parser("status", help="state of every submitted run (polls, downloads nothing)")
    status.add_argument("--json", action="store_true")
    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id")
    cancel.add_argument("--account", default=None)
    sub.add_parser("budget", help="QPU seconds used and left per account in the window")
    plan = sub.add_parser("plan", help="estimate the QPU seconds of everything still to submit, on its schedule, "
                                       "against each account's rolling window (exit 1 if it does not fit)")
    plan.add_argument("--jobs", action="store_true", help="also list every planned job")
    sub.add_parser("rebuild", help="rebuild the ledger from the markers, missing markers from the ledger, and "
                                   "the batch records; print what was rebuilt")
    sub.add_parser("backends", help="backends the local simulator knows")
    emu = sub.add_parser("emulator", help="run a local IBM Quantum Platform emulator (127.0.0.1) to rehearse on")
    emu.add_argument("--port", type=int, default=8765)
    emu.add_argument("--store", type=Path, default=Path("results/emulator"), help="persistent job store")
    emu.add_argument("--queue-seconds", type=float, default=5.0, help="time a job stays queued")
    emu.add_argument("--run-seconds", type=float, default=2.0, help="time a job stays running")
    emu.add_argument("--usage-limit", type=float, default=600.0, help="QPU seconds per instance per window")
    emu.add_argument("--lenient", action="store_true",
                     help="accept more than the service's documented contract (default: strict, as the service)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a plan that does not fit, 2 an error (one paragraph on stderr),
    3 done but some records need attention (listed), 130 interrupted."""
    from qpuflow.errors import QpuflowError, describe_os_error

    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except QpuflowError as exc:
        print(f"qpuflow: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`qpuflow status | head`): stop quietly, and keep Python from
        # complaining while it flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("qpuflow: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"qpuflow: {describe_os_error(exc)}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.command == "backends":
        print("\n".join(fake_backend_names()))
        return 0
    if args.command == "emulator":
        return _serve_emulator(args)
    config = load_config(args.config)
    paths = Paths.from_config(config, base=args.config.resolve().parent)
    if args.command == "jobs":
        provider = make_provider(config, account=args.account or config["accounts"][0]["name"],
                                 local_store=paths.local_store)
        infos = _with_completion_times(provider.jobs(limit=args.limit, tags=args.tag), paths)
        runs = _runs_of_jobs(config, infos)
        if args.run:
            infos = [info for info in infos if args.run in runs.get(info.job_id, [])]
        if args.json:
            for info in infos:
                print(json.dumps({**info.to_json(), "runs": runs.get(info.job_id)}, sort_keys=True))
            return 0
        table = Table(title=f"{len(infos)} job(s) at provider '{provider.name}'")
        # Job IDs are what a user copies out of this table: never wrap or cut them.
        table.add_column("job_id", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("created (UTC)", no_wrap=True)
        table.add_column("QPU s", justify="right", no_wrap=True)
        table.add_column("runs (PUB order)", overflow="fold")
        for info in infos:
            named = runs.get(info.job_id)
            charge = "pending" if info.state.final and not info.usage_final else (
                f"{info.usage_seconds:g}" if info.usage_seconds is not None else "")
            table.add_row(info.job_id, info.state.value, info.created[:16].replace("T", " "), charge,
                          (named[0] + (f" +{len(named) - 1}" if len(named) > 1 else "")) if named else "?")
        console.print(table)
        return 0
    if args.command == "status":
        from qpuflow.collect import provider_factory, read_markers, status_rows
        from qpuflow.summary import print_status

        problems: list[str] = []
        rows = status_rows(paths, read_markers(paths, problems=problems), provider_factory(config, paths),
                           problems=problems)
        if args.json:
            import dataclasses

            for row in rows:
                print(json.dumps(dataclasses.asdict(row), sort_keys=True))
        else:
            print_status(rows, console, every_job=True)
        return _attention(problems)
    if args.command == "rebuild":
        from qpuflow.rebuild import describe, rebuild

        notes, problems = rebuild(paths)
        print(describe(notes, []))
        return _attention(problems)
    if args.command == "cancel":
        provider = make_provider(config, account=args.account or config["accounts"][0]["name"],
                                 local_store=paths.local_store)
        provider.cancel(args.job_id)
        print(f"cancelled {args.job_id}")
        return 0
    if args.command == "budget":
        from qpuflow.budget import usage_by_account, with_service_usage
        from qpuflow.ledger import Ledger

        ledger = Ledger(paths.ledger)
        usage = usage_by_account(config, ledger.accepted_markers(), paths.result, duplicates=ledger.duplicates())
        usage = with_service_usage(
            usage, lambda name: make_provider(config, account=name, local_store=paths.local_store), only=None)
        table = Table(title=f"QPU seconds in the last {config['budget']['window_days']:g} days")
        for col in ("account", "limit", "used", "remaining", "reserve", "spendable"):
            table.add_column(col, justify="right" if col != "account" else "left")
        for u in usage.values():
            table.add_row(u.account, f"{u.limit_seconds:.0f}", f"{u.used_seconds:.1f}", f"{u.remaining_seconds:.1f}",
                          f"{u.reserve_seconds:.0f}", f"{u.spendable_seconds:.1f}")
        console.print(table)
        return 0
    if args.command == "plan":
        return _print_plan(config, paths, console, source=str(args.config), list_jobs=args.jobs)
    raise AssertionError(args.command)  # pragma: no cover - argparse restricts commands


def _attention(problems: list[str]) -> int:
    """Exit code 3 and a list on stderr when some records could not be read; else 0."""
    for problem in problems:
        print(f"qpuflow: needs attention: {problem}", file=sys.stderr)
    return 3 if problems else 0


def _with_completion_times(infos: list, paths: Paths) -> list:
    """Fill in the completion time of jobs this study collected (the service's job listing has
    none: it is in each job's metrics, which collect reads once)."""
    import dataclasses

    from qpuflow.records import Result

    finished = {}
    for path in (paths.root / "collected").glob("*/*.json"):
        try:
            result = Result.read(path)
        except CorruptRecordError:
            continue
        finished[result.job_id] = result.completion_time
    return [dataclasses.replace(i, finished=i.finished or finished.get(i.job_id)) for i in infos]


def _runs_of_jobs(config: dict, infos: list) -> dict[str, list[str]]:
    """Job ID -> the study's runs it carries, in PUB order, read from its tags (the runs this
    config plans; jobs of other studies or configs are left out)."""
    from qpuflow.packs import CompositionError, composition, read_tags
    from qpuflow.plan import plan_runs

    planned = plan_runs(config)
    out = {}
    for info in infos:
        if not read_tags(info.tags).qpuflow:
            continue
        try:
            out[info.job_id] = [spec.key for spec in composition(info.tags, info.job_id, planned)]
        except CompositionError:
            continue
    return out


def _print_plan(config: dict, paths: Paths, console, *, source: str, list_jobs: bool) -> int:
    from rich.table import Table

    from qpuflow.budget import usage_by_account, with_service_usage
    from qpuflow.campaign import plan_campaign, plan_rows
    from qpuflow.ledger import Ledger
    from qpuflow.schedule import now
    from qpuflow.wf import Study

    study = Study(config, source=source)
    events = Ledger(paths.ledger).events()
    ours = usage_by_account(config, [e["marker"] for e in events if e["event"] == "accepted"], paths.result,
                            duplicates=Ledger(paths.ledger).duplicates())
    theirs = with_service_usage(ours, lambda name: make_provider(config, account=name, local_store=paths.local_store),
                                only=None)
    outside = {name: theirs[name].used_seconds - ours[name].used_seconds for name in ours}
    plan = plan_campaign(study.runs, config, paths, events, now(), outside_usage=outside)
    table = Table(title=f"Campaign plan for {source}: QPU seconds per account "
                        f"({config['budget']['window_days']:g}-day rolling windows, "
                        f"{config['budget']['reserve_seconds']:g} s reserve)")
    for col in ("account", "budget", "used now", "planned"):
        table.add_column(col, justify="left" if col == "account" else "right")
    for row in plan_rows(plan):
        table.add_row(row["account"], f"{row['budget_seconds']:.0f}", f"{row['used_now']:.1f}", f"{row['planned_seconds']:.1f}")
    console.print(table)
    if list_jobs:
        jobs = Table(title="Planned jobs")
        for col in ("run", "planned for", "QPU s", "account"):
            jobs.add_column(col)
        for job in plan.jobs:
            jobs.add_row(job.run_key, job.at.isoformat(timespec="minutes"), f"{job.seconds:.1f}", job.account or "NONE")
        console.print(jobs)
    console.print(f"Campaign: {plan.verdict()}", highlight=False, soft_wrap=True)
    from qpuflow.campaign import campaign_started

    if campaign_started(study.runs, config, events):
        console.print("Power: the campaign has started; its prospective power is planned before the first "
                      "session (a new campaign, or a renamed experiment, gets a new plan).", highlight=False)
        return 0 if plan.fits else 1
    low = _print_power(config, paths, plan, console)
    return 0 if plan.fits and not low else 1


def _print_power(config: dict, paths: Paths, plan, console) -> bool:
    """The prospective power of each scheduled deployment experiment; True if one is below its
    floor (and not accepted)."""
    from qpuflow.campaign import campaign_power
    from qpuflow.schedule import now

    def progress(done: int, total: int) -> None:
        if done == 1 or done % 100 == 0 or done == total:
            print(f"power: simulated session {done}/{total} on the local model", file=sys.stderr, flush=True)

    low = False
    for power in campaign_power(config, paths, plan, now(), progress=progress):
        console.print(_design_table(power, power.configured.design.geometry))
        console.print(_geometry_table(power))
        for reason in power.skipped:
            console.print(f"Power: not simulated: {reason}", highlight=False, soft_wrap=True)
        console.print(f"Power: {power.verdict()}", highlight=False, soft_wrap=True)
        accepted = (config["experiments"][power.experiment].get("power") or {}).get("accept_low_power", False)
        low = low or (power.below_floor and not accepted)
    return low


def _design_table(power, geometry):
    """Every sessions x shots candidate at one code geometry."""
    from rich.table import Table

    d, r = geometry
    table = Table(title=f"{power.experiment}: prospective power at d={d}, {r} rounds "
                        f"({power.endpoint.replace('_', ' ')}, {power.configured.campaigns} simulated campaigns each)")
    for col in ("sessions", "shots per arm", "QPU s", "power (95% lower bound)", "power per 1000 QPU s", ""):
        table.add_column(col, justify="right")
    for e in (e for e in power.candidates if e.design.geometry == geometry):
        table.add_row(str(e.design.sessions), str(e.design.shots), _seconds(e, power), _power(e),
                      f"{e.power_per_kilosecond:.2f}", _marks(e, power))
    return table


def _geometry_table(power):
    """Per searched code geometry: the model's effect there and its best design in the budget."""
    from rich.table import Table

    table = Table(title=f"{power.experiment}: best design per code geometry (the cheapest whose power's 95% lower "
                        f"bound reaches {power.floor if power.floor is not None else 0.8:g} within the budget, "
                        "else the most power)")
    for col in ("distance", "rounds", "effect", "sessions", "shots per arm", "QPU s", "power (95% lower bound)", ""):
        table.add_column(col, justify="right")
    for (d, r), best in power.geometries():
        if best is None:
            table.add_row(str(d), str(r), "", "", "", "", "", "nothing fits the budget")
            continue
        table.add_row(str(d), str(r), f"{best.effect:+.1%}", str(best.design.sessions), str(best.design.shots),
                      _seconds(best, power), _power(best), _marks(best, power))
    return table


def _power(e) -> str:
    return f"{e.power:.2f} ({e.power_low:.2f})"


def _seconds(e, power) -> str:
    return f"{e.qpu_seconds:.0f}" + ("" if e.qpu_seconds <= power.budget_seconds else " (over)")


def _marks(e, power) -> str:
    return " ".join(m for m, on in (("configured", e.design == power.configured.design),
                                    ("recommended", power.recommended is not None
                                     and e.design == power.recommended.design)) if on)


def _serve_emulator(args: argparse.Namespace) -> int:
    from qpuflow.emulator import serve

    base = f"http://127.0.0.1:{args.port}"
    print(f"""IBM Quantum Platform emulator on {base} (store: {args.store}); Ctrl-C stops it.
Jobs run on the local simulator with the fake backend's noise (ibm_fez -> fake_fez).
In the shell that runs the workflow (any token string works; one instance, 'qpuflow-emulator'):

  export IAM_URL={base}/iam GLOBAL_SEARCH_URL={base}/global-search GLOBAL_CATALOG_URL={base}/global-catalog/api/v1
  export EMU_TOKEN=rehearsal EMU_INSTANCE=qpuflow-emulator EMU_URL={base}/experimental/api/v1

and in config.yaml: provider: {{name: ibm, backend: ibm_fez}}, accounts: [{{name: "env:EMU"}}]""", flush=True)
    serve(port=args.port, store=args.store, queue_seconds=args.queue_seconds, run_seconds=args.run_seconds,
          usage_limit_seconds=args.usage_limit, strict=not args.lenient)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
