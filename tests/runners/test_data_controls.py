"""Data-shaped controls (:class:`runners.geometry.controls.DataSubspaces`) against known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from runners.geometry.controls import DataSubspaces, random_subspace_ratio
from runners.geometry.tangent import largest_principal_angle

F64 = torch.float64
VARIANCES = torch.tensor([9.0, 4.0, 1.0, 0.25, 0.0625], dtype=F64)


def _batch(k: int, size: int) -> torch.Tensor:
    return torch.full((size,), k, dtype=torch.int64)


@pytest.fixture(scope="module")
def on_subspace():
    """2000 images ``mu + S a`` on a known 5-dim subspace ``S`` of R^64, with known variances.

    ``a`` is whitened to have EXACTLY the sample covariance diag(9, 4, 1, 0.25, 0.0625): with
    plain Gaussian draws the sample covariance's off-diagonal terms (~ 3 * 2 / sqrt(2000)) would
    rotate the top principal directions by ~1e-2 rad, and "the top two are S[:, :2]" would only
    hold to that accuracy instead of to rounding.
    """
    g = torch.Generator().manual_seed(1234)
    n, k, size = 64, 5, 2000
    basis, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=F64))
    mu = 3.0 * torch.randn(n, generator=g, dtype=F64)
    a = torch.randn(size, k, generator=g, dtype=F64)
    a = a - a.mean(dim=0)
    evals, evecs = torch.linalg.eigh(a.T @ a / (size - 1))
    a = a @ (evecs @ torch.diag(evals.rsqrt()) @ evecs.T) * VARIANCES.sqrt()
    x = (mu + a @ basis.T).reshape(size, 1, 8, 8)
    return x, basis, mu


def _in_and_out(basis: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` vectors inside span(basis) and ``count`` orthogonal to it."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(count, basis.shape[0], generator=g, dtype=F64)
    inside = v @ basis @ basis.T
    return inside, v - inside


def test_principal_recovers_known_subspace(on_subspace):
    x, basis, mu = on_subspace
    d = DataSubspaces.from_images(x)
    assert d.rank == 5  # the 59 null directions are rounding and were zeroed
    torch.testing.assert_close(d.mean, mu, rtol=0, atol=1e-12)
    torch.testing.assert_close(d.scales[:5] ** 2, VARIANCES, rtol=1e-10, atol=0)

    s5 = d.principal(_batch(5, 3))
    assert s5.basis.shape == (3, 64, 5) and s5.dims.tolist() == [5, 5, 5]
    angle = largest_principal_angle(s5.basis, basis.expand(3, 64, 5))
    assert float(angle.max()) < 1e-8
    inside, outside = _in_and_out(basis, 3, seed=1)
    assert float((s5.ratio(inside) - 1).abs().max()) < 1e-10
    assert float(s5.ratio(outside).max()) < 1e-8

    # The two highest-variance directions, not just any two directions of S.
    s2 = d.principal(_batch(2, 1))
    assert s2.dims.tolist() == [2]
    assert float(largest_principal_angle(s2.basis[0], basis[:, :2])) < 1e-6
    assert float(s2.ratio(basis[:, 2:].T.contiguous()[:1]).max()) < 1e-8

    # Mixed dims in one batch: each sample keeps its own number of nested directions.
    mixed = d.principal(torch.tensor([1, 3, 5]))
    assert mixed.basis.shape == (3, 64, 5) and mixed.dims.tolist() == [1, 3, 5]
    # Asking for more directions than there is variance keeps only the real ones.
    assert d.principal(_batch(8, 1)).dims.tolist() == [5]
    with pytest.raises(ValueError):
        DataSubspaces.from_images(x, max_components=4).principal(_batch(5, 1))


def test_data_random_lives_in_the_data_span(on_subspace):
    x, basis, _ = on_subspace
    d = DataSubspaces.from_images(x)
    batch = 16
    inside, outside = _in_and_out(basis, batch, seed=2)

    # Rank-5 covariance: five N(0, Sigma) vectors span exactly S, for every sample.
    s5 = d.data_random(_batch(5, batch), generator=torch.Generator().manual_seed(0))
    assert s5.dims.tolist() == [5] * batch
    assert float(largest_principal_angle(s5.basis, basis.expand(batch, 64, 5)).max()) < 1e-8
    assert float((s5.ratio(inside) - 1).abs().max()) < 1e-10

    s3 = d.data_random(_batch(3, batch), generator=torch.Generator().manual_seed(0))
    assert s3.dims.tolist() == [3] * batch
    assert float(s3.ratio(outside).max()) < 1e-8
    # Fresh draws: samples differ from each other and from another seed's; same seed, same draws.
    between = largest_principal_angle(s3.basis[:-1], s3.basis[1:])
    assert float(between.min()) > 1e-2
    other = d.data_random(_batch(3, batch), generator=torch.Generator().manual_seed(1))
    assert float(largest_principal_angle(s3.basis, other.basis).min()) > 1e-2
    again = d.data_random(_batch(3, batch), generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.basis, s3.basis)

    # More dimensions than the covariance's rank: only the 5 real directions count.
    s8 = d.data_random(_batch(8, batch), generator=torch.Generator().manual_seed(0))
    assert s8.basis.shape == (batch, 64, 8) and s8.dims.tolist() == [5] * batch
    assert float(s8.ratio(outside).max()) < 1e-8
    assert float((s8.ratio(inside) - 1).abs().max()) < 1e-10


def test_data_random_ratio_laws():
    n, size, draws = 20, 20000, 4000
    g = torch.Generator().manual_seed(7)
    u = torch.randn(1, n, generator=g, dtype=F64)
    u = u / u.norm()

    # Isotropic data: the covariance-shaped subspace is the uniform one, r^2 ~ Beta(k/2, (n-k)/2).
    # (The sample covariance of 20000 images is I up to ~sqrt(n / N) = 3%, well inside what a
    # 4000-draw KS test can see.)
    iso = DataSubspaces.from_images(torch.randn(size, 1, 4, 5, generator=g, dtype=F64))
    k = 4
    r = iso.data_random(_batch(k, draws), generator=torch.Generator().manual_seed(11))
    ratio = r.ratio(u.expand(draws, n))
    ks = stats.kstest(ratio.numpy() ** 2, stats.beta(k / 2, (n - k) / 2).cdf)
    assert ks.pvalue > 0.01, ks

    # Sigma = diag(lam, 1, ..., 1), k = 1: the line is spanned by h = Sigma^(1/2) z, and the
    # ratio of e_1 is |h_1| / ||h|| with r^2 = lam z_1^2 / (lam z_1^2 + W), W ~ chi2_(n-1).
    # Dividing by z_1^2 + W, with U = z_1^2 / (z_1^2 + W) ~ Beta(1/2, (n-1)/2):
    # r^2 = lam U / (1 + (lam - 1) U), so P(r^2 <= t) = P(U <= t / (lam - (lam - 1) t)).
    lam = 100.0
    x = torch.randn(size, n, generator=g, dtype=F64)
    x[:, 0] *= lam ** 0.5
    aniso = DataSubspaces.from_images(x.reshape(size, 1, 4, 5))
    e1 = torch.zeros(draws, n, dtype=F64)
    e1[:, 0] = 1.0
    ratio1 = aniso.data_random(_batch(1, draws), generator=torch.Generator().manual_seed(12)).ratio(e1)
    law_u = stats.beta(0.5, (n - 1) / 2)
    mean_r = law_u.expect(lambda t: np.sqrt(lam * t / (1 + (lam - 1) * t)))  # 0.733
    sd_r = float(ratio1.std())
    assert abs(float(ratio1.mean()) - mean_r) < 4 * sd_r / draws ** 0.5
    ks1 = stats.kstest(ratio1.numpy() ** 2, lambda t: law_u.cdf(t / (lam - (lam - 1) * t)))
    assert ks1.pvalue > 0.01, ks1
    # ... and clearly above the chance of a uniform line (E r = 0.18 for n = 20).
    chance = random_subspace_ratio(n, 1, batch=draws, generator=torch.Generator().manual_seed(13))
    assert float(ratio1.mean()) > 0.7 > 3 * float(chance.mean())


def test_low_rank_route_matches_dense(on_subspace):
    x, basis, _ = on_subspace
    dense = DataSubspaces.from_images(x)
    state = torch.get_rng_state()
    low = DataSubspaces.from_images(x, max_components=5, dense_limit=16)
    assert torch.equal(torch.get_rng_state(), state)  # the sketch's seed does not leak
    assert low.components.shape == (64, 5)
    torch.testing.assert_close(low.scales, dense.scales[:5], rtol=1e-8, atol=0)
    for k in (2, 5):
        a = low.principal(_batch(k, 1)).basis[0]
        b = dense.principal(_batch(k, 1)).basis[0]
        assert float(largest_principal_angle(a, b)) < 1e-6
    again = DataSubspaces.from_images(x, max_components=5, dense_limit=16)
    assert torch.equal(again.components, low.components)
    with pytest.raises(ValueError, match="max_components"):
        DataSubspaces.from_images(x, dense_limit=16)


def test_chunked_covariance_is_the_sample_covariance():
    g = torch.Generator().manual_seed(3)
    x = 5.0 + torch.randn(53, 3, 2, 2, generator=g, dtype=F64)  # N not a multiple of the chunk
    flat = x.reshape(53, -1)
    d = DataSubspaces.from_images(x, chunk=7)
    cov = d.components @ torch.diag(d.scales ** 2) @ d.components.T
    torch.testing.assert_close(cov, torch.cov(flat.T), rtol=0, atol=1e-12)
    torch.testing.assert_close(d.mean, flat.mean(dim=0), rtol=0, atol=1e-12)
    assert bool((d.scales[:-1] >= d.scales[1:]).all())
    eye = torch.eye(12, dtype=F64)
    torch.testing.assert_close(d.components.T @ d.components, eye, rtol=0, atol=1e-12)
    # max_components keeps the leading directions only.
    top = DataSubspaces.from_images(x.float(), max_components=4)
    assert top.components.shape == (12, 4) and top.components.dtype == F64
    torch.testing.assert_close(top.scales, d.scales[:4], rtol=1e-6, atol=0)
    with pytest.raises(ValueError):
        DataSubspaces.from_images(x[:1])
