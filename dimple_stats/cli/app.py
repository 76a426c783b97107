"""The ``dimple-stats`` Typer application, its exit codes and the guard every command runs under."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from dimple_stats import __version__
from dimple_stats.errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, BadInput, RunFailure

__all__ = ["EXIT_BAD_INPUT", "app", "command", "fail", "run_failed"]

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


def run_failed(message: str) -> typer.Exit:
    """Print ``error: message`` to stderr and return the exit-1 exception to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_RUN_FAILED)


#: OSErrors that mean "no room or no right to write here", reported in one line (exit 1).
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                            errno.EPERM})


def command(fn: F | None = None, *, group: typer.Typer | None = None,
            prefix: str = "dimple-stats") -> Any:
    """Register ``fn`` as a command (of ``group``, default the top level) that turns any
    :class:`~dimple_stats.errors.BadInput` it lets through into its message and exit 2, and any
    :class:`~dimple_stats.errors.RunFailure` into its message and exit 1 (no traceback),
    wherever it was raised. Use bare (``@command``) or with arguments
    (``@command(group=store, prefix="dimple-stats store")``)."""

    def register(fn: F) -> F:
        name = fn.__name__.rstrip("_")

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except BadInput as exc:
                raise fail(f"{prefix} {name}: {exc}") from None
            except RunFailure as exc:
                raise run_failed(f"{prefix} {name}: {exc}") from None
            except OSError as exc:
                if exc.errno not in NO_ROOM_ERRNOS:
                    raise
                # A full disk, a file-size limit (ulimit -f), a read-only or forbidden place:
                # the machine's state, not a bug. Writes are atomic, so nothing written before
                # was damaged.
                raise run_failed(
                    f"{prefix} {name}: cannot write"
                    f"{' ' + str(exc.filename) if exc.filename else ''}: {exc.strerror or exc}; "
                    "nothing written before was damaged; free space, raise the limit or fix the "
                    "permissions, then run again (finished stages load from the store)"
                ) from None

        (group or app).command(name=name)(guarded)
        return fn

    return register(fn) if fn is not None else register


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


