"""Minimal-norm PGD against closed forms (linear classifiers, linear manifolds) and torchattacks.

For a linear classifier the distance to the decision boundary is known exactly, and for a
linear manifold (the ``linear_subspace`` dataset) so is the distance within the manifold:
``margin / ||P_T w||``. The refined attacks must hit these within 1%.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dimple_stats.protocol.schema import AttackConfig, LinearSubspaceDataset, SyntheticDataset
from runners.attacks import (
    L2PGD,
    LinfPGD,
    attack_from_config,
    cosine_schedule,
    input_gradient,
    margin_loss,
    pgd,
)
from runners.attacks.factory import SEARCH_STEPS
from runners.datasets import load_dataset
from runners.geometry import DenseSubspace
from runners.models.classifiers import LinearClassifier, MLPClassifier, freeze


def _binary_linear(n: int, seed: int) -> LinearClassifier:
    torch.manual_seed(seed)
    return freeze(LinearClassifier(image_shape=(1, 1, n), num_classes=2))


def _binary_distance(model: LinearClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels = current predictions; distance |(w0 - w1) x + b0 - b1| / ||w0 - w1||."""
    w, b = model.fc.weight, model.fc.bias
    diff_w, diff_b = w[0] - w[1], b[0] - b[1]
    score = x.flatten(1) @ diff_w + diff_b
    return (score < 0).long(), score.abs() / diff_w.norm()


# ------------------------------------------------------------------- closed-form distances


def test_refined_l2_norm_equals_linear_boundary_distance() -> None:
    model = _binary_linear(20, seed=0)
    x = torch.randn(64, 1, 1, 20, generator=torch.Generator().manual_seed(1))
    y, dist = _binary_distance(model, x)
    step = float(dist.max()) / 4  # coarse: the unrefined attack overshoots by up to one step
    common = dict(eps=10 * float(dist.max()), step=step, steps=20, bounds=None)
    refined = L2PGD(refine=True, refine_steps=14, **common)(model, x, y)
    raw = L2PGD(refine=False, **common)(model, x, y)
    assert bool(refined.success.all()) and bool(raw.success.all())
    rel = (refined.norm - dist).abs() / dist
    assert float(rel.max()) < 0.01
    assert bool((refined.norm >= dist * (1 - 1e-6)).all())  # still adversarial: never inside
    assert float(((raw.norm - dist) / dist).max()) > 0.05  # refinement is what makes it minimal
    logits = model(x + refined.delta)
    assert bool((logits.argmax(1) != y).all())


def test_multiclass_refined_norm_is_bounded_by_closed_form_distance() -> None:
    torch.manual_seed(2)
    model = freeze(LinearClassifier(image_shape=(1, 1, 10), num_classes=4))
    x = torch.randn(200, 1, 1, 10, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)
    w, b = model.fc.weight, model.fc.bias
    diff_w = w[y].unsqueeze(1) - w.unsqueeze(0)  # (B, C, n): w_y - w_j
    diff_b = b[y].unsqueeze(1) - b.unsqueeze(0)
    score = torch.einsum("bcn,bn->bc", diff_w, x.flatten(1)) + diff_b
    dist = score / diff_w.norm(dim=2).clamp_min(1e-12)
    dist = dist.masked_fill(nn.functional.one_hot(y, 4).bool(), float("inf")).amin(dim=1)
    res = L2PGD(eps=50.0, step=0.01, steps=2000, refine=True, bounds=None)(model, x, y)
    assert bool(res.success.all())
    # No adversarial example can be closer than the boundary; the margin-loss path reaches
    # the nearest boundary for most samples (it starts towards the runner-up class).
    assert bool((res.norm >= dist * (1 - 1e-4)).all())  # float32 rounding at the boundary
    rel = (res.norm - dist) / dist
    assert float((rel < 0.01).double().mean()) > 0.8


def test_linf_refined_norm_equals_linear_distance() -> None:
    model = _binary_linear(20, seed=4)
    x = torch.randn(32, 1, 1, 20, generator=torch.Generator().manual_seed(5))
    y, l2 = _binary_distance(model, x)
    diff_w = model.fc.weight[0] - model.fc.weight[1]
    dist = l2 * diff_w.norm() / diff_w.abs().sum()  # |score| / ||w||_1
    res = LinfPGD(eps=10.0, step=float(dist.max()) / 5, steps=20, refine=True,
                  bounds=None)(model, x, y)
    assert bool(res.success.all()) and res.p == "linf"
    assert float(((res.norm - dist).abs() / dist).max()) < 0.01


