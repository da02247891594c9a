#!/usr/bin/env python
"""Poll job status and retrieve finished results (the seed's collect_results.py).

    python scripts/collect_results.py --poll-all
    python scripts/collect_results.py --jobs-file submitted_jobs_20251221_204500.jsonl
    python scripts/collect_results.py --job-id d541c5onsj9s73b1d4lg
    python scripts/collect_results.py --poll-all --watch --interval 300

Never submits. Results go to results/collected/<experiment>/<run>.json (once per job) and each
call writes results/ibm_experiments/collected_results_YYYYMMDD_HHMMSS.json. --watch repeats
until every job is final (completed, failed, cancelled or unknown to the provider), or until
--timeout seconds have passed: it never loops forever.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from qpuflow.config import ConfigError, load_config
from qpuflow.exports import export_collection
from qpuflow.paths import Paths
from qpuflow.pipeline import collect, markers_from_jobs_file
from qpuflow.providers import ProviderError
from qpuflow.records import CorruptRecordError
from qpuflow.summary import print_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--jobs-file", type=Path, help="a submitted_jobs_*.jsonl export")
    which.add_argument("--poll-all", action="store_true", help="every submitted job (the default)")
    which.add_argument("--job-id", help="one job by ID")
    parser.add_argument("--watch", action="store_true", help="repeat until every job is final")
    parser.add_argument("--interval", type=float, default=300.0, help="seconds between polls with --watch")
    parser.add_argument("--timeout", type=float, default=7 * 24 * 3600.0, help="give up watching after this many seconds")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        paths = Paths.from_config(config, base=args.config.resolve().parent)
        keys = None
        if args.jobs_file:
            keys = markers_from_jobs_file(args.jobs_file, paths)
        elif args.job_id:
            from qpuflow.collect import read_markers

            keys = [k for k, m in read_markers(paths).items() if m.job_id == args.job_id]
            if not keys:
                raise ConfigError(f"job {args.job_id} has no marker under {paths.root / 'submitted'}; "
                                  f"`qpuflow jobs` lists what the provider holds")
        deadline = time.monotonic() + args.timeout
        while True:
            rows = collect(config, paths, keys=keys)
            print_status(rows)
            print(f"Output: {export_collection(paths, rows)}")
            if not args.watch or all(r.final for r in rows):
                return 0
            if time.monotonic() + args.interval > deadline:
                print(f"Stopped watching after {args.timeout:.0f} s; {sum(not r.final for r in rows)} job(s) still pending.")
                return 0
            time.sleep(args.interval)
    except (ConfigError, ProviderError, CorruptRecordError, ValueError) as exc:
        print(f"collect_results: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
