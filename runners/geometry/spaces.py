"""Subspaces a perturbation is projected onto, behind one interface, and the ``auto`` front door.

A :class:`Subspace` holds one subspace per sample of a batch and projects vectors onto it. Two
implementations: :class:`DenseSubspace` (an explicit orthonormal basis: the decoder's tangent
space from QR, a random subspace, another image's tangent space) and :class:`MatrixFreeTangent`
(CG/LSQR on JVP/VJP products, for ImageNet-sized decoders). Attacks receive the projection as a
callable ``(g, idx) -> projected g`` (:meth:`Subspace.on_manifold` / :meth:`Subspace.off_manifold`),
so dense and matrix-free plug in the same way; ``idx`` says which samples of the batch the rows
of ``g`` belong to, because attacks drop finished samples from their active batch.

:func:`tangent_space` and :func:`project` pick the method from a
:class:`~dimple_stats.protocol.schema.TangentConfig`: ``auto`` is dense while ``n * k`` is at most
``matrix_free_threshold`` and matrix-free above it.
"""

from __future__ import annotations

import copy
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from dimple_stats.protocol.schema import TangentConfig
from runners.geometry.matrix_free import (
    LinearizedDecoder,
    ProjectionResult,
    SolveInfo,
    gram_extreme_eigenvalues,
    solve_normal_equations,
)
from runners.geometry.tangent import TangentBasis, tangent_basis

__all__ = [
    "Subspace",
    "DenseSubspace",
    "MatrixFreeTangent",
    "GradientProjection",
    "decoder_in_dtype",
    "resolve_method",
    "tangent_space",
    "project",
]

#: ``(g, idx) -> projected g``: ``g`` is ``(m, ...)``, ``idx`` the ``(m,)`` batch indices of its rows.
GradientProjection = Callable[[Tensor, Tensor], Tensor]

#: ``tangent.dtype`` -> the torch dtype the tangent space is computed in.
TANGENT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _output_size(decode: Callable[[Tensor], Tensor], z: Tensor) -> int:
    with torch.no_grad():
        return math.prod(decode(z[:1]).shape[1:])


def _norm(v: Tensor) -> Tensor:
    return v.flatten(1).norm(dim=1)


class Subspace(ABC):
    """One linear subspace of R^n per sample of a batch."""

    #: Ambient dimension.
    n: int
    #: Working dtype of the projections.
    dtype: torch.dtype

    @property
    @abstractmethod
    def dims(self) -> Tensor:
        """``(B,)`` int64 dimension of each sample's subspace."""

    @abstractmethod
    def _project_flat(self, v: Tensor, idx: Tensor) -> Tensor:
        """``(m, n)`` in the working dtype -> ``(m, n)``."""

    def _idx(self, v: Tensor, idx: Tensor | None) -> Tensor:
        if idx is None:
            idx = torch.arange(len(v))
        return torch.as_tensor(idx, dtype=torch.int64).cpu()

    def project(self, v: Tensor, idx: Tensor | None = None) -> Tensor:
        """``P v`` for vectors ``v`` ``(m, ...)`` of samples ``idx`` (all, in order, when None).

        Returns ``v``'s shape and dtype; the projection itself runs in :attr:`dtype`.
        """
        flat = v.reshape(len(v), -1).to(self.dtype)
        return self._project_flat(flat, self._idx(v, idx)).reshape(v.shape).to(v.dtype)

    def complement(self, v: Tensor, idx: Tensor | None = None) -> Tensor:
        """``(I - P) v``, computed as ``v - P v`` in the working dtype."""
        flat = v.reshape(len(v), -1).to(self.dtype)
        out = flat - self._project_flat(flat, self._idx(v, idx))
        return out.reshape(v.shape).to(v.dtype)

    def ratio(self, v: Tensor, idx: Tensor | None = None) -> Tensor:
        """``||P v|| / ||v||`` per row, in the working dtype (NaN where ``v = 0``).

        Clamped to at most 1: an orthogonal projection cannot lengthen a vector, so any excess
        is rounding (and would put a ratio outside the [0, 1] the analyses assume).
        """
        flat = v.reshape(len(v), -1).to(self.dtype)
        num = _norm(self._project_flat(flat, self._idx(v, idx)))
        den = _norm(flat)
        ratio = (num / torch.where(den > 0, den, torch.ones_like(den))).clamp(max=1.0)
        return torch.where(den > 0, ratio, torch.full_like(den, float("nan")))

    def on_manifold(self) -> GradientProjection:
        """Gradient projection onto the subspace (the on-manifold attack)."""
        return lambda g, idx: self.project(g, idx)

    def off_manifold(self) -> GradientProjection:
        """Gradient projection onto the orthogonal complement (the off-manifold attack)."""
        return lambda g, idx: self.complement(g, idx)


