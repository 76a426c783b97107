"""Training of classifiers and autoencoders, with seeded determinism, early stopping on a held-out
validation split, and checkpoints in the artifact store keyed by configuration.

A second call with the same configuration, data and seed loads the checkpoint instead of training.
On CPU the same seed gives bit-identical weights: every random draw (initialisation, dropout,
batch order, validation split, regulariser directions) comes from seeded generators.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from dimple_stats.errors import BadInput, RunFailure
from dimple_stats.seeds import derive_seed
from runners.geometry.isometry import isometry_diagnostics
from runners.models import Autoencoder, build_autoencoder, build_classifier
from runners.models.regularisers import isometric_loss, relaxed_distortion
from runners.progress import progress_bar
from runners.store import ArtifactKey, ArtifactStore

if TYPE_CHECKING:
    from dimple_stats.protocol.schema import AutoencoderConfig, ClassifierConfig
    from runners.datasets.base import DatasetSplits, Split

__all__ = [
    "TrainResult",
    "resolve_device",
    "train_classifier",
    "train_autoencoder",
    "accuracy",
    "TRAINING_VERSION",
    "autoencoder_metrics",
    "config_identity",
    "epoch_checkpoint_name",
    "load_epoch_weights",
    "CollapsedAutoencoderError",
    "check_not_collapsed",
    "COLLAPSE_RECON_VS_MEAN",
]

# Part of every checkpoint key: bump it when a change to this module changes what training produces.
TRAINING_VERSION = 2  # 2: every stream seeded by dimple_stats.seeds.derive_seed
VALIDATION_FRACTION = 0.1
# Isometry diagnostics need the dense Jacobian; beyond this many numbers per sample they are skipped.
DIAGNOSTICS_MAX_NK = 20_000_000
DIAGNOSTICS_SAMPLES = 128
# An autoencoder whose eval reconstruction MSE is at least this fraction of the MSE of predicting
# the mean image has learnt (almost) nothing: its decoder's tangent spaces say nothing about the
# data, so a run stops rather than test claims on them. Trained autoencoders land far below it
# (0.1-0.3 on MNIST and digits); the reproduction's 1024-channel MNIST conv AE at lr 1e-3
# saturated its output sigmoid within 5 Adam steps and sat at 1.7.
COLLAPSE_RECON_VS_MEAN = 0.9


@dataclass
class TrainResult:
    """A trained (or loaded) model with its metrics and store key."""

    model: nn.Module
    metrics: dict[str, Any]
    key: ArtifactKey | None
    loaded: bool
    history: list[dict[str, float]] = field(default_factory=list)
    #: Weights after each epoch (only when trained here with ``epoch_checkpoints``).
    epoch_states: list[dict[str, Tensor]] = field(default_factory=list, repr=False)


class DeviceError(BadInput):
    """A ``--device`` this machine does not have (exit 2, before any compute)."""

    section = "--device"


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; anything else is checked against the
    machine (a missing GPU, or a GPU index past the last, is a :class:`DeviceError`)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {spec!r} ({exc})") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {spec}: this machine has no CUDA GPU; use --device cpu "
                              "or auto")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {spec}: this machine has {count} CUDA GPU(s), "
                              f"cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise DeviceError(f"device {spec}: MPS is not available on this machine")
    return device


def _generator(seed: int, purpose: str) -> torch.Generator:
    # Independent streams per purpose, so adding a draw in one place never shifts another.
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


def _split_validation(x: Tensor, y: Tensor, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    perm = torch.randperm(len(x), generator=_generator(seed, "validation"))
    n_val = max(1, int(round(VALIDATION_FRACTION * len(x))))
    val, tr = perm[:n_val], perm[n_val:]
    return x[tr], y[tr], x[val], y[val]


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    perm = torch.randperm(n, generator=generator)
    yield from perm.split(batch_size)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 512) -> float:
    """Fraction of ``x`` classified as ``y`` (model in eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = sum(int((model(xb.to(device)).argmax(1) == yb.to(device)).sum())
                  for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    model.train(was_training)
    return correct / max(1, len(x))


def _data_identity(data_config: Any) -> Any:
    return data_config.model_dump(mode="json") if hasattr(data_config, "model_dump") else data_config


class CheckpointError(BadInput):
    """A user's checkpoint file that cannot be this model's weights (exit 2, naming the file)."""

    section = "checkpoint"


#: How to write a checkpoint this tool reads (ending the errors about unreadable files).
_SAVE = "save it with torch.save(model.state_dict(), PATH)"


def _load_weights(path: str, model: nn.Module) -> None:
    """``model``'s weights from a user's checkpoint file (a state dict, or a dict holding one
    under ``state_dict``); anything else is a :class:`CheckpointError` saying what is wrong."""
    import pickle
    import zipfile
    from pathlib import Path

    file = Path(path).expanduser()
    try:
        # weights_only: a user's checkpoint file is untrusted input; full unpickling would run
        # code. torch's own refusal text suggests weights_only=False, which is not for here.
        with warnings.catch_warnings():
            # A raw (non-zip) pickle makes torch warn before it refuses; the refusal below is
            # the one line a user sees.
            warnings.simplefilter("ignore")
            state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():  # a class to build: the pickle names code
            raise CheckpointError(f"{path}: holds objects other than tensors (refused unread: "
                                  "loading them could run code); save model.state_dict()"
                                  ) from None
        raise CheckpointError(f"{path}: cannot read: not a torch checkpoint; {_SAVE}") from None
    # Reading an arbitrary file as a legacy pickle fails in many ways (a text file's bytes are
    # pickle opcodes: KeyError, IndexError, ...): every one means "not a torch checkpoint".
    except (OSError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, KeyError,
            IndexError, TypeError, AttributeError, UnicodeDecodeError, MemoryError) as exc:
        why = "empty" if file.is_file() and file.stat().st_size == 0 else (
            f"not a torch checkpoint ({type(exc).__name__})")
        raise CheckpointError(f"{path}: cannot read: {why}; {_SAVE}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict of "
                              f"tensors; {_SAVE}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if broken:  # a diverged training's weights: every prediction would be NaN
        raise CheckpointError(f"{path}: weight {broken[0]} holds NaN or inf ({len(broken)} "
                              "tensor(s) such); save the weights of a model that trained without "
                              "diverging")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).split("\n\t", 2)[:2]
        raise CheckpointError(f"{path}: not weights of this {type(model).__name__} (check the "
                              f"protocol's arch and widths): {' '.join(first).strip()[:300]}"
                              ) from None


def check_checkpoints(protocol: Any, *, image_shape: tuple[int, int, int], num_classes: int,
                      pixel_range: Any) -> None:
    """Load every checkpoint ``protocol`` names into the model it is for, before anything is
    trained: a wrong file is refused (:class:`CheckpointError`, naming the key and the file)
    where the input decides it, not after the classifier or the other autoencoders trained.

    ``validate`` calls it with the shape the dataset config fixes; ``run`` with the data's.
    """
    wanted: list[tuple[str, str, nn.Module]] = []
    if protocol.classifier.checkpoint:
        wanted.append(("classifier.checkpoint", protocol.classifier.checkpoint, build_classifier(
            protocol.classifier, image_shape=image_shape, num_classes=num_classes)))
    for name, config in protocol.autoencoders.items():
        if config.checkpoint and config.arch != "oracle":
            wanted.append((f"autoencoders.{name}.checkpoint", config.checkpoint,
                           build_autoencoder(config, image_shape=image_shape,
                                             pixel_range=pixel_range, manifold=None)))
    for key, path, model in wanted:
        try:
            _load_weights(path, model)
        except CheckpointError as exc:
            keyed = CheckpointError(f"{key}: {exc}")
            keyed.section = ""  # the key says where
            raise keyed from None


def _from_store(store: ArtifactStore | None, stage: str, role: str, config: Any, data_config: Any,
                data: DatasetSplits, seed: int, model: nn.Module, device: torch.device
                ) -> tuple[ArtifactKey | None, TrainResult | None]:
    """The checkpoint key of a training stage and, when the store has it, the loaded result.

    The key holds the data's fingerprint besides its config: other files under the same
    ``dataset.root`` are other data and never reuse this checkpoint.
    """
    if store is None:
        return None, None
    key = store.key(stage, {role: config_identity(config),
                            "dataset": _data_identity(data_config), "data": data.fingerprint,
                            "seed": seed, "version": TRAINING_VERSION})
    if not store.has(key):
        return key, None
    model.load_state_dict(store.load_tensors(key, "weights.pt"))
    model.to(device).eval()
    return key, TrainResult(model, store.load_json(key, "metrics.json"), key, loaded=True,
                            history=store.load_json(key, "history.json"))


def _save(store: ArtifactStore | None, key: ArtifactKey | None, model: nn.Module,
          metrics: dict[str, Any], history: list[dict[str, float]],
          epoch_states: list[dict[str, Tensor]] | None = None) -> None:
    if store is not None and key is not None:
        with store.writer(key) as w:
            w.save_tensors("weights.pt", model.state_dict())
            w.save_json("metrics.json", metrics)
            w.save_json("history.json", history)
            for epoch, state in enumerate(epoch_states or (), start=1):
                w.save_tensors(epoch_checkpoint_name(epoch), state)


def config_identity(config: Any) -> Any:
    """A model config as it enters store keys.

    Fields added after checkpoints were first keyed (a classifier's ``adversarial``, an
    autoencoder's ``grad_clip``) are left out while null, so those checkpoints keep their keys
    (a model trained without the option is the same model).
    """
    exclude = {f for f in _LATE_FIELDS if getattr(config, f, "absent") is None}
    return config.model_dump(mode="json", exclude=exclude or None)


_LATE_FIELDS = ("adversarial", "grad_clip")


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the weights after ``epoch`` (1-based) in a classifier's store entry."""
    return f"epoch_{epoch:04d}.pt"


def load_epoch_weights(result: TrainResult, store: ArtifactStore | None, epoch: int
                       ) -> dict[str, Tensor]:
    """The classifier's weights after ``epoch`` (1-based): from memory when it was just trained,
    else from the store entry of a run with ``epoch_checkpoints=True``."""
    if result.epoch_states:
        return result.epoch_states[epoch - 1]
    if store is None or result.key is None:
        raise ValueError("no per-epoch checkpoints: train with epoch_checkpoints=True and a store")
    return store.load_tensors(result.key, epoch_checkpoint_name(epoch))


def _adversarial_batch(model: nn.Module, xb: Tensor, yb: Tensor, adv: Any,
                       bounds: tuple[float, float], generator: torch.Generator) -> Tensor:
    from runners.attacks.factory import make_attack

    # Full-length PGD (no early stop): training on the strongest iterate is Madry's recipe.
    attack = make_attack("pgd", adv.norm, eps=adv.eps, step=adv.step_size, steps=adv.steps,
                         loss="ce", random_start=adv.random_start, early_stop=False,
                         refine=False, bounds=bounds)
    was = model.training
    model.eval()  # dropout would make the attacked function random
    try:
        result = attack(model, xb, yb, generator=generator)
    finally:
        model.train(was)
    # The smallest adversarial iterate where the attack succeeded, the last one otherwise: both
    # are valid training points inside the budget.
    return (xb + result.delta).detach()


# --------------------------------------------------------------------------- classifiers

def train_classifier(
    config: ClassifierConfig,
    data: DatasetSplits,
    *,
    data_config: Any,
    seed: int,
    store: ArtifactStore | None = None,
    device: torch.device | str = "cpu",
    progress: bool | str = False,
    epoch_checkpoints: bool = False,
) -> TrainResult:
    """Train (or load) the classifier a protocol describes.

    Parameters
    ----------
    config : ClassifierConfig
        The protocol's ``classifier`` section.
    data : DatasetSplits
        Train images (a validation tenth is held out for early stopping) and eval images (the
        reported test accuracy).
    data_config : pydantic model or JSON-able
        The dataset's identity, part of the checkpoint key.
    seed : int
        Replication seed: initialisation, dropout, batch order and validation split.
    store : ArtifactStore, optional
        Where checkpoints live; without one nothing is saved or loaded.
    epoch_checkpoints : bool
        Also keep the weights after every epoch (``epoch_NNNN.pt`` in the store entry; read them
        with :func:`load_epoch_weights`) for training-dynamics measurements. Such a run is its
        own stage (``train_classifier_epochs``), so a plain checkpoint is never taken for one.

    Notes
    -----
    With ``config.adversarial`` every batch is replaced by its PGD examples (Madry et al. 2018),
    generated with the model in eval mode; early stopping still watches clean accuracy.
    """
    device = torch.device(device)
    torch.manual_seed(derive_seed(seed, "initialisation"))
    model = build_classifier(config, image_shape=data.image_shape, num_classes=data.num_classes)
    if config.checkpoint:
        _load_weights(config.checkpoint, model)
        model.to(device).eval()
        return TrainResult(model, {"test_accuracy": accuracy(model, data.eval.x, data.eval.y),
                                   "source": config.checkpoint}, None, loaded=True)
    stage = "train_classifier_epochs" if epoch_checkpoints else "train_classifier"
    key, stored = _from_store(store, stage, "classifier", config, data_config, data, seed,
                              model, device)
    if stored is not None:
        return stored
    model.to(device)
    x_tr, y_tr, x_val, y_val = _split_validation(data.train.x, data.train.y, seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    order = _generator(seed, "batches")
    adv_noise = _generator(seed, "adversarial")
    best = (-1.0, copy.deepcopy(model.state_dict()), 0)
    history: list[dict[str, float]] = []
    epoch_states: list[dict[str, Tensor]] = []
    start = time.perf_counter()
    with progress_bar(f"classifier {config.arch} (seed {seed})", config.epochs, progress) as tick:
        for epoch in range(config.epochs):
            model.train()
            total = 0.0
            for idx in _batches(len(x_tr), config.batch_size, order):
                xb, yb = x_tr[idx].to(device), y_tr[idx].to(device)
                if config.adversarial is not None:
                    xb = _adversarial_batch(model, xb, yb, config.adversarial,
                                            data.pixel_range, adv_noise)
                loss = nn.functional.cross_entropy(model(xb), yb)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
            val_acc = accuracy(model, x_val, y_val)
            history.append({"epoch": epoch + 1, "train_loss": total / len(x_tr), "val_accuracy": val_acc})
            tick(loss=total / len(x_tr), val_acc=val_acc)
            if epoch_checkpoints:
                epoch_states.append(copy.deepcopy(model.state_dict()))
            if val_acc > best[0]:
                best = (val_acc, copy.deepcopy(model.state_dict()), epoch + 1)
            elif config.patience is not None and epoch + 1 - best[2] >= config.patience:
                break
    model.load_state_dict(best[1])
    model.eval()
    metrics = {
        "test_accuracy": accuracy(model, data.eval.x, data.eval.y),
        "val_accuracy": best[0],
        "best_epoch": best[2],
        "epochs_run": len(history),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": time.perf_counter() - start,
    }
    _save(store, key, model, metrics, history, epoch_states)
    return TrainResult(model, metrics, key, loaded=False, history=history,
                       epoch_states=epoch_states)


# --------------------------------------------------------------------------- autoencoders

class CollapsedAutoencoderError(RunFailure):
    """A trained autoencoder reconstructs no better than the mean image (see
    :data:`COLLAPSE_RECON_VS_MEAN`)."""


def check_not_collapsed(name: str, seed: int, config: AutoencoderConfig,
                        metrics: dict[str, Any], *,
                        limit: float = COLLAPSE_RECON_VS_MEAN) -> None:
    """Raise :class:`CollapsedAutoencoderError` when ``metrics['recon_vs_mean'] >= limit``.

    The message names the autoencoder, the seed, the numbers and the protocol keys that usually
    fix it. Metrics without ``recon_vs_mean`` (checkpoints stored before it existed) pass.
    """
    ratio = metrics.get("recon_vs_mean")
    if ratio is None or not math.isfinite(float(ratio)) or float(ratio) < limit:
        return
    where = f"autoencoders.{name}"
    hidden = list(config.hidden) if config.hidden else f"the {config.arch} default"
    raise CollapsedAutoencoderError(
        f"autoencoder {name!r} (seed {seed}) collapsed: its eval reconstruction MSE "
        f"{float(metrics.get('recon_mse', float('nan'))):.4g} is {float(ratio):.3g}x the MSE of "
        f"predicting the mean image (a run stops at {limit:g}x), so its tangent spaces would be "
        f"meaningless. Its weights stay in the store. Try a smaller {where}.lr (now "
        f"{config.lr:g}), narrower {where}.hidden (now {hidden}) or more "
        f"{where}.epochs (now {config.epochs}; best epoch {metrics.get('best_epoch', '?')})."
        + (f" Its training diverged (non-finite loss) in epoch {metrics['diverged_epoch']}: "
           f"set {where}.grad_clip (now {config.grad_clip}) or lower {where}.lr."
           if metrics.get("diverged_epoch") is not None else "")
    )


class TrainClassesError(BadInput):
    """An autoencoder's ``train_classes`` select no training image of the data."""


def _train_mask(split: Split, train_classes: tuple[int, ...], data_config: Any) -> Tensor:
    classes = getattr(data_config, "classes", None)
    wanted = [classes.index(c) for c in train_classes] if classes else list(train_classes)
    return torch.isin(split.y, torch.tensor(wanted))


def check_train_classes(autoencoders: dict[str, AutoencoderConfig], split: Split,
                        data_config: Any) -> None:
    """Refuse, before any training, an autoencoder whose ``train_classes`` select too few of
    the training images to fit it (for an image folder the class ids are only known once the
    folders are read: ``validate`` cannot see them; the run used to train on nothing and blame
    the learning rate).

    Raises :class:`TrainClassesError` naming the key, the classes the data has and how many
    images the selection holds.
    """
    for name, config in autoencoders.items():
        if not config.train_classes:
            continue
        count = int(_train_mask(split, config.train_classes, data_config).sum())
        if count < 2:
            present = sorted({int(c) for c in split.y.tolist()})
            raise TrainClassesError(
                f"autoencoders.{name}.train_classes {list(config.train_classes)} select "
                f"{count} training image(s): the training split has class ids {present}")


def _train_subset(split: Split, train_classes: tuple[int, ...] | None, data_config: Any) -> Split:
    if not train_classes:
        return split
    from runners.datasets.base import Split as SplitType

    mask = _train_mask(split, train_classes, data_config)
    return SplitType(x=split.x[mask], y=split.y[mask],
                     latent=None if split.latent is None else split.latent[mask],
                     manifold=split.manifold)


def _regulariser_loss(config: AutoencoderConfig, ae: Autoencoder, x: Tensor, z: Tensor,
                      generator: torch.Generator) -> Tensor:
    reg = config.regulariser
    if reg.kind == "isometric":
        return reg.weight * isometric_loss(ae.encode, ae.decode, x, z,
                                           interpolate=reg.interpolate, generator=generator)
    if reg.kind == "irvae":
        return reg.weight * relaxed_distortion(ae.decode, z, eta=reg.eta, generator=generator)
    return z.new_zeros(())


@torch.no_grad()
def _reconstruction_mse(ae: Autoencoder, x: Tensor, *, batch_size: int = 512) -> float:
    device = next(iter(ae.buffers())).device
    total = sum(float(((ae(xb.to(device)) - xb.to(device)) ** 2).sum()) for xb in x.split(batch_size))
    return total / max(1, x.numel())


def autoencoder_metrics(ae: Autoencoder, data: DatasetSplits) -> dict[str, Any]:
    """Reconstruction MSE (per pixel) on the eval split and the decoder's isometry diagnostics
    at the eval latents (skipped where the dense Jacobian would be too large)."""
    recon = _reconstruction_mse(ae, data.eval.x)
    x = data.eval.x
    # Against the MSE of predicting the mean image: near 1 means the autoencoder collapsed
    # (seen with the reproduction's 1024-channel MNIST conv AE at lr 1e-3), and every tangent
    # space measured from it would be meaningless.
    baseline = float(((x - x.mean(dim=0, keepdim=True)) ** 2).mean())
    metrics: dict[str, Any] = {"recon_mse": recon, "latent_dim": ae.latent_dim,
                               "recon_vs_mean": recon / baseline if baseline > 0 else float("nan")}
    if data.n * ae.latent_dim <= DIAGNOSTICS_MAX_NK:
        device = next(iter(ae.buffers())).device
        with torch.no_grad():
            z = ae.encode(data.eval.x[:DIAGNOSTICS_SAMPLES].to(device))
        metrics.update(isometry_diagnostics(ae.decode, z))
    return metrics


def train_autoencoder(
    config: AutoencoderConfig,
    data: DatasetSplits,
    *,
    data_config: Any,
    seed: int,
    store: ArtifactStore | None = None,
    device: torch.device | str = "cpu",
    progress: bool | str = False,
    name: str = "autoencoder",
) -> TrainResult:
    """Train (or load) one autoencoder: reconstruction MSE + its regulariser (none, isometric or
    IRVAE). Early stopping watches the same objective on the validation split, with fixed
    regulariser directions so the comparison across epochs is not noise."""
    device = torch.device(device)
    torch.manual_seed(derive_seed(seed, "initialisation"))
    ae = build_autoencoder(config, image_shape=data.image_shape, pixel_range=data.pixel_range,
                           manifold=data.manifold)
    if config.arch == "oracle":
        ae.to(device)
        return TrainResult(ae, autoencoder_metrics(ae, data), None, loaded=True)
    if config.checkpoint:
        _load_weights(config.checkpoint, ae)
        ae.to(device).eval()
        return TrainResult(ae, autoencoder_metrics(ae, data), None, loaded=True)
    key, stored = _from_store(store, "train_autoencoder", "autoencoder", config, data_config,
                              data, seed, ae, device)
    if stored is not None:
        return stored
    ae.to(device)
    train = _train_subset(data.train, config.train_classes, data_config)
    x_tr, _, x_val, _ = _split_validation(train.x, train.y, seed)
    optimiser = torch.optim.Adam(ae.parameters(), lr=config.lr)
    order, noise = _generator(seed, "batches"), _generator(seed, "regulariser")
    best = (math.inf, copy.deepcopy(ae.state_dict()), 0)
    history: list[dict[str, float]] = []
    diverged: int | None = None
    start = time.perf_counter()
    with progress_bar(f"autoencoder {name} (seed {seed})", config.epochs, progress) as tick:
        for epoch in range(config.epochs):
            ae.train()
            sums = [0.0, 0.0]
            for idx in _batches(len(x_tr), config.batch_size, order):
                xb = x_tr[idx].to(device)
                z = ae.encode(xb)
                recon = ((ae.decode(z) - xb) ** 2).mean()
                reg = _regulariser_loss(config, ae, xb, z, noise)
                loss = recon + reg
                if not torch.isfinite(loss):
                    # Adam cannot recover from a non-finite step (NaN weights stay NaN): stop
                    # here, keep the best epoch's weights and say so in the metrics.
                    diverged = epoch + 1
                    break
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(ae.parameters(), config.grad_clip)
                optimiser.step()
                sums[0] += float(recon.detach()) * len(idx)
                sums[1] += float(reg.detach()) * len(idx)
            if diverged is not None:
                break
            val = _validation_objective(config, ae, x_val.to(device), seed)
            history.append({"epoch": epoch + 1, "recon": sums[0] / len(x_tr),
                            "regulariser": sums[1] / len(x_tr), "val_objective": val})
            tick(recon=sums[0] / len(x_tr), reg=sums[1] / len(x_tr), val=val)
            if val < best[0]:
                best = (val, copy.deepcopy(ae.state_dict()), epoch + 1)
            elif config.patience is not None and epoch + 1 - best[2] >= config.patience:
                break
    ae.load_state_dict(best[1])
    ae.eval()
    metrics = autoencoder_metrics(ae, data)
    if diverged is not None:
        metrics["diverged_epoch"] = diverged
    metrics.update({"val_objective": best[0], "best_epoch": best[2], "epochs_run": len(history),
                    "regulariser": config.regulariser.kind,
                    "parameters": sum(p.numel() for p in ae.parameters()),
                    "train_seconds": time.perf_counter() - start})
    _save(store, key, ae, metrics, history)
    return TrainResult(ae, metrics, key, loaded=False, history=history)


def _validation_objective(config: AutoencoderConfig, ae: Autoencoder, x_val: Tensor,
                          seed: int) -> float:
    ae.eval()
    with torch.no_grad():
        z = ae.encode(x_val)
        recon = float(((ae.decode(z) - x_val) ** 2).mean())
    if config.regulariser.kind == "none":
        return recon
    # The regulariser needs derivatives (torch.func), so it runs outside no_grad.
    fixed = _generator(seed, "validation-regulariser")
    return recon + float(_regulariser_loss(config, ae, x_val, z, fixed).detach())
