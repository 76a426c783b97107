"""``attack.base: manifold``: every attack starts at x_m = D(z*), recorded and checked.

Ground truth: an independent Levenberg-free check of z* (the residual's gradient vanishes and
no random restart of plain gradient descent finds a nearer decoder point), the classifier's own
labels at x_m, and the adversarial points themselves (x_m + delta misclassified, in the box).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dimple_stats.protocol.schema import AttackConfig, TangentConfig
from runners.measure import correctly_classified, measure

ATTACK = AttackConfig(eps={"plain": 6.0, "on": 6.0, "off": 6.0},
                      step={"plain": 0.05, "on": 0.05, "off": 0.05},
                      steps={"plain": 200, "on": 200, "off": 200})


@pytest.fixture(scope="module")
def measured(small_digits_models):
    torch.manual_seed(0)
    data, clf, ae = small_digits_models(eval_samples=80, classifier_epochs=8, latent_dim=4,
                                        autoencoder_epochs=4)
    ok = correctly_classified(clf, data.eval.x, data.eval.y)
    x, y = data.eval.x[ok][:40], data.eval.y[ok][:40]
    m = measure(clf, ae, x, y, attack=ATTACK, tangent=TangentConfig(dtype="float64"),
                generator=torch.Generator().manual_seed(0), bounds=(-1.0, 1.0))
    return clf, ae, x, y, m


def test_the_base_point_is_the_nearest_decoder_point(measured) -> None:
    clf, ae, x, y, m = measured
    cols = m.columns
    assert m.base is not None
    err = (x - m.base).flatten(1).norm(dim=1).double().numpy()
    assert np.allclose(cols["base_err"], err, rtol=1e-4)
    assert (cols["base_err"] <= cols["recon_err"] * (1 + 1e-6)).all()
    # No restart of plain gradient descent on ||D(z) - x|| finds a clearly nearer point.
    gen = torch.Generator().manual_seed(1)
    best = torch.full((len(x),), float("inf"))
    for _ in range(4):
        z = (ae.encode(x) + 0.5 * torch.randn(len(x), 4, generator=gen)).detach()
        z.requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        for _ in range(300):
            opt.zero_grad()
            loss = (ae.decode(z) - x).flatten(1).norm(dim=1)
            loss.sum().backward()
            opt.step()
        best = torch.minimum(best, loss.detach())
    assert (cols["base_err"] <= best.double().numpy() * 1.02 + 1e-6).mean() >= 0.9


def test_images_whose_manifold_point_is_misclassified_are_marked_and_have_no_norm(measured):
    clf, ae, x, y, m = measured
    cols = m.columns
    with torch.no_grad():
        right = (clf(m.base).argmax(dim=1) == y).numpy()
    assert (cols["base_ok"] == right).all()
    assert not right.all(), "the fixture should include some excluded images"
    for mode in ("plain", "on", "off"):
        assert np.isnan(cols[f"norm_{mode}"][~right]).all()
        assert not cols[f"success_{mode}"][~right].any()


def test_every_mode_attacks_from_the_manifold_point(measured) -> None:
    clf, ae, x, y, m = measured
    cols = m.columns
    for mode in ("plain", "on", "off"):
        s = torch.as_tensor(cols[f"success_{mode}"])
        assert int(s.sum()) >= 0.8 * int(cols["base_ok"].sum()), mode
        adv = m.base[s] + m.delta[mode][s]
        with torch.no_grad():
            assert bool((clf(adv).argmax(dim=1) != y[s]).all()), mode
        assert float(adv.min()) >= -1.0 - 1e-6 and float(adv.max()) <= 1.0 + 1e-6
        norms = m.delta[mode][s].flatten(1).norm(dim=1).double().numpy()
        assert np.allclose(cols[f"norm_{mode}"][s.numpy()], norms, rtol=1e-5), mode
    # latent on-manifold: every perturbation measurable, path at least the chord
    s = cols["success_on"]
    assert cols["measurable_on"].all()
    assert (cols["path_on"][s] >= cols["norm_on"][s] * (1 - 1e-5)).all()
    assert np.isnan(cols["reach_on"]).all()
    # the off-manifold attack stays strictly in T-perp at x_m
    assert np.median(cols["in_T_off"][cols["success_off"]]) < 1e-3
