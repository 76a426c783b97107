"""The protocol a seed's worker received, validated in the worker's own registries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from dimple_stats.plugins import GROUP, PluginError
from dimple_stats.protocol.schema import Protocol

__all__ = ["worker_protocol"]


def worker_protocol(data: Mapping[str, Any]) -> Protocol:
    """The protocol a worker received (``protocol_json``), validated against this process's
    registries; a name they lack is a :class:`PluginError` saying how to make it known.

    The parent validated the same data, so a failure here means the worker's registries differ:
    something registered at run time in the parent only.
    """
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PluginError(
            f"a worker cannot read the protocol ({where}: {first['msg']}): a name registered at "
            "run time in one process is unknown to the workers of --executor processes and "
            f"ray; declare it as a plugin (entry-point group {GROUP}) so that every worker "
            "loads it, or run with --executor local") from None
