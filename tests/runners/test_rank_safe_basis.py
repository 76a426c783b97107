"""The dense tangent basis spans the Jacobian's column space whatever the column order.

Reading the rank from an UNPIVOTED QR and zeroing the columns of ``Q`` with small ``|R_jj|``
fails when a dependent column comes early: for ``J = [a, 2a, c1, c2]`` the small ``|R_jj|`` is
the second, ``Q``'s third and fourth columns then span ``c1, c2`` only together with the zeroed
second one, and the "basis" misses part of ``J``. :func:`basis_from_jacobian` now takes the basis
from the SVD of the small ``R`` (``J = (Q U) S V^T``). Every test below fails on the old
algorithm, which is kept inline (:func:`_old_unpivoted_qr_basis`) so the defect stays measured.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from runners.geometry import basis_from_jacobian, default_rank_tol
from runners.geometry.spaces import DenseSubspace
from runners.geometry.tangent import tangent_basis

F64 = torch.float64
SPAN_TOL = 1e-10


def _a_2a_c1_c2(n: int = 10, seed: int = 0) -> torch.Tensor:
    """``(n, 4)`` Jacobian ``[a, 2a, c1, c2]`` of rank 3 (``2a`` is exact in binary)."""
    g = np.random.default_rng(seed)
    a, c1, c2 = (torch.from_numpy(g.standard_normal(n)) for _ in range(3))
    return torch.stack([a, 2 * a, c1, c2], dim=1)


def _missed_share(basis: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
    """``||(I - B B^T) J||_F / ||J||_F`` per sample: the share of ``J`` outside the basis."""
    resid = jac - basis @ (basis.transpose(-1, -2) @ jac)
    return torch.linalg.matrix_norm(resid) / torch.linalg.matrix_norm(jac)


def _old_unpivoted_qr_basis(jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The algorithm this file guards against: rank and basis from an unpivoted QR's diagonal."""
    _, n, k = jac.shape
    q, r = torch.linalg.qr(jac, mode="reduced")
    r_abs = torch.diagonal(r, dim1=1, dim2=2).abs()
    keep = r_abs > default_rank_tol(n, k, jac.dtype) * r_abs.amax(dim=1, keepdim=True)
    return q * keep.unsqueeze(1).to(q.dtype), keep.sum(dim=1)


def _numpy_projector(jac: np.ndarray, rank: int) -> np.ndarray:
    u = np.linalg.svd(jac, full_matrices=False)[0][:, :rank]
    return u @ u.T


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))),
                         ids=lambda o: "".join(map(str, o)))
def test_every_column_order_of_a_2a_c1_c2(order: tuple[int, ...]) -> None:
    jac = _a_2a_c1_c2()[:, list(order)]
    tb = basis_from_jacobian(jac.unsqueeze(0))
    basis = tb.basis[0]
    assert tb.rank.tolist() == [3]
    assert float(_missed_share(basis, jac)) < SPAN_TOL
    # Orthonormal kept columns first (descending singular values), the dropped one zeroed.
    gram = basis.T @ basis
    assert torch.allclose(gram, torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=F64)),
                          atol=1e-12)
    assert float(basis[:, 3].abs().max()) == 0.0
    proj = (basis @ basis.T).numpy()
    assert np.abs(proj - _numpy_projector(jac.numpy(), 3)).max() < SPAN_TOL
    # sigma: descending, the SVD's singular values; tol: the cut-off applied to them.
    np.testing.assert_allclose(tb.sigma[0].numpy(), np.linalg.svd(jac.numpy(), compute_uv=False),
                               rtol=1e-12, atol=1e-12 * float(tb.sigma[0, 0]))
    assert float(tb.tol[0]) == default_rank_tol(10, 4, F64) * float(tb.sigma[0, 0])
    assert float(tb.sigma[0, 2]) > float(tb.tol[0]) >= float(tb.sigma[0, 3])
    # r_diag is still the unpivoted QR's diagonal (the intrinsic-dimension diagnostic).
    r = torch.linalg.qr(jac, mode="reduced")[1]
    assert torch.allclose(tb.r_diag[0].abs(), torch.diagonal(r).abs(), rtol=1e-12, atol=0)


