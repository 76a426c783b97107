"""Options and protocol loading that several commands share: declared once, so their help and
defaults cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dimple_stats.cli.app import fail
from dimple_stats.protocol import Protocol, ProtocolError, load_protocol
from dimple_stats.seeds import parse_seeds

__all__ = ["DeviceOption", "SeedsOption", "SetOption", "StoreOption", "load_for_compute", "warn"]

# Options the compute commands share: declared once, so their help and defaults cannot drift.
SeedsOption = Annotated[str | None, typer.Option(
    "--seeds", help="Seeds, e.g. 0-4 or 0,2 (default: the protocol's).")]
StoreOption = Annotated[Path | None, typer.Option(
    "--store", help="Artifact store directory (default: $DIMPLE_STATS_STORE or "
    "~/.cache/dimple-stats/store).")]
DeviceOption = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N (default: the protocol's).")]

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a protocol field, e.g. --set attack.eps=0.5 --set seeds=[0,1] (repeatable).",
        metavar="KEY=VALUE",
    ),
]


def warn(file: Path, protocol: Protocol) -> None:
    """Settings that validate but are probably not meant (stderr; the exit code stays 0)."""
    for message in protocol.attack.unreachable():
        typer.echo(f"warning: {file}: {message}", err=True)


def load_for_compute(protocol_file: Path, overrides: list[str], seeds: str | None,
                     device: str | None = None
                     ) -> tuple[Protocol, tuple[int, ...] | None]:
    """Protocol and --seeds of `train` and `run` (--device overrides the protocol's): exit 2 on
    bad input, warnings to stderr."""
    if device is not None:
        overrides = [*overrides, f"device={device}"]
    try:
        protocol = load_protocol(protocol_file, overrides=overrides)
        seed_list = parse_seeds(seeds) if seeds else None
    except ProtocolError as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:
        raise fail(f"--seeds: {exc}") from None
    warn(protocol_file, protocol)
    return protocol, seed_list
