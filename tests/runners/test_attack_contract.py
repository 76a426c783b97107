"""The contract every registered attack must pass, table-driven over ``ATTACKS`` (and a toy
attack registered here, as a plugin would): closed-form minimal norms, censoring at eps,
strict feasibility with the pixel box active (attacks that can project gradients), and seeded
determinism. Each method runs in the norms it has; a library attack whose library is missing
is skipped (the ``attacks`` extra, part of ``test``, installs them)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from dimple_stats.protocol.schema import LinearSubspaceDataset
from runners.attacks import ATTACKS, MinimalNormAttack, make_attack
from runners.attacks.base import batch_norm, expand_like
from runners.attacks.library import MissingAttackLibrary, UnsupportedAttackOption
from runners.datasets import load_dataset
from runners.geometry import DenseSubspace
from runners.models.classifiers import LinearClassifier, freeze


class ToyL2(MinimalNormAttack):
    """A toy minimal-norm attack: normalised-gradient steps of half the nominal length."""

    p = "l2"

    def _start(self, x: Tensor, project, generator) -> Tensor:
        return torch.zeros_like(x)

    def _direction(self, g: Tensor) -> Tensor:
        n = batch_norm(g, "l2")
        return g / expand_like(torch.where(n > 0, n, torch.ones_like(n)), g)

    def _into_ball(self, d: Tensor) -> Tensor:
        n = batch_norm(d, "l2")
        return d * expand_like(torch.clamp(self.eps / n.clamp_min(1e-30), max=1.0), d)

    def _subspace_part(self, d: Tensor) -> Tensor:
        return self._into_ball(d)

    def _propose(self, delta: Tensor, grad: Tensor, scale: float) -> Tensor:
        return delta + 0.5 * scale * self._direction(grad)


def make_toy(norm: str, **options) -> MinimalNormAttack:
    if norm != "l2":
        raise ValueError("the toy attack is L2 only")
    return ToyL2(**options)


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    with ATTACKS.registered("toy", make_toy):
        yield


def _cases() -> tuple[list, list]:
    """``(method, norm)`` for every norm each method has, and those whose attack can project
    gradients (the on/off-manifold attacks)."""
    cases, projectable = [], []
    with ATTACKS.registered("toy", make_toy):
        for method in ATTACKS.names():
            for norm in ("l2", "linf"):
                try:
                    attack = make_attack(method, norm, eps=1.0, step=0.1, steps=1)
                except MissingAttackLibrary as exc:
                    cases.append(pytest.param(method, norm, marks=pytest.mark.skip(str(exc))))
                    continue
                except ValueError:  # a norm the method does not have
                    continue
                cases.append((method, norm))
                if attack.projectable:
                    projectable.append((method, norm))
    return cases, projectable


CASES, PROJECTABLE_CASES = _cases()


def _linear(n: int, seed: int) -> LinearClassifier:
    torch.manual_seed(seed)
    return freeze(LinearClassifier(image_shape=(1, 1, n), num_classes=2))


def _distances(model: LinearClassifier, x: Tensor, norm: str) -> tuple[Tensor, Tensor]:
    """Labels = predictions; the exact boundary distance in the attack's norm (dual norm of w)."""
    diff_w = model.fc.weight[0] - model.fc.weight[1]
    score = x.flatten(1) @ diff_w + model.fc.bias[0] - model.fc.bias[1]
    dual = diff_w.norm() if norm == "l2" else diff_w.abs().sum()
    return (score < 0).long(), score.abs() / dual


@pytest.mark.parametrize("method, norm", CASES)
def test_refined_norm_is_the_closed_form_distance(method: str, norm: str) -> None:
    model = _linear(16, seed=1)
    x = torch.randn(24, 1, 1, 16, generator=torch.Generator().manual_seed(2))
    y, dist = _distances(model, x, norm)
    attack = make_attack(method, norm, eps=100.0, step=float(dist.max()) / 8, steps=200,
                         refine=True, refine_steps=16, bounds=None)
    res = attack(model, x, y)
    assert bool(res.success.all())
    assert float(((res.norm - dist).abs() / dist).max()) < 0.01


