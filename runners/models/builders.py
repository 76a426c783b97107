"""One builder per architecture name, the targets of the architecture registries of
:mod:`dimple_stats.protocol.vocabulary` (``CLASSIFIER_ARCHS``, ``AUTOENCODER_ARCHS``).

A classifier builder is ``(config, image_shape, num_classes) -> nn.Module``; an autoencoder
builder ``(config, image_shape, pixel_range, manifold) -> Autoencoder``.
"""

from __future__ import annotations

from typing import Any

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
)

Shape = tuple[int, int, int]


def linear_classifier(config: Any, image_shape: Shape, num_classes: int) -> nn.Module:
    return LinearClassifier(image_shape=image_shape, num_classes=num_classes)


def mlp_classifier(config: Any, image_shape: Shape, num_classes: int) -> nn.Module:
    return MLPClassifier(image_shape=image_shape, num_classes=num_classes, hidden=config.hidden,
                         dropout=config.dropout)


def cnn_small_classifier(config: Any, image_shape: Shape, num_classes: int) -> nn.Module:
    return SmallCNN(image_shape=image_shape, num_classes=num_classes, dropout=config.dropout)


def vgg_cifar_classifier(config: Any, image_shape: Shape, num_classes: int) -> nn.Module:
    return VGGCifar(image_shape=image_shape, num_classes=num_classes)


def resnet18_cifar_classifier(config: Any, image_shape: Shape, num_classes: int) -> nn.Module:
    return resnet18_cifar(image_shape=image_shape, num_classes=num_classes)


_DEFAULT_HIDDEN = {"mlp": (256, 128), "conv": (32, 64, 128), "segnet": (64, 128, 256, 512, 512)}


def _common(config: Any, image_shape: Shape, pixel_range: tuple[float, float]) -> dict[str, Any]:
    hidden = tuple(config.hidden) if config.hidden else _DEFAULT_HIDDEN[config.arch]
    return dict(image_shape=image_shape, hidden=hidden, pixel_range=pixel_range)


def mlp_autoencoder(config: Any, image_shape: Shape, pixel_range: tuple[float, float],
                    manifold: Any = None) -> Autoencoder:
    return MLPAutoencoder(latent_dim=int(config.latent_dim or 0),
                          **_common(config, image_shape, pixel_range))


def conv_autoencoder(config: Any, image_shape: Shape, pixel_range: tuple[float, float],
                     manifold: Any = None) -> Autoencoder:
    return ConvAutoencoder(latent_dim=int(config.latent_dim or 0),
                           **_common(config, image_shape, pixel_range))


def segnet_autoencoder(config: Any, image_shape: Shape, pixel_range: tuple[float, float],
                       manifold: Any = None) -> Autoencoder:
    return SegNetAutoencoder(latent_dim=config.latent_dim,
                             **_common(config, image_shape, pixel_range))


def oracle_autoencoder(config: Any, image_shape: Shape, pixel_range: tuple[float, float],
                       manifold: Any = None) -> Autoencoder:
    if manifold is None:
        raise ValueError("arch 'oracle' needs a dataset with a known manifold "
                         "(synthetic or linear_subspace)")
    return OracleAutoencoder(manifold)
