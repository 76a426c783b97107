"""The digits multiverse on ``--executor processes`` against ``local``, side by side.

A sweep's work is many independent tasks (each distinct model, then each cell and seed), so a
process pool should use both cores of the machine. Both executors run the same reduced
``protocols/multiverse_digits.yaml`` from their own empty store, one after the other in this
process (``local`` first, then ``processes``), and their measurements must be identical: the
runner pins one torch thread per task on CPU, so where a task runs cannot change its numbers.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from runners.bench.core import Benchmark

__all__ = ["MULTIVERSE", "bench_multiverse"]

MULTIVERSE = Path(__file__).resolve().parents[2] / "protocols" / "multiverse_digits.yaml"

#: Reduced so that both executors fit in a few minutes: every cell, model and seed of the
#: protocol, with fewer evaluation images (the full run's share of work in each stage stays).
_LIMIT, _QUICK_LIMIT = 16, 2
_QUICK_OVERRIDES = ["seeds=[0, 1]", "classifier.epochs=2", "autoencoders.plain.epochs=10",
                    "autoencoders.isometric.epochs=10",
                    "sweep.zip={autoencoders.plain.latent_dim: [4], "
                    "autoencoders.isometric.latent_dim: [4]}",
                    # the default measurement only (the other two are the same work again)
                    "sweep.grid={attack.method: [pgd, fmn], classifier.adversarial: "
                    "[null, {norm: l2, eps: 1.0, steps: 7}]}", "sweep.exclude=[]"]


def _run(executor: str, overrides: list[str], limit: int, root: Path) -> tuple[float, Any]:
    from dimple_stats.protocol import load_protocol
    from runners.pipeline import run_protocol

    protocol = load_protocol(MULTIVERSE, overrides=overrides)
    start = time.perf_counter()
    outcome = run_protocol(protocol, store_root=root / "store", out_dir=root / "out",
                           limit=limit, executor=executor)
    return time.perf_counter() - start, outcome


def bench_multiverse(*, quick: bool) -> Benchmark:
    """Time the digits multiverse on ``local`` and on ``processes`` from empty stores.

    Parameters
    ----------
    quick : bool
        Two seeds, one latent size, 2 images per seed and short training (a check that it
        runs and agrees; the ratio needs the full size).

    Returns
    -------
    Benchmark
    """
    overrides = list(_QUICK_OVERRIDES) if quick else []
    limit = _QUICK_LIMIT if quick else _LIMIT
    bench = Benchmark(
        "multiverse", "Multiverse: protocols/multiverse_digits.yaml, processes vs local",
        settings={"protocol": MULTIVERSE.name, "overrides": overrides, "limit": limit,
                  "store": "an empty temporary directory per executor",
                  "cores": os.cpu_count(), "order": "local, then processes"})
    seconds: dict[str, float] = {}
    outcomes: dict[str, Any] = {}
    for executor in ("local", "processes"):
        with tempfile.TemporaryDirectory(prefix=f"dimple-mv-{executor}-") as tmp:
            seconds[executor], outcomes[executor] = _run(executor, overrides, limit, Path(tmp))
        bench.timing(f"--executor {executor} (wall)", [seconds[executor]])
    local, pool = outcomes["local"], outcomes["processes"]
    sweep = local.manifest["sweep"]
    bench.extra["cells"] = len(sweep["cells"])
    bench.extra["distinct_models"] = sweep["distinct_models"]
    bench.extra["tasks"] = len(local.manifest["timings"])
    bench.ratios = {"local / processes": seconds["local"] / seconds["processes"]}
    try:
        pd.testing.assert_frame_equal(local.measurements, pool.measurements, check_exact=True)
        differ = 0
    except AssertionError:
        differ = 1
    bench.check("measurements differ between the executors", differ, 0)
    bench.check("models trained more than once (local)",
                sweep["models_trained"] - sweep["distinct_models"], 0)
    ratio = bench.ratios["local / processes"]
    bench.target("digits multiverse, processes vs local on 2 cores", ">= 1.6x", ratio,
                 f"{ratio:.2f}x ({seconds['local']:.0f} s vs {seconds['processes']:.0f} s)",
                 ratio >= 1.6, "--quick: 2 seeds, k = 4, 2 images" if quick else
                 f"every cell and seed, --limit {limit}")
    return bench
