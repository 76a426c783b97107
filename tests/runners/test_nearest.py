"""Nearest point on a decoder's image (``runners.geometry.nearest``): batched Levenberg-Marquardt.

References: the closed-form least-squares solution for a linear decoder, the synthetic dataset's
known manifold (a point pushed off it along the normal space has the pushed-from latent as its
foot point), and ``scipy.optimize.least_squares`` (MINPACK's LM, one problem at a time) on a small
random tanh MLP.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from dimple_stats.protocol.schema import SyntheticDataset
from runners.datasets import load_dataset
from runners.geometry.nearest import NearestLatent, nearest_latent

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp_decoder(n: int = 30, k: int = 3, hidden: int = 16, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(k, hidden), torch.nn.Tanh(),
        torch.nn.Linear(hidden, n), torch.nn.Tanh(),
    ).to(F64)
    with torch.no_grad():  # larger first layer: a clearly curved image, several LM steps needed
        net[0].weight.mul_(3.0)
    return net.eval()


def _mlp_problem(
    batch: int = 8, seed: int = 0
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Targets near (not on) the MLP's image, and starts about one unit away from their feet."""
    net = _mlp_decoder(seed=seed)
    g = _gen(seed + 1)
    z_near = torch.randn(batch, 3, generator=g, dtype=F64) * 0.5
    with torch.no_grad():
        x = net(z_near) + 0.05 * torch.randn(batch, 30, generator=g, dtype=F64)
    z0 = z_near + torch.randn(batch, 3, generator=g, dtype=F64)
    return net, x, z0


# ------------------------------------------------------------------------------- linear decoder


def test_linear_decoder_gives_the_least_squares_solution() -> None:
    n, k, batch = 40, 5, 8
    g = _gen(0)
    w = torch.randn(n, k, generator=g, dtype=F64)
    b = torch.randn(n, generator=g, dtype=F64)
    x = torch.randn(batch, n, generator=g, dtype=F64)  # far from the image: ||r*|| ~ 8
    z0 = 100.0 * torch.randn(batch, k, generator=g, dtype=F64)  # far start
    # The default tol (1e-6) is a relative gradient test: it stops with z about
    # tol * ||r*|| * ||J||_F / sigma_min^2 ~ 3e-8 from z*, so ask for more here.
    res = nearest_latent(lambda z: z @ w.T + b, x, z0, tol=1e-12)
    z_ls = torch.linalg.lstsq(w, (x - b).T, driver="gelsd").solution.T
    assert isinstance(res, NearestLatent)
    assert res.z.dtype == F64 and res.z.shape == (batch, k)
    assert torch.allclose(res.z, z_ls, rtol=0.0, atol=1e-10), (res.z - z_ls).abs().max()
    assert bool(res.converged.all())
    r_ls = torch.linalg.vector_norm(z_ls @ w.T + b - x, dim=1)
    assert torch.allclose(res.err, r_ls, rtol=1e-12, atol=0.0)
    assert bool((res.start_err > 100.0).all())


# ---------------------------------------------------------------------- known smooth manifold


@pytest.fixture(scope="module")
def synthetic():
    cfg = SyntheticDataset(name="synthetic", latent_dim=4, image_shape=(1, 8, 8), hidden=32,
                           train_samples=16, eval_samples=2)
    return load_dataset(cfg, seed=0)


def test_recovers_the_foot_of_a_normal_offset_on_the_synthetic_manifold(synthetic) -> None:
    manifold = synthetic.manifold
    z_true = synthetic.train.latent.to(F64)
    batch = z_true.shape[0]
    on = manifold.decode(z_true).reshape(batch, -1)
    basis = manifold.tangent_basis(z_true)  # (B, n, k) orthonormal
    v = torch.randn(on.shape, generator=_gen(1), dtype=F64)
    v = v - (basis @ (basis.mT @ v.unsqueeze(-1))).squeeze(-1)  # in the normal space
    offset = 0.01  # vs ||x|| ~ 4.7: well inside the reach, z_true is the unique local foot
    x = (on + offset * v / torch.linalg.vector_norm(v, dim=1, keepdim=True)).reshape(batch, 1, 8, 8)
    z0 = z_true + 0.2 * torch.randn(z_true.shape, generator=_gen(2), dtype=F64)

    res = nearest_latent(manifold.decode, x, z0)
    err = (res.z - z_true).abs().max()
    assert err < 1e-6, err
    assert bool(res.converged.all())
    assert torch.allclose(res.err, torch.full_like(res.err, offset), rtol=1e-9, atol=0.0), res.err
    # The start really was off: the encoder-like guess is much farther than the offset.
    assert bool((res.start_err > 10 * offset).all())