class DenseSubspace(Subspace):
    """Subspaces given by explicit bases with orthonormal (or zero) columns.

    Parameters
    ----------
    basis : Tensor
        ``(B, n, k)``; zero columns are allowed and do not count (see :class:`TangentBasis`).
    tangent : TangentBasis or None
        The QR diagnostics when the basis is a decoder's tangent space.

    Examples
    --------
    >>> e = torch.eye(3, dtype=torch.float64)[:, :1].unsqueeze(0)  # the x-axis
    >>> s = DenseSubspace(e)
    >>> s.project(torch.tensor([[3.0, 4.0, 0.0]])).tolist(), s.ratio(torch.tensor([[3.0, 4.0, 0.0]])).tolist()
    ([[3.0, 0.0, 0.0]], [0.6])
    """

    def __init__(self, basis: Tensor, *, tangent: TangentBasis | None = None) -> None:
        if basis.dim() != 3:
            raise ValueError(f"basis must be (B, n, k), got {tuple(basis.shape)}")
        self.basis = basis
        self.tangent = tangent
        self.n = int(basis.shape[1])
        self.dtype = basis.dtype

    @classmethod
    def from_tangent(cls, tb: TangentBasis) -> DenseSubspace:
        """The tangent space of a :class:`TangentBasis`."""
        return cls(tb.basis, tangent=tb)

    @property
    def dims(self) -> Tensor:
        if self.tangent is not None:
            return self.tangent.rank
        return (self.basis.abs().amax(dim=1) > 0).sum(dim=1)

    def _project_flat(self, v: Tensor, idx: Tensor) -> Tensor:
        q = self.basis[idx]
        return torch.einsum("bnk,bk->bn", q, torch.einsum("bnk,bn->bk", q, v))

    def subset(self, idx: Tensor) -> DenseSubspace:
        """The subspaces of samples ``idx`` (e.g. another image's tangent space for each sample)."""
        tb = self.tangent
        sub = None if tb is None else TangentBasis(
            basis=tb.basis[idx], r_diag=tb.r_diag[idx], rank=tb.rank[idx], tol=tb.tol[idx],
            sigma=tb.sigma[idx])
        return DenseSubspace(self.basis[idx], tangent=sub)

    def gram_condition(self, **_: object) -> Tensor:
        """``cond(J^T J)`` per sample from the singular values of ``R`` (exact, dense)."""
        if self.tangent is None:
            raise ValueError("this subspace is not a decoder's tangent space")
        return self.tangent.gram_condition()


