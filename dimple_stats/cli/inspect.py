"""Commands that read protocols and the claim catalogue (no torch): validate, schema, claims."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dimple_stats.claims import get_claim, list_claims
from dimple_stats.claims.analysis import OPTIONAL_COLUMNS
from dimple_stats.claims.catalogue import UnknownClaimError
from dimple_stats.cli.app import EXIT_BAD_INPUT, command, fail
from dimple_stats.cli.options import SetOption, warn
from dimple_stats.protocol import Protocol, ProtocolError, load_protocol


@command
def validate(
    files: Annotated[list[Path], typer.Argument(help="Protocol YAML files.", show_default=False)],
    set_: SetOption = None,
) -> None:
    """Check protocol files against the schema; exit 2 naming file, line and key on any error."""
    console = Console()
    failed = False
    for file in files:
        try:
            protocol = load_protocol(file, overrides=set_ or ())
        except ProtocolError as exc:
            typer.echo(str(exc), err=True)
            failed = True
            continue
        problem = _checkpoint_problem(protocol)
        if problem:
            typer.echo(f"{file}: {problem}", err=True)
            failed = True
            continue
        warn(file, protocol)
        console.print(
            f"[green]ok[/green] {file}: {protocol.name} (hash {protocol.hash}), "
            f"dataset {protocol.dataset.name}, {len(protocol.autoencoders)} autoencoder(s), "
            f"{len(protocol.claims)} claim(s), seeds {list(protocol.seeds)}"
            + (f", a sweep of {protocol.sweep.n_cells} cells over "
               f"{', '.join(protocol.sweep.paths)}" if protocol.sweep is not None else ""),
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(EXIT_BAD_INPUT)


def _checkpoint_problem(protocol: Protocol) -> str:
    """Why a checkpoint the protocol names cannot be its model's weights, or "".

    Checked where the dataset config alone fixes the image shape and class count (not an image
    folder: ``run`` checks those once the folders are read, still before any training) and
    torch is installed (the torch-free core validates the rest).
    """
    if not (protocol.classifier.checkpoint
            or any(ae.checkpoint for ae in protocol.autoencoders.values())):
        return ""
    count, shape = protocol.dataset.known_shape()
    if count is None or shape is None:
        return ""
    try:
        from runners.training import check_checkpoints
    except ImportError:  # no torch: nothing could load them here anyway
        return ""
    from dimple_stats.errors import BadInput

    classes = protocol.dataset.classes
    try:
        check_checkpoints(protocol, image_shape=shape,
                          num_classes=len(classes) if classes else count,
                          pixel_range=protocol.dataset.pixel_range)
    except BadInput as exc:
        return str(exc)
    return ""


@command
def schema(
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the protocol JSON Schema (for editor completion and validation)."""
    text = json.dumps(Protocol.model_json_schema(by_alias=True), indent=2)
    if out is None:
        typer.echo(text)
        return
    from dimple_stats.atomic import write_text_atomic
    from dimple_stats.report.destination import check_output_file

    # Replaces an earlier schema, never someone's file of the same name.
    write_text_atomic(check_output_file(out, written_by=_is_protocol_schema,
                                        what="protocol JSON Schema"), text + "\n")


def _is_protocol_schema(path: Path) -> bool:
    """Whether ``path`` holds a protocol JSON Schema (``dimple-stats schema`` output)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("title") == "Protocol" and "properties" in data


@command
def claims(
    claim_id: Annotated[str | None, typer.Argument(help="Show one claim in full.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the claim catalogue: ids, hypotheses, statistics, tests and nulls."""
    try:
        chosen = [get_claim(claim_id)] if claim_id else list_claims()
    except UnknownClaimError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([
            {
                "id": c.id, "source": c.source, "hypothesis": c.hypothesis,
                "statistic": c.statistic, "test": c.test, "nulls": c.nulls,
                # with the default options (e.g. dmm.perpendicular's null changes them)
                "columns": list(c.required_columns()),
                "optional_columns": list(OPTIONAL_COLUMNS), "censoring": c.censoring,
                "measured_by": c.measured_by,
                "options": c.options.model_json_schema(),
            }
            for c in chosen
        ], indent=2))
        return
    console = Console()
    if claim_id:
        c = chosen[0]
        console.print(f"[bold]{c.id}[/bold]  ({c.source})", highlight=False)
        for label, text in (("H1", c.hypothesis), ("statistic", c.statistic), ("test", c.test),
                            ("censoring", c.censoring)):
            console.print(f"  [cyan]{label}[/cyan]: {text}", highlight=False)
        for name, text in c.nulls.items():
            console.print(f"  [cyan]null {name}[/cyan]: {text}", highlight=False)
        for name, text in c.measured_by.items():
            console.print(f"  [cyan]measured by {name}[/cyan]: {text}", highlight=False)
        opts = ", ".join(f"{k}={f.default!r}" for k, f in c.options.model_fields.items())
        console.print(f"  [cyan]options[/cyan]: {opts or '(none)'}", highlight=False)
        return
    table = Table(title="dimple-stats claim catalogue (details: dimple-stats claims ID)")
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("H1 (what the claim says)", overflow="fold")
    table.add_column("nulls", overflow="fold")
    for c in chosen:
        table.add_row(c.id, c.hypothesis, ", ".join(c.nulls))
    console.print(table)
