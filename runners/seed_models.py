"""The models of one seed, trained or loaded once: what ``dimple-stats train`` prints and what
``dimple-stats run`` measures, from the same code (the collapse check included).

A model's metrics row (:func:`model_row`) is built here only: ``seed``, ``model``, ``arch``,
``regulariser`` (autoencoders), ``loaded`` (found in the store) and the model's metrics.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dimple_stats.errors import RunFailure
from runners.progress import log_line
from runners.training import (
    DIAGNOSTICS_MAX_NK,
    TrainResult,
    check_checkpoints,
    check_not_collapsed,
    check_train_classes,
    resolve_device,
    train_autoencoder,
    train_classifier,
)

__all__ = ["ModelTask", "NonFiniteOutputError", "SeedModels", "check_finite_outputs",
           "intrinsic_dimension_metrics", "load_seed_data", "model_row", "train_model_task",
           "train_protocol", "train_seed_models"]


#: ``chunk * n * k`` budget of one forward-mode Jacobian call in the intrinsic-dimension
#: diagnostic (see :func:`intrinsic_dimension_metrics`).
DIAGNOSTICS_CHUNK_NK = 1_000_000


@dataclass
class SeedModels:
    """The classifier and autoencoders of one seed, their metrics rows and training times."""

    classifier: TrainResult | None  # None when not asked for (``classifier=False``)
    autoencoders: dict[str, TrainResult]
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def model_row(seed: int, name: str, config: Any, result: TrainResult,
              **extra: Any) -> dict[str, Any]:
    """One model's metrics row (``regulariser`` only for configs that have one)."""
    row: dict[str, Any] = {"seed": seed, "model": name, "arch": config.arch}
    if getattr(config, "regulariser", None) is not None:
        row["regulariser"] = config.regulariser.kind
    return {**row, "loaded": result.loaded, **result.metrics, **extra}