class MatrixFreeTangent(Subspace):
    """The tangent space of ``decode`` at latents ``z``, projected onto by CG or LSQR.

    The decoder is linearised at the samples in use; when an attack asks for a different set of
    samples (it drops finished ones) it is linearised again at that subset, one forward pass,
    so finished samples stop costing solver iterations.

    Parameters
    ----------
    decode : callable
        Latents to images, samples independent, computing in the dtype of its input.
    z : Tensor
        ``(B, k)`` latents (already in the working dtype).
    solver : {"cg", "lsqr"}
    tol : float
        Relative normal-equation residual per sample.
    max_iter : int

    Attributes
    ----------
    last_info : SolveInfo or None
        Iterations and residuals of the latest projection.
    history : list of SolveInfo
        Every projection's report (the attack's total solver cost).
    """

    def __init__(
        self,
        decode: Callable[[Tensor], Tensor],
        z: Tensor,
        *,
        solver: Literal["cg", "lsqr"] = "cg",
        tol: float = 1e-4,
        max_iter: int = 200,
    ) -> None:
        self.decode = decode
        self.z = z.detach()
        self.dtype = z.dtype
        self.solver = solver
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self._op: LinearizedDecoder | None = None
        self._op_idx: Tensor | None = None
        self.last_info: SolveInfo | None = None
        self.history: list[SolveInfo] = []
        self.n = _output_size(decode, self.z)

    @property
    def dims(self) -> Tensor:
        # The numerical rank is not available without J; the latent dimension is its upper bound.
        return torch.full((len(self.z),), int(self.z.shape[1]), dtype=torch.int64,
                          device=self.z.device)

    def _operator(self, idx: Tensor) -> LinearizedDecoder:
        if self._op is None or self._op_idx is None or not torch.equal(self._op_idx, idx):
            self._op = None  # release the old linearisation (its activations) first
            self._op = LinearizedDecoder(self.decode, self.z[idx])
            self._op_idx = idx.clone()
        return self._op

    def _project_flat(self, v: Tensor, idx: Tensor) -> Tensor:
        _, jc, info = solve_normal_equations(self._operator(idx), v, solver=self.solver,
                                             tol=self.tol, max_iter=self.max_iter)
        self.last_info = info
        self.history.append(info)
        return jc

    def subset(self, idx: Tensor) -> MatrixFreeTangent:
        """The tangent spaces at latents ``z[idx]``."""
        return MatrixFreeTangent(self.decode, self.z[idx], solver=self.solver, tol=self.tol,
                                 max_iter=self.max_iter)

    def gram_condition(self, *, iterations: int | None = None,
                       generator: torch.Generator | None = None) -> Tensor:
        """Lanczos estimate of ``cond(J^T J)`` per sample: a LOWER bound, exact at ``k`` steps."""
        op = self._operator(torch.arange(len(self.z)))
        lo, hi = gram_extreme_eigenvalues(op, iterations=iterations or self.max_iter,
                                          generator=generator)
        return torch.where(lo > 0, hi / torch.where(lo > 0, lo, torch.ones_like(lo)),
                           torch.full_like(hi, float("inf")))


def decoder_in_dtype(decoder: Callable[[Tensor], Tensor] | nn.Module, dtype: torch.dtype
                     ) -> Callable[[Tensor], Tensor]:
    """A version of ``decoder`` that computes in ``dtype`` (for float64 tangent spaces).

    * an autoencoder or decoder carrying a known ``manifold`` (the oracle): the manifold's own
      ``decode``, which is exact in any dtype (casting the float32 oracle module up would keep
      its float32 rounding);
    * an :class:`~runners.models.autoencoders.Autoencoder` (its ``decode``), an ``nn.Module``
      (its ``forward``) or a bound method of a module: unchanged when its floating parameters and
      buffers already have ``dtype``, else a deep copy cast to ``dtype`` (the original is untouched);
    * any other callable: returned as is (it must handle ``dtype`` itself).

    Examples
    --------
    >>> lin = nn.Linear(2, 3)
    >>> decoder_in_dtype(lin, torch.float64)(torch.zeros(1, 2, dtype=torch.float64)).dtype
    torch.float64
    >>> lin.weight.dtype  # the original module is not modified
    torch.float32
    """
    from runners.datasets.base import KnownManifold
    from runners.models.autoencoders import Autoencoder

    owner: object = decoder.__self__ if inspect.ismethod(decoder) else decoder
    manifold = getattr(owner, "manifold", None)
    if isinstance(manifold, KnownManifold):
        return manifold.decode
    if not isinstance(owner, nn.Module):
        return decoder  # type: ignore[return-value]
    if inspect.ismethod(decoder):
        name = decoder.__name__
    else:
        name = "decode" if isinstance(owner, Autoencoder) else "forward"
    tensors = [t for t in (*owner.parameters(), *owner.buffers()) if t.is_floating_point()]
    if all(t.dtype == dtype for t in tensors):
        return getattr(owner, name)
    return getattr(copy.deepcopy(owner).to(dtype), name)


