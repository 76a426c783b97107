"""The curved on-manifold attack (``attack.on_manifold: latent``) against closed forms.

Ground truth: a flat manifold with a linear classifier (minimal chord = the distance to the
boundary within the plane), a circle (chord and arc length to the boundary in closed form),
censoring at eps, and a trained digits autoencoder whose decoded adversarial images must stay
in the pixel box with the recorded norm equal to their chord.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from runners.attacks.latent import latent_attack, pullback_metric


def _linear_model(w: torch.Tensor, b: float = 0.0) -> nn.Module:
    """Two logits (w.x + b, -(w.x + b)): class 0 where w.x + b > 0."""
    model = nn.Linear(len(w), 2, dtype=w.dtype)
    with torch.no_grad():
        model.weight.copy_(torch.stack([w, -w]))
        model.bias.copy_(torch.tensor([b, -b], dtype=w.dtype))
    return model.eval()


@pytest.mark.parametrize("use_metric", [True, False])
def test_flat_manifold_minimal_chord_is_the_distance_within_the_plane(use_metric) -> None:
    gen = torch.Generator().manual_seed(0)
    n, k = 20, 3
    basis, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    scale = torch.tensor([3.0, 0.5, 1.0], dtype=torch.float64)  # an anisotropic decoder
    origin = 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)

    def decode(z):
        return origin + (z * scale) @ basis.T

    w = torch.randn(n, generator=gen, dtype=torch.float64)
    z0 = 0.2 * torch.randn(4, k, generator=gen, dtype=torch.float64)
    x0 = decode(z0)
    margin = x0 @ w + 1.0  # all positive at these points: class 0
    assert bool((margin > 0).all())
    model = _linear_model(w, 1.0)
    metric = pullback_metric(decode, z0, dtype=torch.float64) if use_metric else None
    res = latent_attack(model, decode, z0, torch.zeros(4, dtype=torch.long), eps=50.0,
                        step=0.01, steps=20000, metric=metric)
    expected = margin / (basis.T @ w).norm()  # distance to {w.x = -1} within the plane
    assert bool(res.success.all())
    assert torch.allclose(res.norm, expected, rtol=1e-3)
    # the recorded norm is the chord of the returned perturbation, which lies in the plane
    assert torch.allclose(res.norm, res.delta.norm(dim=1), rtol=1e-12)
    assert torch.allclose(res.delta @ basis @ basis.T, res.delta, atol=1e-10)
    assert torch.allclose(res.path, res.norm, rtol=1e-9)  # a straight segment: path = chord


def test_circle_chord_and_arc_to_the_boundary_in_closed_form() -> None:
    def decode(z):  # the unit circle, angle z; inside the pixel box [-1, 1]^2
        return torch.cat([torch.cos(z), torch.sin(z)], dim=1)

    model = _linear_model(torch.tensor([0.0, -1.0], dtype=torch.float64), 0.5)  # class 0: y < 0.5
    z0 = torch.zeros(1, 1, dtype=torch.float64)
    metric = pullback_metric(decode, z0, dtype=torch.float64)
    res = latent_attack(model, decode, z0, torch.zeros(1, dtype=torch.long), eps=1.0,
                        step=0.001, steps=5000, metric=metric, refine_steps=30)
    theta = math.pi / 6  # sin(theta) = 0.5
    assert bool(res.success[0])
    assert float(res.norm[0]) == pytest.approx(2 * math.sin(theta / 2), rel=1e-6)
    assert float(res.path[0]) == pytest.approx(theta, rel=1e-3)  # 16 chords of the arc
    assert float(res.path[0]) > float(res.norm[0])


def test_failures_are_censored_at_eps_and_the_search_stops_at_the_budget() -> None:
    def decode(z):
        return torch.cat([torch.cos(z), torch.sin(z)], dim=1)

    model = _linear_model(torch.tensor([0.0, -1.0], dtype=torch.float64), 0.5)
    z0 = torch.zeros(2, 1, dtype=torch.float64)
    res = latent_attack(model, decode, z0, torch.zeros(2, dtype=torch.long), eps=0.4,
                        step=0.001, steps=100000)
    assert not bool(res.success.any())
    assert res.norm.tolist() == [0.4, 0.4]
    assert bool(torch.isnan(res.path).all())
    # each of the two searches (untargeted, and targeted at the only other class) stopped
    # when the chord passed eps (about 0.4 / 0.001 steps), not after 100,000; then 100 steps of
    # the minimal-chord search each
    assert int(res.steps.max()) < 2 * (500 + 100)


def test_decoded_adversarial_images_stay_in_the_pixel_box_on_a_trained_autoencoder(
        small_digits_models) -> None:
    from runners.measure import correctly_classified

    torch.manual_seed(0)
    data, clf, ae = small_digits_models(eval_samples=60, classifier_epochs=5, latent_dim=8,
                                        autoencoder_epochs=5)
    with torch.no_grad():
        z = ae.encode(data.eval.x)
        xb = ae.decode(z)
    ok = correctly_classified(clf, xb, data.eval.y)
    z, y = z[ok][:20], data.eval.y[ok][:20]
    metric = pullback_metric(ae.decode, z, dtype=torch.float64)
    res = latent_attack(clf, ae.decode, z, y, eps=8.0, step=0.05, steps=400, metric=metric)
    again = latent_attack(clf, ae.decode, z, y, eps=8.0, step=0.05, steps=400, metric=metric)
    assert torch.equal(res.delta, again.delta) and torch.equal(res.norm, again.norm)
    assert int(res.success.sum()) >= 10
    with torch.no_grad():
        base = ae.decode(z)
        adv = base + res.delta
        assert torch.allclose(adv, ae.decode(z + res.latent), atol=1e-6)
        flipped = clf(adv).argmax(dim=1) != y
    assert float(adv.min()) >= -1.0 and float(adv.max()) <= 1.0
    s = res.success
    assert bool(flipped[s].all())
    assert torch.allclose(res.norm[s], res.delta[s].flatten(1).norm(dim=1))
    assert bool((res.path[s] >= res.norm[s].double() * (1 - 1e-5)).all())


def test_a_decoder_with_trainable_parameters_leaks_no_graph_into_the_search() -> None:
    # Regression: with the pull-back metric of a decoder whose parameters require grad, the
    # latent iterate joined the autograd graph and the last step (no gradient) crashed.
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(3, 10), nn.Tanh())
    classifier = nn.Linear(10, 2)
    z = torch.randn(4, 3)
    y = classifier(decoder(z)).argmax(dim=1)
    metric = pullback_metric(decoder, z, dtype=torch.float64)
    assert not metric[0].requires_grad
    res = latent_attack(classifier, decoder, z, y, eps=1e-3, step=1e-5, steps=5, metric=metric)
    # the path ran to its last step, then the minimal-chord search to its own
    assert not bool(res.success.any()) and int(res.steps.min()) >= 5 + 100
    assert not res.delta.requires_grad and not res.latent.requires_grad


def _plane(n: int = 5, seed: int = 1):
    """An isometric flat manifold: ``z -> origin + basis z``, ``basis`` (n, 2) orthonormal."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(n, 2, generator=gen, dtype=torch.float64))
    return basis, (lambda z: z @ basis.T)


