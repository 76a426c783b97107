"""A protocol, end to end: train or load the models, run the stages, analyse, report.

Work is split by seed (replications are independent; :mod:`runners.executors` runs them here,
in a process pool or on Ray) and, within a seed, into the stages of :mod:`runners.stages`, one
per table the protocol's claims read (``measurements``, ``defense``, ``training``,
``adv_training``), each keyed in the artifact store so that an interrupted run resumes. The
models of a seed come from :func:`runners.seed_models.train_seed_models`, the same code as
``dimple-stats train``; the manifest's provenance from :mod:`runners.provenance`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dimple_stats.attack_audit import attack_audit
from dimple_stats.errors import BadInput
from dimple_stats.protocol import Protocol
from dimple_stats.protocol.worker import worker_protocol
from dimple_stats.report.run import MANIFEST, protocol_json
from runners import provenance
from runners.executors import run_tasks
from runners.stages import STAGES, SeedContext

__all__ = ["RunOutcome", "SeedOutput", "SeedTask", "UnsupportedClaimError", "check_supported",
           "run_protocol", "run_seed"]


class UnsupportedClaimError(BadInput):
    """The protocol lists a claim whose table no stage of ``dimple-stats run`` produces."""

    section = "claims"


@dataclass(frozen=True)
class SeedTask:
    """Everything a worker needs to run one seed; plain data so it pickles to any executor."""

    protocol: dict[str, Any]
    seed: int
    store_root: str
    device: str = "cpu"
    limit: int | None = None
    threads: int | None = None
    progress: bool | str = False  # a runners.progress mode (True: bar)
    #: The sweep cell this task measures (its rows get a ``cell`` column); None: no sweep.
    cell: int | None = None


@dataclass
class SeedOutput:
    """What one seed produced: its measurement rows, model metrics and stage timings."""

    seed: int
    measurements: pd.DataFrame
    models: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: The data the seed used: fingerprint (in every store key of the seed) and split sizes.
    data: dict[str, Any] = field(default_factory=dict)
    #: Store keys the seed loaded or published (``dimple-stats store gc`` keeps these).
    artifacts: list[str] = field(default_factory=list)
    #: Peak resident memory (MB) of the seed's process at the end of each stage.
    memory: dict[str, float] = field(default_factory=dict)
    #: Example gallery rows (:mod:`dimple_stats.gallery`); empty when none were kept.
    gallery: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The sweep cell (None: no sweep).
    cell: int | None = None


def run_seed(task: SeedTask) -> SeedOutput:
    """Train/load the models of one seed and run every stage its claims need."""
    import torch

    previous_threads = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(task.threads)
    try:
        return _run_seed(task)
    finally:
        torch.set_num_threads(previous_threads)


def _run_seed(task: SeedTask) -> SeedOutput:
    from runners.progress import log_line, peak_rss_mb
    from runners.seed_models import load_seed_data, train_seed_models
    from runners.store import ArtifactStore
    from runners.training import resolve_device

    protocol = worker_protocol(task.protocol)
    store = ArtifactStore(task.store_root, origin={
        "protocol": protocol.name, "protocol_hash": protocol.hash, "seed": task.seed})
    device = resolve_device(task.device)
    clock = time.perf_counter()
    data = load_seed_data(protocol, task.seed, task.limit)
    data_record = {"fingerprint": data.fingerprint, "train": len(data.train),
                   "eval": len(data.eval)}
    timings = {"data": time.perf_counter() - clock}
    memory = {"data": peak_rss_mb()}
    log_line(task.progress, f"seed {task.seed}: {protocol.dataset.name}, {len(data.train)} "
             f"train and {len(data.eval)} eval images ({timings['data']:.1f}s)")
    models = train_seed_models(protocol, data, seed=task.seed, store=store, device=device,
                               progress=task.progress)
    timings.update(models.timings)
    memory["models"] = peak_rss_mb()
    x, y, image_ids = data.eval.x, data.eval.y, data.eval.ids
    if task.limit is not None:
        x, y, image_ids = x[: task.limit], y[: task.limit], image_ids[: task.limit]
    ctx = SeedContext(protocol, task.seed, task.progress, store, device, data,
                      models.classifier, models.autoencoders, x, y, image_ids, timings=timings)
    rows = list(models.rows)
    tables: dict[str, pd.DataFrame] = {}
    for kind in STAGES:  # registration order: measurements first
        if kind in protocol.tables:
            clock = time.perf_counter()
            tables[kind] = STAGES[kind](ctx, rows)
            if kind != "measurements":  # its time is split per autoencoder by the stage
                timings[kind] = time.perf_counter() - clock
            memory[kind] = peak_rss_mb()
            log_line(task.progress, f"seed {task.seed}: {kind} done "
                     f"({time.perf_counter() - clock:.1f}s, peak memory {memory[kind]:.0f} MB)")
    measurements = tables.pop("measurements", pd.DataFrame())
    gallery = pd.concat(ctx.gallery, ignore_index=True) if ctx.gallery else pd.DataFrame()
    if task.cell is not None:
        from dimple_stats.sweep import CELL

        for frame in (measurements, gallery, *tables.values()):
            if len(frame.columns):
                frame.insert(0, CELL, task.cell)
    return SeedOutput(task.seed, measurements, rows, timings, ctx.shards, tables, data_record,
                      list(store.used), memory, gallery, task.cell)


def _run_key(output: SeedOutput) -> str:
    """A seed's key in the manifest: ``seed``, or ``cell/seed`` in a sweep."""
    return str(output.seed) if output.cell is None else f"{output.cell}/{output.seed}"


