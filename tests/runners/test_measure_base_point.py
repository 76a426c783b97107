"""The measurement's base point (``tangent.at``), stable image ids, and the gradient's own control.

Ground truth: the synthetic dataset's known manifold (an oracle decoder with a deliberately wrong
encoder must be corrected by ``nearest``), and the dataset files' own order for image ids.
"""

from __future__ import annotations

import pytest
import torch

from dimple_stats.protocol.schema import (
    AttackConfig,
    AutoencoderConfig,
    ClassifierConfig,
    DigitsDataset,
    SyntheticDataset,
    TangentConfig,
)
from runners.datasets import load_dataset
from runners.geometry.controls import DataSubspaces
from runners.measure import correctly_classified, measure
from runners.training import train_autoencoder, train_classifier


def test_digits_image_ids_name_the_same_image_in_every_seed() -> None:
    from sklearn.datasets import load_digits

    config = DigitsDataset(name="digits", pixel_range=(0.0, 1.0), eval_samples=300)
    a, b = load_dataset(config, seed=0), load_dataset(config, seed=1)
    shared = sorted(set(a.eval.ids.tolist()) & set(b.eval.ids.tolist()))
    assert 20 < len(shared) < 300  # seeds overlap, as the issue found for MNIST
    raw = torch.as_tensor(load_digits().images, dtype=torch.float32) / 16.0
    pos_a = {int(i): p for p, i in enumerate(a.eval.ids)}
    pos_b = {int(i): p for p, i in enumerate(b.eval.ids)}
    for image in shared[:20]:
        assert torch.equal(a.eval.x[pos_a[image], 0], b.eval.x[pos_b[image], 0])
        assert torch.allclose(a.eval.x[pos_a[image], 0], raw[image])  # the file's image
    assert not set(a.eval.ids.tolist()) & set(a.train.ids.tolist())


def test_generated_images_never_share_an_id_across_seeds() -> None:
    config = SyntheticDataset(name="synthetic", latent_dim=2, image_shape=(1, 4, 4), hidden=8,
                              eval_samples=10, train_samples=10)
    a, b = load_dataset(config, seed=0), load_dataset(config, seed=1)
    assert not set(a.eval.ids.tolist()) & set(b.eval.ids.tolist())


class _ShiftedOracle(torch.nn.Module):
    """The true decoder with an encoder that is off by a fixed latent shift: E(x) = z + s."""

    def __init__(self, manifold, shift: float) -> None:
        super().__init__()
        self.manifold = manifold
        self.shift = shift
        self.latent_dim = manifold.latent_dim
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a dtype

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.manifold.decode(z.to(torch.float64)).to(z.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - replaced per test
        raise NotImplementedError


@pytest.fixture(scope="module")
def synthetic_setup():
    config = SyntheticDataset(name="synthetic", latent_dim=3, image_shape=(1, 6, 6), hidden=16,
                              eval_samples=48, train_samples=600)
    data = load_dataset(config, seed=0)
    clf = train_classifier(ClassifierConfig(arch="mlp", hidden=(64,), epochs=15), data,
                           data_config=config, seed=0).model.eval()
    keep = correctly_classified(clf, data.eval.x, data.eval.y)
    return data, clf, keep


@pytest.mark.slow
def test_nearest_base_point_recovers_the_true_latent(synthetic_setup) -> None:
    data, clf, keep = synthetic_setup
    x, y, z_true = data.eval.x[keep][:16], data.eval.y[keep][:16], data.eval.latent[keep][:16]
    auto = _ShiftedOracle(data.manifold, 0.15)
    auto.encode = lambda images: z_true + 0.15  # a biased encoder, as a trained one may be
    # tangent.at chooses the tangent's base point for attacks at the image itself
    attack = AttackConfig(eps={"plain": 4.0, "on": 4.0, "off": 4.0},
                          step={"plain": 0.05, "on": 0.05, "off": 0.05},
                          steps={"plain": 100, "on": 100, "off": 100},
                          base="image", on_manifold="tangent")
    common = dict(attack=attack, generator=torch.Generator().manual_seed(0),
                  bounds=data.pixel_range)
    enc = measure(clf, auto, x, y, tangent=TangentConfig(dtype="float64"), **common).to_frame()
    near = measure(clf, auto, x, y, tangent=TangentConfig(dtype="float64", at="nearest"),
                   **common).to_frame()
    # x lies ON the manifold (float32 rounding): the nearest point is x itself.
    assert (enc["base_err"] > 1e-2).all()
    assert near["base_converged"].all()
    assert float(near["base_err"].max()) < 1e-5
    assert (near["base_err"] <= near["recon_err"]).all()
    # And the tangent there is the true one: r_T of the plain perturbation equals its share in
    # the true tangent space (computed from the closed-form Jacobian).
    true_basis = data.manifold.tangent_basis(z_true.to(torch.float64))
    plain = measure(clf, auto, x, y, tangent=TangentConfig(dtype="float64", at="nearest"),
                    **common).delta["plain"].flatten(1).to(torch.float64)
    share = torch.einsum("bnk,bn->bk", true_basis, plain).norm(dim=1) / plain.norm(dim=1)
    ok = near["success_plain"].to_numpy()
    assert torch.allclose(torch.as_tensor(near["r_T"].to_numpy())[ok], share[ok], atol=1e-5)


@pytest.mark.slow
def test_gradient_control_uses_the_gradient_and_data_controls_are_filled() -> None:
    config = DigitsDataset(name="digits", pixel_range=(-1.0, 1.0), eval_samples=60)
    data = load_dataset(config, seed=0)
    clf = train_classifier(ClassifierConfig(arch="mlp", hidden=(64,), epochs=8), data,
                           data_config=config, seed=0).model.eval()
    auto = train_autoencoder(AutoencoderConfig(arch="mlp", latent_dim=8, hidden=(64,), epochs=15),
                             data, data_config=config, seed=0).model.eval()
    keep = correctly_classified(clf, data.eval.x, data.eval.y)
    x, y = data.eval.x[keep][:32], data.eval.y[keep][:32]
    attack = AttackConfig(eps=4.0, step=0.1, steps=60, base="image", on_manifold="tangent")
    m = measure(clf, auto, x, y, attack=attack, tangent=TangentConfig(dtype="float64"),
                generator=torch.Generator().manual_seed(0), bounds=data.pixel_range,
                controls=DataSubspaces.from_images(data.train.x),
                image_ids=data.eval.ids[keep][:32]).to_frame()
    assert (m["image_id"].to_numpy() == data.eval.ids[keep][:32].numpy()).all()
    both = m["r_Tother"].notna()
    assert int(both.sum()) > 10
    # r_T_grad_other is the GRADIENT's share in the other tangent: not the perturbation's.
    assert not (m.loc[both, "r_T_grad_other"] - m.loc[both, "r_Tother"]).abs().lt(1e-9).all()
    assert m["r_PCA"].between(0, 1).all() and m["r_Rdata"].between(0, 1).all()
