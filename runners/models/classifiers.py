"""Classifiers under attack: linear, MLP, small CNN, the reproduction's VGG-style CIFAR net,
a CIFAR ResNet-18, and any torchvision model by name."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

__all__ = [
    "LinearClassifier",
    "MLPClassifier",
    "SmallCNN",
    "VGGCifar",
    "resnet18_cifar",
    "torchvision_classifier",
    "VGG_CIFAR_LAYERS",
    "count_parameters",
    "freeze",
]


class LinearClassifier(nn.Module):
    """Logits = W x + b: the boundary distance is known in closed form (tests use it)."""

    def __init__(self, *, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(math.prod(image_shape), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


class MLPClassifier(nn.Module):
    """The reproduction's MNIST net: 784-256-256-10 with ReLU and dropout 0.2 by default."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = math.prod(image_shape)
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU(), nn.Dropout(dropout)]
            prev = width
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv blocks and a small head; works from 8x8 digits to 32x32 CIFAR."""

    def __init__(
        self, *, image_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.2
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d((min(4, h // 2), min(4, w // 2))),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * min(4, h // 2) * min(4, w // 2), 128), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# docs/references.md#reproduction-models: (128, 128, M, 256, 256, M, 512, 512, M, 1024, M), BatchNorm, 93.40%.
VGG_CIFAR_LAYERS: tuple[int | str, ...] = (128, 128, "M", 256, 256, "M", 512, 512, "M", 1024, "M")


class VGGCifar(nn.Module):
    """The CIFAR-10 classifier of the reproduction. BatchNorm is fine here: attacks differentiate
    the classifier with ordinary autograd in eval mode, never inside a torch.func transform."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        num_classes: int,
        layers: Sequence[int | str] = VGG_CIFAR_LAYERS,
    ) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        prev = image_shape[0]
        for item in layers:
            if item == "M":
                # ceil_mode: on images smaller than 16x16 the fourth pool would reach 0x0.
                mods.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                mods += [nn.Conv2d(prev, int(item), 3, padding=1), nn.BatchNorm2d(int(item)),
                         nn.ReLU(inplace=True)]
                prev = int(item)
        self.features = nn.Sequential(*mods, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def resnet18_cifar(*, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with the usual CIFAR stem: a 3x3 stride-1 first conv, no max-pool
    (the ImageNet stem would shrink a 32x32 image to 8x8 before the first block)."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(image_shape[0], 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def torchvision_classifier(name: str, *, num_classes: int) -> nn.Module:
    """``torchvision:<name>`` with no downloaded weights; pretrained weights come from a local
    checkpoint file (the protocol's ``classifier.checkpoint``)."""
    import torchvision

    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except ValueError:
        from dimple_stats.suggest import did_you_mean

        names = torchvision.models.list_models()
        raise ValueError(
            f"unknown torchvision model {name!r}{did_you_mean(name, names)}; "
            f"see torchvision.models.list_models()"
        ) from None


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, for logs and manifests."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: attacks need input gradients only."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
