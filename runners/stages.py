"""The stages of one seed, by the table they produce: ``measurements`` (the attack and
geometry measurements, in shards per autoencoder), ``defense``, ``training`` and
``adv_training``. :data:`STAGES` maps each table kind to its stage; a claim is supported by
``dimple-stats run`` exactly when the table it reads has a stage.

Every stage is keyed in the artifact store by its own configuration and its inputs' keys. A
stage that finished is loaded, never recomputed, so a run killed at any point resumes where it
stopped and gives the same numbers as an uninterrupted one: every random draw of a shard comes
from a generator seeded by (seed, purpose), not from state left by earlier shards.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dimple_stats.errors import RunFailure
from dimple_stats.protocol import Protocol
from dimple_stats.registry import Registry
from dimple_stats.seeds import derive_seed
from runners.seed_models import model_row

__all__ = ["MEASURE_VERSION", "STAGES", "SeedContext", "TABLE_STAGE_VERSION",
           "shard_generator_seed"]

# Part of every measurement shard's key: bump when a change here changes what is measured.
MEASURE_VERSION = 4  # 4: attack.base, attack.on_manifold; base_ok, measurable_on, reach_on, path_on
# Part of the keys of the defense, training and adv_training stages (same rule).
TABLE_STAGE_VERSION = 2  # 2: seeds from derive_seed

Stage = Callable[["SeedContext", list[dict[str, Any]]], pd.DataFrame]
#: table kind -> ``stage(ctx, models) -> table`` (a stage may append model rows to ``models``).
STAGES: Registry[Stage] = Registry("stage")


def shard_generator_seed(seed: int, purpose: str, shard: int) -> int:
    """The seed of one shard's (or one stage's) random draws."""
    return derive_seed(seed, purpose, shard)


@dataclass
class SeedContext:
    """What the stages of one seed share: the models (trained once), the eval images, the
    store, and the counters the manifest reports."""

    protocol: Protocol
    seed: int
    progress: bool | str
    store: Any
    device: Any
    data: Any
    clf: Any
    autoencoders: dict[str, Any]
    x: Any
    y: Any
    image_ids: Any
    shards: dict[str, int] = field(default_factory=lambda: {"computed": 0, "loaded": 0})
    timings: dict[str, float] = field(default_factory=dict)
    #: Gallery rows of the measurements stage, one frame per autoencoder (dimple_stats.gallery).
    gallery: list[pd.DataFrame] = field(default_factory=list)

    def identity(self, result: Any, config: Any) -> Any:
        """How a stage's key names a model: its store key, or what defines it."""
        # Stored models are identified by their key; oracle and user checkpoints by what
        # defines them.
        if result.key is not None:
            return str(result.key)
        from runners.training import config_identity

        identity = {"config": config_identity(config),
                    "dataset": self.protocol.dataset.model_dump(mode="json"),
                    "data": self.data.fingerprint}
        checkpoint = getattr(config, "checkpoint", None)
        if checkpoint:
            # The config names the file by path only: another file at that path is another
            # model, and nothing measured with the old one may be reused.
            identity["checkpoint_sha256"] = _checkpoint_sha256(str(checkpoint))
        return identity

    def generator(self, *purpose: object) -> Any:
        """A torch generator seeded by (seed, purpose): independent of what ran before."""
        import torch

        return torch.Generator().manual_seed(shard_generator_seed(
            self.seed, "/".join(map(str, purpose)), 0))

    def cached(self, stage: str, config: dict[str, Any], compute: Callable[[], pd.DataFrame]
               ) -> pd.DataFrame:
        """Load the stage's table from the store, or compute and publish it (resumable)."""
        key = self.store.key(stage, {"version": TABLE_STAGE_VERSION, "seed": self.seed,
                                     "data": self.data.fingerprint, **config})
        if self.store.has(key):
            self.shards["loaded"] += 1
            return self.store.load_table(key, "table.parquet")
        frame = compute()
        with self.store.writer(key) as writer:
            writer.save_table("table.parquet", frame)
        self.shards["computed"] += 1
        return frame


@functools.lru_cache(maxsize=8)
def _checkpoint_sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    from runners.artifacts import file_sha256

    return file_sha256(Path(path))


