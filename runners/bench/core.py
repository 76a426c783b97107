"""Timing, machine description and the result record shared by every benchmark.

Absolute times on a shared 2-core machine drift by tens of percent between minutes; ratios of
two things timed side by side in the same process hold. So every comparison here times its
contenders INTERLEAVED (A, B, A, B, ...) on the same inputs and reports the median of each and
the ratio of the medians.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Target", "Benchmark", "interleaved", "time_once", "machine_info", "median"]


@dataclass
class Target:
    """One target of the benchmarks and whether the measurement met it.

    Attributes
    ----------
    name : str
        What is measured, e.g. ``"speed-up over the per-pixel loop"``.
    target : str
        The goal, e.g. ``">= 100x"``.
    value : float or None
        The measured value (None when it could not be measured).
    display : str
        The value as it is shown in the report (with its unit).
    met : bool
        Whether the value meets the goal AND the results it came from agreed.
    note : str
        How it was measured, when that qualifies the number (scaling, reduced sizes).
    """

    name: str
    target: str
    value: float | None
    display: str
    met: bool
    note: str = ""


@dataclass
class Benchmark:
    """The record of one comparison: timings, agreement checks and targets.

    Attributes
    ----------
    name : str
    title : str
    settings : dict
        Sizes and options the comparison ran with.
    timings : dict
        ``label -> {"median_s": ..., "runs_s": [...], ...}``.
    ratios : dict
        ``label -> ratio`` (how each ratio reads is in its label).
    agreement : dict
        ``check -> {"value": ..., "tolerance": ..., "ok": bool}``.
    targets : list of Target
    notes : list of str
    error : str or None
        Set when the comparison could not run; its targets are then NOT MET.
    """

    name: str
    title: str
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def agree(self) -> bool:
        """All agreement checks passed (vacuously true when there are none)."""
        return all(bool(a["ok"]) for a in self.agreement.values())

    def check(self, name: str, value: float, tolerance: float, *, upper: bool = True,
              detail: str = "") -> bool:
        """Record an agreement check ``value <= tolerance`` (or ``>=`` when not ``upper``)."""
        ok = value <= tolerance if upper else value >= tolerance
        self.agreement[name] = {"value": float(value), "tolerance": float(tolerance),
                                "relation": "<=" if upper else ">=", "ok": bool(ok),
                                "detail": detail}
        return bool(ok)

    def timing(self, label: str, runs: list[float], **extra: Any) -> float:
        """Record the runs of one contender; returns their median."""
        med = median(runs)
        self.timings[label] = {"median_s": med, "runs_s": [float(r) for r in runs], **extra}
        return med

    def target(self, name: str, goal: str, value: float | None, display: str, met: bool,
               note: str = "") -> None:
        """Record a target; it counts as met only if every agreement check passed."""
        self.targets.append(Target(name, goal, value, display,
                                   bool(met) and self.agree and self.error is None, note))

    def to_json(self) -> dict[str, Any]:
        """Plain-data form for ``benchmarks.json``."""
        out = asdict(self)
        out["agree"] = self.agree
        return out


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return float(statistics.median(values))


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int, *,
                warmup: bool = True) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time several callables side by side, alternating them ``repeats`` times.

    Alternating (rather than timing all runs of A, then all of B) spreads any drift of the
    shared machine over every contender, so the ratio of medians is fair.

    Parameters
    ----------
    contenders : dict
        ``label -> zero-argument callable``.
    repeats : int
    warmup : bool
        Call each once, untimed, first (allocator, vmap/JIT caches, lazy imports).

    Returns
    -------
    (runs, results) : tuple of dict
        The wall times of each contender and the result of its last call.
    """
    results: dict[str, Any] = {}
    if warmup:
        for label, fn in contenders.items():
            results[label] = fn()
    runs: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(repeats):
        for label, fn in contenders.items():
            elapsed, results[label] = time_once(fn)
            runs[label].append(elapsed)
    return runs, results


def machine_info() -> dict[str, Any]:
    """CPU count, torch threads, platform and package versions of this machine."""
    from importlib import metadata

    import torch

    versions = {"python": platform.python_version()}
    for package in ("dimple-stats", "torch", "torchattacks", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "processor": platform.machine(),
            "cpu_count": os.cpu_count(), "cpus_usable": affinity,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "cuda": torch.cuda.is_available(), "load_average_at_start": load,
            "versions": versions}
