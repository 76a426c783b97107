"""Dense tangent bases: decoder Jacobian by batched forward mode, reduced QR, numerical rank.

The tangent space of the decoder's image at ``D(z)`` is the column space of the Jacobian
``J = dD/dz`` (n x k). Forward mode needs k JVPs per sample (``vmap(jacfwd)``, chunked over
samples) where the per-pixel reverse-mode loop of earlier reproductions needs n backward passes.
A reduced QR ``J = Q R`` brings ``J`` down to the small k x k ``R``; the SVD ``R = U S V^T`` then
gives ``J = (Q U) S V^T``, so the left singular vectors ``Q U`` are an orthonormal basis ordered by
singular value, and the numerical rank is read from ``S``. Singular values reveal the rank
whatever the column order of ``J``; the diagonal of an unpivoted ``R`` does not (for
``J = [a, 2a, c1, c2]`` the small ``|R_jj|`` is the second, and zeroing the second column of ``Q``
loses part of the span of ``c1, c2``). ``|diag R|`` is kept only as a diagnostic: its decay is the
local intrinsic-dimension estimate of :mod:`runners.geometry.intrinsic`.

Use this module when ``n * k`` numbers fit in memory (CIFAR-10: 3072 x 128). For ImageNet-sized
decoders use the matrix-free projection of :mod:`runners.geometry.matrix_free`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from runners.geometry.jacobian import decoder_jacobian

__all__ = [
    "TangentBasis",
    "tangent_basis",
    "basis_from_jacobian",
    "default_rank_tol",
    "largest_principal_angle",
]


@dataclass(frozen=True, eq=False)
class TangentBasis:
    """Orthonormal tangent bases of a batch, with the QR/SVD diagnostics they came from.

    Attributes
    ----------
    basis : Tensor
        ``(B, n, k)`` left singular vectors ``Q U`` of ``J``, columns in DESCENDING singular-value
        order (column ``j`` belongs to ``sigma[:, j]``; they are not tied to ``J``'s columns).
        The columns whose singular value is at or below the cut-off, the trailing
        ``k - rank``, are ZEROED, so that ``basis @ basis.T`` is the orthogonal projector onto
        the numerical column space of ``J``, whatever the order of ``J``'s columns.
    r_diag : Tensor
        ``(B, k)`` signed diagonal of the unpivoted ``R`` of ``J = Q R``. A diagnostic only (the
        intrinsic-dimension estimate reads its decay); the rank is NOT read from it, since an
        unpivoted ``R`` does not reveal the rank when a dependent column comes early.
    rank : Tensor
        ``(B,)`` int64 numerical rank: the number of singular values above the cut-off.
    tol : Tensor
        ``(B,)`` absolute cut-off that was applied to the singular values,
        ``rel_tol * sigma_max``.
    sigma : Tensor
        ``(B, k)`` singular values of ``J`` (those of the small ``R``), descending: they give
        the rank and ``iso_cond`` without squaring the condition number as ``eig(J^T J)`` would.
    """

    basis: Tensor
    r_diag: Tensor
    rank: Tensor
    tol: Tensor
    sigma: Tensor

    @property
    def n(self) -> int:
        """Ambient (input) dimension."""
        return int(self.basis.shape[1])

    @property
    def k(self) -> int:
        """Number of columns (the latent dimension; the numerical rank is :attr:`rank`)."""
        return int(self.basis.shape[2])

    def gram_condition(self) -> Tensor:
        """Condition number of ``J^T J`` per sample, ``(sigma_max / sigma_min)^2`` (inf if singular)."""
        smax, smin = self.sigma[:, 0], self.sigma[:, -1]
        return torch.where(smin > 0, (smax / smin.clamp_min(torch.finfo(smin.dtype).tiny)) ** 2,
                           torch.full_like(smax, float("inf")))


def default_rank_tol(n: int, k: int, dtype: torch.dtype) -> float:
    """Relative rank cut-off ``max(n, k) * eps(dtype)`` (the LAPACK/NumPy ``matrix_rank`` rule).

    Examples
    --------
    >>> default_rank_tol(100, 10, torch.float64) == 100 * torch.finfo(torch.float64).eps
    True
    """
    return max(n, k) * torch.finfo(dtype).eps


def basis_from_jacobian(jac: Tensor, *, rank_tol: float | None = None) -> TangentBasis:
    """Orthonormal basis, singular values, R diagonal and numerical rank of a batch of Jacobians.

    A reduced QR ``J = Q R`` is followed by the SVD of the small ``R = U S V^T`` (batched, k x k),
    so ``J = (Q U) S V^T``. The basis is ``Q U`` with its columns in descending singular-value
    order; the first ``rank`` are kept and the rest zeroed. The rank is the number of singular
    values above ``rank_tol * sigma_max``: singular values are rank-revealing whatever the column
    order of ``J`` (the diagonal of the unpivoted ``R`` is not, and is returned only as a
    diagnostic).

    Parameters
    ----------
    jac : Tensor
        ``(B, n, k)`` with ``n >= k``.
    rank_tol : float or None
        Relative cut-off: singular value ``sigma_j`` counts when
        ``sigma_j > rank_tol * sigma_max``. None uses :func:`default_rank_tol` for ``jac.dtype``.

    Returns
    -------
    TangentBasis

    Examples
    --------
    >>> J = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    >>> tb = basis_from_jacobian(J)  # the second column is twice the first: rank 1
    >>> int(tb.rank), tb.basis[0, :, 1].abs().max().item()
    (1, 0.0)
    >>> J = torch.tensor([[[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    >>> tb = basis_from_jacobian(J)  # [a, 2a, c]: the dependent column comes second
    >>> B = tb.basis[0]
    >>> int(tb.rank), float((J[0] - B @ (B.T @ J[0])).abs().max()) < 1e-15
    (2, True)
    """
    if jac.dim() != 3 or jac.shape[1] < jac.shape[2]:
        raise ValueError(f"expected Jacobians (B, n, k) with n >= k, got {tuple(jac.shape)}")
    _, n, k = jac.shape
    q, r = torch.linalg.qr(jac, mode="reduced")
    r_diag = torch.diagonal(r, dim1=1, dim2=2)
    # J = Q R = (Q U) S V^T: an SVD of the k x k R costs O(k^3) per sample against O(n k^2) for
    # the QR, and its singular values reveal the rank whatever the column order.
    u, sigma, _ = torch.linalg.svd(r, full_matrices=False)
    rel = default_rank_tol(n, k, jac.dtype) if rank_tol is None else float(rank_tol)
    tol = rel * sigma[:, 0]
    keep = sigma > tol.unsqueeze(1)  # descending sigma: a prefix of the columns
    basis = (q @ u) * keep.unsqueeze(1).to(q.dtype)
    return TangentBasis(basis=basis, r_diag=r_diag, rank=keep.sum(dim=1), tol=tol, sigma=sigma)


def tangent_basis(
    decode: Callable[[Tensor], Tensor],
    z: Tensor,
    *,
    dtype: torch.dtype | None = None,
    rank_tol: float | None = None,
    chunk_size: int | None = 16,
) -> TangentBasis:
    """Tangent bases of ``decode`` at every latent of a batch (dense: ``B * n * k`` numbers).

    Parameters
    ----------
    decode : callable
        Latents ``(B, k)`` to outputs ``(B, ...)``, samples independent, computing in the dtype
        of its input (see :func:`runners.geometry.spaces.decoder_in_dtype` to get one in float64).
    z : Tensor
        Latents ``(B, k)``.
    dtype : torch.dtype or None
        Cast ``z`` to this before differentiating (float64 for ground-truth comparisons).
    rank_tol : float or None
        Relative singular-value cut-off (``TangentConfig.rank_tol``): ``sigma_j`` counts when
        ``sigma_j > rank_tol * sigma_max``; None: ``max(n, k) * eps``.
    chunk_size : int or None
        Samples per ``vmap(jacfwd)`` call: peak memory about ``2 * chunk_size * n * k`` numbers.

    Returns
    -------
    TangentBasis

    Examples
    --------
    >>> W = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    >>> tb = tangent_basis(lambda z: z @ W.T, torch.zeros(3, 2, dtype=torch.float64))
    >>> tb.basis.shape, tb.rank.tolist(), tb.r_diag.abs()[0].tolist()
    (torch.Size([3, 3, 2]), [2, 2, 2], [1.0, 2.0])
    """
    if dtype is not None:
        z = z.to(dtype)
    # Forward-mode transforms ignore an outer no_grad; it only stops a decoder whose parameters
    # require grad from also recording an (unused) reverse-mode graph.
    with torch.no_grad():
        parts = [basis_from_jacobian(decoder_jacobian(decode, zc, chunk_size=chunk_size),
                                     rank_tol=rank_tol)
                 for zc in _chunks(z, chunk_size)]
    if len(parts) == 1:
        return parts[0]
    return TangentBasis(**{f: torch.cat([getattr(p, f) for p in parts])
                           for f in ("basis", "r_diag", "rank", "tol", "sigma")})


def _chunks(z: Tensor, size: int | None) -> list[Tensor]:
    # The QR copy of each chunk (and Q U) is as large as its Jacobian, so chunk the QR too.
    return [z] if size is None or size >= len(z) else list(torch.split(z, size))


def largest_principal_angle(a: Tensor, b: Tensor) -> Tensor:
    """Largest principal angle (radians) between the column spaces of orthonormal ``a`` and ``b``.

    Computed as ``arcsin ||(I - A A^T) B||_2`` (for equal dimensions), which, unlike ``arccos`` of
    the smallest singular value of ``A^T B``, keeps full relative precision for tiny angles.

    Parameters
    ----------
    a, b : Tensor
        ``(..., n, k)`` with orthonormal columns and the same ``k``.

    Returns
    -------
    Tensor
        ``(...)`` angles in ``[0, pi/2]``.

    Examples
    --------
    >>> e = torch.eye(3, dtype=torch.float64)
    >>> float(largest_principal_angle(e[:, :1], e[:, 1:2]))  # orthogonal lines
    1.5707963267948966
    """
    resid = b - a @ (a.transpose(-1, -2) @ b)
    s = torch.linalg.matrix_norm(resid, ord=2)
    return torch.arcsin(s.clamp(max=1.0))
