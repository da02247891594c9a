"""Providers: where jobs run. Build one with :func:`make_provider`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qpuflow.config import IBMSettings
from qpuflow.providers.base import (JobInfo, JobOutput, JobState, Provider, ProviderError, SubmitRefused,
                                     SubmitUncertain, Unauthorized, UsageLimitExceeded, furthest_along)

__all__ = ["JobInfo", "JobOutput", "JobState", "Provider", "ProviderError", "SubmitRefused", "SubmitUncertain",
           "Unauthorized", "UsageLimitExceeded", "furthest_along", "make_provider"]


def make_provider(config: dict[str, Any], *, account: str, local_store: Path) -> Provider:
    """The provider a config names, acting for ``account`` (a name, never a token)."""
    name = config["provider"]["name"]
    if name == "local":
        from qpuflow.providers.local import LocalProvider, LocalSettings

        return LocalProvider(LocalSettings.from_config(config, local_store))
    if name == "ibm":
        from qpuflow.providers.ibm import IBMProvider

        ibm = IBMSettings.of(config)
        return IBMProvider(account, channel=ibm.channel, local_mode=ibm.local_mode, primitive=ibm.primitive,
                           request_timeout_seconds=ibm.request_timeout_seconds)
    raise ProviderError(f"unknown provider {name!r}; expected local or ibm")
