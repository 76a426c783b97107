"""A protocol, end to end: train or load the models, measure in shards, analyse, report.

Besides the measurements table, a seed produces the tables the phase-two claims read, each only
when a claim of the protocol needs it: ``defense`` (iso.defense: robust accuracy of the
projection defences under an adaptive attack), ``training`` (dmm.clinging_then_dimpling:
the plain attack and r_T at every epoch's checkpoint) and ``adv_training``
(dmm.adv_training_deepens: standard vs adversarially trained classifier on the same samples).

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
           "PHASE_TWO_VERSION", "UnsupportedClaimError", "tables_needed"]

# Part of every measurement shard's key: bump when a change here changes what is measured.
MEASURE_VERSION = 2  # 2: strict feasible sets, in_T_*, data-shaped controls, image_id
# Part of the keys of the defense, training and adv_training stages (same rule).
PHASE_TWO_VERSION = 1
# Claims whose tables the compute side does not produce yet (none since phase two).
_NEEDS_OTHER_TABLES: dict[str, str] = {}


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
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def tables_needed(protocol: Protocol) -> set[str]:
    """The tables (``measurements``, ``defense``, ...) the protocol's claims read."""
    from dimple_stats.claims.analysis import get_analysis

    return {get_analysis(cid).table for cid in protocol.claim_ids}


def _shard_generator_seed(seed: int, autoencoder: str, shard: int) -> int:
    digest = hashlib.sha256(f"{seed}/{autoencoder}/{shard}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _model_identity(result: Any, config: Any, data_config: Any) -> Any:
    # Stored models are identified by their key; oracle and user checkpoints by what defines them.
    if result.key is not None:
        return str(result.key)
    from runners.training import config_identity

    return {"config": config_identity(config), "dataset": data_config.model_dump(mode="json")}


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
    from runners.measure import check_membership, correctly_classified, measure
    from runners.store import ArtifactStore
    from runners.training import (
        check_not_collapsed,
        progress_bar,
        resolve_device,
        train_autoencoder,
        train_classifier,
    )

    protocol = Protocol.model_validate(task.protocol)
    store = ArtifactStore(task.store_root)
    device = resolve_device(task.device)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    needed = tables_needed(protocol)
    data = load_dataset(protocol.dataset, seed=task.seed)
    timings["data"] = time.perf_counter() - clock
    clock = time.perf_counter()
    # With the training-dynamics claim the classifier keeps its per-epoch weights; the final
    # model is the same one (same config and seed), so one training serves every claim.
    clf = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=task.seed,
                           store=store, device=device, progress=task.progress,
                           epoch_checkpoints="training" in needed)
    timings["train_classifier"] = time.perf_counter() - clock
    models = [{"seed": task.seed, "model": "classifier", "arch": protocol.classifier.arch,
               "loaded": clf.loaded, **clf.metrics}]

    x, y, image_ids = data.eval.x, data.eval.y, data.eval.ids
    if task.limit is not None:
        x, y, image_ids = x[: task.limit], y[: task.limit], image_ids[: task.limit]
    correct = correctly_classified(clf.model, x.to(device), y.to(device)).cpu()
    ids = correct.nonzero().squeeze(1)
    shard_size = max(protocol.attack.batch_size, 32)
    frames: list[pd.DataFrame] = []
    shards = {"computed": 0, "loaded": 0}
    trained: dict[str, Any] = {}
    controls = None
    if "measurements" in needed:
        clock = time.perf_counter()
        controls = _data_controls(protocol, data)
        timings["data_controls"] = time.perf_counter() - clock
    for name, ae_config in protocol.autoencoders.items():
        clock = time.perf_counter()
        ae = train_autoencoder(ae_config, data, data_config=protocol.dataset, seed=task.seed,
                               store=store, device=device, progress=task.progress, name=name)
        trained[name] = ae
        timings[f"train_autoencoder[{name}]"] = time.perf_counter() - clock
        check_not_collapsed(name, task.seed, ae_config, ae.metrics)
        models.append({"seed": task.seed, "model": name, "arch": ae_config.arch,
                       "regulariser": ae_config.regulariser.kind, "loaded": ae.loaded,
                       **ae.metrics, **_intrinsic_dimension(ae.model, data, device)})
        if "measurements" not in needed:
            continue
        clock = time.perf_counter()
        batches = list(ids.split(shard_size))
        with progress_bar(f"measure {name} (seed {task.seed})", len(batches),
                          task.progress) as tick:
            for index, shard in enumerate(batches):
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
                    result = measure(clf.model, ae.model, x[shard].to(device),
                                     y[shard].to(device),
                                     attack=protocol.attack, tangent=protocol.tangent,
                                     generator=generator, bounds=data.pixel_range,
                                     sample_ids=shard, image_ids=image_ids[shard],
                                     controls=controls)
                    frame = result.to_frame()
                    frame.insert(0, "autoencoder", name)
                    frame.insert(0, "seed", task.seed)
                    if protocol.attack.box == "strict":
                        # Before publishing: a shard that fails this must not be resumed from.
                        check_membership(frame, where=(
                            f"seed {task.seed}, autoencoder {name!r}, measurement shard {index} "
                            f"(store key {key})"))
                    with store.writer(key) as writer:
                        writer.save_table("measurements.parquet", frame)
                    shards["computed"] += 1
                frames.append(frame)
                tick()
        timings[f"measure[{name}]"] = time.perf_counter() - clock
    measurements = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    tables: dict[str, pd.DataFrame] = {}
    ctx = _SeedContext(protocol, task, store, device, data, clf, trained, x, y, shards)
    for kind, stage in (("defense", _defense_stage), ("training", _training_stage),
                        ("adv_training", _adv_training_stage)):
        if kind in needed:
            clock = time.perf_counter()
            tables[kind] = stage(ctx, models)
            timings[kind] = time.perf_counter() - clock
    return SeedOutput(task.seed, measurements, models, timings, shards, tables)


