"""The measurement table on the synthetic manifold, where the true tangent space is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dimple_stats.protocol.schema import AttackConfig, SyntheticDataset, TangentConfig
from runners.datasets import load_dataset
from runners.geometry import DenseSubspace
from runners.measure import COLUMNS, correctly_classified, measure
from runners.models.autoencoders import OracleAutoencoder
from runners.models.classifiers import MLPClassifier, freeze

# Budgets chosen so that every mode has both successes and censored failures on these samples.
ATTACK = AttackConfig(
    eps={"plain": 0.2, "on": 0.4, "off": 0.2},
    step={"plain": 0.02, "on": 0.04, "off": 0.02},
    steps={"plain": 30, "on": 60, "off": 60},
    batch_size=16,  # 2 chunks of the 24 samples: exercises the chunking
)
TANGENT = TangentConfig(dtype="float64")
RATIOS = ("r_T", "r_R", "r_Tother", "r_T_grad")


@pytest.fixture(scope="module")
def setup():
    data = load_dataset(SyntheticDataset(name="synthetic", eval_samples=40, train_samples=400),
                        seed=0)
    torch.manual_seed(0)
    clf = MLPClassifier(image_shape=data.image_shape, num_classes=2, hidden=(32,), dropout=0.0)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(clf(data.train.x), data.train.y).backward()
        opt.step()
    freeze(clf)
    ok = correctly_classified(clf, data.eval.x, data.eval.y).nonzero().squeeze(1)[:24]
    ae = OracleAutoencoder(data.manifold)
    return data, clf, ae, ok


@pytest.fixture(scope="module")
def measured(setup):
    data, clf, ae, ok = setup
    m = measure(clf, ae, data.eval.x[ok], data.eval.y[ok], attack=ATTACK, tangent=TANGENT,
                generator=torch.Generator().manual_seed(0), bounds=data.pixel_range,
                sample_ids=ok)
    return m


def test_columns_and_types(measured, setup) -> None:
    _, _, _, ok = setup
    df = measured.to_frame()
    assert tuple(df.columns) == COLUMNS and len(df) == len(ok)
    assert {"sample", "label"} | {f"{a}_{m}" for a in ("norm", "success", "eps")
                                  for m in ("plain", "on", "off")} <= set(df.columns)
    assert df["sample"].tolist() == ok.tolist()
    assert (df["n"] == 64).all() and (df["k"] == 8).all()
    assert all(df[f"success_{m}"].dtype == bool for m in ("plain", "on", "off"))
    assert measured.method == "dense"
    assert measured.delta["plain"].shape == (len(ok), 1, 8, 8)


def test_finite_values_and_censoring(measured) -> None:
    df = measured.to_frame()
    finite = ["recon_err", "iso_cond", "r_T", "r_R", "r_T_grad"]
    for mode in ("plain", "on", "off"):
        finite += [f"norm_{mode}", f"eps_{mode}"]
        won, eps = df[f"success_{mode}"], df[f"eps_{mode}"]
        assert 0 < won.sum() < len(df), mode  # both outcomes present: the checks bite
        assert (df.loc[~won, f"norm_{mode}"] == eps[~won]).all()  # censored at eps, kept
        assert (df.loc[won, f"norm_{mode}"] <= eps[won]).all()
        assert (df.loc[won, f"norm_{mode}"] > 0).all()
    assert np.isfinite(df[finite].to_numpy(dtype=float)).all()
    for col in RATIOS:
        vals = df[col].dropna()
        assert ((vals >= 0) & (vals <= 1)).all(), col
    assert df["r_Tother"].notna().all()  # both classes have several samples here
    assert (df["recon_err"] < 1e-5).all()  # the oracle reconstructs (up to float32 rounding)
    assert (df["iso_cond"] >= 1).all()


def test_r_T_matches_true_tangent_space(measured, setup) -> None:
    data, _, _, ok = setup
    truth = DenseSubspace(data.eval.tangent_basis(ok))  # closed-form Jacobian at the TRUE latent
    expected = truth.ratio(measured.delta["plain"]).numpy()
    got = measured.to_frame()["r_T"].to_numpy()
    assert np.abs(got - expected).max() < 1e-5
    # A different subspace gives a clearly different ratio: the comparison is not vacuous.
    assert np.abs(measured.to_frame()["r_R"].to_numpy() - expected).max() > 1e-2


def test_deltas_match_norm_columns(measured) -> None:
    df = measured.to_frame()
    for mode in ("plain", "on", "off"):
        won = df[f"success_{mode}"].to_numpy()
        norms = measured.delta[mode].flatten(1).norm(dim=1).numpy()
        assert np.allclose(norms[won], df[f"norm_{mode}"].to_numpy()[won], rtol=1e-5)


def test_deterministic_for_a_seed(setup, measured) -> None:
    data, clf, ae, ok = setup
    x, y = data.eval.x[ok], data.eval.y[ok]
    again = measure(clf, ae, x, y, attack=ATTACK, tangent=TANGENT,
                    generator=torch.Generator().manual_seed(0), bounds=data.pixel_range,
                    sample_ids=ok).to_frame()
    pd.testing.assert_frame_equal(again, measured.to_frame())
    other = measure(clf, ae, x, y, attack=ATTACK, tangent=TANGENT,
                    generator=torch.Generator().manual_seed(1), bounds=data.pixel_range,
                    sample_ids=ok).to_frame()
    assert not np.allclose(other["r_R"], again["r_R"])  # the random control is seeded
    assert np.allclose(other["r_T"], again["r_T"])  # the rest does not depend on it


def test_single_sample_class_gives_nan_other_tangent(setup) -> None:
    data, clf, ae, ok = setup
    labels = data.eval.y[ok]
    pick = torch.cat([(labels == 0).nonzero().squeeze(1)[:4], (labels == 1).nonzero().squeeze(1)[:1]])
    m = measure(clf, ae, data.eval.x[ok][pick], labels[pick], attack=ATTACK, tangent=TANGENT,
                generator=torch.Generator().manual_seed(0), bounds=data.pixel_range)
    df = m.to_frame()
    assert df["r_Tother"].isna().tolist() == [False] * 4 + [True]
    assert m.diagnostics["other_index"][-1] == -1


def test_misclassified_samples_are_rejected(setup) -> None:
    data, clf, ae, _ = setup
    bad = (~correctly_classified(clf, data.eval.x, data.eval.y)).nonzero().squeeze(1)
    assert len(bad) > 0
    with pytest.raises(ValueError, match="correctly classified"):
        measure(clf, ae, data.eval.x[bad], data.eval.y[bad], attack=ATTACK, tangent=TANGENT,
                generator=torch.Generator().manual_seed(0))


def test_matrix_free_measurement_agrees_with_dense(setup, measured) -> None:
    data, clf, ae, ok = setup
    sel = ok[:6]
    mf = measure(clf, ae, data.eval.x[sel], data.eval.y[sel], attack=ATTACK,
                 tangent=TangentConfig(dtype="float64", method="matrix_free", tol=1e-10,
                                       max_iter=50),
                 generator=torch.Generator().manual_seed(0), bounds=data.pixel_range)
    dense = measured.to_frame().iloc[:6].reset_index(drop=True)
    got = mf.to_frame()
    assert mf.method == "matrix_free" and "solver_iterations" in mf.diagnostics
    for col in ("r_T", "r_T_grad", "norm_plain", "norm_on", "norm_off", "k", "iso_cond"):
        assert np.allclose(got[col], dense[col], rtol=1e-4), col
    for mode in ("plain", "on", "off"):
        assert (got[f"success_{mode}"] == dense[f"success_{mode}"]).all()


def test_strict_tangent_attack_uses_a_float64_basis_whatever_tangent_dtype(setup) -> None:
    """The strict tangent-plane attack and its reach decide feasibility at the 1e-6 level of a
    saturated pixel's tangent row: a float32 basis flipped 5 of 29 MNIST conv images where the
    float64 one (and an independent solver) flipped 20. The attack therefore gets the float64
    tangent space under either ``tangent.dtype``: the on-manifold columns agree to rounding."""
    data, clf, ae, ok = setup
    attack = ATTACK.model_copy(update={"box": "strict", "on_manifold": "tangent",
                                       "base": "image"})
    frames = [measure(clf, ae, data.eval.x[ok], data.eval.y[ok], attack=attack,
                      tangent=TangentConfig(dtype=dtype), generator=torch.Generator().manual_seed(0),
                      bounds=data.pixel_range, sample_ids=ok).to_frame()
              for dtype in ("float32", "float64")]
    low, high = frames
    assert np.isfinite(high["reach_on"]).all()
    assert np.allclose(low["reach_on"], high["reach_on"], rtol=1e-12, atol=0)
    assert (low["success_on"] == high["success_on"]).all()
    assert np.allclose(low["norm_on"], high["norm_on"], rtol=1e-6, atol=0)
