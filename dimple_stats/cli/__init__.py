"""The ``dimple-stats`` command line, above both packages.

The torch-free commands (validate, schema, claims, report, store) never import torch; the computing
ones (train, run, bench) import ``runners`` inside the command, after their input is checked.
Every command runs under :func:`~dimple_stats.cli.app.command`'s guard: any
:class:`~dimple_stats.errors.BadInput` becomes its message and exit 2. The import-layers
contract in ``pyproject.toml`` keeps this package on top: neither the core nor ``runners``
imports it.
"""

from __future__ import annotations

import signal
import sys

# Importing the command modules registers their commands on ``app``, in the order --help lists
# them: reading commands, computing commands, then report.
# isort: off
from dimple_stats.cli.app import app
from dimple_stats.cli import inspect, compute, report, store  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point.

    A stop signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) becomes an exception in the main thread
    (:mod:`dimple_stats.interrupts`): the ``finally`` and ``except BaseException`` blocks then
    run, so a report being staged is removed and a process pool's workers are stopped instead
    of being left computing on their own. A signal whose exception Python dropped (it landed in
    a weakref callback) still stops the command: a staged report is not swapped in and the exit
    code is 128 + the signal's number, never 0. The store's writes are atomic either way.
    """
    from dimple_stats import interrupts
    from dimple_stats.errors import install_warning_format
    from dimple_stats.plugins import PluginError, load_plugins

    interrupts.install()
    install_warning_format()  # a library's warning is one line, like the tool's own
    try:
        load_plugins()  # before the commands read any name a plugin registers
    except PluginError as exc:
        sys.stderr.write(f"dimple-stats: {exc}\n")
        raise SystemExit(2) from None
    try:
        app(prog_name="dimple-stats")
    except KeyboardInterrupt:
        _say_stopped(interrupts.received() or signal.SIGINT)
        raise SystemExit(128 + signal.SIGINT) from None
    except SystemExit as exc:
        signum = interrupts.received()
        if signum is not None:
            _say_stopped(signum)
            if exc.code in (0, None):
                raise SystemExit(128 + signum) from None
        raise
    finally:
        # The command is over: a signal during the interpreter's exit (atexit callbacks) now
        # ends the process as the signal does, not as a traceback and exit 0.
        for signum in interrupts.STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)


def _say_stopped(signum: int) -> None:
    """One line on stderr for a stopped command: a bare exit code 130 or 143 left a user (or a
    scheduler's log) not knowing whether the run failed, and what survived."""
    name = signal.Signals(signum).name
    sys.stderr.write(f"dimple-stats: stopped by {name}; nothing finished was lost (the store's "
                     "stages, a whole report at --out): run the same command again to resume\n")