# --------------------------------------------------------------------------- phase-two stages

@dataclass
class _SeedContext:
    """What the phase-two stages of one seed share (models trained once, the eval images)."""

    protocol: Protocol
    task: SeedTask
    store: Any
    device: Any
    data: Any
    clf: Any
    autoencoders: dict[str, Any]
    x: Any
    y: Any
    shards: dict[str, int]

    def identity(self, result: Any, config: Any) -> Any:
        return _model_identity(result, config, self.protocol.dataset)

    def generator(self, *purpose: object) -> Any:
        import torch

        return torch.Generator().manual_seed(_shard_generator_seed(
            self.task.seed, "/".join(map(str, purpose)), 0))

    def cached(self, stage: str, config: dict[str, Any], compute: Callable[[], pd.DataFrame]
               ) -> pd.DataFrame:
        """Load the stage's table from the store, or compute and publish it (resumable)."""
        key = self.store.key(stage, {"version": PHASE_TWO_VERSION, "seed": self.task.seed,
                                     **config})
        if self.store.has(key):
            self.shards["loaded"] += 1
            return self.store.load_table(key, "table.parquet")
        frame = compute()
        with self.store.writer(key) as writer:
            writer.save_table("table.parquet", frame)
        self.shards["computed"] += 1
        return frame


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


def _intrinsic_dimension(ae: Any, data: Any, device: Any) -> dict[str, float]:
    """Intrinsic-dimension estimates from the R diagonal (skipped for very large Jacobians)."""
    import torch

    from runners.geometry.intrinsic import decoder_intrinsic_dimension
    from runners.geometry.spaces import decoder_in_dtype
    from runners.training import DIAGNOSTICS_MAX_NK

    if data.n * ae.latent_dim > DIAGNOSTICS_MAX_NK:
        return {}
    with torch.no_grad():
        z = ae.encode(data.eval.x[:64].to(device))
    out = decoder_intrinsic_dimension(decoder_in_dtype(ae, torch.float64), z)
    out["intrinsic_dim_nominal"] = float(ae.latent_dim)
    return out


def _defense_eps(protocol: Protocol) -> list[float]:
    eps: set[float] = set()
    for entry in protocol.claims:
        if entry.id == "iso.defense":
            eps.update(entry.options.eps or (protocol.attack.eps["plain"],))  # type: ignore[attr-defined]
    return sorted(eps)


