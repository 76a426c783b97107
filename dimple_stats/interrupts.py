"""Stop signals that are never lost.

A stop signal (Ctrl-C, ``kill``, a closed terminal, a scheduler's stop) becomes an exception in
the main thread, so ``finally`` blocks remove staged reports and stop worker pools. Python runs
a signal handler between bytecodes of whatever the main thread is executing; when that is a
weakref callback or a ``__del__`` (matplotlib and pyarrow run many while a report is drawn), the
exception is printed as "Exception ignored" and dropped, and the command would go on and finish
with exit code 0. So every signal is also recorded here, and :func:`check` raises it again at
the points that must not be passed after a stop: before a staged report replaces the old one,
and before the command exits.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

__all__ = ["check", "held", "install", "received"]

#: Signals that stop a command (those the platform has): SIGINT raises KeyboardInterrupt, the
#: others ``SystemExit(128 + signum)`` as a shell reports a killed process.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
                     if hasattr(signal, name))

_received: list[int] = []
#: Depth of :func:`held` blocks: while positive, the handler records a signal and returns.
_holding = 0


def _exception(signum: int) -> BaseException:
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + signum)


def _handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if not _holding:
        raise _exception(signum)


def install() -> None:
    """Route every stop signal through the recording handler (main thread only)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handler)


def received() -> int | None:
    """The first stop signal received by this process, or None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise the exception of a stop signal received earlier, even one whose first exception
    was dropped; nothing when no signal came.

    >>> check()
    """
    if _received:
        raise _exception(_received[0])



@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold stop signals back for the body (a few renames and deletions that must not stop
    half way: a report's swap); one that came meanwhile raises on exit. Deferred in the
    handler, not with ``pthread_sigmask``: a mask holds only this thread, and the signal then
    reaches another (torch's and pyarrow's threads), whose handler call runs here anyway.

    >>> with held():
    ...     pass
    """
    global _holding
    before = len(_received)
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
    if not _holding and len(_received) > before:
        raise _exception(_received[before])
