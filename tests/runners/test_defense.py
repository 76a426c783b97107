"""iso.defense: the projection defense under adaptive white-box attacks.

On ``linear_subspace`` data the manifold is known exactly and the oracle projection is the
orthogonal projection onto it, so theory says: an off-manifold perturbation is removed entirely
(robust accuracy rises), while an adaptive attack through the projection, which can only move
along the manifold, still succeeds. Both are asserted, so a defense that merely hides its
gradient (and would look robust to every gradient attack) cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from dimple_stats.api import test_claim
from dimple_stats.protocol import load_protocol_text
from dimple_stats.protocol.schema import DefenseConfig, TangentConfig
from runners.datasets import load_dataset
from runners.defense import (
    ProjectionDefense,
    defense_frame,
    robust_correct,
    threat_subspace,
)
from runners.pipeline import run_protocol
from runners.training import train_autoencoder, train_classifier

LINEAR = """\
name: defense_linear
dataset: {name: linear_subspace, latent_dim: 8, image_shape: [1, 8, 8], train_samples: 2000,
          eval_samples: 60}
classifier: {arch: mlp, hidden: [128, 128], epochs: 20, patience: null}
autoencoders:
  oracle: {arch: oracle}
attack: {eps: {plain: 0.5, on: 2, off: 2}}
tangent: {method: dense, dtype: float64}
defense: {threat: off_manifold, steps: 50}
claims:
  - iso.defense: {eps: [0.5]}
seeds: [0]
report: {formats: [csv], figures: false}
"""
EPS = 0.5


@pytest.fixture(scope="module")
def linear_world():
    protocol = load_protocol_text(LINEAR)
    data = load_dataset(protocol.dataset, seed=0)
    clf = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=0).model
    oracle = train_autoencoder(protocol.autoencoders["oracle"], data,
                               data_config=protocol.dataset, seed=0).model
    clf.eval()
    oracle.eval()
    space = threat_subspace(oracle, data.eval.x, TangentConfig(dtype="float64"))
    return protocol, data, clf, oracle, space


class _GradientMasked(nn.Module):
    """A sham defense: the classifier itself with its input gradient cut (x.detach()). It
    changes nothing about the decision function, only hides the gradient from the attacker."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x.detach() + 0.0 * x)


def _defense_verdict(world, candidate: nn.Module) -> dict[str, float]:
    """p of 'robust accuracy rises against off-manifold attacks' (the catalogue's exact McNemar
    vs no defense) and robust accuracy against the adaptive on-manifold attack."""
    _, data, clf, _, space = world
    x, y = data.eval.x, data.eval.y
    samples = np.arange(len(x))
    out: dict[str, float] = {}
    for threat in ("off_manifold", "on_manifold"):
        config = DefenseConfig(threat=threat, steps=50)
        frames = []
        for name, model in (("none", clf), ("candidate", candidate)):
            clean, robust = robust_correct(model, x, y, eps=EPS, config=config,
                                           threat_space=space, bounds=data.pixel_range,
                                           generator=torch.Generator().manual_seed(0))
            frames.append(defense_frame(0, name, EPS, samples, clean, robust, threat))
        table = pd.concat(frames, ignore_index=True)
        res = test_claim(table, "iso.defense", stats={"bootstrap": 200})
        row = res[(res["seed"].astype(str) == "0") & (res["variant"] == f"vs none @ eps={EPS:g}")]
        out[f"p_{threat}"] = float(row["p"].iloc[0])
        out[f"robust_{threat}"] = float(table.loc[table["defense"] == "candidate",
                                                  "robust_correct"].mean())
        out[f"robust_none_{threat}"] = float(table.loc[table["defense"] == "none",
                                                       "robust_correct"].mean())
    return out


def test_oracle_projection_removes_off_manifold_attacks_but_not_adaptive_on_manifold(
        linear_world) -> None:
    _, _, clf, oracle, _ = linear_world
    defended = ProjectionDefense(clf, oracle, bounds=(0.0, 1.0)).eval()
    verdict = _defense_verdict(linear_world, defended)
    # The oracle encoder runs under no_grad: autograd would see no gradient, so the attack must
    # have gone through the BPDA tangent projector (an exact derivative on a linear manifold).
    assert defended.gradient_used == "bpda"
    assert verdict["robust_none_off_manifold"] < 0.5  # the undefended model IS vulnerable off T
    assert verdict["p_off_manifold"] < 0.01
    assert verdict["robust_off_manifold"] > 0.9
    # Adaptive on-manifold attack through the projection still succeeds almost always.
    assert verdict["robust_on_manifold"] < 0.1
    assert verdict["p_on_manifold"] > 0.05


