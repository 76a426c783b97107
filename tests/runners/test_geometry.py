"""Tangent spaces against ground truth: the synthetic manifold's closed-form Jacobian.

Dense (vmap(jacfwd) + QR) and matrix-free (CG / LSQR on JVP/VJP) tangent spaces are compared
with the TRUE tangent basis of the synthetic dataset, matrix-free projections with dense ones on
a CIFAR-sized manifold, and the random-subspace control with the Beta(k/2, (n-k)/2) law. The
ImageNet-scale memory test runs in a subprocess whose own peak RSS is read with ``os.wait4``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from dimple_stats.protocol.schema import SyntheticDataset, TangentConfig
from runners.datasets import load_dataset
from runners.geometry import (
    DenseSubspace,
    LinearizedDecoder,
    MatrixFreeTangent,
    basis_from_jacobian,
    beta_moments,
    decoder_in_dtype,
    gram_extreme_eigenvalues,
    largest_principal_angle,
    other_same_class,
    project,
    project_matrix_free,
    random_subspace,
    random_subspace_ratio,
    resolve_method,
    tangent_basis,
    tangent_space,
)
from runners.models.autoencoders import OracleAutoencoder

ANGLE_TOL = 1e-4  # radians, float64 (the bound)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small():
    """The default synthetic manifold: n = 64, k = 8."""
    return load_dataset(SyntheticDataset(name="synthetic", eval_samples=6, train_samples=10), seed=0)


@pytest.fixture(scope="module")
def cifar_sized():
    """n = 3 x 32 x 32 = 3072, k = 128 (hidden 256 so the generator's Jacobian has rank k)."""
    cfg = SyntheticDataset(name="synthetic", latent_dim=128, image_shape=(3, 32, 32), hidden=256,
                           eval_samples=2, train_samples=10)
    return load_dataset(cfg, seed=0)


# ------------------------------------------------------------------------- dense tangent spaces


@pytest.mark.parametrize("decoder", ["module", "oracle_autoencoder"])
def test_dense_tangent_matches_true_tangent(small, decoder: str) -> None:
    dec = (small.manifold.as_module(dtype=torch.float64) if decoder == "module"
           else decoder_in_dtype(OracleAutoencoder(small.manifold), torch.float64))
    z = small.eval.latent.to(torch.float64)
    tb = tangent_basis(dec, z, dtype=torch.float64, chunk_size=4)  # 2 chunks: exercises concat
    truth = small.eval.tangent_basis()
    angles = largest_principal_angle(truth, tb.basis)
    assert float(angles.max()) < ANGLE_TOL
    assert tb.rank.tolist() == [8] * 6 and tb.r_diag.shape == (6, 8)
    # The angle is a real discriminator: the tangent space one sample over is far away.
    assert float(largest_principal_angle(truth, tb.basis.roll(1, dims=0)).min()) > 1e-2


def test_dense_orthonormal_and_rank_from_r_diagonal() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    exact = torch.stack([w[:, 0], w[:, 1], w[:, 0] + 2 * w[:, 1]], dim=1)  # rank 2
    near = torch.stack([w[:, 0], w[:, 1], w[:, 0] + 1e-6 * w[:, 2]], dim=1)  # numerically 3
    tb = basis_from_jacobian(torch.stack([exact, near]))
    assert tb.rank.tolist() == [2, 3]
    assert float(tb.r_diag[0, 2].abs()) < 1e-12 and float(tb.r_diag[1, 2].abs()) > 1e-8
    # The dependent column is zeroed: the basis spans exactly the 2-dim column space.
    q = tb.basis[0]
    assert torch.allclose(q.T @ q, torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=q.dtype)),
                          atol=1e-12)
    assert torch.allclose(q @ q.T @ exact, exact, atol=1e-12)
    # A relative rank_tol above sigma_min / sigma_max treats the near-dependent column as dependent.
    assert basis_from_jacobian(near.unsqueeze(0), rank_tol=1e-3).rank.tolist() == [2]
    # The default cut-off is max(n, k) * eps * sigma_max (the rank is read from the singular
    # values; |diag R| is only a diagnostic).
    expected = 20 * torch.finfo(torch.float64).eps * tb.sigma[0, 0]
    assert math.isclose(float(tb.tol[0]), float(expected), rel_tol=1e-12)


