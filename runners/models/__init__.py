"""Model construction from protocol configs: classifiers and autoencoders, by architecture name
through the registries of :mod:`dimple_stats.protocol.vocabulary` (builders in
:mod:`runners.models.builders`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from dimple_stats.protocol.vocabulary import AUTOENCODER_ARCHS, CLASSIFIER_ARCHS
from runners.models.autoencoders import Autoencoder
from runners.models.classifiers import torchvision_classifier

if TYPE_CHECKING:
    from dimple_stats.protocol.schema import AutoencoderConfig, ClassifierConfig
    from runners.datasets.base import KnownManifold

__all__ = ["Autoencoder", "build_autoencoder", "build_classifier"]


def build_classifier(
    config: ClassifierConfig, *, image_shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """An untrained classifier of ``config.arch`` for images of ``image_shape``."""
    if config.arch.startswith("torchvision:"):
        return torchvision_classifier(config.arch.split(":", 1)[1], num_classes=num_classes)
    return CLASSIFIER_ARCHS.load(config.arch)(config, image_shape, num_classes)


def build_autoencoder(
    config: AutoencoderConfig,
    *,
    image_shape: tuple[int, int, int],
    pixel_range: tuple[float, float],
    manifold: KnownManifold | None = None,
) -> Autoencoder:
    """An untrained autoencoder of ``config.arch`` (or the oracle for a known manifold)."""
    return AUTOENCODER_ARCHS.load(config.arch)(config, image_shape, pixel_range, manifold)

