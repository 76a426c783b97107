"""The attack's feasible set (``attack.box``): on-manifold perturbations that stay in T, off-manifold
ones that stay in T-perp, with the pixel bounds ACTIVE (most pixels of digits and MNIST sit at a
bound), and the two comparison modes: ``clip`` (the reproduction's, which leaves T) and ``none``.

Ground truth: the projection against a general-purpose constrained optimiser (scipy), the minimal
on-manifold distance of a linear classifier on a linear manifold in closed form, and membership
measured with an independent SVD basis of the decoder Jacobian.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dimple_stats.protocol.schema import (
    AutoencoderConfig,
    ClassifierConfig,
    DigitsDataset,
    LinearSubspaceDataset,
    TangentConfig,
    TorchvisionDataset,
)
from runners.attacks import L2PGD, LinfPGD
from runners.attacks.feasible import admm
from runners.datasets import load_dataset
from runners.geometry import DenseSubspace
from runners.geometry.jacobian import decoder_jacobian
from runners.geometry.spaces import decoder_in_dtype, tangent_space
from runners.measure import correctly_classified
from runners.models.classifiers import LinearClassifier, freeze
from runners.training import train_autoencoder, train_classifier

# ------------------------------------------------------------------ the projection itself


def _exact_projection(q: np.ndarray, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Projection of v onto {Q c : lo <= Q c <= hi} by enumerating active sets (exact for small
    k: the optimum has at most k active constraints; take the best feasible candidate)."""
    n, k = q.shape
    rows = np.vstack([q, -q])
    rhs = np.concatenate([hi, -lo])
    c0 = q.T @ v
    best, best_val = None, np.inf
    for size in range(k + 1):
        for active in itertools.combinations(range(2 * n), size):
            a = rows[list(active)]
            if size:  # min ||c - c0||^2 s.t. a c = b: c = c0 - a^T (a a^T)^-1 (a c0 - b)
                gram = a @ a.T
                if np.linalg.matrix_rank(gram) < size:
                    continue
                c = c0 - a.T @ np.linalg.solve(gram, a @ c0 - rhs[list(active)])
            else:
                c = c0
            if (rows @ c <= rhs + 1e-12).all():
                val = float(np.sum((c - c0) ** 2))
                if val < best_val:
                    best, best_val = c, val
    assert best is not None
    return q @ best