# ------------------------------------------------------------------- scipy as the reference


def test_matches_scipy_least_squares_on_a_tanh_mlp() -> None:
    net, x, z0 = _mlp_problem()
    res = nearest_latent(net, x, z0)
    assert bool(res.converged.all())

    def single(z: torch.Tensor) -> torch.Tensor:
        return net(z.unsqueeze(0)).squeeze(0)

    ours = res.err.numpy()
    ref = np.empty_like(ours)
    for i in range(x.shape[0]):  # the reference is one problem at a time
        xi = x[i]

        def fun(zn: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return (single(torch.from_numpy(zn)) - xi).numpy()  # noqa: B023 (called in this loop)

        def jac(zn: np.ndarray) -> np.ndarray:
            return torch.func.jacfwd(single)(torch.from_numpy(zn)).detach().numpy()

        sol = least_squares(fun, z0[i].numpy(), jac=jac, method="lm",
                            xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=2000)
        ref[i] = np.linalg.norm(sol.fun)
    # Ours never worse than MINPACK's by more than 1e-6 relative (it may find a lower minimum
    # from the same start, but on this problem both should reach the same ones).
    assert np.all(ours <= ref * (1 + 1e-6)), (ours, ref)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


# ---------------------------------------------------------------- monotonicity and bookkeeping


def test_err_never_exceeds_start_and_iteration_bookkeeping() -> None:
    net, x, z0 = _mlp_problem(seed=3)
    full = nearest_latent(net, x, z0, max_iter=50)
    assert full.err.dtype == F64 and full.start_err.dtype == F64
    assert full.iterations.dtype == torch.int64 and full.converged.dtype == torch.bool
    assert bool((full.err <= full.start_err).all())
    assert bool((full.err < 0.5 * full.start_err).all())  # it did work
    assert bool(full.converged.all())
    assert bool((full.iterations >= 2).all()) and bool((full.iterations < 50).all())
    # Converged samples stop: the counts differ between samples (per-sample masks, not a
    # global loop count).
    assert full.iterations.unique().numel() > 1

    one = nearest_latent(net, x, z0, max_iter=1)
    assert not bool(one.converged.any())  # one step is not enough on this nonlinear problem
    assert bool((one.iterations == 1).all())
    assert bool((one.err <= one.start_err).all())
    assert torch.equal(one.start_err, full.start_err)

    none = nearest_latent(net, x, z0, max_iter=0)
    assert torch.equal(none.z, z0) and torch.equal(none.err, none.start_err)
    assert bool((none.iterations == 0).all()) and not bool(none.converged.any())

    # A sample's result does not depend on its batch neighbours (masks, not coupling), and the
    # same inputs give the same result.
    solo = nearest_latent(net, x[2:3], z0[2:3])
    assert torch.allclose(solo.z, full.z[2:3], rtol=0.0, atol=1e-12)
    assert torch.equal(solo.iterations, full.iterations[2:3])
    again = nearest_latent(net, x, z0)
    assert torch.equal(again.z, full.z) and torch.equal(again.iterations, full.iterations)


def test_works_in_the_dtype_of_z0() -> None:
    net, x, z0 = _mlp_problem(seed=4)
    net32 = _mlp_decoder(seed=4).float()
    res = nearest_latent(net32, x.float(), z0.float())
    assert res.z.dtype == torch.float32
    assert res.err.dtype == F64
    assert bool((res.err <= res.start_err).all())
    ref = nearest_latent(net, x, z0)
    np.testing.assert_allclose(res.err.numpy(), ref.err.numpy(), rtol=1e-4)


def test_bad_arguments_are_refused() -> None:
    net, x, z0 = _mlp_problem(batch=2)
    with pytest.raises(ValueError, match="z0 must be"):
        nearest_latent(net, x, z0[0])
    with pytest.raises(ValueError, match="samples"):
        nearest_latent(net, x[:1], z0)
    with pytest.raises(ValueError, match="numbers per sample"):
        nearest_latent(net, x[:, :10], z0)
    with pytest.raises(ValueError, match="max_iter"):
        nearest_latent(net, x, z0, max_iter=-1)