def _sweep_tasks(protocol: Protocol, seeds: tuple[int, ...], store: Any, device: str,
                 limit: int | None, threads: int | None, progress: bool | str, executor: str,
                 address: str | None) -> tuple[list[SeedTask], dict[str, Any],
                                                list[dict[str, Any]]]:
    """A sweep's measurement tasks, one per (cell, seed), after training every distinct model
    once (each its own task on the executor, so cells never train one model twice side by
    side). Returns the tasks, the manifest's ``sweep`` record and the models' rows."""
    from dimple_stats.protocol.sweep import cell_label
    from runners.seed_models import ModelTask, train_model_task

    assert protocol.sweep is not None
    cells = protocol.cell_protocols()
    model_tasks: dict[str, ModelTask] = {}
    tasks = []
    records = []
    for index, (choices, cell) in enumerate(cells):
        # A cell keeps the claims over classifier pairs: they make it measure (Protocol.tables).
        check_supported(cell, cell=True)
        data = cell.dataset.model_dump(mode="json")
        as_json = protocol_json(cell)
        for seed in seeds:
            clf_key = json.dumps(["classifier", data, cell.classifier.model_dump(mode="json"),
                                  "training" in cell.tables, seed], sort_keys=True)
            model_tasks.setdefault(clf_key, ModelTask(
                as_json, seed, str(store.root), device, limit, classifier=True,
                threads=threads, progress=progress))
            for name, ae in cell.autoencoders.items():
                ae_key = json.dumps(["autoencoder", data, ae.model_dump(mode="json"), seed],
                                    sort_keys=True)
                model_tasks.setdefault(ae_key, ModelTask(
                    as_json, seed, str(store.root), device, limit, autoencoders=(name,),
                    threads=threads, progress=progress))
            tasks.append(SeedTask(as_json, seed, str(store.root), device, limit,
                                  threads=threads, progress=progress, cell=index))
        records.append({"cell": index, "choices": choices,
                        "label": cell_label(choices, protocol.sweep.paths)})
    clock = time.perf_counter()
    # Classifiers first: on the digits and MNIST they are the longest single trainings.
    ordered = sorted(model_tasks.values(), key=lambda t: not t.classifier)
    rows = [r for out in run_tasks(train_model_task, ordered, executor=executor,
                                   address=address) for r in out]
    rows.sort(key=lambda r: (int(r["seed"]), r["model"] != "classifier", str(r["model"]),
                             json.dumps(r.get("config"), sort_keys=True)))
    record = {"cells": records, "distinct_models": len(model_tasks),
              "models_trained": sum(not r.get("loaded") for r in rows),
              "model_seconds": time.perf_counter() - clock}
    return tasks, record, rows


@dataclass
class RunOutcome:
    """The report directory of a finished run and its results table."""

    out_dir: Path
    results: pd.DataFrame
    measurements: pd.DataFrame
    manifest: dict[str, Any]


def check_supported(protocol: Protocol, *, cell: bool = False) -> None:
    """Refuse, before any compute, claims whose table no stage produces (a sweep's claims
    over pairs of cells are checked by :func:`dimple_stats.sweep.check_sweep_claims`, on the
    sweep; a ``cell`` of a sweep measures what they read)."""
    from dimple_stats.sweep import PAIRS_TABLE, check_sweep_claims

    if not cell:
        check_sweep_claims(protocol)
    missing = {cid: table for cid in protocol.claim_ids
               if (table := _claim_table(cid)) not in STAGES and table != PAIRS_TABLE}
    if missing:
        raise UnsupportedClaimError(
            f"claims {', '.join(missing)} need the {', '.join(sorted(set(missing.values())))} "
            "table(s), which `dimple-stats run` does not produce; remove them from the protocol "
            "or analyse a table you made with `dimple-stats report`")


