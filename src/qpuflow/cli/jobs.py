"""``qpuflow jobs``: the jobs the provider holds, with the study's runs each carries (recover
lost job IDs)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from qpuflow.cli.common import load_study, provider_for
from qpuflow.paths import Paths
from qpuflow.records import CorruptRecordError, Result

HELP = "list jobs the provider holds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument("--tag", action="append", default=[], help="only jobs with this tag (repeatable)")
    parser.add_argument("--run", default=None, help="only jobs carrying this run (experiment/run, e.g. sc/L0_rep1)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many (newest first)")
    parser.add_argument("--account", default=None, help="account name (default: the first in config)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    config, paths = load_study(args)
    provider = provider_for(args, config, paths)
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
    Console().print(table)
    return 0


def _with_completion_times(infos: list, paths: Paths) -> list:
    """Fill in the completion time of jobs this study collected (the service's job listing has
    none: it is in each job's metrics, which collect reads once)."""
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
