"""The one base class of every error that user input causes.

A protocol, a command-line option, a stored table or a file the tool cannot use raises a
subclass of :class:`BadInput`, wherever it is detected (the torch-free core or ``runners``);
the command line prints its message and exits with :data:`EXIT_BAD_INPUT`. Errors that are the
outcome of a computation (a collapsed autoencoder, a failed membership check) are not bad input
and exit 1.

Examples
--------
>>> from dimple_stats.protocol import ProtocolError
>>> issubclass(ProtocolError, BadInput)
True
"""

from __future__ import annotations

__all__ = ["BadInput", "EXIT_BAD_INPUT", "EXIT_RUN_FAILED", "RunFailure", "UnknownNameError",
           "format_warning", "install_warning_format"]

#: Exit status of the command line for bad input (argparse's and click's convention).
EXIT_BAD_INPUT = 2
#: Exit status when a computation cannot give a trustworthy result (:class:`RunFailure`).
EXIT_RUN_FAILED = 1


def _rebuild(cls: type[BaseException], args: tuple[object, ...],
             state: dict[str, object]) -> BaseException:
    """Unpickle an error without calling its ``__init__`` (see :meth:`BadInput.__reduce__`)."""
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class _Picklable:
    """Errors raised in a process-pool worker are pickled back to the parent. The default
    pickling calls ``cls(*args)``, which fails for an error whose ``__init__`` takes other
    arguments than its message (``DatasetNotFoundError``): the parent then saw a broken pool and
    printed a traceback instead of the one-line message. This rebuilds the error as it was."""

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))  # type: ignore[attr-defined]


class BadInput(_Picklable, ValueError):
    """Input the tool cannot use; the message names what and where (file, line, key).

    Attributes
    ----------
    section : str
        The protocol section the input came from (``"dataset"``, ``"claims"``), or empty;
        the command line puts it after the file name.
    """

    section: str = ""

    def located(self, file: object) -> str:
        """The message prefixed with ``file`` and :attr:`section`.

        >>> BadInput("no such split").located("p.yaml")
        'p.yaml: no such split'
        """
        return ": ".join(str(part) for part in (file, self.section, self) if str(part))


class UnknownNameError(BadInput, KeyError):
    """A name that is not registered; the message suggests the nearest registered one."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class RunFailure(_Picklable, RuntimeError):
    """A run that cannot go on to a trustworthy result for a reason other than its input: a
    damaged stored artifact, a collapsed autoencoder, models that output NaN. The command line
    prints the message (which says what to do) and exits with :data:`EXIT_RUN_FAILED`; what was
    computed before stays in the store."""


def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   line: str | None = None) -> str:
    """A library's warning (PIL, torch, numpy) as the tool's one-line ``warning:`` form: the
    default format adds the source line on a second line, and some messages wrap.

    >>> format_warning(UserWarning("a\\n  b"), UserWarning, "/x/y.py", 3)
    'warning: UserWarning: a b (y.py:3)\\n'
    """
    import os

    text = " ".join(str(message).split())
    return f"warning: {category.__name__}: {text} ({os.path.basename(filename)}:{lineno})\n"


def install_warning_format() -> None:
    """Print every warning of this process in :func:`format_warning`'s one line."""
    import warnings

    warnings.formatwarning = format_warning  # type: ignore[assignment]