def _checkpoint_sha256(path: str) -> str:
    """SHA-256 of a user checkpoint, hashed once per (path, size, mtime) in a process (every
    measurement shard names its models)."""
    resolved = Path(path).expanduser()
    stat = resolved.stat()
    return _checkpoint_sha256_cached(str(resolved), stat.st_size, stat.st_mtime_ns)


class NothingToAttackError(RunFailure):
    """No evaluation image is classified correctly: there is nothing to attack."""


#: Above this input dimension the data covariance is not formed (n x n); the principal subspace
#: comes from a randomised SVD and ``r_Rdata`` from the top components only.
DATA_CONTROLS_DENSE_MAX_N = 4096


def _data_controls(protocol: Protocol, data: Any) -> Any:
    """The training images' principal subspace and covariance (r_PCA, r_Rdata), once per seed."""
    from runners.geometry.controls import DataSubspaces

    # An oracle has no latent_dim of its own; the dataset's latent dimension bounds it.
    dims = [ae.latent_dim or getattr(protocol.dataset, "latent_dim", 0) or 0
            for ae in protocol.autoencoders.values()]
    kmax = max(dims + [1])
    limit = None if data.n <= DATA_CONTROLS_DENSE_MAX_N else kmax
    return DataSubspaces.from_images(data.train.x, max_components=limit,
                                     dense_limit=DATA_CONTROLS_DENSE_MAX_N)


def _stored_gallery(store: Any, key: Any) -> pd.DataFrame | None:
    """A stored shard's gallery rows; None for a shard stored before shards kept them."""
    from dimple_stats.gallery import GALLERY_FILE, from_parquet_bytes

    if GALLERY_FILE not in store.files(key):
        return None
    return from_parquet_bytes(store.load_bytes(key, GALLERY_FILE))


def _gallery(candidates: list[pd.DataFrame | None], frames: list[pd.DataFrame], *, where: str,
             progress: bool | str) -> list[pd.DataFrame]:
    """One (seed, autoencoder)'s gallery from its shards' candidates: all or nothing.

    Shards stored before galleries existed are reused (their measurements did not change, and
    recomputing them for a picture would cost the whole attack), but then that autoencoder gets
    no gallery: a selection from some shards only would differ from a fresh run's.
    """
    from dimple_stats.gallery import reduce_to_quantiles
    from runners.progress import log_line

    if any(c is None for c in candidates):
        log_line(progress, f"{where}: no example gallery (measurement shards stored before "
                 "shards kept gallery images; remove them from the store to get one)")
        return []
    kept = [c for c in candidates if c is not None and len(c)]
    if not kept:
        return []
    return [reduce_to_quantiles(pd.concat(kept, ignore_index=True),
                                pd.concat(frames, ignore_index=True))]


def _on_attack_version(protocol: Protocol) -> dict[str, Any]:
    """A key part that changes when an attack's algorithm changes: strict tangent 2 is the
    k-coordinate search (3: solved in float64 on a float64 tangent basis whatever
    ``tangent.dtype``), latent 4 the Gauss-Newton SQP minimal-chord searches, and
    minimal_norm_search 3 the FMN searches (one untargeted, two targeted) after each success
    of the PGD attacks."""
    a = protocol.attack
    key: dict[str, Any] = {"minimal_norm_search": 3}
    if a.on_manifold == "tangent" and a.box == "strict" and a.norm == "l2":
        key["strict_tangent_attack"] = 3
    if a.on_manifold == "latent":
        key["latent_attack"] = 4
    return key