def test_cross_entropy_loss_finds_the_same_binary_boundary() -> None:
    model = _binary_linear(20, seed=6)
    x = torch.randn(32, 1, 1, 20, generator=torch.Generator().manual_seed(7))
    y, dist = _binary_distance(model, x)
    res = L2PGD(eps=100.0, step=float(dist.max()) / 4, steps=20, loss="ce", refine=True,
                bounds=None)(model, x, y)
    assert bool(res.success.all())
    assert float(((res.norm - dist).abs() / dist).max()) < 0.01


@pytest.fixture(scope="module")
def linear_manifold():
    return load_dataset(LinearSubspaceDataset(name="linear_subspace", latent_dim=8,
                                              eval_samples=16, train_samples=10), seed=0)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_on_and_off_manifold_norms_match_projected_gradient_formula(linear_manifold, mode) -> None:
    data = linear_manifold
    model = _binary_linear(data.n, seed=8)
    x = data.eval.x.reshape(len(data.eval.x), 1, 1, -1)
    y, dist = _binary_distance(model, x)
    basis = data.eval.tangent_basis()  # U for every sample: the true tangent space
    space = DenseSubspace(basis)
    w = (model.fc.weight[0] - model.fc.weight[1]).to(torch.float64)
    pw = basis[0] @ (basis[0].T @ w)
    part = pw if mode == "on" else w - pw
    margin = dist.to(torch.float64) * w.norm()
    expected = margin / part.norm()  # the boundary distance within the subspace
    proj = space.on_manifold() if mode == "on" else space.off_manifold()
    res = L2PGD(eps=100.0, step=float(expected.max()) / 5, steps=30, refine=True,
                bounds=None)(model, x, y, project_gradient=proj)
    assert bool(res.success.all())
    assert float(((res.norm - expected).abs() / expected).max()) < 0.01
    # The perturbation really lies in (or perpendicular to) the manifold.
    ratio = space.ratio(res.delta.reshape(len(x), -1))
    assert float((ratio - (1.0 if mode == "on" else 0.0)).abs().max()) < 1e-5
    # And it differs from the unrestricted distance: the test discriminates the modes.
    assert float((expected / dist).min()) > 1.05


# ----------------------------------------------------------------- censoring and early stop


def _is_ceil(steps: torch.Tensor, ratio: torch.Tensor, tol: float = 1e-4) -> bool:
    """``steps == ceil(ratio)`` up to float32 rounding when ``ratio`` is (nearly) an integer."""
    s, r = steps.double(), ratio.double()
    return bool(((s >= r - tol) & (s - 1 < r + tol)).all())


def test_failures_are_censored_at_eps_and_kept() -> None:
    model = _binary_linear(20, seed=9)
    x = torch.randn(40, 1, 1, 20, generator=torch.Generator().manual_seed(10))
    y, dist = _binary_distance(model, x)
    ordered = dist.sort().values
    # Between two samples' distances: torch's median IS a sample's distance, whose attack ends
    # exactly on the boundary, where float rounding decides success.
    eps = float(ordered[19] + ordered[20]) / 2
    res = L2PGD(eps=eps, step=eps / 10, steps=30, refine=True, bounds=None)(model, x, y)
    assert len(res.norm) == len(x) == len(res.delta)
    failed, won = ~res.success, res.success
    assert 0 < int(failed.sum()) < len(x)
    assert bool((res.norm[failed] == eps).all())
    assert torch.equal(failed, dist > eps * (1 + 1e-6))  # exactly those beyond the budget fail
    assert bool((res.norm[won] <= eps).all())
    assert bool((model(x[failed] + res.delta[failed]).argmax(1) == y[failed]).all())


