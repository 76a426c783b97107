"""Autoencoders whose decoders define the data manifold: MLP, convolutional and SegNet-style.

All of them map images (B, C, H, W) to flat latents (B, k) and back, so the geometry code sees one
interface. None uses BatchNorm: the isometric and IRVAE regularisers and the tangent-space code
differentiate the decoder with torch.func (jvp/vjp/vmap), and batch statistics would both couple
the samples of a batch and mutate running buffers inside a transform. ELU activations keep the
decoder's Jacobian continuous (a ReLU decoder has a piecewise-constant one).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from runners.datasets.base import KnownManifold

__all__ = [
    "Autoencoder",
    "MLPAutoencoder",
    "ConvAutoencoder",
    "SegNetAutoencoder",
    "OracleAutoencoder",
    "PixelBox",
]


class PixelBox(nn.Module):
    """Squash to the pixel box [lo, hi] (per channel when given per channel) with a sigmoid."""

    def __init__(self, lo: Tensor | float, hi: Tensor | float, channels: int) -> None:
        super().__init__()
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float32).expand(channels)
                             .reshape(1, channels, 1, 1).clone())
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float32).expand(channels)
                             .reshape(1, channels, 1, 1).clone())

    def forward(self, a: Tensor) -> Tensor:
        return self.lo + (self.hi - self.lo) * torch.sigmoid(a)


class Autoencoder(nn.Module, ABC):
    """Base class: ``encode`` images to (B, k), ``decode`` (B, k) to images, ``forward`` both."""

    latent_dim: int
    image_shape: tuple[int, int, int]

    @abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) to flat latents (B, k)."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Flat latents (B, k) to images (B, C, H, W) inside the pixel box."""

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class MLPAutoencoder(Autoencoder):
    """Fully connected encoder n -> hidden... -> k and mirrored decoder k -> ... -> n."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        hidden: Sequence[int] = (256, 128),
        pixel_range: tuple[Tensor | float, Tensor | float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)  # type: ignore[assignment]
        self.latent_dim = latent_dim
        n = math.prod(image_shape)
        self.encoder = _mlp([n, *hidden, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), n])
        self.box = PixelBox(*pixel_range, channels=image_shape[0])

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        return self.box(self.decoder(z).reshape(-1, *self.image_shape))


def _spatial_sizes(h: int, w: int, depth: int) -> list[tuple[int, int]]:
    sizes = [(h, w)]
    for _ in range(depth):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


class ConvAutoencoder(Autoencoder):
    """Strided-conv encoder (one halving per width in ``hidden``), linear bottleneck to k, and a
    decoder of bilinear upsampling + 3x3 convs that returns exactly the input size for any H, W."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        hidden: Sequence[int] = (32, 64, 128),
        pixel_range: tuple[Tensor | float, Tensor | float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = (c, h, w)
        self.latent_dim = latent_dim
        self.sizes = _spatial_sizes(h, w, len(hidden))
        enc: list[nn.Module] = []
        prev = c
        for width in hidden:
            enc += [nn.Conv2d(prev, width, 3, stride=2, padding=1), nn.ELU()]
            prev = width
        self.encoder_conv = nn.Sequential(*enc)
        bh, bw = self.sizes[-1]
        self.bottleneck = (hidden[-1], bh, bw)
        self.encoder_fc = nn.Linear(hidden[-1] * bh * bw, latent_dim)
        self.decoder_fc = nn.Linear(latent_dim, hidden[-1] * bh * bw)
        dec: list[nn.Module] = []
        widths = list(reversed(hidden))
        for i, size in enumerate(reversed(self.sizes[:-1])):
            out = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            dec += [nn.Upsample(size=size, mode="bilinear", align_corners=False),
                    nn.Conv2d(widths[i], out, 3, padding=1), nn.ELU()]
        dec += [nn.Conv2d(widths[-1], c, 3, padding=1)]
        self.decoder_conv = nn.Sequential(*dec)
        self.box = PixelBox(*pixel_range, channels=c)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder_fc(self.encoder_conv(x).flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        a = nn.functional.elu(self.decoder_fc(z)).reshape(-1, *self.bottleneck)
        return self.box(self.decoder_conv(a))


class SegNetAutoencoder(Autoencoder):
    """VGG16-style encoder (blocks of two 3x3 convs, 2x2 pooling) with a spatial latent
    (hidden[-1] x H/2^d x W/2^d: 512 x 7 x 7 = 25,088 at 224 px, the reproduction's ImageNet
    autoencoder) and a mirrored upsampling decoder with a sigmoid output."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int | None = None,
        hidden: Sequence[int] = (64, 128, 256, 512, 512),
        pixel_range: tuple[Tensor | float, Tensor | float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = (c, h, w)
        self.sizes = _spatial_sizes(h, w, len(hidden))
        bh, bw = self.sizes[-1]
        self.latent_shape = (hidden[-1], bh, bw)
        self.latent_dim = math.prod(self.latent_shape)
        if latent_dim is not None and latent_dim != self.latent_dim:
            raise ValueError(
                f"segnet's latent is {hidden[-1]}x{bh}x{bw} = {self.latent_dim} for images "
                f"{h}x{w}; latent_dim {latent_dim} does not match (set it to {self.latent_dim})"
            )
        enc: list[nn.Module] = []
        prev = c
        for i, width in enumerate(hidden):
            last = i == len(hidden) - 1
            enc += [nn.Conv2d(prev, width, 3, padding=1), nn.ELU(),
                    nn.Conv2d(width, width, 3, padding=1)]
            enc += [nn.AvgPool2d(2, ceil_mode=True)] if last else [
                nn.ELU(), nn.AvgPool2d(2, ceil_mode=True)]  # the latent itself stays linear
            prev = width
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        widths = list(reversed(hidden))
        for i, size in enumerate(reversed(self.sizes[:-1])):
            out = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            dec += [nn.Upsample(size=size, mode="bilinear", align_corners=False),
                    nn.Conv2d(widths[i], out, 3, padding=1), nn.ELU(),
                    nn.Conv2d(out, out, 3, padding=1), nn.ELU()]
        dec += [nn.Conv2d(widths[-1], c, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.box = PixelBox(*pixel_range, channels=c)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x).flatten(1)

    def decode(self, z: Tensor) -> Tensor:
        return self.box(self.decoder(z.reshape(-1, *self.latent_shape)))


class OracleAutoencoder(Autoencoder):
    """The true generator of a synthetic dataset as an autoencoder: ``decode`` is the known decoder,
    ``encode`` inverts it by Gauss-Newton with the closed-form Jacobian (exact in one step on a
    linear manifold). It is the ground truth a trained autoencoder is compared against."""

    def __init__(self, manifold: KnownManifold, *, iterations: int = 30) -> None:
        super().__init__()
        self.manifold = manifold
        self.image_shape = tuple(manifold.image_shape)  # type: ignore[assignment]
        self.latent_dim = manifold.latent_dim
        self.decoder = manifold.as_module()
        self.iterations = iterations

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        target = x.flatten(1).to(torch.float64)
        z = torch.zeros(x.shape[0], self.latent_dim, dtype=torch.float64, device=x.device)
        for _ in range(self.iterations):
            residual = target - self.manifold.decode(z).flatten(1)
            jac = self.manifold.jacobian(z)
            step = torch.linalg.lstsq(jac, residual.unsqueeze(-1)).solution.squeeze(-1)
            z = z + step
            if float(step.abs().max()) < 1e-10:
                break
        return z.to(x.dtype)
