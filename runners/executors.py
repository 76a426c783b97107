"""Where seeds run: in this process, in a process pool, or on a Ray cluster.

Seeds are independent replications, so each is one task. All executors run the same
:func:`runners.pipeline.run_seed` on the same plain-data :class:`~runners.pipeline.SeedTask`
against a shared artifact store (a shared filesystem on a cluster); the store's atomic publishing
makes concurrent workers safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context

from runners.pipeline import SeedOutput, SeedTask, run_seed

__all__ = ["EXECUTORS", "run_tasks"]

EXECUTORS = ("local", "processes", "ray")


def _run_local(tasks: list[SeedTask], on_result: Callable[[SeedOutput], None] | None
               ) -> list[SeedOutput]:
    outputs = []
    for task in tasks:
        outputs.append(run_seed(task))
        if on_result:
            on_result(outputs[-1])
    return outputs


def _run_processes(tasks: list[SeedTask], on_result: Callable[[SeedOutput], None] | None,
                   workers: int | None) -> list[SeedOutput]:
    cpus = os.cpu_count() or 1
    workers = max(1, min(workers or cpus, len(tasks)))
    # Divide the cores among workers: torch in every worker defaulting to all cores would
    # oversubscribe the machine and run slower than one process.
    threads = max(1, cpus // workers)
    tasks = [replace(t, threads=t.threads or threads, progress=False) for t in tasks]
    outputs = []
    # spawn, not fork: a forked child inherits the parent's torch thread pools in a broken state.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        for future in as_completed([pool.submit(run_seed, t) for t in tasks]):
            outputs.append(future.result())
            if on_result:
                on_result(outputs[-1])
    return outputs


def _run_ray(tasks: list[SeedTask], on_result: Callable[[SeedOutput], None] | None,
             address: str | None) -> list[SeedOutput]:
    try:
        import ray
    except ImportError:
        raise RuntimeError('executor "ray" needs Ray: pip install "dimple-stats[ray]"') from None
    started_here = not ray.is_initialized()
    if started_here:
        # No address: a local Ray instance on this machine. Workers import this package, so it
        # must be importable there (installed, or on a shared filesystem).
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    try:
        gpus = 1 if any(t.device.startswith("cuda") for t in tasks) else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_seed)
        pending = [remote.remote(replace(t, threads=t.threads or 1, progress=False))
                   for t in tasks]
        outputs = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            outputs.append(ray.get(done[0]))
            if on_result:
                on_result(outputs[-1])
        return outputs
    finally:
        if started_here:
            ray.shutdown()


def run_tasks(
    tasks: list[SeedTask],
    *,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    on_result: Callable[[SeedOutput], None] | None = None,
) -> list[SeedOutput]:
    """Run seed tasks on the chosen executor; outputs in completion order."""
    if executor == "local":
        return _run_local(tasks, on_result)
    if executor == "processes":
        return _run_processes(tasks, on_result, workers)
    if executor == "ray":
        return _run_ray(tasks, on_result, address)
    from dimple_stats.suggest import did_you_mean

    raise ValueError(f"unknown executor {executor!r}{did_you_mean(executor, EXECUTORS)}; "
                     f"allowed: {', '.join(EXECUTORS)}")