def test_early_stop_counts_steps_and_drops_finished_samples() -> None:
    model = _binary_linear(20, seed=11)
    x = torch.randn(30, 1, 1, 20, generator=torch.Generator().manual_seed(12))
    y, dist = _binary_distance(model, x)
    step = float(dist.median()) / 3
    seen: list[torch.Tensor] = []

    def spy(g: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        seen.append(idx.clone())
        return g

    res = L2PGD(eps=100.0, step=step, steps=100, bounds=None)(model, x, y, project_gradient=spy)
    # Straight steps of length `step` along the normal: crossing after ceil(d / step) steps.
    assert _is_ceil(res.steps, dist / step)
    assert torch.equal(res.grad_evals, res.steps)
    assert torch.equal(res.forward_evals, res.steps + 1)
    sizes = [len(s) for s in seen]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < len(x)  # the batch shrinks
    for t, idx in enumerate(seen):  # the projection sees exactly the samples still running
        assert torch.equal(idx, (res.steps > t).nonzero().squeeze(1))
    no_stop = L2PGD(eps=100.0, step=step, steps=10, early_stop=False, bounds=None)(model, x, y)
    assert bool((no_stop.steps == 10).all())
    assert torch.allclose(no_stop.norm, res.steps.double().float() * step, rtol=1e-4)


def test_schedule_scales_steps() -> None:
    model = _binary_linear(20, seed=13)
    x = torch.randn(30, 1, 1, 20, generator=torch.Generator().manual_seed(14))
    y, dist = _binary_distance(model, x)
    step = float(dist.median()) / 3
    res = L2PGD(eps=100.0, step=step, steps=100, schedule=lambda t: 0.5, bounds=None)(model, x, y)
    assert _is_ceil(res.steps, dist / (step / 2))
    assert not _is_ceil(res.steps, dist / step)  # the halved step really was used
    s = cosine_schedule(100, floor=0.1)
    assert s(0) == 1.0 and math.isclose(s(99), 0.1) and s(50) < s(10)


def test_pixel_box_and_ball_are_respected_and_random_start_is_seeded() -> None:
    torch.manual_seed(15)
    model = freeze(MLPClassifier(image_shape=(1, 4, 4), num_classes=3, hidden=(16,), dropout=0.0))
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(16))
    y = model(x).argmax(1)
    for cls, p in ((L2PGD, "l2"), (LinfPGD, "linf")):
        kw = dict(eps=0.3, step=0.05, steps=15, random_start=True, early_stop=False)
        a = cls(**kw)(model, x, y, generator=torch.Generator().manual_seed(0))
        b = cls(**kw)(model, x, y, generator=torch.Generator().manual_seed(0))
        c = cls(**kw)(model, x, y, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a.delta, b.delta) and not torch.equal(a.delta, c.delta)
        adv = x + a.delta
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
        norms = a.delta.flatten(1).norm(dim=1) if p == "l2" else a.delta.flatten(1).abs().amax(1)
        assert float(norms.max()) <= 0.3 + 1e-6


def test_functional_and_config_front_doors() -> None:
    model = _binary_linear(20, seed=17)
    x = torch.randn(8, 1, 1, 20, generator=torch.Generator().manual_seed(18))
    y, _ = _binary_distance(model, x)
    # the config's attack follows each success with the minimal-norm search
    a = pgd(model, x, y, eps=5.0, step=0.1, steps=100, refine=True, bounds=None,
            search_steps=SEARCH_STEPS)
    cfg = AttackConfig(eps=5.0, step=0.1, steps=100)  # refine defaults to True
    b = attack_from_config(cfg, "plain", bounds=None)(model, x, y)
    assert torch.equal(a.norm, b.norm) and torch.equal(a.success, b.success)
    g = input_gradient(model, x, y)
    w = model.fc.weight
    other = 1 - y
    assert torch.allclose(g.flatten(1), w[other] - w[y])  # d margin / dx = w_other - w_y
    logits = model(x)
    assert torch.allclose(margin_loss(logits, y), logits[torch.arange(8), other] - logits[torch.arange(8), y])