class _Bent(nn.Module):
    """Class 1 beyond the line ``u.x = 1`` (in plane coordinates); the logit gap
    ``(u.x - 1) exp(v.x)`` vanishes on that line only, but its gradient off the line is not the
    line's normal, so steepest ascent crosses the line away from the foot of the perpendicular."""

    def __init__(self, basis: torch.Tensor, u: list[float], v: list[float]) -> None:
        super().__init__()
        self.basis = basis
        self.u = torch.tensor(u, dtype=torch.float64)
        self.v = torch.tensor(v, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x @ self.basis  # plane coordinates
        gap = (p @ self.u - 1.0) * torch.exp(p @ self.v)
        return torch.stack([-gap, gap], dim=1)


def test_the_search_finds_the_boundary_point_nearest_the_base_not_where_the_path_crosses() -> None:
    basis, decode = _plane()
    model = _Bent(basis, [1.0, 0.0], [0.0, 3.0])
    z0 = torch.zeros(1, 2, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    metric = pullback_metric(decode, z0, dtype=torch.float64)
    kwargs = dict(eps=5.0, step=0.001, steps=20000, metric=metric, refine_steps=30)
    path_only = latent_attack(model, decode, z0, y, restarts=1, search_steps=0, **kwargs)
    res = latent_attack(model, decode, z0, y, **kwargs)
    # the distance from the origin to the line x1 = 1 is 1; the gradient path crosses it well
    # away from (1, 0)
    assert bool(path_only.success[0]) and float(path_only.norm[0]) > 1.05
    assert bool(res.success[0])
    assert float(res.norm[0]) == pytest.approx(1.0, rel=2e-3)
    assert float(res.norm[0]) >= 1.0 - 1e-9  # a chord below the distance would be a bug


def test_a_nearer_boundary_of_a_class_the_margin_does_not_point_at_is_found() -> None:
    # Three classes on a plane: class 1 is the runner-up (logit gap 1) with its boundary 1 away;
    # class 2's logit is further below (gap 2) but its boundary is 0.5 away. The margin's
    # gradient ascends toward class 1 only; the targeted restart finds class 2's boundary.
    basis, decode = _plane(6, seed=2)
    weight = torch.zeros(3, 6, dtype=torch.float64)
    weight[1], weight[2] = basis[:, 0], 4.0 * basis[:, 1]
    model = nn.Linear(6, 3, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(torch.tensor([0.0, -1.0, -2.0], dtype=torch.float64))
    z0 = torch.zeros(1, 2, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    metric = pullback_metric(decode, z0, dtype=torch.float64)
    kwargs = dict(eps=5.0, step=0.001, steps=5000, metric=metric, refine_steps=30)
    single = latent_attack(model, decode, z0, y, restarts=1, **kwargs)
    res = latent_attack(model, decode, z0, y, **kwargs)
    assert float(single.norm[0]) == pytest.approx(1.0, rel=1e-3)
    assert float(res.norm[0]) == pytest.approx(0.5, rel=1e-3)
    assert int(model(decode(z0) + res.delta).argmax(dim=1)[0]) == 2
