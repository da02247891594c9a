"""``qpuflow plan``: does everything still to submit fit the accounts' budgets on its schedule,
and, before a campaign starts, with what power (exit 1 if it does not fit or is below a floor)."""

from __future__ import annotations

import argparse
import sys

from qpuflow.cli.common import load_study
from qpuflow.paths import Paths
from qpuflow.providers import make_provider

HELP = ("estimate the QPU seconds of everything still to submit, on its schedule, against each account's "
        "rolling window (exit 1 if it does not fit)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", action="store_true", help="also list every planned job")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    config, paths = load_study(args)
    return _print_plan(config, paths, Console(), source=str(args.config), list_jobs=args.jobs)


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
                        f"bound reaches {power.target_power:g} within the budget, "
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
