"""``qpuflow``: look at what the provider and the workflow know.

    qpuflow jobs [--json] [--tag T] [--limit N]   jobs the provider holds (recover lost IDs)
    qpuflow status [--json]                       every submitted run and its job's state
    qpuflow cancel JOB_ID                         cancel a queued or running job
    qpuflow budget                                QPU seconds used and left per account
    qpuflow plan [--jobs]                         does the whole campaign fit the budget, and when
    qpuflow rebuild                               write back lost ledger lines, markers, batch records
    qpuflow backends                              backends the local simulator knows
    qpuflow emulator [--port P] [--store DIR]     a local IBM Quantum Platform emulator to rehearse on
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from qpuflow.cli import backends, budget, cancel, emulator, jobs, plan, rebuild, status
from qpuflow.errors import QpuflowError, describe_os_error

# One module per verb: each has HELP, add_arguments(parser) and run(args) -> exit code.
VERBS = {"jobs": jobs, "status": status, "cancel": cancel, "budget": budget, "plan": plan, "rebuild": rebuild,
         "backends": backends, "emulator": emulator}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qpuflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml", type=Path, help="study config (default: config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, verb in VERBS.items():
        verb.add_arguments(sub.add_parser(name, help=verb.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a plan that does not fit, 2 an error (one paragraph on stderr),
    3 done but some records need attention (listed), 130 interrupted."""
    args = _parser().parse_args(argv)
    try:
        return VERBS[args.command].run(args)
    except QpuflowError as exc:
        print(f"qpuflow: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`qpuflow status | head`): stop quietly, and keep Python from
        # complaining while it flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("qpuflow: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"qpuflow: {describe_os_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