def intrinsic_dimension_metrics(ae: Any, data: Any, device: Any) -> dict[str, float]:
    """Intrinsic-dimension estimates from the R diagonal (skipped for very large Jacobians)."""
    import torch

    from runners.geometry.intrinsic import decoder_intrinsic_dimension
    from runners.geometry.spaces import decoder_in_dtype

    if data.n * ae.latent_dim > DIAGNOSTICS_MAX_NK:
        return {}
    with torch.no_grad():
        z = ae.encode(data.eval.x[:64].to(device))
    # Forward-mode Jacobians hold every layer's activations once per latent direction (k of
    # them) for each sample of a chunk; with a conv decoder on CIFAR (n*k = 393,216) a chunk of
    # 16 samples peaked at 2.0 GB above the data, one sample at 0.6 GB. Chunk so that
    # chunk * n * k stays near 1M numbers: small images keep 16, CIFAR-size ones go to 2.
    chunk = max(1, min(16, DIAGNOSTICS_CHUNK_NK // (data.n * ae.latent_dim)))
    out = decoder_intrinsic_dimension(decoder_in_dtype(ae, torch.float64), z, chunk_size=chunk)
    out["intrinsic_dim_nominal"] = float(ae.latent_dim)
    return out


def train_seed_models(protocol: Any, data: Any, *, seed: int, store: Any, device: Any,
                      progress: bool | str = False, classifier: bool = True,
                      autoencoders: Sequence[str] | None = None) -> SeedModels:
    """Train (or load) the classifier and every autoencoder of ``protocol`` for ``seed``
    (only the classifier when ``classifier``, only the named ``autoencoders`` when given).

    Raises :class:`~runners.training.CollapsedAutoencoderError` for an autoencoder that
    reconstructs no better than the mean image (its weights stay in the store).
    """
    timings: dict[str, float] = {}
    names = protocol.autoencoders if autoencoders is None else autoencoders
    check_train_classes({n: protocol.autoencoders[n] for n in names}, data.train,
                        protocol.dataset)
    check_checkpoints(protocol, image_shape=data.image_shape, num_classes=data.num_classes,
                      pixel_range=data.pixel_range)
    probe = data.eval.x[:64].to(device)
    rows = []
    clf = None
    if classifier:
        clock = time.perf_counter()
        # With the training-dynamics claim the classifier keeps its per-epoch weights; the
        # final model is the same one (same config and seed), so one training serves every claim.
        clf = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=seed,
                               store=store, device=device, progress=progress,
                               epoch_checkpoints="training" in protocol.tables)
        timings["train_classifier"] = time.perf_counter() - clock
        _log_model(progress, seed, "classifier", clf, timings["train_classifier"])
        check_finite_outputs("the classifier", seed, clf.model, probe, clf.key, store)
        rows.append(model_row(seed, "classifier", protocol.classifier, clf))
    trained: dict[str, TrainResult] = {}
    for name, config in ((n, protocol.autoencoders[n]) for n in names):
        clock = time.perf_counter()
        ae = train_autoencoder(config, data, data_config=protocol.dataset, seed=seed,
                               store=store, device=device, progress=progress, name=name)
        timings[f"train_autoencoder[{name}]"] = time.perf_counter() - clock
        _log_model(progress, seed, f"autoencoder {name}", ae, timings[f"train_autoencoder[{name}]"])
        check_finite_outputs(f"autoencoder {name!r}", seed, ae.model, probe, ae.key, store)
        check_not_collapsed(name, seed, config, ae.metrics)
        trained[name] = ae
        clock = time.perf_counter()
        dims = _stored_json(store, "intrinsic_dimension", ae.key, data,
                            functools.partial(intrinsic_dimension_metrics, ae.model, data,
                                              device))
        timings[f"intrinsic_dimension[{name}]"] = time.perf_counter() - clock
        rows.append(model_row(seed, name, config, ae, **dims))
    return SeedModels(clf, trained, rows, timings)


def _log_model(progress: bool | str, seed: int, what: str, result: TrainResult,
               seconds: float) -> None:
    how = "loaded from the store" if result.loaded else "trained"
    log_line(progress, f"seed {seed}: {what} {how} ({seconds:.1f}s)")
    diverged = result.metrics.get("diverged_epoch")
    if diverged is not None:
        # Always said, progress or not: the kept weights are an early epoch's.
        print(f"warning: seed {seed}: {what}: training diverged (non-finite loss) in epoch "
              f"{diverged}; the weights of epoch {result.metrics.get('best_epoch')} are kept "
              "(grad_clip or a smaller lr usually helps)", file=sys.stderr, flush=True)


class NonFiniteOutputError(RunFailure):
    """A trained or loaded model outputs NaN or infinity on evaluation images."""


def check_finite_outputs(what: str, seed: int, model: Any, x: Any, key: Any = None,
                         store: Any = None) -> None:
    """Raise :class:`NonFiniteOutputError` when ``model(x)`` has a NaN or infinite entry: every
    measurement downstream would be NaN, and the statistics would silently drop them."""
    import torch

    with torch.no_grad():
        out = model(x)
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        if key is None:
            cause = "a checkpoint with NaN or infinite weights"
        else:
            root = f" --store {store.root}" if store is not None else ""
            cause = (f"its training diverged (try a smaller lr: the same settings diverge "
                     f"again); then drop it with `dimple-stats store rm {key}{root}`")
        raise NonFiniteOutputError(
            f"{what} (seed {seed}) outputs {bad} NaN or infinite value(s) on {len(x)} evaluation "
            f"images: {cause}")


def _stored_json(store: Any, stage: str, model_key: Any, data: Any,
                 compute: Any) -> dict[str, Any]:
    """A model's diagnostics, computed once and kept in the store beside it (models without a
    store key, the oracle and user checkpoints, are cheap or rare: computed each time)."""
    if store is None or model_key is None:
        return compute()
    key = store.key(stage, {"model": str(model_key), "data": data.fingerprint, "version": 1})
    if store.has(key):
        return store.load_json(key, "metrics.json")
    metrics = compute()
    with store.writer(key) as writer:
        writer.save_json("metrics.json", metrics)
    return metrics


def load_seed_data(protocol: Any, seed: int, limit: int | None = None) -> Any:
    """The data of one seed. A reduced run (``--limit N``) on a data set with fewer evaluation
    images than ``dataset.eval_samples`` selects N of those (seeded, stratified) instead of
    failing: the full run could not run there, so the reduced one shares nothing with it
    anyway, and taking only N leaves a shared pool (digits) to the training split."""
    from runners.datasets import load_dataset
    from runners.datasets.base import DatasetConfigError

    try:
        return load_dataset(protocol.dataset, seed=seed)
    except DatasetConfigError as exc:
        if limit is None or exc.field != "eval_samples" or not exc.available:
            raise
        size = min(limit, exc.available)
        print(f"warning: seed {seed}: --limit {limit}: the data has only "
              f"{exc.available} evaluation images (dataset.eval_samples asks "
              f"{protocol.dataset.eval_samples}); the reduced run selects {size} of them",
              file=sys.stderr, flush=True)
        config = protocol.dataset.model_copy(update={"eval_samples": size})
        return load_dataset(config, seed=seed)


@dataclass(frozen=True)
class ModelTask:
    """Train (or load) some models of one seed: plain data, so it pickles to any executor.

    A sweep trains each distinct model once, as its own task, before any cell measures, so
    that cells running side by side never train the same model twice.
    """

    protocol: dict[str, Any]
    seed: int
    store_root: str
    device: str = "cpu"
    limit: int | None = None
    classifier: bool = False
    autoencoders: tuple[str, ...] = ()
    threads: int | None = None
    progress: bool | str = False


def train_model_task(task: ModelTask) -> list[dict[str, Any]]:
    """Run a :class:`ModelTask`; returns the metrics rows of its models."""
    import torch

    from dimple_stats.protocol.worker import worker_protocol
    from runners.store import ArtifactStore

    previous = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(task.threads)
    try:
        protocol = worker_protocol(task.protocol)
        store = ArtifactStore(task.store_root, origin={
            "protocol": protocol.name, "protocol_hash": protocol.hash, "seed": task.seed})
        data = load_seed_data(protocol, task.seed, task.limit)
        rows = train_seed_models(protocol, data, seed=task.seed, store=store,
                                 device=resolve_device(task.device), progress=task.progress,
                                 classifier=task.classifier,
                                 autoencoders=task.autoencoders).rows
        # A sweep trains several models under one name (classifiers with and without
        # adversarial training, autoencoders at several k): each row says which one it is.
        configs = {"classifier": protocol.classifier, **protocol.autoencoders}
        return [{**r, "config": configs[r["model"]].model_dump(mode="json")} for r in rows]
    finally:
        torch.set_num_threads(previous)


def train_protocol(protocol: Any, *, seeds: tuple[int, ...] | None = None, store: Any = None,
                   device: str = "auto", progress: bool | str = False
                   ) -> list[dict[str, Any]]:
    """Train (or load) every model a protocol names, for each seed; one metrics row per model."""
    from runners.datasets import load_dataset

    dev = resolve_device(device if device != "auto" else protocol.device)
    rows: list[dict[str, Any]] = []
    for seed in seeds if seeds is not None else protocol.seeds:
        data = load_dataset(protocol.dataset, seed=seed)
        rows += train_seed_models(protocol, data, seed=seed, store=store, device=dev,
                                  progress=progress).rows
    return rows
