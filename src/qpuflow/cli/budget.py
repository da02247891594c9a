"""``qpuflow budget``: QPU seconds used and left per account in the rolling window."""

from __future__ import annotations

import argparse

from qpuflow.cli.common import load_study
from qpuflow.providers import make_provider

HELP = "QPU seconds used and left per account in the window"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from qpuflow.budget import usage_by_account, with_service_usage
    from qpuflow.ledger import Ledger

    config, paths = load_study(args)
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
    Console().print(table)
    return 0