def test_a_gradient_masking_sham_fails_the_adaptive_criterion(linear_world) -> None:
    _, _, clf, _, _ = linear_world
    verdict = _defense_verdict(linear_world, _GradientMasked(clf).eval())
    # It would pass the off-manifold criterion on its own (the attacker gets no gradient) ...
    assert verdict["p_off_manifold"] < 0.01
    # ... but the adaptive on-manifold attack fails against it too, which a real projection
    # defense does not allow: this is what exposes obfuscated gradients.
    assert verdict["robust_on_manifold"] > 0.5


def test_bpda_backward_is_the_tangent_projector(linear_world) -> None:
    _, data, clf, oracle, _ = linear_world
    defended = ProjectionDefense(nn.Identity(), oracle).eval()
    x = data.eval.x[:3].clone().requires_grad_(True)
    v = torch.randn_like(x)
    (grad,) = torch.autograd.grad((defended(x) * v).sum(), x)
    basis = oracle.manifold.basis.to(torch.float32)
    expected = (v.flatten(1) @ basis @ basis.T).reshape(x.shape)
    assert torch.allclose(grad, expected, atol=1e-5)
    # Forward is the exact orthogonal projection onto the subspace c + U z.
    offset = oracle.manifold.offset.to(torch.float32)
    proj = offset + ((x.detach().flatten(1) - offset) @ basis) @ basis.T
    assert torch.allclose(defended(x.detach()).flatten(1), proj, atol=1e-5)


def test_tangent_projection_equals_encoder_projection_for_an_orthogonal_encoder(
        linear_world) -> None:
    _, data, clf, oracle, _ = linear_world
    x = data.eval.x[:5] + 0.05 * torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    enc = ProjectionDefense(clf, oracle, projection="encoder").project(x)
    tan = ProjectionDefense(clf, oracle, projection="tangent").project(x)
    assert torch.allclose(enc, tan, atol=1e-5)


def test_pipeline_writes_the_defense_table_and_the_claim_rejects(tmp_path: Path) -> None:
    protocol = load_protocol_text(LINEAR)
    outcome = run_protocol(protocol, store_root=tmp_path / "store", out_dir=tmp_path / "rep")
    table = pd.read_parquet(tmp_path / "rep" / "defense.parquet")
    assert set(table["defense"]) == {"none", "oracle"}
    assert len(table) == 2 * protocol.dataset.eval_samples
    assert set(table.loc[table["defense"] == "oracle", "gradient"]) == {"bpda"}
    res = outcome.results
    row = res[(res["claim"] == "iso.defense") & (res["autoencoder"] == "oracle")
              & (res["variant"] == "vs none @ eps=0.5") & (res["seed"].astype(str) == "0")]
    assert float(row["p"].iloc[0]) < 0.01
    assert outcome.measurements.empty  # no claim reads the measurements table: none computed
    # Resumable: a second run loads every defense stage from the store.
    again = run_protocol(protocol, store_root=tmp_path / "store", out_dir=tmp_path / "rep2")
    assert again.manifest["shards"]["0"]["computed"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rep2" / "defense.parquet"), table)


def test_every_attack_counts_an_image_robust_only_if_each_attack_fails(linear_world) -> None:
    """``defense.gradient: every`` (the default): the per-image worst case over the autograd
    and BPDA attacks through a learned (non-orthogonal) projection, as AutoAttack combines its
    attacks. The combined flags are the AND of the two attacks run on their own, and
    ``broken_by`` names the attacks that flipped each image."""
    from dimple_stats.protocol.schema import AutoencoderConfig
    from runners.defense import attack_gradients, robust_correct_every

    protocol, data, clf, _, _ = linear_world
    ae = train_autoencoder(AutoencoderConfig(arch="mlp", latent_dim=8, hidden=(64,), epochs=10),
                           data, data_config=protocol.dataset, seed=0).model.eval()
    config = DefenseConfig(threat="unrestricted", steps=20)
    x, y = data.eval.x[:40], data.eval.y[:40]
    models = [ProjectionDefense(clf, ae, gradient=g).eval() for g in attack_gradients("every")]
    alone = {}
    for model in models:
        clean, rob = robust_correct(model, x, y, eps=EPS, config=config, bounds=None)
        alone[model.gradient_used] = rob
    assert set(alone) == {"autograd", "bpda"}
    clean, combined, used, broken_by = robust_correct_every(models, x, y, eps=EPS,
                                                            config=config, bounds=None)
    assert used == "autograd+bpda"
    np.testing.assert_array_equal(combined, alone["autograd"] & alone["bpda"])
    for name in ("autograd", "bpda"):
        flipped = clean & ~alone[name]
        assert [name in b for b in broken_by] == flipped.tolist()
    assert (broken_by[~clean] == "").all() and (broken_by[combined] == "").all()
    assert combined.sum() < clean.sum()  # the budget breaks some images: not a vacuous AND