def test_condition_number_dense_and_lanczos(small) -> None:
    z = small.eval.latent.to(torch.float64)
    dec = small.manifold.as_module(dtype=torch.float64)
    jac = small.manifold.jacobian(z)
    eig = torch.linalg.eigvalsh(jac.transpose(1, 2) @ jac)
    expected = eig[:, -1] / eig[:, 0]
    dense = tangent_basis(dec, z).gram_condition()
    assert torch.allclose(dense, expected, rtol=1e-8)
    op = LinearizedDecoder(dec, z)
    lo, hi = gram_extreme_eigenvalues(op, iterations=8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hi / lo, expected, rtol=1e-6)  # k = 8 Lanczos steps: exact
    lo3, hi3 = gram_extreme_eigenvalues(op, iterations=3, generator=torch.Generator().manual_seed(0))
    assert bool((hi3 / lo3 <= expected * (1 + 1e-9)).all())  # fewer steps: a lower bound


# ------------------------------------------------------------------------ matrix-free spaces


@pytest.mark.parametrize("solver", ["cg", "lsqr"])
def test_matrix_free_tangent_matches_true_tangent(small, solver: str) -> None:
    # Project the k true basis vectors of each sample; sin(largest angle) = ||Q - P Q||_2.
    truth = small.eval.tangent_basis()[:3]  # (3, n, k)
    b, n, k = truth.shape
    z = small.eval.latent[:3].to(torch.float64).repeat_interleave(k, dim=0)
    vectors = truth.transpose(1, 2).reshape(b * k, n)
    space = MatrixFreeTangent(small.manifold.as_module(dtype=torch.float64), z, solver=solver,
                              tol=1e-12, max_iter=50)
    projected = space.project(vectors).reshape(b, k, n).transpose(1, 2)
    sines = torch.linalg.matrix_norm(truth - projected, ord=2)
    assert float(torch.arcsin(sines.clamp(max=1)).max()) < ANGLE_TOL
    assert bool(space.last_info.converged.all()) and int(space.last_info.iterations.max()) <= k + 2


@pytest.mark.parametrize("solver", ["cg", "lsqr"])
def test_matrix_free_agrees_with_dense_cifar_sized(cifar_sized, solver: str) -> None:
    dec = cifar_sized.manifold.as_module(dtype=torch.float64)
    z = cifar_sized.eval.latent.to(torch.float64)
    dense = DenseSubspace.from_tangent(tangent_basis(dec, z))
    v = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = dense.project(v)
    res = project_matrix_free(dec, z, v, solver=solver, tol=1e-10, max_iter=300)
    rel = (res.projection - expected).flatten(1).norm(dim=1) / expected.flatten(1).norm(dim=1)
    assert float(rel.max()) < 1e-5
    assert bool(res.info.converged.all()) and float(res.info.residual.max()) < 1e-9
    # Reorthogonalisation restores finite termination: at most about k = 128 iterations
    # (without it CGLS needs ~1000 here, cond(J) ~ 500).
    assert int(res.info.iterations.max()) <= 140