@pytest.mark.parametrize("subspace", [False, True])
def test_the_minimal_norm_search_finds_a_nearer_class_than_the_runner_up(subspace) -> None:
    # Three classes: class 1 is the runner-up (logit gap 1) with its boundary 1 away, class 2
    # further below (gap 2) but with its boundary 0.5 away. The path ascends the margin toward
    # class 1 only; the targeted search finds class 2. With a gradient projection P onto a
    # subspace (the off-manifold attack) the distances are gap / ||P w||.
    n = 12
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    weight = torch.zeros(3, n, dtype=torch.float64)
    weight[1], weight[2] = q[:, 0], 4.0 * q[:, 1]
    model = nn.Linear(n, 3, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(torch.tensor([0.0, -1.0, -2.0], dtype=torch.float64))
    x = torch.zeros(1, n, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    project, shrink = None, 1.0
    if subspace:
        # ||P w|| = ||w|| / sqrt(2) for both normals: every distance grows by sqrt(2)
        u = torch.stack([q[:, 0] + q[:, 2], q[:, 1] + q[:, 3]], dim=1) / 2 ** 0.5
        space = DenseSubspace(u.unsqueeze(0))
        project, shrink = space.on_manifold(), 2.0 ** 0.5
    kwargs = dict(eps=5.0, step=0.01, steps=2000, refine=True, bounds=None)
    path = pgd(model, x, y, project_gradient=project, search_steps=0, **kwargs)
    res = pgd(model, x, y, project_gradient=project, search_steps=SEARCH_STEPS, **kwargs)
    assert float(path.norm[0]) == pytest.approx(1.0 * shrink, rel=1e-3)
    assert float(res.norm[0]) == pytest.approx(0.5 * shrink, rel=2e-3)
    assert int(model(x + res.delta).argmax(dim=1)[0]) == 2
    if subspace:  # the perturbation stays in the subspace
        assert torch.allclose(space.on_manifold()(res.delta, torch.tensor([0])), res.delta,
                              atol=1e-9)


# ----------------------------------------------------------------- reference implementation


@pytest.fixture(scope="module")
def trained_mlp():
    """A 4-class MLP on the synthetic manifold (with 2 classes CE and margin steps coincide)."""
    data = load_dataset(SyntheticDataset(name="synthetic", num_classes=4, eval_samples=200,
                                         train_samples=800), seed=0)
    torch.manual_seed(0)
    model = MLPClassifier(image_shape=data.image_shape, num_classes=4, hidden=(64,), dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.train.x), data.train.y).backward()
        opt.step()
    freeze(model)
    ok = model(data.eval.x).argmax(1) == data.eval.y
    return model, data.eval.x[ok], data.eval.y[ok]


def test_l2_success_rate_not_below_torchattacks(trained_mlp) -> None:
    # A test dependency (the `test` extra), imported here so that only this test needs it; not
    # importorskip: a missing reference must fail CI, not silently skip the comparison.
    import torchattacks

    model, x, y = trained_mlp
    eps, alpha, steps = 0.15, 0.02, 20
    ref = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    adv = ref(x, y)
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5
    ref_success = model(adv).argmax(1) != y
    ref_rate = float(ref_success.double().mean())
    assert 0.1 < ref_rate < 0.9, ref_rate  # an informative operating point, not 0% or 100%
    # The reproduction's attack (margin loss, stop at the first misclassification).
    ours = L2PGD(eps=eps, step=alpha, steps=steps, bounds=(0.0, 1.0))(model, x, y)
    assert float(ours.success.double().mean()) >= ref_rate
    won = ours.success
    assert bool((model(x[won] + ours.delta[won]).argmax(1) != y[won]).all())
    assert float(ours.delta[won].flatten(1).norm(dim=1).max()) <= eps + 1e-5
    # Same loss and schedule as the reference, all steps run: the iterates are the reference's,
    # so every sample the reference breaks, ours breaks too (per sample, not just in the rate).
    same = L2PGD(eps=eps, step=alpha, steps=steps, loss="ce", early_stop=False)(model, x, y)
    assert bool(same.success[ref_success].all())


def test_one_argument_gradient_projection_is_accepted(linear_manifold) -> None:
    data = linear_manifold
    model = _binary_linear(data.n, seed=8)
    x = data.eval.x.reshape(len(data.eval.x), 1, 1, -1)
    y, _ = _binary_distance(model, x)
    u = data.eval.tangent_basis()[0].to(torch.float32)  # (n, k), the same for every sample
    calls: list[int] = []

    def onto_plane(g: torch.Tensor) -> torch.Tensor:  # g -> P_T g, full batch
        calls.append(len(g))
        return (g.flatten(1) @ u @ u.T).reshape(g.shape)

    attack = L2PGD(eps=100.0, step=0.05, steps=200, refine=True, bounds=None)
    a = attack(model, x, y, project_gradient=onto_plane)
    b = attack(model, x, y, project_gradient=DenseSubspace(data.eval.tangent_basis()).on_manifold())
    assert set(calls) == {len(x)}  # always the whole (zero-padded) batch
    assert bool(a.success.all()) and torch.allclose(a.norm, b.norm, rtol=1e-4)
