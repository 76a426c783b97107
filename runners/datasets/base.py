"""Containers and errors shared by every dataset loader.

A loader turns a validated dataset config plus a replication seed into a :class:`DatasetSplits`:
two :class:`Split` s of float32 images already in the protocol's pixel range, labels remapped to
``0..C-1`` and, for the synthetic datasets, the true manifold the images were generated on.
"""

from __future__ import annotations

import abc
import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from dimple_stats.errors import BadInput

__all__ = [
    "DatasetConfigError",
    "DatasetNotFoundError",
    "DatasetSplits",
    "KnownManifold",
    "Split",
]


class DatasetNotFoundError(BadInput):
    """The dataset files are not on disk (and could not be downloaded).

    The message names the dataset, the exact files expected, the directory they are expected
    in, and how to get them, so that an offline run fails with one actionable line.
    """

    section = "dataset"

    def __init__(
        self,
        dataset: str,
        directory: str,
        files: tuple[str, ...] | list[str],
        url: str,
        *,
        missing: tuple[str, ...] | list[str] | None = None,
        how: str | None = None,
        cause: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.directory = directory
        self.files = tuple(files)
        self.missing = tuple(missing) if missing is not None else self.files
        self.url = url
        fetch = how or (
            f"set `download: true` in the protocol's dataset section on a machine with network "
            f"access, or copy the files into that directory (official source: {url})"
        )
        message = (
            f"dataset {dataset!r} not found: expected {', '.join(self.files)} in {directory}"
            + (
                f" (missing: {', '.join(self.missing)})"
                if self.missing and tuple(self.missing) != self.files
                else ""
            )
            + f"; {fetch}"
            + (f". Download failed: {cause}" if cause else "")
        )
        super().__init__(message)


class DatasetConfigError(BadInput):
    """A dataset request that cannot be satisfied (too many samples, unknown class, ...).

    Attributes
    ----------
    field : str or None
        The protocol field asking too much (``"eval_samples"``), when that is the problem.
    available : int or None
        How many images that field could have had.
    """

    section = "dataset"

    def __init__(self, message: str, *, field: str | None = None,
                 available: int | None = None) -> None:
        super().__init__(message)
        self.field, self.available = field, available


class DataFileError(DatasetConfigError):
    """A data file that is damaged, undecodable or inconsistent with its partner (exit 2,
    naming the file and what is wrong)."""


class KnownManifold(abc.ABC):
    """A manifold whose decoder is known in closed form (the synthetic datasets' ground truth).

    Subclasses give the decoder ``z -> x`` and its Jacobian analytically; the tangent basis is the
    reduced QR of the Jacobian, computed in float64 because it is what estimated tangent spaces
    are later compared against.
    """

    latent_dim: int
    image_shape: tuple[int, int, int]

    @property
    def n(self) -> int:
        """Ambient dimension ``C*H*W``."""
        c, h, w = self.image_shape
        return c * h * w

    @abc.abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents ``(B, k)`` to images ``(B, C, H, W)`` (computed in ``z.dtype``)."""

    @abc.abstractmethod
    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Closed-form Jacobian ``d vec(x) / dz`` of shape ``(B, n, k)`` (in ``z.dtype``)."""

    @abc.abstractmethod
    def as_module(self) -> torch.nn.Module:
        """A ``torch.nn.Module`` decoder ``z -> x`` computing the same function as :meth:`decode`."""

    def tangent_basis(self, z: torch.Tensor) -> torch.Tensor:
        """Orthonormal basis ``(B, n, k)`` of the tangent space at ``decode(z)``.

        Computed as the reduced QR of the float64 Jacobian and returned in ``z.dtype``.
        """
        jac = self.jacobian(_as_batch(z).to(torch.float64))
        q, _ = torch.linalg.qr(jac, mode="reduced")
        return q.to(z.dtype)


def _as_batch(z: torch.Tensor) -> torch.Tensor:
    return z.unsqueeze(0) if z.dim() == 1 else z


@dataclass(frozen=True, eq=False)
class Split:
    """One split (train or eval) of a dataset.

    Attributes
    ----------
    x : torch.Tensor
        float32 images ``(N, C, H, W)`` in the dataset's pixel range.
    y : torch.Tensor
        int64 labels ``(N,)`` in ``0..C-1`` (the order of ``config.classes`` when a subset is given).
    latent : torch.Tensor or None
        The true latent code ``(N, k)`` of each image (synthetic datasets only).
    manifold : KnownManifold or None
        The true manifold the images lie on (synthetic datasets only).
    index : torch.Tensor or None
        int64 ``(N,)`` position of each image in its source split (the file's order), so that an
        image drawn under several seeds is recognised as the same one. Generated datasets draw
        fresh images per seed and number them ``seed * 2**32 + position`` (never shared).
        None: positions ``0..N-1``.
    """

    x: torch.Tensor
    y: torch.Tensor
    latent: torch.Tensor | None = None
    manifold: KnownManifold | None = None
    index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # Fail at construction rather than deep inside training when a loader gets a shape wrong.
        if self.x.dim() != 4 or self.x.dtype != torch.float32:
            raise TypeError(f"x must be float32 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dim() != 1 or self.y.dtype != torch.int64 or len(self.y) != len(self.x):
            raise TypeError(
                f"y must be int64 (N,) with N={len(self.x)}, got {self.y.dtype} {tuple(self.y.shape)}"
            )
        if self.index is not None and (self.index.dtype != torch.int64
                                       or self.index.shape != (len(self.x),)):
            raise TypeError(f"index must be int64 (N,) with N={len(self.x)}, got "
                            f"{self.index.dtype} {tuple(self.index.shape)}")
        if self.latent is not None and (self.latent.dim() != 2 or len(self.latent) != len(self.x)):
            raise TypeError(f"latent must be (N, k) with N={len(self.x)}, got {tuple(self.latent.shape)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def ids(self) -> torch.Tensor:
        """int64 ``(N,)`` stable image ids: :attr:`index`, or positions when it is None."""
        return self.index if self.index is not None else torch.arange(len(self), dtype=torch.int64)

    def tangent_basis(self, idx: Any = None) -> torch.Tensor:
        """The TRUE tangent space at the selected samples, as orthonormal columns.

        Parameters
        ----------
        idx : int, slice, sequence of int, tensor or None
            Samples to compute it for (all when None).

        Returns
        -------
        torch.Tensor
            float64 ``(N_idx, n, k)`` with orthonormal columns (float64 because it is ground truth).

        Raises
        ------
        ValueError
            When the dataset has no known manifold (every dataset but synthetic and linear_subspace).
        """
        if self.manifold is None or self.latent is None:
            raise ValueError(
                "the true tangent space is known only for the synthetic and linear_subspace "
                "datasets; for real images estimate it from a decoder (an autoencoder's tangent space)"
            )
        z = self.latent if idx is None else self.latent[idx]
        return self.manifold.tangent_basis(_as_batch(z).to(torch.float64))


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A loaded dataset: train and eval splits plus what later stages need to know about them.

    Attributes
    ----------
    name : str
        The dataset's registry name (``"mnist"``, ``"synthetic"``, ...).
    train, eval : Split
        Training images (classifier and autoencoders) and evaluation images (attacked).
    image_shape : tuple of int
        ``(C, H, W)``.
    num_classes : int
        Number of classes after the class filter (labels are ``0..num_classes-1``).
    class_names : tuple of str
        Name of each remapped label.
    pixel_range : tuple of float
        Interval the pixel values lie in (for ``normalize: imagenet`` the standardised range).
    manifold : KnownManifold or None
        The true manifold (synthetic datasets only).
    """

    name: str
    train: Split
    eval: Split
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    pixel_range: tuple[float, float]
    manifold: KnownManifold | None = field(default=None)

    @property
    def n(self) -> int:
        """Ambient dimension ``C*H*W``."""
        c, h, w = self.image_shape
        return c * h * w

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the data this run uses: both splits' pixels, labels and
        image ids, the shape and pixel range. It enters the store key of everything trained or
        measured on the data, so replacing files under the same ``dataset.root`` (or changing a
        loader) can never reuse a model or measurement made from other data. Hashing the
        selected tensors (not the files) covers every dataset kind alike and reads nothing twice;
        it costs about a second per GB (measured in the ``store`` benchmark)."""
        digest = hashlib.sha256(repr((self.name, self.image_shape, self.num_classes,
                                      self.pixel_range)).encode())
        for split in (self.train, self.eval):
            for tensor in (split.x, split.y, split.ids):
                digest.update(repr((tensor.dtype, tuple(tensor.shape))).encode())
                if tensor.numel():  # memoryview cannot cast an empty view
                    digest.update(memoryview(tensor.detach().cpu().contiguous().numpy())
                                  .cast("B"))
        return digest.hexdigest()[:16]