@STAGES.register("measurements")
def measurement_stage(ctx: SeedContext, models: list[dict[str, Any]]) -> pd.DataFrame:
    """Every autoencoder's measurements on the correctly classified eval images, in shards."""
    import torch

    from dimple_stats.gallery import GALLERY_FILE, to_parquet_bytes
    from runners.gallery import gallery_candidates
    from runners.measure import check_membership, correctly_classified, measure
    from runners.progress import progress_bar

    protocol, store, device, seed = ctx.protocol, ctx.store, ctx.device, ctx.seed
    clf, x, y, image_ids = ctx.clf, ctx.x, ctx.y, ctx.image_ids
    correct = correctly_classified(clf.model, x.to(device), y.to(device)).cpu()
    ids = correct.nonzero().squeeze(1)
    if len(ids) == 0:
        raise NothingToAttackError(
            f"seed {seed}: the classifier (test accuracy "
            f"{float(clf.metrics.get('test_accuracy', float('nan'))):.3g}) classifies none of the "
            f"{len(x)} evaluation images correctly, so no image can be attacked. Check the data "
            "(dataset.root, dataset.classes), the classifier's training (classifier.epochs, "
            "classifier.lr) or use more images (dataset.eval_samples, --limit)")
    shard_size = max(protocol.attack.batch_size, 32)

    @functools.cache
    def controls() -> Any:
        # Only a shard that is computed needs them: a run that finds every shard in the store
        # skips the PCA of the training images (5.6 s and 0.4 GB on CIFAR-size images).
        clock = time.perf_counter()
        subspaces = _data_controls(protocol, ctx.data)
        ctx.timings["data_controls"] = time.perf_counter() - clock
        return subspaces

    frames: list[pd.DataFrame] = []
    for name, ae in ctx.autoencoders.items():
        ae_config = protocol.autoencoders[name]
        clock = time.perf_counter()
        batches = list(ids.split(shard_size))
        candidates: list[pd.DataFrame | None] = []
        first = len(frames)
        with progress_bar(f"measure {name} (seed {seed})", len(batches), ctx.progress) as tick:
            for index, shard in enumerate(batches):
                key = store.key("measure", {
                    "version": MEASURE_VERSION, "seed": seed, "autoencoder": name,
                    "data": ctx.data.fingerprint,
                    "shard": index, "samples": shard.tolist(),
                    "attack": protocol.attack.model_dump(mode="json"),
                    "tangent": protocol.tangent.model_dump(mode="json"),
                    "classifier": ctx.identity(clf, protocol.classifier),
                    "autoencoder_model": ctx.identity(ae, ae_config),
                    **_on_attack_version(protocol),
                })
                if store.has(key):
                    frame = store.load_table(key, "measurements.parquet")
                    candidates.append(_stored_gallery(store, key))
                    ctx.shards["loaded"] += 1
                else:
                    generator = torch.Generator().manual_seed(
                        shard_generator_seed(seed, name, index))
                    images = x[shard].to(device)
                    result = measure(clf.model, ae.model, images, y[shard].to(device),
                                     attack=protocol.attack, tangent=protocol.tangent,
                                     generator=generator, bounds=ctx.data.pixel_range,
                                     sample_ids=shard, image_ids=image_ids[shard],
                                     controls=controls())
                    frame = result.to_frame()
                    frame.insert(0, "autoencoder", name)
                    frame.insert(0, "seed", seed)
                    if protocol.attack.box == "strict":
                        # Before publishing: a shard that fails this must not be resumed from.
                        check_membership(frame, where=(
                            f"seed {seed}, autoencoder {name!r}, measurement shard {index} "
                            f"(store key {key})"),
                            check_on=protocol.attack.on_manifold == "tangent")
                    # The gallery shows what was attacked: D(z*) under attack.base manifold.
                    base = images if result.base is None else result.base.to(device)
                    candidates.append(gallery_candidates(
                        clf.model, ae.model, base, result, seed=seed, name=name,
                        pixel_range=ctx.data.pixel_range))
                    with store.writer(key) as writer:
                        writer.save_table("measurements.parquet", frame)
                        writer.save_bytes(GALLERY_FILE, to_parquet_bytes(candidates[-1]))
                    ctx.shards["computed"] += 1
                frames.append(frame)
                tick()
        ctx.gallery += _gallery(candidates, frames[first:], where=f"seed {seed}, autoencoder "
                                f"{name!r}", progress=ctx.progress)
        ctx.timings[f"measure[{name}]"] = time.perf_counter() - clock
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _defense_eps(protocol: Protocol) -> list[float]:
    eps: set[float] = set()
    for entry in protocol.claims:
        if entry.id == "iso.defense":
            eps.update(entry.options.eps or (protocol.attack.eps["plain"],))  # type: ignore[attr-defined]
    return sorted(eps)