@pytest.mark.parametrize("method, norm", CASES)
def test_failures_are_censored_at_eps_and_kept(method: str, norm: str) -> None:
    model = _linear(16, seed=3)
    x = torch.randn(40, 1, 1, 16, generator=torch.Generator().manual_seed(4))
    y, dist = _distances(model, x, norm)
    ordered = dist.sort().values
    eps = float(ordered[19] + ordered[20]) / 2  # between two samples: no tie at the budget
    res = make_attack(method, norm, eps=eps, step=eps / 10, steps=60, refine=True,
                      bounds=None)(model, x, y)
    failed = ~res.success
    assert len(res.norm) == len(x) and 0 < int(failed.sum()) < len(x)
    assert torch.equal(failed, dist > eps * (1 + 1e-5))  # exactly those beyond the budget
    assert bool((res.norm[failed] == eps).all())
    assert bool((res.norm[res.success] <= eps * (1 + 1e-6)).all())
    # a failure keeps its last iterate, which is not adversarial
    assert bool((model(x[failed] + res.delta[failed]).argmax(1) == y[failed]).all())


@pytest.mark.parametrize("method, norm", PROJECTABLE_CASES)
def test_strict_on_manifold_iterates_stay_in_T_and_in_the_box(method: str, norm: str) -> None:
    data = load_dataset(LinearSubspaceDataset(name="linear_subspace", latent_dim=8,
                                              eval_samples=16, train_samples=10), seed=0)
    # A box that binds: the images clamped to their 5th-95th percentile, so one pixel in ten
    # of each sits on a bound (as MNIST's background does), which a clip would leave T at.
    raw = data.eval.x.reshape(len(data.eval.x), 1, 1, -1)
    lo, hi = (float(q) for q in torch.quantile(raw.flatten(), torch.tensor([0.05, 0.95])))
    x = raw.clamp(lo, hi)
    assert float(((x == lo) | (x == hi)).float().mean()) > 0.05
    model = _linear(data.n, seed=5)
    with torch.no_grad():  # put the boundary through the data, so that T reaches it
        diff_w = model.fc.weight[0] - model.fc.weight[1]
        model.fc.bias[0] -= float((x.flatten(1) @ diff_w).median()) + float(
            model.fc.bias[0] - model.fc.bias[1])
    y, _ = _distances(model, x, norm)
    space = DenseSubspace(data.eval.tangent_basis())
    res = make_attack(method, norm, eps=50.0, step=0.05, steps=300, refine=True,
                      bounds=(lo, hi), box="strict")(model, x, y,
                                                    project_gradient=space.on_manifold())
    assert int(res.success.sum()) >= 4
    inside = res.delta.flatten(1).norm(dim=1) > 0
    ratio = space.ratio(res.delta[inside].reshape(int(inside.sum()), -1))
    assert float(ratio.min()) > 0.999
    adv = x + res.delta
    assert float(adv.min()) >= lo - 1e-6 and float(adv.max()) <= hi + 1e-6


@pytest.mark.parametrize("method, norm", CASES)
def test_random_start_is_reproducible_from_the_generator(method: str, norm: str) -> None:
    model = _linear(16, seed=6)
    x = torch.randn(8, 1, 1, 16, generator=torch.Generator().manual_seed(7))
    y, dist = _distances(model, x, norm)
    options = dict(eps=float(dist.max()) * 2, step=0.05, steps=50, bounds=None)
    try:
        attack = make_attack(method, norm, random_start=True, **options)
    except UnsupportedAttackOption:  # a library attack starts at x; its call is still seeded
        attack = make_attack(method, norm, **options)
    a = attack(model, x, y, generator=torch.Generator().manual_seed(8))
    b = attack(model, x, y, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.delta, b.delta) and torch.equal(a.success, b.success)


def test_unknown_method_suggests_and_a_non_attack_factory_is_refused() -> None:
    from dimple_stats.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean 'pgd'"):
        make_attack("pgdd", "l2", eps=1.0, step=0.1, steps=1)
    with ATTACKS.registered("broken", lambda norm, **o: object()):
        with pytest.raises(TypeError, match="not an Attack"):
            make_attack("broken", "l2", eps=1.0, step=0.1, steps=1)
