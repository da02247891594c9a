"""``qpuflow emulator``: a local IBM Quantum Platform emulator (127.0.0.1) to rehearse on."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "run a local IBM Quantum Platform emulator (127.0.0.1) to rehearse on"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--store", type=Path, default=Path("results/emulator"), help="persistent job store")
    parser.add_argument("--queue-seconds", type=float, default=5.0, help="time a job stays queued")
    parser.add_argument("--run-seconds", type=float, default=2.0, help="time a job stays running")
    parser.add_argument("--usage-limit", type=float, default=600.0, help="QPU seconds per instance per window")
    parser.add_argument("--lenient", action="store_true",
                        help="accept more than the service's documented contract (default: strict, as the service)")


def run(args: argparse.Namespace) -> int:
    from qpuflow.emulator import serve

    base = f"http://127.0.0.1:{args.port}"
    print(f"""IBM Quantum Platform emulator on {base} (store: {args.store}); Ctrl-C stops it.
Jobs run on the local simulator with the fake backend's noise (ibm_fez -> fake_fez).
In the shell that runs the workflow (any token string works; one instance, 'qpuflow-emulator'):

  export IAM_URL={base}/iam GLOBAL_SEARCH_URL={base}/global-search GLOBAL_CATALOG_URL={base}/global-catalog/api/v1
  export EMU_TOKEN=rehearsal EMU_INSTANCE=qpuflow-emulator EMU_URL={base}/experimental/api/v1

and in config.yaml: provider: {{name: ibm, backend: ibm_fez}}, accounts: [{{name: "env:EMU"}}]""", flush=True)
    serve(port=args.port, store=args.store, queue_seconds=args.queue_seconds, run_seconds=args.run_seconds,
          usage_limit_seconds=args.usage_limit, strict=not args.lenient)
    return 0