@STAGES.register("defense")
def defense_stage(ctx: SeedContext, models: list[dict[str, Any]]) -> pd.DataFrame:
    """iso.defense: every projection defense and the undefended classifier, at every eps, on
    ALL eval samples (robust accuracy counts the clean mistakes too)."""
    import numpy as np

    from runners.defense import (
        NO_DEFENSE,
        ProjectionDefense,
        attack_gradients,
        defense_frame,
        defense_name,
        robust_correct_every,
        threat_subspace,
    )

    p, cfg = ctx.protocol, ctx.protocol.defense
    x, y = ctx.x.to(ctx.device), ctx.y.to(ctx.device)
    samples = np.arange(len(x))
    threat_ae = cfg.manifold or next(iter(p.autoencoders))
    space = None
    if cfg.threat != "unrestricted":
        space = threat_subspace(ctx.autoencoders[threat_ae].model.eval(), x, p.tangent)
    # Each defense with the models its attacks differentiate (one per gradient; the
    # undefended classifier has only its own).
    defenses: list[tuple[str, list[Any], dict[str, Any]]] = [
        (NO_DEFENSE, [ctx.clf.model], {})]
    for name, ae in ctx.autoencoders.items():
        for projection in cfg.projections:
            models = [ProjectionDefense(ctx.clf.model, ae.model, projection=projection,
                                        gradient=gradient, tangent=p.tangent,
                                        bounds=ctx.data.pixel_range).eval()
                      for gradient in attack_gradients(cfg.gradient)]
            defenses.append((defense_name(name, projection), models, {
                "autoencoder": ctx.identity(ae, p.autoencoders[name]),
                "projection": projection}))
    frames = []
    for name, models, ident in defenses:
        for eps in _defense_eps(p):
            def compute(models: list[Any] = models, name: str = name,
                        eps: float = eps) -> pd.DataFrame:
                clean, combined, used, broken_by = robust_correct_every(
                    models, x, y, eps=eps, config=cfg, norm=p.attack.norm, threat_space=space,
                    generators=[ctx.generator("defense", name, eps, *(("attack", i) if i else ()))
                                for i in range(len(models))],
                    bounds=ctx.data.pixel_range, batch_size=p.attack.batch_size)
                frame = defense_frame(ctx.seed, name, eps, samples, clean, combined,
                                      cfg.threat)
                frame["gradient"] = used
                frame["broken_by"] = broken_by
                return frame
            frames.append(ctx.cached("defense", {
                "defense": name, "eps": eps, "samples": len(x), **ident,
                "config": cfg.model_dump(mode="json"), "norm": p.attack.norm,
                "tangent": p.tangent.model_dump(mode="json"),
                "threat_manifold": ctx.identity(ctx.autoencoders[threat_ae],
                                                p.autoencoders[threat_ae]),
                "classifier": ctx.identity(ctx.clf, p.classifier)}, compute))
    table = pd.concat(frames, ignore_index=True)
    # The image's index in its split, as in the measurement table: seeds draw their eval images
    # from one split, so the pooled McNemar test must know which pairs share an image. Added
    # after the store (a property of the data, not of the attack), so stored stages stay valid.
    ids = np.asarray(ctx.data.eval.ids)[: len(x)]
    table["image_id"] = ids[table["sample"].to_numpy()].astype(np.int64)
    return table


def _clinging_every(protocol: Protocol) -> int:
    return min(e.options.every for e in protocol.claims  # type: ignore[attr-defined]
               if e.id == "dmm.clinging_then_dimpling")


def _fixed_samples(ctx: SeedContext, *classifiers: Any) -> Any:
    """Eval samples every given classifier gets right (the same set for every comparison)."""
    from runners.measure import correctly_classified

    ok = None
    for model in classifiers:
        good = correctly_classified(model, ctx.x.to(ctx.device), ctx.y.to(ctx.device)).cpu()
        ok = good if ok is None else ok & good
    return ok.nonzero().squeeze(1)


def _manifold_identities(ctx: SeedContext) -> dict[str, Any]:
    return {name: ctx.identity(ae, ctx.protocol.autoencoders[name])
            for name, ae in ctx.autoencoders.items()}


def _lazy_manifolds(ctx: SeedContext, x: Any) -> Callable[[], Any]:
    """The tangent spaces of every autoencoder at ``x``, computed on first use only (a stage
    whose tables are all in the store never needs them)."""
    from runners.dynamics import ManifoldCache

    cache: list[Any] = []

    def get() -> Any:
        if not cache:
            cache.append(ManifoldCache({n: a.model for n, a in ctx.autoencoders.items()}, x,
                                       ctx.protocol.tangent))
        return cache[0]

    return get