def _defense_stage(ctx: _SeedContext, models: list[dict[str, Any]]) -> pd.DataFrame:
    """iso.defense: every projection defence and the undefended classifier, at every eps, on
    ALL eval samples (robust accuracy counts the clean mistakes too)."""
    import numpy as np

    from runners.defense import (
        NO_DEFENSE,
        ProjectionDefense,
        defense_frame,
        defense_name,
        robust_correct,
        threat_subspace,
    )

    p, cfg = ctx.protocol, ctx.protocol.defense
    x, y = ctx.x.to(ctx.device), ctx.y.to(ctx.device)
    samples = np.arange(len(x))
    threat_ae = cfg.manifold or next(iter(p.autoencoders))
    space = None
    if cfg.threat != "unrestricted":
        space = threat_subspace(ctx.autoencoders[threat_ae].model.eval(), x, p.tangent)
    defences: list[tuple[str, Any, dict[str, Any]]] = [
        (NO_DEFENSE, ctx.clf.model, {})]
    for name, ae in ctx.autoencoders.items():
        for projection in cfg.projections:
            model = ProjectionDefense(ctx.clf.model, ae.model, projection=projection,
                                      gradient=cfg.gradient, tangent=p.tangent,
                                      bounds=ctx.data.pixel_range).eval()
            defences.append((defense_name(name, projection), model, {
                "autoencoder": ctx.identity(ae, p.autoencoders[name]),
                "projection": projection}))
    frames = []
    for name, model, ident in defences:
        model.eval()
        for eps in _defense_eps(p):
            def compute(model: Any = model, name: str = name, eps: float = eps) -> pd.DataFrame:
                clean, robust = robust_correct(
                    model, x, y, eps=eps, config=cfg, norm=p.attack.norm, threat_space=space,
                    generator=ctx.generator("defense", name, eps),
                    bounds=ctx.data.pixel_range, batch_size=p.attack.batch_size)
                frame = defense_frame(ctx.task.seed, name, eps, samples, clean, robust,
                                      cfg.threat)
                frame["gradient"] = getattr(model, "gradient_used", "") or "autograd"
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


def _fixed_samples(ctx: _SeedContext, *classifiers: Any) -> Any:
    """Eval samples every given classifier gets right (the same set for every comparison)."""
    from runners.measure import correctly_classified

    ok = None
    for model in classifiers:
        good = correctly_classified(model, ctx.x.to(ctx.device), ctx.y.to(ctx.device)).cpu()
        ok = good if ok is None else ok & good
    return ok.nonzero().squeeze(1)


def _manifold_identities(ctx: _SeedContext) -> dict[str, Any]:
    return {name: ctx.identity(ae, ctx.protocol.autoencoders[name])
            for name, ae in ctx.autoencoders.items()}


def _training_stage(ctx: _SeedContext, models: list[dict[str, Any]]) -> pd.DataFrame:
    """dmm.clinging_then_dimpling: the plain attack at every ``every``-th epoch's weights, on
    the samples the FINAL classifier gets right (fixed across epochs; an epoch that gets one
    wrong gives it boundary distance 0)."""
    import copy

    from runners.dynamics import ManifoldCache, plain_attack_table
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
    manifolds: ManifoldCache | None = None
    frames = []
    for epoch in epochs:
        def compute(epoch: int = epoch) -> pd.DataFrame:
            nonlocal manifolds
            if manifolds is None:
                manifolds = ManifoldCache({n: a.model for n, a in ctx.autoencoders.items()}, x,
                                          p.tangent)
            model = copy.deepcopy(ctx.clf.model)
            model.load_state_dict(load_epoch_weights(ctx.clf, ctx.store, epoch))
            frame = plain_attack_table(model, x, y, manifolds, attack=p.attack,
                                       generator=ctx.generator("training", epoch),
                                       bounds=ctx.data.pixel_range,
                                       sample_ids=ids.numpy())
            frame.insert(0, "epoch", epoch)
            frame.insert(0, "seed", ctx.task.seed)
            return frame
        frames.append(ctx.cached("training", {
            "epoch": epoch, "samples": ids.tolist(), "attack": p.attack.model_dump(mode="json"),
            "tangent": p.tangent.model_dump(mode="json"),
            "classifier": ctx.identity(ctx.clf, p.classifier),
            "autoencoders": _manifold_identities(ctx)}, compute))
    return pd.concat(frames, ignore_index=True)


