"""Options and protocol loading that several commands share: declared once, so their help and
defaults cannot drift."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from dimple_stats.cli.app import fail
from dimple_stats.protocol import Protocol, ProtocolError, load_protocol
from dimple_stats.seeds import parse_seeds

__all__ = ["DeviceOption", "QuietOption", "ReplaceOption", "SeedsOption", "SetOption", "StoreOption",
           "VerboseOption", "check_executor_options", "load_for_compute", "progress_mode", "warn"]

# Options the compute commands share: declared once, so their help and defaults cannot drift.
SeedsOption = Annotated[str | None, typer.Option(
    "--seeds", help="Seeds, e.g. 0-4 or 0,2 (default: the protocol's).")]
StoreOption = Annotated[Path | None, typer.Option(
    "--store", help="Artifact store directory (default: $DIMPLE_STATS_STORE or "
    "~/.cache/dimple-stats/store).")]
DeviceOption = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N (default: the protocol's).")]

QuietOption = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress output (errors and the summary only).")]
VerboseOption = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Progress as a line per epoch and shard, also on a terminal.")]
ReplaceOption = Annotated[bool, typer.Option(
    "--replace", help="Let --out replace the folder of another run (its measurements are "
    "deleted); without it only a run of the same protocol is replaced.")]


def progress_mode(quiet: bool, verbose: bool) -> str:
    """Bars on a terminal, log lines elsewhere (CI, nohup, cluster jobs), or none.

    >>> progress_mode(quiet=True, verbose=False)
    'off'
    """
    import sys

    if quiet and verbose:
        raise fail("--quiet and --verbose contradict each other; give one")
    if quiet:
        return "off"
    if verbose:
        return "verbose"
    return "bar" if sys.stderr.isatty() else "log"


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


def check_executor_options(executor: str, address: str | None = None) -> None:
    """Refuse an option the chosen executor would ignore (exit 2, before anything computes).

    ``--address`` names a Ray cluster: with another executor every seed would run on this
    machine while the user believes it runs on the cluster. (`run` has no other option that
    only some executors read.)

    Parameters
    ----------
    executor : str
        The executor the run uses: ``--executor`` when given, else the protocol's.
    address : str or None
        The ``--address`` option.
    """
    if address is not None and executor != "ray":
        raise fail(f"--address {address}: only the ray executor connects to a cluster address, "
                   f"and this run's executor is {executor!r} (use --executor ray, or drop --address)")


def load_for_compute(protocol_file: Path, overrides: list[str], seeds: str | None,
                     device: str | None = None, address: str | None = None,
                     executor: str | None = None,
                     ) -> tuple[Protocol, tuple[int, ...] | None]:
    """Protocol and --seeds of `train` and `run` (--device overrides the protocol's): exit 2 on
    bad input, warnings to stderr.

    ``seeds`` None means the protocol's; a given but empty ``--seeds ""`` is an error, not the
    protocol's seeds. ``address`` (run's ``--address``) is checked against the executor.
    """
    # --device and --executor are overrides of their keys; their errors name the option.
    flags = {key: value for key, value in (("device", device), ("executor", executor))
             if value is not None}
    overrides = [*overrides, *(f"{key}={value}" for key, value in flags.items())]
    # Seeds and protocol are read apart, so each error names its own source and both are shown.
    problems: list[str] = []
    seed_list = None
    if seeds is not None:
        try:
            seed_list = parse_seeds(seeds)
        except ValueError as exc:
            problems.append(f"--seeds: {exc}")
    try:
        protocol = load_protocol(protocol_file, overrides=overrides)
    except ProtocolError as exc:
        exc.issues = [dataclasses.replace(issue, origin=f"--{issue.origin.removeprefix('--set ')}")
                      if issue.origin and issue.origin.removeprefix("--set ") in flags else issue
                      for issue in exc.issues]
        problems.insert(0, str(exc))
    if problems:
        raise fail("\n".join(problems))
    check_executor_options(protocol.executor, address)
    warn(protocol_file, protocol)
    return protocol, seed_list
