#!/usr/bin/env python
"""Submit jobs without waiting (the seed's submit_async.py, on qpuflow's library).

    .venv/bin/python scripts/submit_async.py --experiment both --api-key-index 0
    .venv/bin/python scripts/submit_async.py --submit-all --experiment both

(plain `python scripts/...` re-runs itself with .venv/bin/python when qpuflow is not installed
for that Python). Exit codes: 0 done, 2 an error or a refusal (one paragraph), 130 Ctrl-C.

Every run of config.yaml that has no marker yet is built, transpiled and submitted exactly
once; the markers are the same ones `snakemake --cores 1 submit` writes. The jobs submitted
by this call are also exported to results/ibm_experiments/submitted_jobs_YYYYMMDD_HHMMSS.jsonl.
--api-key-index N pays with the N-th account of config.yaml; --submit-all spreads the runs
over all accounts; with neither, each run goes to the account with the most budget left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_qpuflow, quiet_logging  # noqa: E402

ensure_qpuflow()

from qpuflow.config import ConfigError, load_config  # noqa: E402
from qpuflow.errors import QpuflowError, describe_os_error  # noqa: E402
from qpuflow.exports import export_submissions  # noqa: E402
from qpuflow.paths import Paths  # noqa: E402
from qpuflow.pipeline import submit_pending  # noqa: E402
from qpuflow.plan import plan_runs, select_experiments  # noqa: E402
from qpuflow.provenance import utc_now  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", choices=["surface_code", "deployment", "both"], default="both")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--api-key-index", type=int, default=None, help="index into config.yaml accounts")
    who.add_argument("--submit-all", action="store_true", help="spread runs over all accounts")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    args = parser.parse_args(argv)
    quiet_logging()
    started = utc_now()
    try:
        config = load_config(args.config)
        paths = Paths.from_config(config, base=args.config.resolve().parent)
        names = [a["name"] for a in config["accounts"]]
        if args.api_key_index is not None and not 0 <= args.api_key_index < len(names):
            raise ConfigError(f"{args.config}: --api-key-index {args.api_key_index} is out of range; "
                              f"field 'accounts' has {len(names)}: {names}")
        accounts = names if args.submit_all else ([names[args.api_key_index]] if args.api_key_index is not None else None)
        specs = select_experiments(plan_runs(config), args.experiment)
        try:
            submit_pending(specs, config, paths, accounts=accounts)
        finally:
            export = export_submissions(paths, since=started)
            if export is not None:
                print(f"Output: {export}")
    except QpuflowError as exc:
        print(f"submit_async: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"submit_async: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("submit_async: interrupted; what was sent is recorded. Run the same command again to go on.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