def _adv_training_stage(ctx: _SeedContext, models: list[dict[str, Any]]) -> pd.DataFrame:
    """dmm.adv_training_deepens: the protocol's classifier trained without and with PGD
    adversarial training (``classifier.adversarial``, its defaults when null), the plain attack
    on the samples BOTH get right, r_T under every autoencoder."""
    from dimple_stats.protocol.schema import AdversarialTrainingConfig
    from runners.dynamics import ManifoldCache, plain_attack_table
    from runners.training import train_classifier

    p, task = ctx.protocol, ctx.task
    configs = {"standard": p.classifier.model_copy(update={"adversarial": None}),
               "adversarial": p.classifier.model_copy(update={
                   "adversarial": p.classifier.adversarial or AdversarialTrainingConfig()})}
    trained = {}
    for role, config in configs.items():
        if config == p.classifier:
            trained[role] = ctx.clf
            continue
        trained[role] = train_classifier(config, ctx.data, data_config=p.dataset, seed=task.seed,
                                         store=ctx.store, device=ctx.device,
                                         progress=task.progress)
        models.append({"seed": task.seed, "model": f"classifier[{role}]", "arch": config.arch,
                       "loaded": trained[role].loaded, **trained[role].metrics})
    ids = _fixed_samples(ctx, *(t.model for t in trained.values()))
    x, y = ctx.x[ids].to(ctx.device), ctx.y[ids].to(ctx.device)
    manifolds: ManifoldCache | None = None
    frames = []
    for role, result in trained.items():
        def compute(role: str = role, result: Any = result) -> pd.DataFrame:
            nonlocal manifolds
            if manifolds is None:
                manifolds = ManifoldCache({n: a.model for n, a in ctx.autoencoders.items()}, x,
                                          p.tangent)
            frame = plain_attack_table(result.model, x, y, manifolds, attack=p.attack,
                                       generator=ctx.generator("adv_training", role),
                                       bounds=ctx.data.pixel_range, sample_ids=ids.numpy())
            frame.insert(0, "classifier", role)
            frame.insert(0, "seed", task.seed)
            return frame
        frames.append(ctx.cached("adv_training", {
            "role": role, "samples": ids.tolist(), "attack": p.attack.model_dump(mode="json"),
            "tangent": p.tangent.model_dump(mode="json"),
            "classifier": ctx.identity(result, configs[role]),
            "autoencoders": _manifold_identities(ctx)}, compute))
    return pd.concat(frames, ignore_index=True)


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


def _git_dirty() -> bool | None:
    """Whether tracked files differ from ``git_commit`` (then the commit alone cannot rerun it)."""
    try:
        # reports/ holds run outputs (a rerun replaces its own report), not code or protocols.
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                              ".", ":(exclude)reports"],
                             capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


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
    from dimple_stats.measurements import TABLE_FILES, write_measurements
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
    # Read before any compute: a long run must name the code it started with, even if the
    # checkout moves on while it runs.
    commit, dirty = _git_commit(), _git_dirty()
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
    tables = {kind: pd.concat([o.tables[kind] for o in outputs if kind in o.tables],
                              ignore_index=True)
              for kind in dict.fromkeys(k for o in outputs for k in o.tables)}
    manifest = {
        "protocol": protocol_json(protocol),
        "protocol_hash": protocol.hash,
        "seeds": list(seeds),
        "limit": limit,
        "executor": executor,
        "store": str(store.root),
        "versions": _versions(),
        "git_commit": commit,
        "git_dirty": dirty,
        "machine": _machine(device_name),
        "command": sys.argv,
        "timings": {str(o.seed): o.timings for o in outputs},
        "total_seconds": time.perf_counter() - started,
        "shards": {str(o.seed): o.shards for o in outputs},
        "models": [m for o in outputs for m in o.models],
        "tables": sorted(["measurements", *tables]),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_measurements(measurements, out / "measurements.parquet")
    for kind, table in tables.items():
        write_measurements(table, out / TABLE_FILES[kind], kind=kind)  # type: ignore[arg-type]
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True,
                                                 default=str) + "\n")
    results, _ = report_run(out)
    return RunOutcome(out, results, measurements, manifest)
