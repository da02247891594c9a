"""``qpuflow cancel JOB_ID``: cancel a queued or running job."""

from __future__ import annotations

import argparse

from qpuflow.cli.common import load_study, provider_for

HELP = "cancel a job"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id")
    parser.add_argument("--account", default=None, help="account name (default: the first in config)")


def run(args: argparse.Namespace) -> int:
    config, paths = load_study(args)
    provider_for(args, config, paths).cancel(args.job_id)
    print(f"cancelled {args.job_id}")
    return 0
