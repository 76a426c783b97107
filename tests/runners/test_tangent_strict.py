"""The strict tangent-coordinate attack (runners/attacks/tangent_strict.py).

Ground truth: the k-space projection against scipy's SLSQP on random small polytopes with the
degeneracies of image data (pixels at a bound turn box rows into cone rows through 0, absent
basis columns, active and inactive balls); the minimal on-manifold norm of a linear classifier
in closed form; feasibility (span, box, ball) and censoring of every returned perturbation;
and, on the digits quickstart models, an independent 30-start SLSQP search for the minimal
tangent perturbation: the attack must flip at least as many images, with norms as small.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from runners.attacks.base import batch_norm
from runners.attacks.tangent_strict import project_tangent_box, strict_tangent_attack

# ------------------------------------------------------------------ helpers


def _orthonormal(m: int, n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(m, n, k, generator=generator, dtype=torch.float64))[0]


def _span_share(basis: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``||P_T d|| / ||d||`` per row (1 for d = 0)."""
    d = delta.reshape(len(delta), -1).to(torch.float64)
    p = torch.einsum("bnk,bk->bn", basis, torch.einsum("bnk,bn->bk", basis, d))
    n = d.norm(dim=1)
    return torch.where(n > 0, p.norm(dim=1) / n.clamp_min(1e-300), torch.ones_like(n))


def _check_feasible(res, x: torch.Tensor, basis: torch.Tensor, lo: float, hi: float,
                    eps: float) -> None:
    assert res.delta.shape == x.shape
    assert bool((_span_share(basis, res.delta) >= 1 - 1e-6).all())
    adv = x.to(torch.float64) + res.delta.to(torch.float64)
    assert float(adv.min()) >= lo - 1e-6 and float(adv.max()) <= hi + 1e-6
    assert bool((batch_norm(res.delta.to(torch.float64), "l2") <= eps * (1 + 1e-6)).all())


def _slsqp_projection(u: np.ndarray, v: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                      radius: float) -> np.ndarray:
    """min ||c - v||^2 s.t. lower <= U c <= upper, ||c|| <= radius, in the present coordinates."""
    present = np.abs(u).max(axis=0) > 0
    v = np.where(present, v, 0.0)
    cons = [{"type": "ineq", "fun": lambda c: u @ c - lower, "jac": lambda c: u},
            {"type": "ineq", "fun": lambda c: upper - u @ c, "jac": lambda c: -u}]
    if np.isfinite(radius):
        # (r^2 - |c|^2) / 2r, not r^2 - |c|^2: scaled like the box rows. Unscaled, SLSQP's line
        # search stopped at the optimum (1e-10 away) with "positive directional derivative" on
        # one CPU and succeeded on another.
        cons.append({"type": "ineq", "fun": lambda c: np.array([(radius ** 2 - c @ c) / (2 * radius)]),
                     "jac": lambda c: -c[None] / radius})
    res = minimize(lambda c: 0.5 * np.sum((c - v) ** 2), np.zeros_like(v), jac=lambda c: c - v,
                   constraints=cons, method="SLSQP", options={"ftol": 1e-12, "maxiter": 1000})
    assert res.success, res.message
    return np.where(present, res.x, 0.0)


