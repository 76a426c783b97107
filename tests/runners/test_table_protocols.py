"""The protocols that write tables besides measurements, end to end at reduced size: isometric
defense, training
dynamics on digits (>= 10 epochs, with its figure), adversarial training; per-epoch checkpoints,
adversarial training and the intrinsic-dimension estimate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from dimple_stats.cli import app
from dimple_stats.protocol import load_protocol, load_protocol_text
from runners.datasets import load_dataset
from runners.geometry.intrinsic import decoder_intrinsic_dimension, intrinsic_dimension
from runners.store import ArtifactStore
from runners.training import epoch_checkpoint_name, load_epoch_weights, train_classifier

PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"


def _run(protocol: str, tmp_path: Path, *overrides: str, limit: int = 30) -> Path:
    out = tmp_path / "report"
    args = ["run", str(PROTOCOLS / protocol), "--limit", str(limit), "--store",
            str(tmp_path / "store"), "--out", str(out), "--set", "seeds=[0]"]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_training_dynamics_on_digits_emits_table_and_figure(tmp_path: Path) -> None:
    out = _run("training_dynamics.yaml", tmp_path, "classifier.epochs=10",
               "autoencoders.plain.epochs=5")
    training = pd.read_parquet(out / "training.parquet")
    assert sorted(training["epoch"].unique()) == list(range(1, 11))
    # The same fixed samples at every epoch (the analysis pivots epoch x sample).
    per_epoch = training.groupby("epoch")["sample"].apply(lambda s: tuple(sorted(s)))
    assert per_epoch.nunique() == 1 and len(per_epoch.iloc[0]) >= 20
    # Really different weights per epoch: the boundary distance changes along training.
    assert training.groupby("epoch")["norm_plain"].median().nunique() > 5
    figure = out / "figures" / "training_curves.png"
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = pd.read_csv(out / "results.csv")
    claim = results[results["claim"] == "dmm.clinging_then_dimpling"]
    assert {"change point", "r_T below chance throughout"} <= set(claim["variant"])
    assert claim.loc[claim["variant"] == "change point", "p"].notna().all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "training" in manifest["tables"]


def test_epoch_checkpoints_are_stored_and_reloaded(tmp_path: Path) -> None:
    protocol = load_protocol_text(
        "name: e\ndataset: {name: digits, eval_samples: 20}\n"
        "classifier: {arch: mlp, hidden: [32], epochs: 3, patience: null}\n"
        "autoencoders: {plain: {arch: mlp, latent_dim: 4, hidden: [16], epochs: 1}}\n"
        "claims: [dmm.clinging_then_dimpling]\n")
    data = load_dataset(protocol.dataset, seed=0)
    store = ArtifactStore(tmp_path / "store")
    first = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=0,
                             store=store, epoch_checkpoints=True)
    again = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=0,
                             store=store, epoch_checkpoints=True)
    assert again.loaded and not again.epoch_states
    assert (store.path(first.key) / epoch_checkpoint_name(3)).is_file()
    for epoch in (1, 3):
        stored, memory = load_epoch_weights(again, store, epoch), first.epoch_states[epoch - 1]
        assert all(torch.equal(stored[k], memory[k]) for k in memory)
    one, three = load_epoch_weights(again, store, 1), load_epoch_weights(again, store, 3)
    assert any(not torch.equal(one[k], three[k]) for k in one)  # really per-epoch weights
    # A plain checkpoint of the same config is a different stage: it never carries epochs.
    plain = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=0,
                             store=store)
    assert plain.key != first.key and not plain.loaded


def test_adversarial_training_protocol_pairs_standard_and_adversarial(tmp_path: Path) -> None:
    out = _run("adversarial_training.yaml", tmp_path, "classifier.epochs=4",
               "autoencoders.plain.epochs=15", "autoencoders.isometric.epochs=15")
    table = pd.read_parquet(out / "adv_training.parquet")
    assert set(table["classifier"]) == {"standard", "adversarial"}
    assert set(table["autoencoder"]) == {"plain", "isometric"}
    by_role = {r: set(g["sample"]) for r, g in table.groupby("classifier")}
    assert by_role["standard"] == by_role["adversarial"] and len(by_role["standard"]) >= 20
    # Two different classifiers: their boundary distances differ sample by sample.
    wide = table[table["autoencoder"] == "plain"].pivot(index="sample", columns="classifier",
                                                        values="norm_plain")
    assert (wide["standard"] != wide["adversarial"]).mean() > 0.9
    results = pd.read_csv(out / "results.csv")
    rows = results[results["claim"] == "dmm.adv_training_deepens"]
    assert {"turned", "no_deepening"} <= set(rows["variant"])
    models = json.loads((out / "manifest.json").read_text())["models"]
    assert "classifier[standard]" in {m["model"] for m in models}


def test_adversarial_training_changes_the_model() -> None:
    protocol = load_protocol_text(
        "name: a\ndataset: {name: digits, eval_samples: 20}\n"
        "classifier: {arch: mlp, hidden: [32], epochs: 2, dropout: 0.0,\n"
        "             adversarial: {norm: linf, eps: 0.1, steps: 3}}\n"
        "autoencoders: {plain: {arch: mlp, latent_dim: 4, hidden: [16], epochs: 1}}\n"
        "claims: [dmm.adv_training_deepens]\n")
    data = load_dataset(protocol.dataset, seed=0)
    adv = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=0)
    std = train_classifier(protocol.classifier.model_copy(update={"adversarial": None}), data,
                           data_config=protocol.dataset, seed=0)
    w_adv, w_std = adv.model.state_dict(), std.model.state_dict()
    assert any(not torch.equal(w_adv[k], w_std[k]) for k in w_std)
    assert protocol.classifier.adversarial.step_size == pytest.approx(2.5 * 0.1 / 3)


def test_isometric_defense_protocol_runs_at_reduced_size(tmp_path: Path,
                                                          mnist_sample: Path) -> None:
    # The shipped protocol on the real MNIST sample, with short training and 20 images.
    out = _run("isometric_defense.yaml", tmp_path, f"dataset.root={mnist_sample}",
               "dataset.download=false", "classifier.epochs=5", "autoencoders.plain.epochs=15",
               "autoencoders.isometric.epochs=10", "defense.steps=20", limit=20)
    table = pd.read_parquet(out / "defense.parquet")
    assert set(table["defense"]) == {"none", "plain", "plain:tangent", "isometric",
                                     "isometric:tangent"}
    assert sorted(table["eps"].unique()) == [1.0, 2.0, 3.0]
    assert len(table) == 5 * 3 * 20
    # image ids are the eval images' indices in the test split (what the pooled McNemar clusters
    # on): the same ids for every defense, and the ones the dataset drew for this seed
    dataset = load_protocol(PROTOCOLS / "isometric_defense.yaml").dataset
    data = load_dataset(dataset.model_copy(update={"root": mnist_sample, "download": False}),
                        seed=0)
    for _, g in table.groupby(["defense", "eps"]):
        assert g.sort_values("sample")["image_id"].tolist() == \
            np.asarray(data.eval.ids)[:20].tolist()
    # Robust-correct implies clean-correct, and a larger budget never helps the defender
    # (PGD from the same start with early stop: what fails at eps may succeed at 2 eps).
    assert not (table["robust_correct"] & ~table["clean_correct"]).any()
    acc = table.groupby(["defense", "eps"])["robust_correct"].mean().unstack("eps")
    assert (acc[3.0] <= acc[1.0] + 0.1).all()
    assert acc[3.0].loc["none"] < acc[1.0].loc["none"]  # the attack really attacks
    results = pd.read_csv(out / "results.csv")
    variants = set(results.loc[results["claim"] == "iso.defense", "variant"])
    assert {"vs none @ eps=1", "vs plain @ eps=1", "clean cost vs none"} <= variants
    models = {m["model"]: m for m in json.loads((out / "manifest.json").read_text())["models"]}
    assert models["isometric"]["intrinsic_dim_nominal"] == 16.0
    assert 1.0 <= models["isometric"]["intrinsic_dim_participation"] <= 16.0


def test_intrinsic_dimension_counts_the_directions_that_carry_variation() -> None:
    from runners.datasets.synthetic import LinearManifold

    manifold = LinearManifold(latent_dim=6, image_shape=(1, 6, 6), seed=0)
    z = torch.zeros(4, 6, dtype=torch.float64)
    exact = decoder_intrinsic_dimension(manifold.decode, z)
    # Orthonormal columns: every |R_jj| = 1, so both summaries give the nominal size.
    assert exact["intrinsic_dim_count"] == 6.0 and exact["numerical_rank"] == 6.0
    assert exact["intrinsic_dim_participation"] == pytest.approx(6.0)
    # Scale two latent directions down 1000-fold: they no longer carry variation.
    scale = torch.tensor([1, 1, 1, 1, 1e-3, 1e-3], dtype=torch.float64)
    squashed = decoder_intrinsic_dimension(lambda v: manifold.decode(v * scale), z)
    assert squashed["intrinsic_dim_count"] == 4.0 and squashed["numerical_rank"] == 6.0
    assert squashed["intrinsic_dim_participation"] == pytest.approx(4.0, abs=1e-3)
    assert intrinsic_dimension(torch.tensor([[3.0, 0.0]]))["intrinsic_dim_count"] == 1.0


def test_training_figure_is_named_only_with_a_training_table() -> None:
    from dimple_stats.report import TRAINING_FIGURE, figure_names

    results = pd.DataFrame({"claim": ["x"], "estimate": [float("nan")]})
    assert TRAINING_FIGURE not in figure_names(results, None)
    training = pd.DataFrame({"seed": [0, 0], "epoch": [1, 2], "sample": [0, 0],
                             "norm_plain": [1.0, 2.0], "r_T": [0.1, 0.2], "r_R": [0.3, 0.3],
                             "n": [64, 64], "k": [8, 8], "success_plain": [True, True]})
    assert TRAINING_FIGURE in figure_names(results, None, {"training": training})
