"""``qpuflow rebuild``: write back lost ledger lines, markers and batch records, and say what was
rebuilt."""

from __future__ import annotations

import argparse

from qpuflow.cli.common import attention, load_study

HELP = ("rebuild the ledger from the markers, missing markers from the ledger, and the batch records; "
        "print what was rebuilt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from qpuflow.rebuild import describe, rebuild

    _, paths = load_study(args)
    notes, problems = rebuild(paths)
    print(describe(notes, []))
    return attention(problems)