# ------------------------------------------------------------------ 1. the projection


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_is_the_euclidean_projection(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    m, n, k = 24, 20, 5
    basis = _orthonormal(m, n, k, g)
    basis[:4, :, 3:] = 0.0  # absent directions (rank below k)
    x = 2 * torch.rand(m, n, generator=g, dtype=torch.float64) - 1
    # Like image data: many pixels at a bound, whose rows become cones through 0.
    at = torch.rand(m, n, generator=g) < 0.35
    side = torch.where(torch.rand(m, n, generator=g) < 0.7, -1.0, 1.0).to(torch.float64)
    x = torch.where(at, side, x)
    x[:3] = -1.0  # every pixel at the lower bound: the cone U c >= 0 alone
    lower, upper = -1 - x, 1 - x
    v = 2 * torch.randn(m, k, generator=g, dtype=torch.float64)
    radius = torch.where(torch.rand(m, generator=g) < 0.5,
                         torch.tensor(float("inf"), dtype=torch.float64),
                         0.1 + torch.rand(m, generator=g, dtype=torch.float64))
    res = project_tangent_box(basis, v, lower, upper, radius)
    assert float(res.violation.max()) <= 1e-9
    for i in range(m):
        ref = _slsqp_projection(basis[i].numpy(), v[i].numpy(), lower[i].numpy(),
                                upper[i].numpy(), float(radius[i]))
        assert np.linalg.norm(res.point[i].numpy() - ref) <= 1e-6, i
    # A warm start from the solution's active set (or another point's) changes nothing.
    again = project_tangent_box(basis, v, lower, upper, radius, warm=res.active)
    assert torch.allclose(again.point, res.point, atol=1e-9)
    other = project_tangent_box(basis, -v, lower, upper, radius, warm=res.active)
    cold = project_tangent_box(basis, -v, lower, upper, radius)
    assert torch.allclose(other.point, cold.point, atol=1e-9)


def test_float32_basis_is_solved_in_float64() -> None:
    """The tolerances are float64 rounding: a float32 basis (the default ``tangent.dtype``) once
    met no row to them, so every solve ran its whole iteration budget (100-300x the steps on an
    MNIST conv decoder). Promoted, it is the float64 problem of the same (rounded) basis: the
    same point and the same number of active-set steps."""
    g = torch.Generator().manual_seed(7)
    m, n, k = 16, 30, 6
    basis32 = _orthonormal(m, n, k, g).to(torch.float32)
    x = torch.where(torch.rand(m, n, generator=g) < 0.4, -1.0,
                    2 * torch.rand(m, n, generator=g, dtype=torch.float64) - 1)
    v = 2 * torch.randn(m, k, generator=g, dtype=torch.float64)
    radius = 0.2 + torch.rand(m, generator=g, dtype=torch.float64)
    low = project_tangent_box(basis32, v.float(), (-1 - x).float(), (1 - x).float(), radius.float())
    high = project_tangent_box(basis32.double(), v.float().double(), (-1 - x).float().double(),
                               (1 - x).float().double(), radius.float().double())
    assert low.point.dtype == torch.float32
    assert torch.allclose(low.point.double(), high.point, atol=1e-6)
    assert torch.equal(low.iterations, high.iterations)
    assert int(high.iterations.max()) < 200  # far below one solve's budget


def test_projection_without_box_or_ball_is_the_identity_on_present_coordinates() -> None:
    g = torch.Generator().manual_seed(3)
    basis = _orthonormal(4, 10, 3, g)
    basis[0, :, 2] = 0.0
    v = torch.randn(4, 3, generator=g, dtype=torch.float64)
    inf = torch.full((4, 10), float("inf"), dtype=torch.float64)
    res = project_tangent_box(basis, v, -inf, inf)
    expected = v.clone()
    expected[0, 2] = 0.0
    assert torch.allclose(res.point, expected)
    ball = project_tangent_box(basis, v, -inf, inf, torch.full((4,), 0.5, dtype=torch.float64))
    assert torch.allclose(ball.point, expected * (0.5 / expected.norm(dim=1, keepdim=True)
                                                  ).clamp(max=1.0))


# ------------------------------------------------------------------ 2. closed form


@pytest.mark.parametrize("loss", ["margin", "ce"])
def test_linear_classifier_minimal_norm_in_closed_form(loss: str) -> None:
    """A linear classifier ``w``, a random k-subspace T, no active box: the minimal on-manifold
    norm is ``margin / ||P_T w||``, ``w`` the difference of the two classes' weights (either
    loss: for two classes both ascend along ``P_T w``)."""
    g = torch.Generator().manual_seed(0)
    n, k, size = 12, 3, 8
    model = nn.Linear(n, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, n, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64))
    x = 0.3 * torch.randn(size, n, generator=g, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(dim=1)
    basis = _orthonormal(size, n, k, g)
    basis[0, :, 2] = 0.0  # one image with an absent direction
    res = strict_tangent_attack(model, x, y, basis, eps=50.0, bounds=(-100.0, 100.0),
                                steps=200, restarts=2, generator=torch.Generator().manual_seed(1),
                                loss=loss)
    w = model.weight.detach()[y] - model.weight.detach()[1 - y]  # (size, n)
    p_w = torch.einsum("bnk,bk->bn", basis, torch.einsum("bnk,bn->bk", basis, w))
    margin = logits.gather(1, y[:, None]).squeeze(1) - logits.gather(1, (1 - y)[:, None]).squeeze(1)
    expected = margin / p_w.norm(dim=1)
    assert bool((expected < 50.0).all())
    assert bool(res.success.all())
    assert torch.allclose(res.norm, expected, rtol=1e-3), (res.norm, expected)
    _check_feasible(res, x, basis, -100.0, 100.0, 50.0)


def test_nearest_class_not_the_runner_up() -> None:
    """Three linear classes: the minimal norm is ``min_j (f_y - f_j) / ||P_T (w_y - w_j)||``
    also where the nearest boundary within T is not the runner-up class's (the one the
    margin's gradient points at): the targeted restart finds it."""
    g = torch.Generator().manual_seed(0)
    n, k, size = 12, 3, 6
    model = nn.Linear(n, 3).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, n, generator=g, dtype=torch.float64))
        model.bias.zero_()
    x = 0.3 * torch.randn(size, n, generator=g, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(dim=1)
    basis = _orthonormal(size, n, k, g)
    w = model.weight.detach()
    true = logits.gather(1, y[:, None]).squeeze(1)
    dist = torch.stack([
        torch.where(y == j, torch.tensor(float("inf"), dtype=torch.float64),
                    (true - logits[:, j]) / torch.einsum(
                        "bnk,bk->bn", basis, torch.einsum("bnk,bn->bk", basis, w[y] - w[j])
                    ).norm(dim=1)) for j in range(3)], dim=1)
    runner_up = logits.scatter(1, y[:, None], float("-inf")).argmax(dim=1)
    assert bool((dist.argmin(dim=1) != runner_up).any())  # the case this test is about
    res = strict_tangent_attack(model, x, y, basis, eps=50.0, bounds=(-100.0, 100.0),
                                steps=200, restarts=2, generator=torch.Generator().manual_seed(1))
    assert bool(res.success.all())
    assert torch.allclose(res.norm, dist.min(dim=1).values, rtol=1e-3)


# ------------------------------------------------------------------ 3. feasibility, censoring


def test_feasible_censored_and_deterministic() -> None:
    g = torch.Generator().manual_seed(5)
    n, k, size = 16, 2, 8
    model = nn.Sequential(nn.Linear(n, 32), nn.Tanh(), nn.Linear(32, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = 2 * torch.rand(size, n, generator=g, dtype=torch.float64) - 1
    x = torch.where(torch.rand(size, n, generator=g) < 0.3, torch.tensor(-1.0, dtype=torch.float64),
                    x)
    basis = _orthonormal(size, n, k, g)
    # Image 0: every pixel at the lower bound and a basis whose rows are +-e_j / sqrt(2): the
    # feasible set of c is {0}, so x + T meets the box only at x.
    x[0] = -1.0
    basis[0] = 0.0
    for j in range(k):
        basis[0, 2 * j, j], basis[0, 2 * j + 1, j] = 2 ** -0.5, -(2 ** -0.5)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    eps = 6.0
    run = lambda: strict_tangent_attack(model, x, y, basis, eps=eps, bounds=(-1.0, 1.0),  # noqa: E731
                                        steps=60, restarts=4,
                                        generator=torch.Generator().manual_seed(0))
    res = run()
    _check_feasible(res, x, basis, -1.0, 1.0, eps)
    assert not bool(res.success[0]) and float(res.norm[0]) == eps
    assert float(res.delta[0].abs().max()) <= 1e-12
    assert torch.equal(res.norm[~res.success], torch.full_like(res.norm[~res.success], eps))
    ok = res.success
    assert bool(ok[1:].any())  # the others are attackable within the budget
    assert torch.allclose(res.norm[ok], batch_norm(res.delta[ok], "l2"))
    with torch.no_grad():
        assert bool((model(x[ok] + res.delta[ok]).argmax(dim=1) != y[ok]).all())
    assert res.p == "l2" and res.eps == eps
    assert res.steps.tolist() == [4 * 60] * size
    assert bool((res.forward_evals >= 4 * 61).all())
    assert res.projection_iters is not None and res.projection_residual is not None
    assert float(res.projection_residual.max()) <= 1e-9
    again = run()
    assert torch.equal(again.delta, res.delta) and torch.equal(again.success, res.success)


def test_rejects_bad_arguments() -> None:
    model = nn.Linear(4, 2)
    x, y = torch.zeros(2, 4), torch.zeros(2, dtype=torch.int64)
    basis = torch.eye(4, dtype=torch.float64)[:, :2].expand(2, 4, 2)
    with pytest.raises(ValueError):
        strict_tangent_attack(model, x, y, basis, eps=0.0, bounds=None)
    with pytest.raises(ValueError):
        strict_tangent_attack(model, x, y, basis, eps=1.0, bounds=None, loss="hinge")
    with pytest.raises(ValueError):
        strict_tangent_attack(model, x, y, basis[:1], eps=1.0, bounds=None)


# ------------------------------------------------------------------ 4. digits quickstart

COUNT, STARTS, EPS = 30, 30, 8.0


@pytest.fixture(scope="session")
def quickstart_seed0(tmp_path_factory):
    """The quickstart protocol's seed-0 classifier and autoencoders, trained by the project's own
    entry point into a fresh store, and the first correctly classified eval images."""
    from dimple_stats import load_protocol
    from runners.measure import correctly_classified
    from runners.seed_models import load_seed_data, train_seed_models
    from runners.store import ArtifactStore

    protocol = load_protocol(Path(__file__).resolve().parents[2] / "protocols" / "quickstart.yaml")
    data = load_seed_data(protocol, 0)
    models = train_seed_models(protocol, data, seed=0,
                               store=ArtifactStore(tmp_path_factory.mktemp("store")),
                               device=torch.device("cpu"))
    clf = models.classifier.model.eval()
    x, y = data.eval.x, data.eval.y
    keep = correctly_classified(clf, x, y)
    return (clf, {name: r.model.eval() for name, r in models.autoencoders.items()},
            x[keep][:COUNT], y[keep][:COUNT], data.pixel_range)


def _margin_and_grad(clf: nn.Module, x: torch.Tensor, y: int, u: torch.Tensor, c: np.ndarray
                     ) -> tuple[float, np.ndarray]:
    """``f_y - max_{j != y} f_j`` at ``x + U c`` and its gradient in c (torch autograd)."""
    ct = torch.from_numpy(c.copy()).requires_grad_(True)
    logits = clf((x + u @ ct).to(torch.float32).reshape(1, 1, 8, 8))[0]
    others = logits.clone()
    others[y] = -float("inf")
    m = logits[y] - others.max()
    (g,) = torch.autograd.grad(m, ct)
    return float(m.detach()), g.numpy()


def _slsqp_minimal_norm(clf: nn.Module, x: torch.Tensor, y: int, u: torch.Tensor, lo: float,
                        hi: float, *, seed: int) -> float:
    """Independent reference: min ||c||^2 s.t. margin(x + U c) <= -1e-4, lo <= x + U c <= hi,
    ||c|| <= EPS by SLSQP from c = 0 and 29 random starts; the smallest norm of a start that
    ends feasible and misclassified (NaN when none does)."""
    un = u.numpy()
    xd = x.reshape(-1).to(torch.float64)
    lower, upper = lo - xd.numpy(), hi - xd.numpy()
    # A box row whose bound is farther than ||U_i|| EPS is implied by ||c|| <= EPS: leaving it
    # out changes nothing but SLSQP's time, which grows with the number of constraints.
    reach = np.linalg.norm(un, axis=1) * EPS
    low_rows, high_rows = -lower <= reach, upper <= reach
    u_low, u_high = un[low_rows], un[high_rows]
    cache: dict[bytes, tuple[float, np.ndarray]] = {}

    def margin(c: np.ndarray) -> tuple[float, np.ndarray]:
        key = c.tobytes()
        if key not in cache:  # SLSQP asks for value and gradient at the same point
            cache.clear()
            cache[key] = _margin_and_grad(clf, xd, y, u, c)
        return cache[key]

    cons = [{"type": "ineq", "fun": lambda c: np.array([-margin(c)[0] - 1e-4]),
             "jac": lambda c: -margin(c)[1][None]},
            {"type": "ineq", "fun": lambda c: u_low @ c - lower[low_rows], "jac": lambda c: u_low},
            {"type": "ineq", "fun": lambda c: upper[high_rows] - u_high @ c,
             "jac": lambda c: -u_high},
            {"type": "ineq", "fun": lambda c: np.array([EPS ** 2 - c @ c]),
             "jac": lambda c: -2 * c[None]}]
    rng = np.random.default_rng(seed)
    k = un.shape[1]
    best = np.nan
    for start in range(STARTS):
        c0 = (np.zeros(k) if start == 0
              else rng.standard_normal(k) * rng.uniform(0.5, EPS) / np.sqrt(k))
        c = minimize(lambda c: c @ c, c0, jac=lambda c: 2 * c, constraints=cons, method="SLSQP",
                     options={"maxiter": 60, "ftol": 1e-10}).x
        d = un @ c
        feasible = ((d >= lower - 1e-7).all() and (d <= upper + 1e-7).all()
                    and c @ c <= EPS ** 2 + 1e-6)
        with torch.no_grad():
            adv = int(clf((xd + torch.from_numpy(d)).float().reshape(1, 1, 8, 8)).argmax()) != y
        if feasible and adv and not np.linalg.norm(c) >= best:
            best = float(np.linalg.norm(c))
    return best


@pytest.mark.slow
# The plain autoencoder is the case the review found weak (14/30 vs SLSQP's 20/30); the
# isometric one (26/30 both, measured when this was written) is left out to keep CI short.
@pytest.mark.parametrize("autoencoder", ["plain"])
def test_digits_at_least_as_strong_as_slsqp(quickstart_seed0, autoencoder: str) -> None:
    from dimple_stats.protocol.schema import TangentConfig
    from runners.attacks.pgd import L2PGD
    from runners.geometry.spaces import decoder_in_dtype, tangent_space

    clf, autoencoders, x, y, (lo, hi) = quickstart_seed0
    ae = autoencoders[autoencoder]
    with torch.no_grad():
        z = ae.encode(x)
    space = tangent_space(decoder_in_dtype(ae, torch.float64), z,
                          config=TangentConfig(method="dense", dtype="float64"), n=x[0].numel())
    basis = space.basis

    clock = time.perf_counter()
    res = strict_tangent_attack(clf, x, y, basis, eps=EPS, bounds=(lo, hi),
                                generator=torch.Generator().manual_seed(0))
    ours_s = time.perf_counter() - clock
    clock = time.perf_counter()
    old = L2PGD(eps=EPS, step=0.2, steps=300, refine=True, bounds=(lo, hi), box="strict")(
        clf, x, y, project_gradient=space.on_manifold(), generator=torch.Generator().manual_seed(0))
    old_s = time.perf_counter() - clock

    _check_feasible(res, x, basis, lo, hi, EPS)
    with torch.no_grad():
        flipped = clf(x + res.delta).argmax(dim=1) != y
    assert torch.equal(flipped, res.success)

    ref = np.array([_slsqp_minimal_norm(clf, x[i], int(y[i]), basis[i], lo, hi, seed=i)
                    for i in range(len(x))])
    ours = np.where(res.success.numpy(), res.norm.numpy().astype(np.float64), np.nan)
    both = np.isfinite(ref) & np.isfinite(ours)
    ratio = float(np.median(ours[both]) / np.median(ref[both]))
    print(f"\n{autoencoder}: strict tangent {int(res.success.sum())}/{len(x)} "
          f"({ours_s:.1f}s), L2PGD strict {int(old.success.sum())}/{len(x)} ({old_s:.1f}s, "
          f"time ratio {ours_s / old_s:.2f}), SLSQP {int(np.isfinite(ref).sum())}/{len(x)}; "
          f"median norm on the {int(both.sum())} both solve: {np.median(ours[both]):.4f} vs "
          f"SLSQP {np.median(ref[both]):.4f}; SLSQP only: "
          f"{np.flatnonzero(np.isfinite(ref) & ~np.isfinite(ours)).tolist()}, ours only: "
          f"{np.flatnonzero(~np.isfinite(ref) & np.isfinite(ours)).tolist()}")
    assert int(res.success.sum()) >= int(np.isfinite(ref).sum())
    assert int(res.success.sum()) >= int(old.success.sum())
    assert ratio <= 1.05