def test_projection_equals_the_exact_projection_onto_subspace_and_box() -> None:
    """P onto T ∩ box (ball not binding) equals the exact active-set solution, and the ball
    is respected when it binds."""
    gen = torch.Generator().manual_seed(0)
    n, k, m = 10, 3, 6
    q, _ = torch.linalg.qr(torch.randn(m, n, k, generator=gen, dtype=torch.float64))
    x = torch.rand(m, n, generator=gen, dtype=torch.float64)
    x[:, : n // 4] = 0.0  # pixels at the lower bound, as on MNIST
    lo, hi = -x, 1.0 - x
    v = 2.0 * torch.randn(m, n, generator=gen, dtype=torch.float64)

    def onto_a(eps: float):
        def project(w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            p = torch.einsum("bnk,bk->bn", q[rows], torch.einsum("bnk,bn->bk", q[rows], w))
            return p * torch.clamp(eps / p.norm(dim=1, keepdim=True).clamp_min(1e-300), max=1.0)
        return project

    def onto_box(w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(w, hi[rows]), lo[rows])

    res = admm(onto_a(100.0), onto_box, v, tol=1e-11, atol=1e-13, max_iter=50000)
    assert bool(res.converged.all())
    exact = np.stack([_exact_projection(q[i].numpy(), v[i].numpy(), lo[i].numpy(), hi[i].numpy())
                      for i in range(m)])
    assert float(np.linalg.norm(exact, axis=1).min()) > 0.02  # not the trivial answer 0
    assert np.abs(res.point.numpy() - exact).max() < 1e-7
    assert bool(((res.point >= lo) & (res.point <= hi)).all())  # in the box exactly
    # With a binding ball: inside it (to the residual), in the box, in T to the residual.
    eps = 0.5 * float(np.linalg.norm(exact, axis=1).min())
    small = admm(onto_a(eps), onto_box, v, tol=1e-10, atol=1e-13, max_iter=50000)
    assert float(small.point.norm(dim=1).max()) <= eps * (1 + 1e-8)
    off_t = small.point - onto_a(1e9)(small.point, torch.arange(m))
    assert float(off_t.norm(dim=1).max()) <= float(small.residual.max()) + 1e-12
    assert bool(((small.point >= lo) & (small.point <= hi)).all())


# ------------------------------------------------- linear manifold: closed-form distance


@pytest.fixture(scope="module")
def linear_manifold():
    return load_dataset(LinearSubspaceDataset(name="linear_subspace", latent_dim=8,
                                              eval_samples=64, train_samples=10), seed=0)


def test_strict_on_manifold_matches_closed_form_and_stays_in_the_box(linear_manifold) -> None:
    data = linear_manifold
    torch.manual_seed(8)
    model = freeze(LinearClassifier(image_shape=(1, 1, data.n), num_classes=2))
    x = data.eval.x.reshape(len(data.eval.x), 1, 1, -1)
    w = model.fc.weight[0] - model.fc.weight[1]
    with torch.no_grad():  # the boundary through the data, so that some distances are short
        model.fc.bias[0] = model.fc.bias[1] - (x.flatten(1) @ w).median()
    b = model.fc.bias[0] - model.fc.bias[1]
    score = x.flatten(1) @ w + b
    y = (score < 0).long()
    basis = data.eval.tangent_basis()
    space = DenseSubspace(basis)
    w64 = w.to(torch.float64)
    pw = basis[0] @ (basis[0].T @ w64)
    expected = score.abs().to(torch.float64) / pw.norm()  # within-manifold boundary distance
    lo, hi = data.pixel_range
    # Where x + (the closed-form minimal on-manifold perturbation) is inside the box, the box
    # is not active and the strict attack must find that distance.
    step_dir = -torch.sign(score).to(torch.float64).unsqueeze(1) * (pw / pw.norm())
    end = x.flatten(1).to(torch.float64) + expected.unsqueeze(1) * step_dir
    inactive = ((end > lo + 1e-3) & (end < hi - 1e-3)).all(dim=1) & (expected > 1e-3)
    assert int(inactive.sum()) >= 8
    res = L2PGD(eps=100.0, step=float(expected.max()) / 20, steps=200, refine=True,
                bounds=data.pixel_range, box="strict")(model, x, y,
                                                       project_gradient=space.on_manifold())
    adv = x + res.delta
    assert bool(((adv >= lo) & (adv <= hi)).all())  # never leaves the box
    ok = res.success & inactive
    assert int(ok.sum()) == int(inactive.sum())
    rel = ((res.norm[ok].double() - expected[ok]).abs() / expected[ok])
    assert float(rel.max()) < 0.01
    ratio = space.ratio(res.delta.reshape(len(x), -1))
    moved = res.success & (res.norm > 0)  # a sample ON the boundary succeeds with delta = 0
    assert float(ratio[moved].min()) > 0.999999


# ---------------------------------------------------------- trained models, bounds active


def _models(data, dataset_config, *, clf_epochs: int, ae: AutoencoderConfig):
    clf = train_classifier(ClassifierConfig(arch="mlp", hidden=(128,), epochs=clf_epochs),
                           data, data_config=dataset_config, seed=0)
    auto = train_autoencoder(ae, data, data_config=dataset_config, seed=0)
    return clf.model.eval(), auto.model.eval()


def _independent_basis(autoencoder, x: torch.Tensor) -> torch.Tensor:
    """Tangent basis by SVD of the float64 Jacobian: not the code path the attack used."""
    decode = decoder_in_dtype(autoencoder, torch.float64)
    with torch.no_grad():
        z = autoencoder.encode(x).to(torch.float64)
    jac = decoder_jacobian(decode, z, chunk_size=16)
    u, s, _ = torch.linalg.svd(jac, full_matrices=False)
    return u * (s > s[:, :1] * 1e-10).unsqueeze(1).to(u.dtype)


def _share(basis: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    flat = d.flatten(1).to(torch.float64)
    return torch.einsum("bnk,bn->bk", basis, flat).norm(dim=1) / flat.norm(dim=1)


def _membership_case(clf, auto, x, y, bounds, *, eps, step, steps):
    keep = correctly_classified(clf, x, y)
    x, y = x[keep], y[keep]
    lo, hi = bounds
    at_bound = float(((x <= lo + 1e-6) | (x >= hi - 1e-6)).double().mean())
    with torch.no_grad():
        z = auto.encode(x)
    space = tangent_space(decoder_in_dtype(auto, torch.float64), z,
                          config=TangentConfig(dtype="float64"))
    basis = _independent_basis(auto, x)
    out = {"at_bound": at_bound}
    for box in ("strict", "clip", "none"):
        for mode, proj in (("on", space.on_manifold()), ("off", space.off_manifold())):
            res = L2PGD(eps=eps, step=step, steps=steps, refine=True, bounds=bounds, box=box)(
                clf, x, y, project_gradient=proj)
            adv = x + res.delta
            out[box, mode] = {
                "success": res.success,
                # Every iterate must stay in its set, so failed attacks' last iterates count too;
                # except those pinned at 0 by the box (norm ~1e-10: float32 rounding of x + 0,
                # a direction without meaning). A thousandth of a step is far above rounding.
                "moved": res.delta.flatten(1).norm(dim=1) > 1e-3 * step,
                "norm": res.delta.flatten(1).norm(dim=1),
                "steps": res.steps,
                "share": _share(basis, res.delta),
                "in_box": bool(((adv >= lo - 1e-6) & (adv <= hi + 1e-6)).all()),
            }
    return out


def _check_membership_modes(out) -> None:
    on, off = out["strict", "on"], out["strict", "off"]
    assert int(on["moved"].sum()) >= 3 and int(off["success"].sum()) >= 3
    assert float(on["share"][on["moved"]].min()) >= 0.999
    assert float(off["share"][off["moved"]].max()) <= 1e-3
    # What did not move (pinned by the box: x + T meets it only at x) stops there, at a fixed
    # point of the projected step, instead of spending its budget.
    pinned = ~on["moved"]
    # of a budget of 150; most stop after the 10 stalled steps of the rule, a few wander first
    # (at most 58 steps on 64 MNIST-sample images, seed 0)
    assert bool((on["steps"][pinned] <= 75).all())
    assert on["in_box"] and off["in_box"]
    # clip is real: it leaves T where pixels sit at a bound.
    c_on, c_off = out["clip", "on"], out["clip", "off"]
    assert float(c_on["share"][c_on["success"]].median()) < 0.99
    assert float(c_off["share"][c_off["success"]].median()) > 0.05
    assert c_on["in_box"] and c_off["in_box"]
    # none ignores the bounds: exactly in the subspace, and outside the pixel box somewhere.
    n_on, n_off = out["none", "on"], out["none", "off"]
    assert float(n_on["share"][n_on["success"]].min()) > 0.9999
    assert float(n_off["share"][n_off["success"]].max()) < 1e-4
    assert not (n_on["in_box"] and n_off["in_box"])


@pytest.mark.slow
def test_strict_membership_on_digits_models() -> None:
    config = DigitsDataset(name="digits", pixel_range=(-1.0, 1.0), eval_samples=40)
    data = load_dataset(config, seed=0)
    clf, auto = _models(data, config, clf_epochs=15,
                        ae=AutoencoderConfig(arch="mlp", latent_dim=8, hidden=(128, 64),
                                             epochs=25))
    out = _membership_case(clf, auto, data.eval.x, data.eval.y, data.pixel_range,
                           eps=8.0, step=0.1, steps=150)
    assert out["at_bound"] > 0.4  # the regime where clip and strict differ
    _check_membership_modes(out)


@pytest.mark.slow
def test_strict_membership_on_the_mnist_sample(mnist_sample) -> None:
    config = TorchvisionDataset(name="mnist", root=str(mnist_sample), download=False,
                          train_samples=2000, eval_samples=64)
    data = load_dataset(config, seed=0)
    clf, auto = _models(data, config, clf_epochs=5,
                        ae=AutoencoderConfig(arch="mlp", latent_dim=16, hidden=(256, 256),
                                             epochs=10))
    out = _membership_case(clf, auto, data.eval.x, data.eval.y, data.pixel_range,
                           eps=10.0, step=0.1, steps=150)
    assert out["at_bound"] > 0.7  # most MNIST pixels sit at 0
    _check_membership_modes(out)


def test_linf_strict_stays_in_subspace_ball_and_box(linear_manifold) -> None:
    data = linear_manifold
    torch.manual_seed(3)
    model = freeze(LinearClassifier(image_shape=(1, 1, data.n), num_classes=2))
    x = data.eval.x.reshape(len(data.eval.x), 1, 1, -1)[:16]
    y = model(x).argmax(1)
    space = DenseSubspace(data.eval.tangent_basis()[:16])
    eps = 0.3
    res = LinfPGD(eps=eps, step=0.02, steps=60, refine=False, bounds=data.pixel_range,
                  box="strict")(model, x, y, project_gradient=space.on_manifold())
    lo, hi = data.pixel_range
    d = res.delta.flatten(1)
    moved = d.norm(dim=1) > 0
    assert int(moved.sum()) >= 8
    assert float(d.abs().max()) <= eps + 1e-6
    assert bool(((x + res.delta >= lo) & (x + res.delta <= hi)).all())
    assert float(space.ratio(d)[moved].min()) > 0.999
