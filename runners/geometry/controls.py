"""Control subspaces for ``r_T``: random subspaces of the same dimension, other images' tangents.

Chance level for a direction unrelated to a k-dim subspace of R^n is ``E[r^2] = k / n`` with
``r^2 ~ Beta(k/2, (n-k)/2)``. Two controls make that concrete per sample:

* a uniformly random k-dim subspace, fresh per sample and seeded (:func:`random_subspace`: QR of a
  Gaussian n x k matrix; or :func:`random_subspace_ratio`, an exact distributional shortcut that
  costs O(n) per sample instead of O(n k^2), for ImageNet-sized n k);
* the tangent space at ANOTHER image of the same class (:func:`other_same_class` chooses it),
  which keeps everything about the decoder except the base point.
"""

from __future__ import annotations

import torch
from torch import Tensor

from runners.geometry.spaces import DenseSubspace

__all__ = ["random_subspace", "random_subspace_ratio", "other_same_class", "beta_moments"]


def _dims(dims: int | Tensor, batch: int | None) -> Tensor:
    if isinstance(dims, Tensor):
        return dims.to(torch.int64).reshape(-1)
    if batch is None:
        raise ValueError("give batch when dims is a single int")
    return torch.full((batch,), int(dims), dtype=torch.int64)


def random_subspace(
    n: int,
    dims: int | Tensor,
    *,
    batch: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> DenseSubspace:
    """A uniformly random subspace per sample: reduced QR of a Gaussian ``n x k`` matrix.

    The column space of a Gaussian matrix is Haar-distributed on the Grassmannian, so QR is the
    standard exact sampler. Sample ``i`` keeps its first ``dims[i]`` columns (the others are
    zeroed), so each control has the dimension of the tangent space it controls for.

    Parameters
    ----------
    n : int
        Ambient dimension.
    dims : int or Tensor
        Subspace dimension, one for all or ``(B,)`` per sample.
    batch : int or None
        Number of samples when ``dims`` is an int.
    generator : torch.Generator or None
        Seeded draws (on the CPU); consecutive calls give fresh subspaces.
    dtype : torch.dtype
    device : torch.device, str or None
        Where the basis goes (drawn on the CPU first: the same subspace on any device).

    Returns
    -------
    DenseSubspace

    Examples
    --------
    >>> s = random_subspace(10, torch.tensor([2, 3]), generator=torch.Generator().manual_seed(0))
    >>> s.basis.shape, s.dims.tolist()
    (torch.Size([2, 10, 3]), [2, 3])
    """
    d = _dims(dims, batch).cpu()
    if int(d.max()) > n:
        raise ValueError(f"subspace dimension {int(d.max())} exceeds n = {n}")
    kmax = int(d.max())
    gauss = torch.randn(len(d), n, kmax, generator=generator, dtype=dtype)
    q, _ = torch.linalg.qr(gauss, mode="reduced")
    keep = torch.arange(kmax).unsqueeze(0) < d.unsqueeze(1)
    return DenseSubspace((q * keep.unsqueeze(1).to(dtype)).to(device or "cpu"))


def random_subspace_ratio(
    n: int,
    dims: int | Tensor,
    *,
    batch: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``||P_R v|| / ||v||`` for a fresh uniformly random ``dims``-subspace R, without forming R.

    By rotation invariance, projecting a FIXED unit vector onto a Haar-random k-subspace has the
    same law as projecting a uniform random unit vector ``g / ||g||`` (g Gaussian) onto the first
    k coordinates. So ``r = ||g[:k]|| / ||g||`` is an exact draw of ``r_R`` for any ``v``, in
    O(n) work per sample; the value does not depend on ``v``, which is why ``v`` is not an input.

    Parameters
    ----------
    n, dims, batch, generator, dtype
        As :func:`random_subspace` (the result is on the CPU).

    Returns
    -------
    Tensor
        ``(B,)`` ratios in ``[0, 1]``.

    Examples
    --------
    >>> r = random_subspace_ratio(100, 25, batch=4000, generator=torch.Generator().manual_seed(0))
    >>> abs(float((r**2).mean()) - 0.25) < 0.01
    True
    """
    d = _dims(dims, batch).cpu()
    g = torch.randn(len(d), n, generator=generator, dtype=dtype)
    head = (torch.arange(n).unsqueeze(0) < d.unsqueeze(1)).to(dtype)
    return (g * head).norm(dim=1) / g.norm(dim=1)


def beta_moments(k: int | float, n: int | float) -> tuple[float, float]:
    """Mean and variance of ``r^2 ~ Beta(k/2, (n-k)/2)``, the chance law of a k-dim subspace.

    Examples
    --------
    >>> beta_moments(2, 4)
    (0.5, 0.08333333333333333)
    """
    a, b = k / 2.0, (n - k) / 2.0
    return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1.0))


def other_same_class(labels: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """For each sample, a uniformly chosen OTHER sample with the same label (vectorised).

    Parameters
    ----------
    labels : Tensor
        ``(B,)`` integer labels of the pool (the measured samples).
    generator : torch.Generator or None
        Seeded choice.

    Returns
    -------
    Tensor
        ``(B,)`` int64 indices (CPU) into ``labels``; ``-1`` where the sample is the only one of its
        class (then there is no same-class tangent space, and ``r_Tother`` is NaN: a missing
        control, never a silent substitute from another class).

    Examples
    --------
    >>> other_same_class(torch.tensor([0, 1, 0, 2]), generator=torch.Generator().manual_seed(0)).tolist()
    [2, -1, 0, -1]
    """
    labels = labels.reshape(-1).cpu()
    size = len(labels)
    if size == 0:
        return torch.empty(0, dtype=torch.int64)
    order = torch.argsort(labels, stable=True)
    _, counts = torch.unique_consecutive(labels[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    cls = torch.repeat_interleave(torch.arange(len(counts)), counts)
    pos = torch.arange(size) - starts[cls]
    cnt = counts[cls]
    # Uniform over the cnt - 1 others: draw a slot in [0, cnt - 2] and skip the sample's own.
    u = torch.floor(torch.rand(size, generator=generator, dtype=torch.float64) * (cnt - 1))
    u = u.to(torch.int64).clamp(min=0, max=None)
    u = torch.minimum(u, (cnt - 2).clamp(min=0))
    u = torch.where(u >= pos, u + 1, u)
    chosen = torch.where(cnt > 1, order[(starts[cls] + u).clamp(max=size - 1)],
                         torch.full_like(u, -1))
    out = torch.empty_like(chosen)
    out[order] = chosen
    return out
