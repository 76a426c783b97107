"""Control subspaces for ``r_T``: random subspaces of the same dimension, other images' tangents.

Chance level for a direction unrelated to a k-dim subspace of R^n is ``E[r^2] = k / n`` with
``r^2 ~ Beta(k/2, (n-k)/2)``. Two controls make that concrete per sample:

* a uniformly random k-dim subspace, fresh per sample and seeded (:func:`random_subspace`: QR of a
  Gaussian n x k matrix; or :func:`random_subspace_ratio`, an exact distributional shortcut that
  costs O(n) per sample instead of O(n k^2), for ImageNet-sized n k);
* the tangent space at ANOTHER image of the same class (:func:`other_same_class` chooses it),
  which keeps everything about the decoder except the base point.

Beating chance is weak evidence. Natural images concentrate on a few high-variance directions,
and any perturbation that is "image-like" (smooth, centred on the digit) has most of its energy
there; so "r_T is larger than a random subspace's share" may only say that perturbations lie in
high-variance data directions, not that the decoder's tangent at THIS image matters. Two
data-shaped controls of the same dimension separate the two (:class:`DataSubspaces`, computed once
per seed from the training split):

* the top-k principal subspace of the training data (:meth:`DataSubspaces.principal`): the best
  k-dim fit to the data globally, the same for every sample;
* a random k-subspace drawn with the training-data covariance (:meth:`DataSubspaces.data_random`):
  the span of k independent ``N(0, Sigma)`` vectors, fresh per sample, i.e. chance for a subspace
  made of "data-like" directions.

If ``r_T`` exceeds these too, the LOCAL tangent carries information beyond global data statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from runners.geometry.spaces import DenseSubspace
from runners.geometry.tangent import basis_from_jacobian

__all__ = [
    "random_subspace",
    "random_subspace_ratio",
    "other_same_class",
    "beta_moments",
    "DataSubspaces",
]


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


def _rng_fixed(device: torch.device):
    # The randomised SVD sketches with the global RNG; a fixed seed inside a forked RNG makes the
    # statistics a function of the data alone and leaves the caller's random stream untouched.
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index]), index
    return torch.random.fork_rng(devices=[]), None


def _keep_columns(dims: Tensor, kmax: int) -> Tensor:
    return torch.arange(kmax).unsqueeze(0) < dims.unsqueeze(1)


@dataclass(frozen=True, eq=False)
class DataSubspaces:
    """Training-data second moments for the data-shaped controls, computed once per seed.

    Attributes
    ----------
    mean : Tensor
        ``(n,)`` float64 mean image (flattened).
    components : Tensor
        ``(n, m)`` orthonormal principal directions, in descending order of variance.
    scales : Tensor
        ``(m,)`` standard deviations along them (square roots of the covariance eigenvalues),
        ``>= 0``; exactly 0 along directions whose variance is at rounding level, so that the
        numerical rank of the covariance is ``(scales > 0).sum()``.

    Examples
    --------
    >>> x = torch.zeros(3, 1, 1, 2, dtype=torch.float64)
    >>> x[:, 0, 0, 0] = torch.tensor([-1.0, 0.0, 1.0])  # variance 1 along pixel 0, none along 1
    >>> d = DataSubspaces.from_images(x)
    >>> d.scales.tolist(), d.components[:, 0].abs().tolist()
    ([1.0, 0.0], [1.0, 0.0])
    """

    mean: Tensor
    components: Tensor
    scales: Tensor

    @property
    def n(self) -> int:
        """Ambient dimension."""
        return int(self.components.shape[0])

    @property
    def rank(self) -> int:
        """Numerical rank of the covariance (directions with nonzero variance among the kept)."""
        return int((self.scales > 0).sum())

    @classmethod
    def from_images(
        cls,
        x: Tensor,
        *,
        max_components: int | None = None,
        dense_limit: int = 4096,
        chunk: int = 4096,
    ) -> DataSubspaces:
        """Mean and principal directions of the training images ``x``.

        For ``n <= dense_limit`` this is exact: the sample covariance (divided by ``N - 1``) is
        accumulated over chunks of rows and diagonalised by ``torch.linalg.eigh``. Above it an
        ``n x n`` covariance is too large, and the top ``max_components`` directions come from
        ``torch.svd_lowrank`` of the centred data: a randomised (Halko et al.) approximation,
        accurate when the spectrum decays past ``max_components``, not exact. Its sketch is drawn
        with a fixed seed in a forked RNG, so the result depends on the data only.

        Parameters
        ----------
        x : Tensor
            ``(N, C, H, W)`` (any ``(N, ...)``) float images of the training split, ``N >= 2``.
            Computed on ``x``'s device, in float64.
        max_components : int or None
            Keep at most this many directions (all ``n`` when None on the dense path; required
            on the low-rank path).
        dense_limit : int
            Largest ``n`` for the exact covariance route.
        chunk : int
            Rows converted to float64 at a time on the dense path.

        Returns
        -------
        DataSubspaces

        Raises
        ------
        ValueError
            ``N < 2``; ``max_components < 1``; or ``n > dense_limit`` without ``max_components``.

        Examples
        --------
        >>> g = torch.Generator().manual_seed(0)
        >>> scale = torch.tensor([3.0, 1, 1, 1]).reshape(1, 1, 2, 2)
        >>> x = torch.randn(500, 1, 2, 2, generator=g, dtype=torch.float64) * scale
        >>> d = DataSubspaces.from_images(x, max_components=2)
        >>> d.components.shape, round(float(d.scales[0]), 1), round(float(d.components[0, 0].abs()), 2)
        (torch.Size([4, 2]), 3.0, 1.0)
        """
        size = int(x.shape[0])
        if size < 2:
            raise ValueError(f"need at least 2 images for a covariance, got {size}")
        if max_components is not None and max_components < 1:
            raise ValueError(f"max_components must be positive, got {max_components}")
        flat = x.reshape(size, -1)
        n = int(flat.shape[1])
        step = max(1, int(chunk))
        eps = torch.finfo(torch.float64).eps

        # Two passes (mean, then centred products): the one-pass sum(x x^T) - N mu mu^T loses
        # every digit of a small variance under a large mean (pixels are offset by the background).
        mean = torch.zeros(n, dtype=torch.float64, device=flat.device)
        for i in range(0, size, step):
            mean += flat[i:i + step].to(torch.float64).sum(dim=0)
        mean /= size

        if n <= dense_limit:
            cov = torch.zeros(n, n, dtype=torch.float64, device=flat.device)
            for i in range(0, size, step):
                xc = flat[i:i + step].to(torch.float64) - mean
                cov += xc.T @ xc
            cov /= size - 1
            cov = (cov + cov.T) / 2  # exact symmetry for eigh; the sums may differ in the last bit
            evals, evecs = torch.linalg.eigh(cov)
            evals, evecs = evals.flip(0), evecs.flip(1)
            # eigh's absolute error is about n * eps * lambda_max: smaller eigenvalues (and the
            # tiny negative ones) are rounding, not variance, and must not count as directions.
            tol = n * eps * evals[0].clamp(min=0)
            evals = torch.where(evals > tol, evals, torch.zeros_like(evals))
            m = n if max_components is None else min(int(max_components), n)
            return cls(mean=mean, components=evecs[:, :m].contiguous(),
                       scales=evals[:m].sqrt().contiguous())

        if max_components is None:
            raise ValueError(f"n = {n} > dense_limit = {dense_limit}: the low-rank route needs "
                             "max_components")
        m = min(int(max_components), n, size)
        # Oversampling the sketch by a few columns is what makes the randomised top-m accurate
        # (Halko, Martinsson & Tropp 2011, section 4.2); only the top m are kept.
        q = min(m + 10, n, size)
        centred = torch.empty(size, n, dtype=torch.float64, device=flat.device)
        for i in range(0, size, step):
            centred[i:i + step] = flat[i:i + step].to(torch.float64) - mean
        fork, cuda_index = _rng_fixed(flat.device)
        with fork:
            torch.random.default_generator.manual_seed(0)
            if cuda_index is not None:
                with torch.cuda.device(cuda_index):
                    torch.cuda.manual_seed(0)
            _, s, v = torch.svd_lowrank(centred, q=q, niter=4)
        del centred
        s, v = s[:m], v[:, :m]
        s = torch.where(s > max(size, n) * eps * s[0], s, torch.zeros_like(s))
        return cls(mean=mean, components=v.contiguous(),
                   scales=(s / (size - 1) ** 0.5).contiguous())

    def _check_dims(self, dims: Tensor) -> Tensor:
        d = torch.as_tensor(dims, dtype=torch.int64).reshape(-1).cpu()
        m = int(self.components.shape[1])
        if len(d) and (int(d.min()) < 0 or int(d.max()) > m):
            raise ValueError(f"subspace dimensions must lie in [0, {m}] (the kept components), "
                             f"got [{int(d.min())}, {int(d.max())}]")
        return d

    def principal(self, dims: Tensor, *, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float64) -> DenseSubspace:
        """The top ``dims[i]`` principal directions of the training data, per sample.

        The same nested subspaces for every sample, only the dimension follows the sample's
        tangent space. Columns beyond ``dims[i]``, and directions without variance (beyond the
        covariance's numerical rank, where "top-k" is not defined), are zeroed, so ``dims`` of
        the result can be below the request only for rank-deficient data.

        Parameters
        ----------
        dims : Tensor
            ``(B,)`` int64 dimensions, at most the number of kept components.
        device : torch.device, str or None
            Where the basis goes (the components' device when None).
        dtype : torch.dtype

        Returns
        -------
        DenseSubspace
            Basis ``(B, n, max(dims))``.

        Examples
        --------
        >>> d = DataSubspaces(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64),
        ...                   torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64))
        >>> s = d.principal(torch.tensor([1, 2]))
        >>> s.dims.tolist(), s.ratio(torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])).tolist()
        ([1, 2], [0.0, 1.0])
        """
        d = self._check_dims(dims)
        kmax = int(d.max()) if len(d) else 0
        comp = self.components[:, :kmax].cpu().to(torch.float64)
        keep = _keep_columns(d, kmax) & (self.scales[:kmax].cpu() > 0).unsqueeze(0)
        basis = comp.unsqueeze(0) * keep.unsqueeze(1).to(torch.float64)
        return DenseSubspace(basis.to(device=device or self.components.device, dtype=dtype))

    def data_random(self, dims: Tensor, *, generator: torch.Generator | None,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float64) -> DenseSubspace:
        """A random ``dims[i]``-subspace per sample, drawn with the training-data covariance.

        ``G = components @ diag(scales) @ Z`` with ``Z`` standard Gaussian, so each column of
        ``G`` is an independent ``N(0, Sigma)`` (``Sigma`` the kept part of the covariance):
        a "data-like" direction. The subspace is the span of the first ``dims[i]`` columns
        (the others are zeroed). With an isotropic covariance this is the uniform
        random subspace of :func:`random_subspace`.

        If the covariance has rank ``r < dims[i]`` only ``r`` directions exist; the basis is the
        rank-safe one of :func:`~runners.geometry.tangent.basis_from_jacobian` (singular values
        at rounding level are dropped), so the subspace has dimension ``min(dims[i], r)`` and no
        rounding-noise direction counts.

        Parameters
        ----------
        dims : Tensor
            ``(B,)`` int64 dimensions, at most the number of kept components.
        generator : torch.Generator or None
            ``Z`` is drawn from it on the CPU in float64 (the same subspaces on any device);
            consecutive calls give fresh subspaces.
        device : torch.device, str or None
            Where the basis goes (the components' device when None).
        dtype : torch.dtype

        Returns
        -------
        DenseSubspace
            Basis ``(B, n, max(dims))``.

        Examples
        --------
        >>> d = DataSubspaces(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64),
        ...                   torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))  # rank 2: a plane
        >>> s = d.data_random(torch.tensor([1, 3]), generator=torch.Generator().manual_seed(0))
        >>> s.dims.tolist(), s.ratio(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])).tolist()
        ([1, 2], [0.0, 0.0])
        """
        d = self._check_dims(dims)
        kmax = int(d.max()) if len(d) else 0
        m = int(self.components.shape[1])
        comp = self.components.cpu().to(torch.float64)
        scales = self.scales.cpu().to(torch.float64)
        z = torch.randn(len(d), m, kmax, generator=generator, dtype=torch.float64)
        g = comp @ (scales.unsqueeze(1) * z)
        # Sample i uses its first dims[i] draws; the rank-safe basis (SVD) spans exactly those
        # and drops directions without variance whatever the column order.
        g = g * _keep_columns(d, kmax).unsqueeze(1).to(torch.float64)
        basis = basis_from_jacobian(g).basis
        return DenseSubspace(basis.to(device=device or self.components.device, dtype=dtype))
