"""Progress that works everywhere: a rich bar on a terminal, log lines elsewhere.

A run without a terminal (CI, ``nohup``, a cluster job, a process-pool or Ray worker) gets one
stderr line when a step starts, then at most one every :data:`LOG_EVERY_S` seconds (every step
with ``verbose``), and one when it ends, each with elapsed time and an ETA; workers write to the
stderr they inherit (process pool) or that Ray forwards to the driver.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

__all__ = ["LOG_EVERY_S", "ProgressMode", "log_line", "mode_of", "peak_rss_mb", "progress_bar"]

#: ``bar``: rich bars (a terminal); ``log``: throttled lines; ``verbose``: a line per step;
#: ``off``: nothing (``--quiet``).
ProgressMode = Literal["bar", "log", "verbose", "off"]

#: Seconds between two log lines of one progress (besides its first and last).
LOG_EVERY_S = 30.0


def mode_of(progress: bool | str | None) -> str:
    """A progress setting as a mode: True is ``bar`` (the old flag), False/None ``off``.

    >>> mode_of(True), mode_of(False), mode_of("log")
    ('bar', 'off', 'log')
    """
    if progress is True:
        return "bar"
    if not progress:
        return "off"
    if progress not in ("bar", "log", "verbose", "off"):
        raise ValueError(f"progress mode must be bar, log, verbose or off, got {progress!r}")
    return str(progress)


def log_line(progress: bool | str | None, message: str) -> None:
    """Write ``message`` to stderr in the log modes (a stage started or ended)."""
    if mode_of(progress) in ("log", "verbose"):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (NaN where unknown).

    ``ru_maxrss`` is kilobytes on Linux and bytes on macOS.
    """
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


@contextlib.contextmanager
def progress_bar(description: str, total: int, progress: bool | str | None
                 ) -> Iterator[Callable[..., None]]:
    """Yield ``tick(**info)``, called once per step (an epoch, a shard), showing progress as
    :func:`mode_of` ``progress`` says."""
    mode = mode_of(progress)
    if mode == "off":
        yield lambda **_: None
        return
    if mode == "bar":
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                      transient=True) as bar:
            task = bar.add_task(description, total=total, info="")
            yield lambda **info: bar.update(task, advance=1, info=_info(info))
        return
    started = time.perf_counter()
    state = {"done": 0, "last": started}
    log_line(mode, f"{description}: 0/{total}")

    def tick(**info: Any) -> None:
        state["done"] += 1
        now = time.perf_counter()
        done = state["done"]
        if done < total and mode == "log" and now - state["last"] < LOG_EVERY_S:
            return
        state["last"] = now
        elapsed = now - started
        eta = elapsed / done * (total - done)
        extra = f" {_info(info)}" if info else ""
        log_line(mode, f"{description}: {done}/{total}{extra}, {_duration(elapsed)} elapsed"
                 + (f", ETA {_duration(eta)}" if done < total else ""))

    yield tick
    if state["done"] < total:  # e.g. early stopping: say where it ended
        log_line(mode, f"{description}: stopped at {state['done']}/{total}, "
                 f"{_duration(time.perf_counter() - started)} elapsed")


def _info(info: dict[str, Any]) -> str:
    return " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in info.items())