def _claim_table(claim_id: str) -> str:
    from dimple_stats.claims import get_claim

    return get_claim(claim_id).table


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
    progress: bool | str = False,
    on_seed: Callable[[SeedOutput], None] | None = None,
    replace: bool = False,
) -> RunOutcome:
    """Run a protocol end to end and write its report directory.

    An earlier run's folder at ``out_dir`` is replaced only when it is a run of the same
    protocol (by name) or ``replace`` is set.

    The report is written by the same code as ``dimple-stats report`` (from the stored
    ``measurements.parquet`` and ``manifest.json``), so re-rendering it gives identical files.
    """
    from dimple_stats.atomic import write_text_atomic
    from dimple_stats.gallery import GALLERY_FILE, write_gallery
    from dimple_stats.measurements import TABLE_FILES, write_measurements
    from dimple_stats.report.destination import check_destination, staged_report
    from dimple_stats.report.run import report_run
    from runners.attacks.library import check_attack_available
    from runners.store import ArtifactStore
    from runners.training import resolve_device

    check_supported(protocol)
    for _, cell in protocol.cell_protocols():  # a missing attack library: exit 2 before compute
        check_attack_available(cell)
    seeds = tuple(seeds) if seeds is not None else protocol.seeds
    executor = executor or protocol.executor
    device_name = str(resolve_device(device or protocol.device))
    store = ArtifactStore(store_root).check_location()
    # Checked before any compute: a run must not end by refusing its destination.
    out = check_destination(Path(out_dir) if out_dir is not None
                            else Path("reports") / protocol.name, keep=store.root,
                            protocol=protocol.name, replace=replace)
    started = time.perf_counter()
    # Read before any compute: a long run must name the code it started with, even if the
    # checkout moves on while it runs.
    commit, dirty = provenance.git_commit(), provenance.git_dirty()
    # On CPU every seed runs on ONE torch thread, whatever the executor: parallel reductions
    # split differently across thread counts and change the last bits of trained weights, and
    # the executors must give bit-identical measurements. Parallelism comes from running seeds
    # side by side (processes, ray). On a GPU the thread count does not touch the numbers.
    threads = 1 if device_name == "cpu" else None
    sweep: dict[str, Any] = {}
    trained_models: list[dict[str, Any]] | None = None
    if protocol.sweep is None:
        tasks = [SeedTask(protocol_json(protocol), seed, str(store.root), device_name, limit,
                          threads=threads, progress=progress)
                 for seed in seeds]
    else:
        tasks, sweep, trained_models = _sweep_tasks(
            protocol, seeds, store, device_name, limit, threads, progress, executor, address)
    outputs = run_tasks(run_seed, tasks, executor=executor, address=address, on_result=on_seed)
    outputs.sort(key=lambda o: (o.cell if o.cell is not None else -1, o.seed))
    if sweep:
        # Models the cells' measurement tasks trained themselves: 0 when each distinct model
        # came from its training task (the store), as it must.
        sweep["cell_models_trained"] = sum(not m.get("loaded") for o in outputs for m in o.models)
    measurements = pd.concat([o.measurements for o in outputs], ignore_index=True)
    tables = {kind: pd.concat([o.tables[kind] for o in outputs if kind in o.tables],
                              ignore_index=True)
              for kind in dict.fromkeys(k for o in outputs for k in o.tables)}
    galleries = [o.gallery for o in outputs if len(o.gallery)]
    manifest = {
        "protocol": protocol_json(protocol),
        "protocol_hash": protocol.hash,
        "seeds": list(seeds),
        "limit": limit,
        "executor": executor,
        "store": str(store.root),
        "versions": provenance.versions(),
        "git_commit": commit,
        "git_dirty": dirty,
        "machine": provenance.machine(device_name),
        "command": sys.argv,
        "timings": {_run_key(o): o.timings for o in outputs},
        "total_seconds": time.perf_counter() - started,
        "shards": {_run_key(o): o.shards for o in outputs},
        "models": (trained_models if trained_models is not None
                   else [m for o in outputs for m in o.models]),
        "data": {str(o.seed): o.data for o in outputs},
        "peak_memory_MB": {_run_key(o): o.memory for o in outputs},
        **({"sweep": sweep} if sweep else {}),
        "artifacts": sorted({a for o in outputs for a in o.artifacts}),
        "tables": sorted(["measurements", *tables, *(["gallery"] if galleries else [])]),
        "attacks": attack_audit(measurements),
    }
    # Replaces an earlier report at `out` as a whole; the store is checked again at the end.
    with staged_report(out, keep=store.root, protocol=protocol.name,
                       replace=replace) as staging:
        write_measurements(measurements, staging / "measurements.parquet")
        for kind, table in tables.items():
            write_measurements(table, staging / TABLE_FILES[kind], kind=kind)  # type: ignore[arg-type]
        if galleries:
            write_gallery(pd.concat(galleries, ignore_index=True), staging / GALLERY_FILE)
        write_text_atomic(staging / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True,
                                                         default=str) + "\n")
        results, _ = report_run(staging)
    return RunOutcome(out, results, measurements, manifest)
