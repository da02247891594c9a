"""``qpuflow status``: every submitted run and its job's state (polls, downloads nothing)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from qpuflow.cli.common import attention, load_study

HELP = "state of every submitted run (polls, downloads nothing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from qpuflow.collect import provider_factory, read_markers, status_rows
    from qpuflow.summary import print_status

    config, paths = load_study(args)
    problems: list[str] = []
    rows = status_rows(paths, read_markers(paths, problems=problems), provider_factory(config, paths),
                       problems=problems)
    if args.json:
        for row in rows:
            print(json.dumps(dataclasses.asdict(row), sort_keys=True))
    else:
        print_status(rows, Console(), every_job=True)
    return attention(problems)
