#!/usr/bin/env python
"""Poll job status and retrieve finished results (the seed's collect_results.py).

    .venv/bin/python scripts/collect_results.py --poll-all
    .venv/bin/python scripts/collect_results.py --jobs-file submitted_jobs_20251221_204500.jsonl
    .venv/bin/python scripts/collect_results.py --job-id d541c5onsj9s73b1d4lg
    .venv/bin/python scripts/collect_results.py --poll-all --watch --interval 300

Never submits. Results go to results/collected/<experiment>/<run>.json (once per job) and each
call writes one results/ibm_experiments/collected_results_YYYYMMDD_HHMMSS.json (with --watch,
when it stops). --watch repeats until every job is final (completed, failed or cancelled), or
until --timeout seconds have passed: it never loops forever. A job the provider does not know
is not final (its record may be elsewhere: another instance's account, a moved job store).
Exit codes: 0 every job final (or no --watch), 1 --watch timed out with jobs pending, 2 an
error, 3 done but some records need attention (listed), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_qpuflow, quiet_logging  # noqa: E402

ensure_qpuflow()

from qpuflow.config import ConfigError, load_config  # noqa: E402
from qpuflow.errors import QpuflowError, describe_os_error  # noqa: E402
from qpuflow.exports import export_collection  # noqa: E402
from qpuflow.paths import Paths  # noqa: E402
from qpuflow.pipeline import collect, markers_from_jobs_file  # noqa: E402
from qpuflow.summary import print_status  # noqa: E402


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
    quiet_logging()
    try:
        config = load_config(args.config)
        paths = Paths.from_config(config, base=args.config.resolve().parent)
        keys = None
        if args.jobs_file:
            keys = markers_from_jobs_file(args.jobs_file, paths)
        elif args.job_id:
            from qpuflow.collect import read_markers

            keys = [k for k, m in read_markers(paths, problems=[]).items() if m.job_id == args.job_id]
            if not keys:
                raise ConfigError(f"job {args.job_id} has no marker under {paths.root / 'submitted'}; "
                                  f"`qpuflow jobs` lists what the provider holds")
        return _poll(args, config, paths, keys)
    except QpuflowError as exc:
        print(f"collect_results: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"collect_results: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collect_results: interrupted; what was downloaded is written.", file=sys.stderr)
        return 130


def _poll(args: argparse.Namespace, config: dict, paths: Paths, keys: list[str] | None) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        problems: list[str] = []
        rows = collect(config, paths, keys=keys, problems=problems)
        done = all(r.final for r in rows)
        if not args.watch or done or time.monotonic() + args.interval > deadline:
            break
        print_status(rows)
        time.sleep(args.interval)
    print_status(rows)
    print(f"Output: {export_collection(paths, rows)}")
    for problem in problems:
        print(f"collect_results: needs attention: {problem}", file=sys.stderr)
    if args.watch and not done:
        print(f"Stopped watching after {args.timeout:.0f} s; {sum(not r.final for r in rows)} job(s) still pending.")
        return 1
    return 3 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