def resolve_method(n: int, k: int, config: TangentConfig) -> Literal["dense", "matrix_free"]:
    """The method ``config.method`` means for an ``n x k`` Jacobian (``auto``: by ``n * k``).

    Examples
    --------
    >>> resolve_method(3072, 128, TangentConfig()), resolve_method(150_528, 25_088, TangentConfig())
    ('dense', 'matrix_free')
    """
    if config.method != "auto":
        return config.method
    return "dense" if n * k <= config.matrix_free_threshold else "matrix_free"


def tangent_space(
    decode: Callable[[Tensor], Tensor],
    z: Tensor,
    *,
    config: TangentConfig | None = None,
    n: int | None = None,
) -> DenseSubspace | MatrixFreeTangent:
    """The decoder's tangent space at each latent of a batch, by the method ``config`` selects.

    Parameters
    ----------
    decode : callable
        Latents to images; must compute in ``config.dtype`` (see :func:`decoder_in_dtype`).
    z : Tensor
        ``(B, k)`` latents; cast to ``config.dtype``.
    config : TangentConfig or None
        Defaults to ``TangentConfig()`` (auto, float32).
    n : int or None
        Output size; found by one decoder call when None.

    Returns
    -------
    DenseSubspace or MatrixFreeTangent
    """
    config = config or TangentConfig()
    z = z.detach().to(TANGENT_DTYPES[config.dtype])
    n = _output_size(decode, z) if n is None else n
    if resolve_method(n, int(z.shape[1]), config) == "dense":
        tb = tangent_basis(decode, z, rank_tol=config.rank_tol, chunk_size=config.chunk_size)
        return DenseSubspace.from_tangent(tb)
    return MatrixFreeTangent(decode, z, solver=config.solver, tol=config.tol,
                             max_iter=config.max_iter)


def project(
    decode: Callable[[Tensor], Tensor],
    z: Tensor,
    v: Tensor,
    *,
    config: TangentConfig | None = None,
) -> ProjectionResult:
    """Project ``v`` onto the decoder's tangent space at ``z``: the front door.

    ``config.method`` ``auto`` builds the dense basis while ``n * k <= matrix_free_threshold``
    and solves matrix-free above it; ``dense`` / ``matrix_free`` force one.

    Parameters
    ----------
    decode : callable
        Latents ``(B, k)`` to images, computing in ``config.dtype``.
    z : Tensor
        ``(B, k)``.
    v : Tensor
        ``(B, ...)`` vectors to project, ``n`` numbers per sample.
    config : TangentConfig or None

    Returns
    -------
    ProjectionResult

    Examples
    --------
    >>> W = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    >>> v = torch.tensor([[1.0, 2.0, 3.0]])
    >>> dense = project(lambda z: z @ W.T, torch.zeros(1, 2), v)
    >>> mf = project(lambda z: z @ W.T, torch.zeros(1, 2), v,
    ...              config=TangentConfig(method="matrix_free", tol=1e-6))
    >>> dense.method, mf.method, bool(torch.allclose(dense.projection, mf.projection, atol=1e-5))
    ('dense', 'matrix_free', True)
    """
    config = config or TangentConfig()
    space = tangent_space(decode, z, config=config, n=math.prod(v.shape[1:]))
    proj = space.project(v)
    if isinstance(space, MatrixFreeTangent):
        return ProjectionResult(projection=proj, coefficients=None, info=space.last_info,
                                method="matrix_free")
    coef = torch.einsum("bnk,bn->bk", space.basis, v.reshape(len(v), -1).to(space.dtype))
    return ProjectionResult(projection=proj, coefficients=coef, info=None, method="dense")