@STAGES.register("training")
def training_stage(ctx: SeedContext, models: list[dict[str, Any]]) -> pd.DataFrame:
    """dmm.clinging_then_dimpling: the plain attack at every ``every``-th epoch's weights, on
    the samples the FINAL classifier gets right (fixed across epochs; an epoch that gets one
    wrong gives it boundary distance 0)."""
    import copy

    from runners.dynamics import plain_attack_table
    from runners.training import load_epoch_weights

    p = ctx.protocol
    ids = _fixed_samples(ctx, ctx.clf.model)
    x, y = ctx.x[ids].to(ctx.device), ctx.y[ids].to(ctx.device)
    epochs_run = int(ctx.clf.metrics.get("epochs_run", 0))
    if epochs_run == 0:
        raise ValueError("dmm.clinging_then_dimpling needs a classifier trained by the protocol "
                         "(classifier.epochs >= 1, no checkpoint)")
    every = _clinging_every(p)
    epochs = sorted(set(range(every, epochs_run + 1, every)) | {epochs_run})
    manifolds = _lazy_manifolds(ctx, x)
    frames = []
    for epoch in epochs:
        def compute(epoch: int = epoch) -> pd.DataFrame:
            model = copy.deepcopy(ctx.clf.model)
            model.load_state_dict(load_epoch_weights(ctx.clf, ctx.store, epoch))
            frame = plain_attack_table(model, x, y, manifolds(), attack=p.attack,
                                       generator=ctx.generator("training", epoch),
                                       bounds=ctx.data.pixel_range,
                                       sample_ids=ids.numpy())
            frame.insert(0, "epoch", epoch)
            frame.insert(0, "seed", ctx.seed)
            return frame
        frames.append(ctx.cached("training", {
            "epoch": epoch, "samples": ids.tolist(), "attack": p.attack.model_dump(mode="json"),
            "tangent": p.tangent.model_dump(mode="json"),
            "classifier": ctx.identity(ctx.clf, p.classifier),
            "autoencoders": _manifold_identities(ctx)}, compute))
    return pd.concat(frames, ignore_index=True)


@STAGES.register("adv_training")
def adv_training_stage(ctx: SeedContext, models: list[dict[str, Any]]) -> pd.DataFrame:
    """dmm.adv_training_deepens: the protocol's classifier trained without and with PGD
    adversarial training (``classifier.adversarial``, its defaults when null), the plain attack
    on the samples BOTH get right, r_T under every autoencoder."""
    from dimple_stats.protocol.schema import AdversarialTrainingConfig
    from runners.dynamics import plain_attack_table
    from runners.training import train_classifier

    p = ctx.protocol
    configs = {"standard": p.classifier.model_copy(update={"adversarial": None}),
               "adversarial": p.classifier.model_copy(update={
                   "adversarial": p.classifier.adversarial or AdversarialTrainingConfig()})}
    trained = {}
    for role, config in configs.items():
        if config == p.classifier:
            trained[role] = ctx.clf
            continue
        trained[role] = train_classifier(config, ctx.data, data_config=p.dataset, seed=ctx.seed,
                                         store=ctx.store, device=ctx.device,
                                         progress=ctx.progress)
        models.append(model_row(ctx.seed, f"classifier[{role}]", config, trained[role]))
    ids = _fixed_samples(ctx, *(t.model for t in trained.values()))
    x, y = ctx.x[ids].to(ctx.device), ctx.y[ids].to(ctx.device)
    manifolds = _lazy_manifolds(ctx, x)
    frames = []
    for role, result in trained.items():
        def compute(role: str = role, result: Any = result) -> pd.DataFrame:
            frame = plain_attack_table(result.model, x, y, manifolds(), attack=p.attack,
                                       generator=ctx.generator("adv_training", role),
                                       bounds=ctx.data.pixel_range, sample_ids=ids.numpy())
            frame.insert(0, "classifier", role)
            frame.insert(0, "seed", ctx.seed)
            return frame
        frames.append(ctx.cached("adv_training", {
            "role": role, "samples": ids.tolist(), "attack": p.attack.model_dump(mode="json"),
            "tangent": p.tangent.model_dump(mode="json"),
            "classifier": ctx.identity(result, configs[role]),
            "autoencoders": _manifold_identities(ctx)}, compute))
    return pd.concat(frames, ignore_index=True)
