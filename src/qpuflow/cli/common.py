"""What the verbs share: the study a command reads, and the exit code for records that need
attention."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from qpuflow.config import load_config
from qpuflow.paths import Paths
from qpuflow.providers import make_provider


def load_study(args: argparse.Namespace) -> tuple[dict[str, Any], Paths]:
    """The validated config ``--config`` names and its paths (relative to the config's folder)."""
    config = load_config(args.config)
    return config, Paths.from_config(config, base=args.config.resolve().parent)


def provider_for(args: argparse.Namespace, config: dict[str, Any], paths: Paths):
    """The provider, acting for ``--account`` or the config's first account."""
    return make_provider(config, account=args.account or config["accounts"][0]["name"], local_store=paths.local_store)


def attention(problems: list[str]) -> int:
    """Exit code 3 and a list on stderr when some records could not be read; else 0."""
    for problem in problems:
        print(f"qpuflow: needs attention: {problem}", file=sys.stderr)
    return 3 if problems else 0
