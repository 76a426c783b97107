"""The ``dimple-stats`` Typer application, its exit codes and the guard every command runs under."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from dimple_stats import __version__
from dimple_stats.errors import EXIT_BAD_INPUT, BadInput

__all__ = ["EXIT_BAD_INPUT", "app", "command", "fail"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="dimple-stats",
    help="Significance tests for the dimpled manifold model of adversarial examples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str) -> typer.Exit:
    """Print ``message`` to stderr and return the exit-2 exception to raise."""
    # Plain stderr, not rich: the message must survive intact in logs and pipes.
    typer.echo(message, err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def command(fn: F) -> F:
    """Register ``fn`` as a command that turns any :class:`~dimple_stats.errors.BadInput` it
    lets through into its message and exit 2 (no traceback), wherever it was raised."""

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BadInput as exc:
            raise fail(f"dimple-stats {fn.__name__.rstrip('_')}: {exc}") from None

    app.command(name=fn.__name__.rstrip("_"))(guarded)
    return fn


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dimple-stats {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Significance tests for the dimpled manifold model of adversarial examples."""


