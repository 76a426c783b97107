"""A protocol, end to end: train or load the models, measure in shards, analyse, report.

Work is split by seed (replications are independent) and, within a seed, into stages keyed in the
artifact store by their own configuration and their inputs' keys:

``train_classifier`` -> ``train_autoencoder[name]`` -> ``measure`` shards (a few dozen samples
each, per autoencoder). A stage that finished is loaded, never recomputed, so a run killed at any
point resumes where it stopped and gives the same numbers as an uninterrupted one: every random
draw of a shard comes from a generator seeded by (seed, autoencoder, shard), not from state left
by earlier shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dimple_stats.protocol import Protocol
from dimple_stats.report.run import MANIFEST, protocol_json

__all__ = ["SeedTask", "SeedOutput", "run_seed", "run_protocol", "RunOutcome", "MEASURE_VERSION",
           "UnsupportedClaimError"]

# Part of every measurement shard's key: bump when a change here changes what is measured.
MEASURE_VERSION = 1
# Claims whose tables the compute side does not produce yet (phase two builds them).
_NEEDS_OTHER_TABLES = {"iso.defense": "defense", "dmm.clinging_then_dimpling": "training",
                       "dmm.adv_training_deepens": "adv_training"}


class UnsupportedClaimError(ValueError):
    """The protocol lists a claim whose data ``dimple-stats run`` cannot produce yet."""


@dataclass(frozen=True)
class SeedTask:
    """Everything a worker needs to run one seed; plain data so it pickles to any executor."""

    protocol: dict[str, Any]
    seed: int
    store_root: str
    device: str = "cpu"
    limit: int | None = None
    threads: int | None = None
    progress: bool = False


@dataclass
class SeedOutput:
    """What one seed produced: its measurement rows, model metrics and stage timings."""

    seed: int
    measurements: pd.DataFrame
    models: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)


def _shard_generator_seed(seed: int, autoencoder: str, shard: int) -> int:
    digest = hashlib.sha256(f"{seed}/{autoencoder}/{shard}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _model_identity(result: Any, config: Any, data_config: Any) -> Any:
    # Stored models are identified by their key; oracle and user checkpoints by what defines them.
    if result.key is not None:
        return str(result.key)
    return {"config": config.model_dump(mode="json"), "dataset": data_config.model_dump(mode="json")}


def run_seed(task: SeedTask) -> SeedOutput:
    """Train/load the models of one seed and measure every autoencoder on the same samples."""
    import torch

    previous_threads = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(task.threads)
    try:
        return _run_seed(task)
    finally:
        torch.set_num_threads(previous_threads)


def _run_seed(task: SeedTask) -> SeedOutput:
    import torch

    from runners.datasets import load_dataset
    from runners.measure import correctly_classified, measure
    from runners.store import ArtifactStore
    from runners.training import resolve_device, train_autoencoder, train_classifier

    protocol = Protocol.model_validate(task.protocol)
    store = ArtifactStore(task.store_root)
    device = resolve_device(task.device)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    data = load_dataset(protocol.dataset, seed=task.seed)
    timings["data"] = time.perf_counter() - clock
    clock = time.perf_counter()
    clf = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=task.seed,
                           store=store, device=device, progress=task.progress)
    timings["train_classifier"] = time.perf_counter() - clock
    models = [{"seed": task.seed, "model": "classifier", "arch": protocol.classifier.arch,
               "loaded": clf.loaded, **clf.metrics}]

    x, y = data.eval.x, data.eval.y
    if task.limit is not None:
        x, y = x[: task.limit], y[: task.limit]
    correct = correctly_classified(clf.model, x.to(device), y.to(device)).cpu()
    ids = correct.nonzero().squeeze(1)
    shard_size = max(protocol.attack.batch_size, 32)
    frames: list[pd.DataFrame] = []
    shards = {"computed": 0, "loaded": 0}
    for name, ae_config in protocol.autoencoders.items():
        clock = time.perf_counter()
        ae = train_autoencoder(ae_config, data, data_config=protocol.dataset, seed=task.seed,
                               store=store, device=device, progress=task.progress, name=name)
        timings[f"train_autoencoder[{name}]"] = time.perf_counter() - clock
        models.append({"seed": task.seed, "model": name, "arch": ae_config.arch,
                       "regulariser": ae_config.regulariser.kind, "loaded": ae.loaded,
                       **ae.metrics})
        clock = time.perf_counter()
        for index, shard in enumerate(ids.split(shard_size)):
            key = store.key("measure", {
                "version": MEASURE_VERSION, "seed": task.seed, "autoencoder": name,
                "shard": index, "samples": shard.tolist(),
                "attack": protocol.attack.model_dump(mode="json"),
                "tangent": protocol.tangent.model_dump(mode="json"),
                "classifier": _model_identity(clf, protocol.classifier, protocol.dataset),
                "autoencoder_model": _model_identity(ae, ae_config, protocol.dataset),
            })
            if store.has(key):
                frame = store.load_table(key, "measurements.parquet")
                shards["loaded"] += 1
            else:
                generator = torch.Generator().manual_seed(
                    _shard_generator_seed(task.seed, name, index))
                result = measure(clf.model, ae.model, x[shard].to(device), y[shard].to(device),
                                 attack=protocol.attack, tangent=protocol.tangent,
                                 generator=generator, bounds=data.pixel_range,
                                 sample_ids=shard)
                frame = result.to_frame()
                frame.insert(0, "autoencoder", name)
                frame.insert(0, "seed", task.seed)
                with store.writer(key) as writer:
                    writer.save_table("measurements.parquet", frame)
                shards["computed"] += 1
            frames.append(frame)
        timings[f"measure[{name}]"] = time.perf_counter() - clock
    measurements = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return SeedOutput(task.seed, measurements, models, timings, shards)


# --------------------------------------------------------------------------- whole run

@dataclass
class RunOutcome:
    """The report directory of a finished run and its results table."""

    out_dir: Path
    results: pd.DataFrame
    measurements: pd.DataFrame
    manifest: dict[str, Any]


def check_supported(protocol: Protocol) -> None:
    """Refuse, before any compute, claims whose data the runner cannot produce yet."""
    missing = [cid for cid in protocol.claim_ids if cid in _NEEDS_OTHER_TABLES]
    if missing:
        raise UnsupportedClaimError(
            f"claims {', '.join(missing)} need the "
            f"{', '.join(sorted({_NEEDS_OTHER_TABLES[c] for c in missing}))} table(s), which "
            "`dimple-stats run` does not produce yet; remove them from the protocol or analyse "
            "a table you made with `dimple-stats report`")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("dimple-stats", "torch", "torchvision", "numpy", "scipy", "statsmodels",
                    "pandas", "pyarrow", "pydantic", "ray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_protocol(
    protocol: Protocol,
    *,
    seeds: tuple[int, ...] | None = None,
    executor: str | None = None,
    address: str | None = None,
    store_root: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    limit: int | None = None,
    progress: bool = False,
    on_seed: Callable[[SeedOutput], None] | None = None,
) -> RunOutcome:
    """Run a protocol end to end and write its report directory.

    The report is written by the same code as ``dimple-stats report`` (from the stored
    ``measurements.parquet`` and ``manifest.json``), so re-rendering it gives identical files.
    """
    from dimple_stats.atomic import write_text_atomic
    from dimple_stats.measurements import write_measurements
    from dimple_stats.report.run import report_run
    from runners.executors import run_tasks
    from runners.store import ArtifactStore
    from runners.training import resolve_device

    check_supported(protocol)
    seeds = tuple(seeds) if seeds is not None else protocol.seeds
    executor = executor or protocol.executor
    device_name = str(resolve_device(device or protocol.device))
    store = ArtifactStore(store_root)
    out = Path(out_dir) if out_dir is not None else Path("reports") / protocol.name
    started = time.perf_counter()
    # On CPU every seed runs on ONE torch thread, whatever the executor: parallel reductions
    # split differently across thread counts and change the last bits of trained weights, and
    # the executors must give bit-identical measurements. Parallelism comes from running seeds
    # side by side (processes, ray). On a GPU the thread count does not touch the numbers.
    threads = 1 if device_name == "cpu" else None
    tasks = [SeedTask(protocol_json(protocol), seed, str(store.root), device_name, limit,
                      threads=threads, progress=progress and executor == "local")
             for seed in seeds]
    outputs = run_tasks(tasks, executor=executor, address=address, on_result=on_seed)
    outputs.sort(key=lambda o: o.seed)
    measurements = pd.concat([o.measurements for o in outputs], ignore_index=True)
    manifest = {
        "protocol": protocol_json(protocol),
        "protocol_hash": protocol.hash,
        "seeds": list(seeds),
        "limit": limit,
        "executor": executor,
        "store": str(store.root),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "machine": _machine(device_name),
        "command": sys.argv,
        "timings": {str(o.seed): o.timings for o in outputs},
        "total_seconds": time.perf_counter() - started,
        "shards": {str(o.seed): o.shards for o in outputs},
        "models": [m for o in outputs for m in o.models],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_measurements(measurements, out / "measurements.parquet")
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True,
                                                 default=str) + "\n")
    results, _ = report_run(out)
    return RunOutcome(out, results, measurements, manifest)
