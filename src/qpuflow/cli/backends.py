"""``qpuflow backends``: the backends the local simulator knows."""

from __future__ import annotations

import argparse

from qpuflow.backend_names import fake_backend_names

HELP = "backends the local simulator knows"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("\n".join(fake_backend_names()))
    return 0