def test_solver_reports_non_convergence(cifar_sized) -> None:
    dec = cifar_sized.manifold.as_module(dtype=torch.float64)
    z = cifar_sized.eval.latent.to(torch.float64)
    v = torch.randn(2, 3072, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    res = project_matrix_free(dec, z, v, tol=1e-12, max_iter=5)
    assert res.info.iterations.tolist() == [5, 5] and not bool(res.info.converged.any())
    assert float(res.info.residual.min()) > 1e-6  # the reported residual is the true one


def test_vector_orthogonal_to_tangent_projects_to_zero(small) -> None:
    dec = small.manifold.as_module(dtype=torch.float64)
    z = small.eval.latent[:2].to(torch.float64)
    q = small.eval.tangent_basis()[:2]
    v = torch.randn(2, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v_perp = v - torch.einsum("bnk,bk->bn", q, torch.einsum("bnk,bn->bk", q, v))
    res = project_matrix_free(dec, z, v_perp, tol=1e-10, max_iter=50)
    assert float(res.projection.norm(dim=1).max()) < 1e-8 * float(v_perp.norm(dim=1).min())


def test_auto_front_door_picks_by_n_times_k(small) -> None:
    dec = small.manifold.as_module(dtype=torch.float64)
    z = small.eval.latent[:2]
    v = small.eval.x[:2].to(torch.float64) - 0.5
    cfg = dict(dtype="float64", tol=1e-12)
    dense = project(dec, z, v, config=TangentConfig(matrix_free_threshold=64 * 8, **cfg))
    mf = project(dec, z, v, config=TangentConfig(matrix_free_threshold=64 * 8 - 1, **cfg))
    assert (dense.method, mf.method) == ("dense", "matrix_free")
    assert torch.allclose(dense.projection, mf.projection, atol=1e-10)
    assert resolve_method(150_528, 25_088, TangentConfig()) == "matrix_free"
    forced = tangent_space(dec, z, config=TangentConfig(method="matrix_free", dtype="float64"))
    assert isinstance(forced, MatrixFreeTangent) and forced.dims.tolist() == [8, 8]


def test_matrix_free_subset_relinearises(small) -> None:
    """An attack asks for subsets of samples: projections must use THOSE samples' tangents."""
    dec = small.manifold.as_module(dtype=torch.float64)
    z = small.eval.latent.to(torch.float64)
    q = small.eval.tangent_basis()
    space = MatrixFreeTangent(dec, z, tol=1e-12, max_iter=50)
    v = torch.randn(2, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    idx = torch.tensor([4, 1])
    got = space.project(v, idx)
    want = torch.einsum("bnk,bk->bn", q[idx], torch.einsum("bnk,bn->bk", q[idx], v))
    assert torch.allclose(got, want, atol=1e-9)
    assert torch.allclose(space.complement(v, idx), v - want, atol=1e-9)


def test_decoder_in_dtype_uses_exact_oracle_and_leaves_module_alone(small) -> None:
    ae = OracleAutoencoder(small.manifold)
    z = small.eval.latent[:2].to(torch.float64)
    dec = decoder_in_dtype(ae, torch.float64)
    assert torch.equal(dec(z), small.manifold.decode(z))
    net = torch.nn.Linear(8, 64)
    dec64 = decoder_in_dtype(net, torch.float64)
    assert dec64(z).dtype == torch.float64 and net.weight.dtype == torch.float32


# -------------------------------------------------------------------------------- controls


def _beta_checks(r: torch.Tensor, k: int, n: int) -> None:
    mean, var = beta_moments(k, n)
    r2 = r.to(torch.float64) ** 2
    se = math.sqrt(var / len(r2))
    # 4 standard errors: a false alarm has probability ~6e-5; a k-1 or k+1 subspace is off by
    # 1/n = 0.0156, 17 standard errors at N = 4000.
    assert abs(float(r2.mean()) - mean) < 4 * se
    ks = stats.kstest(r2.numpy(), stats.beta(k / 2, (n - k) / 2).cdf)
    assert ks.pvalue > 1e-3


def test_random_unit_vectors_against_fixed_subspace_follow_beta() -> None:
    n, k, count = 64, 8, 4000
    gen = torch.Generator().manual_seed(5)
    sub = random_subspace(n, k, batch=1, generator=gen)
    assert sub.dims.tolist() == [k]
    basis = sub.basis.expand(count, -1, -1)
    v = torch.randn(count, n, generator=gen, dtype=torch.float64)
    _beta_checks(DenseSubspace(basis).ratio(v), k, n)


def test_fresh_random_subspaces_against_fixed_vector_follow_beta() -> None:
    n, k, count = 64, 8, 4000
    gen = torch.Generator().manual_seed(6)
    subs = random_subspace(n, k, batch=count, generator=gen)
    fixed = torch.zeros(count, n, dtype=torch.float64)
    fixed[:, 0] = 1.0  # one FIXED direction: only the subspaces are random
    _beta_checks(subs.ratio(fixed), k, n)
    _beta_checks(random_subspace_ratio(n, k, batch=count, generator=gen), k, n)


def test_random_subspace_is_seeded_fresh_and_per_sample_dimension() -> None:
    a = random_subspace(30, torch.tensor([3, 5]), generator=torch.Generator().manual_seed(7))
    b = random_subspace(30, torch.tensor([3, 5]), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.basis, b.basis)
    assert a.dims.tolist() == [3, 5]
    assert float(largest_principal_angle(a.basis[0, :, :3], a.basis[1, :, :3])) > 0.1  # fresh
    q = a.basis[1]
    assert torch.allclose(q.T @ q, torch.eye(5, dtype=q.dtype), atol=1e-12)


def test_other_same_class_choice() -> None:
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 1, 1])
    picks = [other_same_class(labels, generator=torch.Generator().manual_seed(s)) for s in range(200)]
    stacked = torch.stack(picks)
    assert bool((stacked[:, 3] == -1).all())  # class 2 has one sample: no other image
    valid = stacked[:, [0, 1, 2, 4, 5, 6, 7]]
    rows = torch.tensor([0, 1, 2, 4, 5, 6, 7])
    assert not bool((valid == rows).any())  # never the sample itself
    assert bool((labels[valid] == labels[rows]).all())  # always the same class
    # Uniform over the others: sample 1 (class 1: samples 1, 4, 6, 7) picks each ~1/3 of 200.
    counts = np.bincount(stacked[:, 1].numpy(), minlength=8)[[4, 6, 7]]
    assert stats.chisquare(counts).pvalue > 1e-3
    assert torch.equal(picks[0], other_same_class(labels, generator=torch.Generator().manual_seed(0)))


# --------------------------------------------------------------------- ImageNet-scale memory

_IMAGENET_CHILD = textwrap.dedent(
    """
    import json, resource, time, torch
    from dimple_stats.protocol.schema import TangentConfig
    from runners.geometry import project
    from runners.models.autoencoders import SegNetAutoencoder

    # One thread: on a busy 2-core machine a second OpenMP thread made this 4x slower (187 s
    # against 47 s); on an idle one it gains little.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # Reduced widths except the last: the latent is 512 x 7 x 7 = 25,088 as in the reproduction.
    ae = SegNetAutoencoder(image_shape=(3, 224, 224), hidden=(8, 16, 32, 64, 512)).eval()
    for p in ae.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 224, 224, generator=gen)
    with torch.no_grad():
        z = ae.encode(x)
    v = torch.randn(x.shape, generator=gen)
    t0 = time.perf_counter()
    res = project(ae.decode, z, v, config=TangentConfig(tol=1e-2, max_iter=500))
    seconds = time.perf_counter() - t0
    pv, r = res.projection.flatten(1), (v - res.projection).flatten(1)
    # Independent check with a fresh VJP: the reported residual is ||J^T (v - Pv)|| / ||J^T v||.
    _, vjp = torch.func.vjp(lambda zz: ae.decode(zz).flatten(1), z)
    with torch.no_grad():
        resid = (vjp(r)[0].norm(dim=1) / vjp(v.flatten(1))[0].norm(dim=1)).tolist()
    print(json.dumps({
        "n": v[0].numel(), "k": z.shape[1], "method": res.method, "seconds": seconds,
        "iterations": res.info.iterations.tolist(), "residual": res.info.residual.tolist(),
        "converged": res.info.converged.tolist(), "check_residual": resid,
        "cos_r_pv": ((r * pv).sum(1) / (r.norm(dim=1) * pv.norm(dim=1))).tolist(),
        "ratio": (pv.norm(dim=1) / v.flatten(1).norm(dim=1)).tolist(),
        "self_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))
    """
)


@pytest.mark.slow
def test_imagenet_scale_matrix_free_projection_memory() -> None:
    """n = 150,528, k = 25,088: the dense basis would be 150,528 x 25,088 x 4 B = 15.1 GB.

    Measured: the peak resident set size (VmHWM) of the child process that imports torch, builds
    the SegNet and projects a batch of 2, as returned for THAT child by ``os.wait4`` (so no
    other subprocess of the test session can inflate it). It includes the ~0.6 GiB of the torch
    import itself.
    """
    proc = subprocess.Popen([sys.executable, "-c", _IMAGENET_CHILD], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    peak_gib = usage.ru_maxrss / 2**20  # Linux: KiB
    print(f"\nImageNet-scale matrix-free projection: {report}; peak RSS {peak_gib:.2f} GiB")
    assert (report["n"], report["k"], report["method"]) == (150_528, 25_088, "matrix_free")
    assert 4 * report["n"] * report["k"] > 15e9  # what the dense float32 basis would need
    assert peak_gib < 2.0
    # The solver stops on its float32 recurrence residual; the reported one is recomputed and
    # may sit a rounding above the tolerance (1.00038e-2 seen after a dependency upgrade).
    assert all(report["converged"]) and max(report["residual"]) <= 1e-2 * (1 + 1e-3)
    assert np.allclose(report["check_residual"], report["residual"], rtol=1e-2, atol=1e-4)
    # CGLS returns the orthogonal projection onto J K_m: the residual is orthogonal to it.
    assert max(abs(c) for c in report["cos_r_pv"]) < 1e-3
    assert all(0.0 < r < 1.0 for r in report["ratio"])
