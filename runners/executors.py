"""Where tasks run: in this process, in a process pool, or on a Ray cluster.

An executor runs one function over independent, picklable tasks (dataclasses with ``threads``
and ``progress`` fields): the protocol run gives it :func:`runners.pipeline.run_seed` and one
:class:`~runners.pipeline.SeedTask` per seed. Knowing nothing of what a task computes keeps this
module below the pipeline (no import cycle). Workers share the artifact store (a shared
filesystem on a cluster); the store's atomic publishing makes concurrent workers safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from typing import Any, Protocol, TypeVar

from dimple_stats.errors import RunFailure, install_warning_format
from dimple_stats.protocol.vocabulary import EXECUTORS
from runners.progress import mode_of

__all__ = ["EXECUTORS", "Task", "run_local", "run_processes", "run_ray", "run_tasks"]


class Task(Protocol):
    """What an executor needs of a task: a dataclass with these fields (and picklable)."""

    threads: int | None
    progress: bool | str


T = TypeVar("T", bound=Task)
R = TypeVar("R")
OnResult = Callable[[Any], None] | None


def _with_plugins(fn: Callable[[T], R], task: T) -> R:
    """``fn(task)`` in a worker, after the installed plugins are loaded there: a spawned or Ray
    worker starts with the built-in registries only, and its protocol may name a plugin's
    claim, attack or dataset (:mod:`dimple_stats.plugins`)."""
    from dimple_stats.plugins import load_plugins

    load_plugins()
    return fn(task)


def _no_terminal(progress: bool | str) -> str:
    """A worker's progress mode: log lines where the driver would draw bars (a worker's
    stderr is a pipe or shared, never a terminal a bar could redraw)."""
    mode = mode_of(progress)
    return "log" if mode == "bar" else mode


def run_local(fn: Callable[[T], R], tasks: list[T], on_result: OnResult,
              workers: int | None, address: str | None) -> list[R]:
    """One task after another in this process (``workers`` and ``address`` unused)."""
    outputs = []
    for task in tasks:
        outputs.append(fn(task))
        if on_result:
            on_result(outputs[-1])
    return outputs


def run_processes(fn: Callable[[T], R], tasks: list[T], on_result: OnResult,
                  workers: int | None, address: str | None) -> list[R]:
    """A spawned process pool of ``workers`` (default: one per core, at most one per task)."""
    cpus = os.cpu_count() or 1
    workers = max(1, min(workers or cpus, len(tasks)))
    # Divide the cores among workers: torch in every worker defaulting to all cores would
    # oversubscribe the machine and run slower than one process.
    threads = max(1, cpus // workers)
    tasks = [replace(t, threads=t.threads or threads, progress=_no_terminal(t.progress))
             for t in tasks]
    outputs = []
    # spawn, not fork: a forked child inherits the parent's torch thread pools in a broken state.
    # Workers print library warnings in the parent's one-line form.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=install_warning_format)
    try:
        for future in as_completed([pool.submit(_with_plugins, fn, t) for t in tasks]):
            outputs.append(future.result())
            if on_result:
                on_result(outputs[-1])
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM, a failed task): stop the workers now. The pool's own
        # exit would wait for every running task, and a killed parent leaves them computing.
        # `_processes` is private, but Python 3.11 has no public way (3.14: terminate_workers).
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outputs


def run_ray(fn: Callable[[T], R], tasks: list[T], on_result: OnResult,
            workers: int | None, address: str | None) -> list[R]:
    """Ray tasks on the cluster at ``address`` (default: a local Ray instance)."""
    try:
        import ray
    except ImportError:
        raise RuntimeError('executor "ray" needs Ray: pip install "dimple-stats[ray]"') from None
    started_here = not ray.is_initialized()
    if started_here:
        # No address: a local Ray instance on this machine. Workers import this package, so it
        # must be importable there (installed, or on a shared filesystem).
        # log_to_driver: the workers' progress lines reach this terminal (prefixed by Ray).
        try:
            ray.init(address=address, include_dashboard=False,
                     log_to_driver=any(mode_of(t.progress) != "off" for t in tasks),
                     ignore_reinit_error=True)
        except Exception as exc:  # ConnectionError, TimeoutError, ValueError for a bad address
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise RunFailure(f"cannot start or reach {where} ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:300]}); check --address (or drop it "
                             "to start Ray here), or use --executor processes") from None
    try:
        gpus = 1 if any(str(getattr(t, "device", "")).startswith("cuda") for t in tasks) else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_with_plugins)
        pending = [remote.remote(fn, replace(t, threads=t.threads or 1,
                                             progress=_no_terminal(t.progress)))
                   for t in tasks]
        outputs = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                outputs.append(ray.get(done[0]))
            except ray.exceptions.RayTaskError as exc:
                # The task's own exception, as the other executors raise it: Ray's wrapper
                # prints the worker's traceback in its message, and a one-line error (a
                # collapsed autoencoder, bad input) must stay one line.
                cause = getattr(exc, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise
            if on_result:
                on_result(outputs[-1])
        return outputs
    finally:
        if started_here:
            ray.shutdown()


def run_tasks(
    fn: Callable[[T], R],
    tasks: list[T],
    *,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    on_result: Callable[[R], None] | None = None,
) -> list[R]:
    """Run ``fn`` on every task with the named executor; outputs in completion order.

    An unknown executor raises :class:`~dimple_stats.errors.UnknownNameError` with a "did you
    mean".

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Square:
    ...     x: int
    ...     threads: int | None = None
    ...     progress: bool = False
    >>> run_tasks(lambda t: t.x ** 2, [Square(2), Square(3)])
    [4, 9]
    >>> run_tasks(abs, [], executor="proceses")
    Traceback (most recent call last):
    ...
    dimple_stats.errors.UnknownNameError: unknown executor 'proceses' (did you mean 'processes'?); ...
    """
    return EXECUTORS.load(executor)(fn, tasks, on_result, workers, address)
