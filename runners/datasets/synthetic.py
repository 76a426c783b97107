"""Datasets on a KNOWN manifold: ground truth for every geometric quantity.

``synthetic``: images from a fixed random smooth decoder ``x = mid + half * tanh(W2 tanh(W1 z + b1) + b2)``
of a k-dim latent, so the true tangent space at every sample is the column space of a closed-form
Jacobian. ``linear_subspace``: images on a k-dim affine subspace ``x = c + U z`` (Melamed et al. 2023),
whose tangent space is ``U`` everywhere.

The manifold is fixed by ``manifold_seed`` and is the same for every replication seed; the
replication seed only draws which latents are sampled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from dimple_stats.protocol.schema import LinearSubspaceDataset, SyntheticDataset
from runners.datasets._select import ClassPlan, plan_classes, rng_for
from runners.datasets.base import DatasetConfigError, DatasetSplits, KnownManifold, Split

__all__ = [
    "AffineDecoder",
    "LinearManifold",
    "Manifold",
    "SmoothDecoder",
    "load_linear_subspace",
    "load_synthetic",
]

# Latents are drawn in blocks of this size whatever the requested count, so the first m accepted
# samples of a seed are the same for any train_samples >= m.
_BLOCK = 1024
_Sampler = Callable[[np.random.Generator, int], np.ndarray]
_MAX_BLOCKS = 10_000


def _smooth_fields(
    rng: np.random.Generator, count: int, image_shape: tuple[int, int, int]
) -> np.ndarray:
    """``count`` Gaussian-blurred white-noise images, each scaled to unit RMS: ``(count, n)``."""
    c, h, w = image_shape
    # Blur scaled with the image so a 28x28 field looks like an 8x8 one upsampled, not like noise.
    sigma = max(1.0, min(h, w) / 8.0)
    noise = rng.standard_normal((count, c, h, w))
    fields = gaussian_filter(noise, sigma=(0, 0, sigma, sigma), mode="reflect")
    fields = fields.reshape(count, c * h * w)
    return fields / np.sqrt(np.mean(fields**2, axis=1, keepdims=True))


def _range_mid_half(pixel_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(pixel_range[0]), float(pixel_range[1])
    return (lo + hi) / 2.0, (hi - lo) / 2.0


def _decode(
    z: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    mid: float,
    half: float,
    image_shape: tuple[int, int, int],
) -> torch.Tensor:
    # The single definition of the generator, shared by Manifold.decode and SmoothDecoder.forward
    # so the "oracle decoder" is the data-generating function, not a copy of it.
    hidden = torch.tanh(z @ w1.T + b1)
    x = mid + half * torch.tanh(hidden @ w2.T + b2)
    return x.reshape(z.shape[0], *image_shape)


class SmoothDecoder(torch.nn.Module):
    """The synthetic generator as a module ``z (B, k) -> x (B, C, H, W)`` (the oracle decoder).

    Weights are buffers, not parameters: the oracle is the ground truth and must not be trained,
    but it still moves with ``.to(device)`` / ``.double()`` and is saved in ``state_dict()``.
    """

    def __init__(self, manifold: Manifold, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.image_shape = manifold.image_shape
        self.latent_dim = manifold.latent_dim
        self.mid, self.half = manifold.mid, manifold.half
        for name in ("w1", "b1", "w2", "b2"):
            self.register_buffer(name, getattr(manifold, name).to(dtype).clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _decode(
            z, self.w1, self.b1, self.w2, self.b2, self.mid, self.half, self.image_shape
        )


class Manifold(KnownManifold):
    """A fixed random smooth decoder: 2-layer tanh MLP ``z (k) -> h (hidden) -> x (n)``.

    ``x = mid + half * tanh(W2 tanh(W1 z + b1) + b2)`` lies strictly inside the pixel range
    ``[mid - half, mid + half]``. The columns of ``W2`` (and ``b2``) are Gaussian-blurred random
    fields over ``H x W``, so every image on the manifold is spatially smooth.

    Parameters
    ----------
    latent_dim : int
        Manifold dimension ``k`` (at most ``hidden`` and ``n``, so the Jacobian has rank ``k``).
    image_shape : tuple of int
        ``(C, H, W)``.
    hidden : int
        Hidden width.
    pixel_range : tuple of float
        Interval the images lie in.
    seed : int
        The manifold seed: equal seeds give identical decoders.

    Examples
    --------
    >>> m = Manifold(latent_dim=2, image_shape=(1, 4, 4), hidden=8)
    >>> z = torch.zeros(3, 2, dtype=torch.float64)
    >>> m.decode(z).shape, m.jacobian(z).shape
    (torch.Size([3, 1, 4, 4]), torch.Size([3, 16, 2]))
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        hidden: int = 64,
        pixel_range: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ) -> None:
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(int(s) for s in image_shape)  # type: ignore[assignment]
        self.hidden = int(hidden)
        if self.latent_dim > self.n:
            raise DatasetConfigError(
                f"synthetic: latent_dim={latent_dim} exceeds the image dimension n={self.n}"
            )
        if self.hidden < self.latent_dim:
            raise DatasetConfigError(
                f"synthetic: hidden={hidden} < latent_dim={latent_dim} would give a Jacobian of "
                f"rank < k (no {latent_dim}-dim tangent space); raise hidden"
            )
        self.mid, self.half = _range_mid_half(pixel_range)
        rng = rng_for(seed, "synthetic-manifold")
        k = self.latent_dim
        # z ~ N(0, I) and W1 ~ N(0, 1/k): each hidden pre-activation has unit variance, so the
        # hidden tanh is clearly nonlinear (a curved manifold) but rarely saturated.
        w1 = rng.standard_normal((self.hidden, k)) / np.sqrt(k)
        b1 = 0.1 * rng.standard_normal(self.hidden)
        # With E[tanh(N(0,1))^2] ~ 0.39 and unit-RMS fields, the output pre-activation has std
        # ~ 1.2 * 0.62 ~ 0.75: the output tanh keeps the pixels off the ends of the range, where
        # its derivative (and hence the Jacobian's rank) would collapse.
        w2 = 1.2 * _smooth_fields(rng, self.hidden, self.image_shape).T / np.sqrt(self.hidden)
        b2 = 0.3 * _smooth_fields(rng, 1, self.image_shape)[0]
        self.w1, self.b1, self.w2, self.b2 = (
            torch.from_numpy(a) for a in (w1, b1, w2, b2)
        )

    @classmethod
    def from_config(cls, config: SyntheticDataset) -> Manifold:
        """The manifold of a ``synthetic`` dataset config."""
        return cls(
            latent_dim=config.latent_dim,
            image_shape=config.image_shape,
            hidden=config.hidden,
            pixel_range=config.pixel_range,
            seed=config.manifold_seed,
        )

    def _params(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        return tuple(p.to(dtype) for p in (self.w1, self.b1, self.w2, self.b2))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` of latents ``(B, k)``, computed in ``z.dtype``."""
        w1, b1, w2, b2 = self._params(z.dtype)
        return _decode(z, w1, b1, w2, b2, self.mid, self.half, self.image_shape)

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Closed-form ``d vec(x)/dz`` ``(B, n, k)`` by the chain rule (no autograd: ground truth).

        ``J = half * diag(1 - tanh(a)^2) W2 diag(1 - h^2) W1`` with ``h = tanh(W1 z + b1)``,
        ``a = W2 h + b2``.
        """
        w1, b1, w2, b2 = self._params(z.dtype)
        hidden = torch.tanh(z @ w1.T + b1)  # (B, hidden)
        out = torch.tanh(hidden @ w2.T + b2)  # (B, n)
        inner = (1.0 - hidden**2).unsqueeze(-1) * w1  # (B, hidden, k)
        return self.half * (1.0 - out**2).unsqueeze(-1) * torch.matmul(w2, inner)

    def as_module(self, dtype: torch.dtype = torch.float32) -> SmoothDecoder:
        """The generator as a ``torch.nn.Module`` (the oracle decoder), weights in ``dtype``."""
        return SmoothDecoder(self, dtype=dtype)


class AffineDecoder(torch.nn.Module):
    """``z (B, k) -> c + U z`` reshaped to ``(B, C, H, W)``; weights are buffers (ground truth)."""

    def __init__(self, manifold: LinearManifold, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.image_shape = manifold.image_shape
        self.latent_dim = manifold.latent_dim
        self.register_buffer("basis", manifold.basis.to(dtype).clone())
        self.register_buffer("offset", manifold.offset.to(dtype).clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.offset + z @ self.basis.T).reshape(z.shape[0], *self.image_shape)


class LinearManifold(KnownManifold):
    """A k-dim affine subspace ``x = c + U z`` with orthonormal ``U``, z in a box inside the range.

    Parameters
    ----------
    latent_dim : int
        Subspace dimension ``k <= n``.
    image_shape : tuple of int
        ``(C, H, W)``.
    pixel_range : tuple of float
        Every ``c + U z`` with ``z`` in ``[-box, box]^k`` lies in this interval.
    seed : int
        The manifold seed.

    Attributes
    ----------
    basis : torch.Tensor
        ``U`` ``(n, k)`` float64, orthonormal columns.
    offset : torch.Tensor
        ``c`` ``(n,)`` float64, a smooth image within half the range of the centre.
    box : float
        Half-width of the latent box.
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        pixel_range: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ) -> None:
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(int(s) for s in image_shape)  # type: ignore[assignment]
        if self.latent_dim > self.n:
            raise DatasetConfigError(
                f"linear_subspace: latent_dim={latent_dim} exceeds the image dimension n={self.n}"
            )
        mid, half = _range_mid_half(pixel_range)
        rng = rng_for(seed, "linear-subspace-manifold")
        basis, _ = np.linalg.qr(rng.standard_normal((self.n, self.latent_dim)))
        offset = mid + 0.5 * half * np.tanh(_smooth_fields(rng, 1, self.image_shape)[0])
        # |(U z)_i| <= box * sum_j |U_ij| for z in the box, so this box keeps every pixel inside
        # the range WITHOUT clipping (clipping would move points off the subspace). The 0.999
        # leaves room for rounding to float32.
        slack = half - np.abs(offset - mid)
        self.box = float(0.999 * np.min(slack / np.abs(basis).sum(axis=1)))
        self.basis = torch.from_numpy(np.ascontiguousarray(basis))
        self.offset = torch.from_numpy(offset)

    @classmethod
    def from_config(cls, config: LinearSubspaceDataset) -> LinearManifold:
        """The subspace of a ``linear_subspace`` dataset config."""
        return cls(
            latent_dim=config.latent_dim,
            image_shape=config.image_shape,
            pixel_range=config.pixel_range,
            seed=config.manifold_seed,
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``c + U z`` reshaped to ``(B, C, H, W)``, computed in ``z.dtype``."""
        x = self.offset.to(z.dtype) + z @ self.basis.to(z.dtype).T
        return x.reshape(z.shape[0], *self.image_shape)

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """``U`` for every sample: ``(B, n, k)``."""
        return self.basis.to(z.dtype).expand(z.shape[0], -1, -1).clone()

    def tangent_basis(self, z: torch.Tensor) -> torch.Tensor:
        """``U`` itself (already orthonormal; QR would only flip column signs)."""
        z = z.unsqueeze(0) if z.dim() == 1 else z
        return self.jacobian(z)

    def as_module(self, dtype: torch.dtype = torch.float32) -> AffineDecoder:
        """The subspace map as a ``torch.nn.Module``, weights in ``dtype``."""
        return AffineDecoder(self, dtype=dtype)


def _label_map(manifold_seed: int, latent_dim: int, num_classes: int) -> np.ndarray:
    # Its own stream: the labelling is part of the fixed "world", independent of the sample seed.
    return rng_for(manifold_seed, "synthetic-labels").standard_normal((latent_dim, num_classes))


def _draw_latents(
    name: str,
    sample: _Sampler,
    label_map: np.ndarray,
    allowed: tuple[int, ...],
    size: int,
    rng: np.random.Generator,
    split: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Rejection-sample ``size`` latents whose label is in ``allowed`` (block-wise, vectorised)."""
    kept_z: list[np.ndarray] = []
    kept_y: list[np.ndarray] = []
    have = 0
    for _ in range(_MAX_BLOCKS):
        z = sample(rng, _BLOCK)
        y = np.argmax(z @ label_map, axis=1)
        keep = np.isin(y, allowed)
        kept_z.append(z[keep])
        kept_y.append(y[keep])
        have += int(keep.sum())
        if have >= size:
            return np.concatenate(kept_z)[:size], np.concatenate(kept_y)[:size]
    raise DatasetConfigError(
        f"{name}: found only {have} {split} samples of classes {list(allowed)} in "
        f"{_MAX_BLOCKS * _BLOCK} draws; those classes are (nearly) empty for this manifold_seed"
    )


def _generated_splits(
    config: SyntheticDataset | LinearSubspaceDataset,
    manifold: KnownManifold,
    sample: _Sampler,
    seed: int,
) -> DatasetSplits:
    name = config.name
    if config.train_samples is None:
        raise DatasetConfigError(
            f"{name}: train_samples must be a number (generated datasets have no 'all available')"
        )
    plan: ClassPlan = plan_classes(
        name, [str(c) for c in range(config.num_classes)], config.classes, config.eval_classes
    )
    label_map = _label_map(config.manifold_seed, config.latent_dim, config.num_classes)

    def make(split: str, size: int, allowed: tuple[int, ...]) -> Split:
        z, y = _draw_latents(name, sample, label_map, allowed, size, rng_for(seed, split), split)
        # Store the float32 latent and decode exactly THAT latent (in float64): x is then the
        # float32 rounding of a point exactly on the manifold, and decode(latent) reproduces it.
        latent = torch.from_numpy(z).to(torch.float32)
        x = manifold.decode(latent.to(torch.float64)).to(torch.float32)
        labels = torch.from_numpy(plan.remap(y))
        # Fresh images per seed: ids that no other seed can share.
        index = torch.arange(len(x), dtype=torch.int64) + (int(seed) << 32)
        return Split(x=x, y=labels, latent=latent, manifold=manifold, index=index)

    return DatasetSplits(
        name=name,
        train=make("train", config.train_samples, plan.classes),
        eval=make("eval", config.eval_samples, plan.eval_classes),
        image_shape=tuple(config.image_shape),  # type: ignore[arg-type]
        num_classes=len(plan.classes),
        class_names=plan.names,
        pixel_range=tuple(float(v) for v in config.pixel_range),  # type: ignore[arg-type]
        manifold=manifold,
    )


def load_synthetic(config: SyntheticDataset, seed: int = 0) -> DatasetSplits:
    """Samples of the fixed smooth random manifold of ``config``.

    Latents ``z ~ N(0, I_k)``; labels ``argmax(z A)`` for a fixed random ``A`` (k x num_classes).

    Parameters
    ----------
    config : SyntheticDataset
    seed : int
        Replication seed: draws the train and eval latents (the manifold stays fixed).

    Returns
    -------
    DatasetSplits
        With ``latent`` and ``manifold`` set on both splits.
    """
    manifold = Manifold.from_config(config)

    def sample(rng: np.random.Generator, count: int) -> np.ndarray:
        # N(0, I) rather than a scaled latent: the weight scales (see Manifold) already keep both
        # tanh layers out of saturation for unit-variance z.
        return rng.standard_normal((count, manifold.latent_dim))

    return _generated_splits(config, manifold, sample, seed)


def load_linear_subspace(config: LinearSubspaceDataset, seed: int = 0) -> DatasetSplits:
    """Samples of the fixed affine subspace of ``config``: ``x = c + U z``, z uniform in a box.

    Parameters
    ----------
    config : LinearSubspaceDataset
    seed : int
        Replication seed.

    Returns
    -------
    DatasetSplits
        With ``latent`` and ``manifold`` set; ``tangent_basis`` is ``U`` for every sample.
    """
    manifold = LinearManifold.from_config(config)

    def sample(rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.uniform(-manifold.box, manifold.box, size=(count, manifold.latent_dim))

    return _generated_splits(config, manifold, sample, seed)
