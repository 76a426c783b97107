"""Model construction from protocol configs: classifiers and autoencoders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from runners.models.autoencoders import (
    Autoencoder,
    ConvAutoencoder,
    MLPAutoencoder,
    OracleAutoencoder,
    SegNetAutoencoder,
)
from runners.models.classifiers import (
    LinearClassifier,
    MLPClassifier,
    SmallCNN,
    VGGCifar,
    resnet18_cifar,
    torchvision_classifier,
)

if TYPE_CHECKING:
    from dimple_stats.protocol.schema import AutoencoderConfig, ClassifierConfig
    from runners.datasets.base import KnownManifold

__all__ = ["Autoencoder", "build_autoencoder", "build_classifier"]


def build_classifier(
    config: ClassifierConfig, *, image_shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """An untrained classifier of ``config.arch`` for images of ``image_shape``."""
    arch = config.arch
    if arch == "linear":
        return LinearClassifier(image_shape=image_shape, num_classes=num_classes)
    if arch == "mlp":
        return MLPClassifier(image_shape=image_shape, num_classes=num_classes,
                             hidden=config.hidden, dropout=config.dropout)
    if arch == "cnn_small":
        return SmallCNN(image_shape=image_shape, num_classes=num_classes, dropout=config.dropout)
    if arch == "vgg_cifar":
        return VGGCifar(image_shape=image_shape, num_classes=num_classes)
    if arch == "resnet18_cifar":
        return resnet18_cifar(image_shape=image_shape, num_classes=num_classes)
    if arch.startswith("torchvision:"):
        return torchvision_classifier(arch.split(":", 1)[1], num_classes=num_classes)
    raise ValueError(f"unknown classifier arch {arch!r}")  # the schema rejects it first


_DEFAULT_HIDDEN = {"mlp": (256, 128), "conv": (32, 64, 128), "segnet": (64, 128, 256, 512, 512)}


def build_autoencoder(
    config: AutoencoderConfig,
    *,
    image_shape: tuple[int, int, int],
    pixel_range: tuple[float, float],
    manifold: KnownManifold | None = None,
) -> Autoencoder:
    """An untrained autoencoder of ``config.arch`` (or the oracle for a known manifold)."""
    if config.arch == "oracle":
        if manifold is None:
            raise ValueError("arch 'oracle' needs a dataset with a known manifold "
                             "(synthetic or linear_subspace)")
        return OracleAutoencoder(manifold)
    hidden = tuple(config.hidden) if config.hidden else _DEFAULT_HIDDEN[config.arch]
    common = dict(image_shape=image_shape, hidden=hidden, pixel_range=pixel_range)
    if config.arch == "mlp":
        return MLPAutoencoder(latent_dim=int(config.latent_dim or 0), **common)  # type: ignore[arg-type]
    if config.arch == "conv":
        return ConvAutoencoder(latent_dim=int(config.latent_dim or 0), **common)  # type: ignore[arg-type]
    if config.arch == "segnet":
        return SegNetAutoencoder(latent_dim=config.latent_dim, **common)  # type: ignore[arg-type]
    raise ValueError(f"unknown autoencoder arch {config.arch!r}")  # the schema rejects it first