def test_front_door_and_subspace_on_a_2a_c1_c2() -> None:
    """Through ``tangent_basis`` (a linear decoder with Jacobian J) and ``DenseSubspace``."""
    jac = _a_2a_c1_c2()
    tb = tangent_basis(lambda z: z @ jac.T, torch.zeros(2, 4, dtype=F64))
    assert tb.rank.tolist() == [3, 3]
    assert float(_missed_share(tb.basis, jac.expand(2, -1, -1)).max()) < SPAN_TOL
    space = DenseSubspace.from_tangent(tb)
    assert space.dims.tolist() == [3, 3]
    v = jac @ torch.tensor([0.3, -1.2, 0.7, 2.0], dtype=F64)  # a vector in the column space
    assert torch.allclose(space.project(v.expand(2, -1)), v.expand(2, -1), atol=1e-12)


def _rank_deficient_batch(batch: int, n: int, k: int, seed: int):
    """Random ``(batch, n, k)`` Jacobians of rank 1..k, with the dependence sparse and early.

    ``J = [G, 0] M P``: ``G`` is ``n x r`` Gaussian, ``M`` a random k x k mixing matrix whose
    first r rows are ``[A, A[:, p] D]`` (``A`` a dense r x r Gaussian, ``p`` a random partner
    column and ``D`` a random positive diagonal, so each of the k - r dependent columns is a
    multiple of ONE mixed column, like ``2a``) and whose last k - r rows are random too but
    multiply the zero columns of ``[G, 0]``; ``P`` is a random column permutation. A dense
    generic dependence would make every r columns independent, and the unpivoted QR would then
    happen to be right: sparse dependence in an early column is what exposes it.
    """
    g = np.random.default_rng(seed)
    jacs, ranks = [], []
    for _ in range(batch):
        r = int(g.integers(1, k + 1))
        gmat = np.concatenate([g.standard_normal((n, r)), np.zeros((n, k - r))], axis=1)
        mix = g.standard_normal((k, k))
        partner = g.integers(0, r, size=k - r)
        mix[:r, r:] = mix[:r, partner] * g.uniform(0.5, 3.0, size=k - r)
        jacs.append((gmat @ mix)[:, g.permutation(k)])
        ranks.append(r)
    return torch.from_numpy(np.stack(jacs)), ranks


def test_random_rank_deficient_batch() -> None:
    jac, ranks = _rank_deficient_batch(batch=32, n=50, k=8, seed=1)
    assert np.linalg.matrix_rank(jac.numpy()).tolist() == ranks  # the construction's rank
    tb = basis_from_jacobian(jac)
    assert tb.rank.tolist() == ranks
    missed = _missed_share(tb.basis, jac)
    assert float(missed.max()) < SPAN_TOL
    eye = torch.eye(8, dtype=F64)
    gram = tb.basis.transpose(1, 2) @ tb.basis
    want = eye * (torch.arange(8) < tb.rank.unsqueeze(1)).to(F64).unsqueeze(1)
    assert torch.allclose(gram, want, atol=1e-12)
    for b, r in enumerate(ranks):
        proj = (tb.basis[b] @ tb.basis[b].T).numpy()
        assert np.abs(proj - _numpy_projector(jac[b].numpy(), r)).max() < SPAN_TOL
    # The batch discriminates: the old algorithm loses part of J on many of these samples.
    old_basis, _ = _old_unpivoted_qr_basis(jac)
    assert int((_missed_share(old_basis, jac) > 1e-3).sum()) >= 8


def test_old_unpivoted_qr_basis_misses_part_of_a_2a_c1_c2() -> None:
    """The measured defect: on ``[a, 2a, c1, c2]`` the old basis leaves > 1% of J out."""
    jac = _a_2a_c1_c2().unsqueeze(0)
    old_basis, old_rank = _old_unpivoted_qr_basis(jac)
    assert old_rank.tolist() == [3]  # the rank was right; the zeroed slot was the wrong one
    assert float(old_basis[0, :, 1].abs().max()) == 0.0  # Q's SECOND column is dropped
    old_missed = float(_missed_share(old_basis, jac)[0])
    assert old_missed > 0.01
    new_missed = float(_missed_share(basis_from_jacobian(jac).basis, jac)[0])
    assert new_missed < SPAN_TOL
    print(f"\nshare of J = [a, 2a, c1, c2] outside the basis: old {old_missed:.3g}, "
          f"new {new_missed:.3g}")
