"""Norm claims with images that are not measurable or excluded, and the first-order null.

Ground truth: tables whose on/off ratios are exactly the first-order prediction of a locally
linear classifier (no rejection expected beyond sampling), or that prediction times a planted
factor (rejection expected); not-measurable and excluded rows must be left out and counted, not
imputed at eps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dimple_stats.api import test_claim
from dimple_stats.claims.norms import first_order_ratio


def _table(n: int = 80, factor: float = 1.0, seed: int = 0, **extra) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    r_grad = np.sqrt(rng.beta(8 / 2, (64 - 8) / 2, n))
    margin = rng.uniform(0.5, 2.0, n)
    norm_off = margin / np.sqrt(1 - r_grad**2)
    norm_on = margin / r_grad * factor * np.exp(rng.normal(0, 0.05, n))
    df = pd.DataFrame({"seed": 0, "autoencoder": "plain", "sample": np.arange(n), "n": 64,
                       "k": 8, "norm_on": norm_on, "norm_off": norm_off,
                       "norm_plain": margin, "success_on": True, "success_off": True,
                       "success_plain": True, "r_T_grad": r_grad, "base_ok": True,
                       "eps_on": 100.0, "eps_off": 100.0, "eps_plain": 100.0})
    return df.assign(**extra)


def _row(res: pd.DataFrame, variant: str) -> pd.Series:
    return res[(res["variant"] == variant) & (res["seed"] == 0)].iloc[0]


def test_first_order_ratio_is_the_linear_classifiers_on_off_ratio() -> None:
    r = np.array([0.1, 0.5, 0.9])
    assert np.allclose(first_order_ratio(r), np.sqrt(1 - r**2) / r)
    assert first_order_ratio(np.array([0.0]))[0] == np.inf


@pytest.mark.parametrize(("factor", "decision"), [(1.0, "retain H0"), (1.5, "reject H0")])
def test_beyond_first_order_tests_the_gradients_own_prediction(factor, decision) -> None:
    res = test_claim(_table(factor=factor), "dmm.norm_asymmetry", stats={"bootstrap": 200})
    row = _row(res, "beyond_first_order")
    assert row["decision"] == decision
    assert row["estimate"] == pytest.approx(np.log(factor), abs=0.03)


def test_not_measurable_images_are_left_out_and_counted_not_imputed_at_eps() -> None:
    df = _table(factor=1.5)
    gone = np.zeros(len(df), dtype=bool)
    gone[:30] = True
    # What a strict tangent attack records where (x + T) ∩ box = {x}: no norm at all.
    df = df.assign(measurable_on=~gone, success_on=~gone,
                   norm_on=np.where(gone, np.nan, df["norm_on"]))
    res = test_claim(df, "dmm.norm_asymmetry", stats={"bootstrap": 200})
    row = _row(res, "beyond_dimension_counting")
    assert row["n"] == 50 and row["n_censored"] == 0
    assert "30 image(s) not measurable" in row["note"]
    mc = test_claim(df, "dmm.off_succeeds_more")
    assert _row(mc, "equal_rates")["n"] == 50  # not 30 "failed on-manifold attacks"


def test_a_seed_with_no_measurable_image_is_uninformative_not_an_error() -> None:
    # A sweep cell of the strict tangent attack at the image with an isometric k = 2 decoder:
    # (x + T) ∩ box = {x} for every image of a seed. The other seeds and cells must still be
    # analysed (this stopped the multiverse_digits record before its report).
    df = pd.concat([_table(factor=1.5, seed=0), _table(factor=1.5, seed=1).assign(seed=1)],
                   ignore_index=True)
    gone = df["seed"].eq(1).to_numpy()
    df = df.assign(measurable_on=~gone, success_on=~gone,
                   norm_on=np.where(gone, np.nan, df["norm_on"]))
    res = test_claim(df, "dmm.norm_asymmetry", stats={"bootstrap": 200})
    dead = res[(res["seed"] == 1) & (res["variant"] == "beyond_dimension_counting")].iloc[0]
    assert dead["decision"] == "uninformative" and dead["n"] == 0
    assert "80 image(s) not measurable" in dead["note"] and "every image" in dead["note"]
    assert _row(res, "beyond_dimension_counting")["decision"] == "reject H0"  # seed 0 stands
    mc = test_claim(df, "dmm.off_succeeds_more")
    assert mc[mc["seed"] == 1].iloc[0]["decision"] == "uninformative"


def test_rows_whose_manifold_point_is_misclassified_are_excluded_from_every_claim() -> None:
    df = _table()
    bad = np.zeros(len(df), dtype=bool)
    bad[:7] = True
    df = df.assign(base_ok=~bad, r_T=0.3, r_R=0.35,
                   norm_on=np.where(bad, np.nan, df["norm_on"]),
                   norm_off=np.where(bad, np.nan, df["norm_off"]),
                   norm_plain=np.where(bad, np.nan, df["norm_plain"]),
                   success_on=~bad, success_off=~bad, success_plain=~bad)
    for claim in ("dmm.norm_asymmetry", "dmm.perpendicular"):
        row = test_claim(df, claim, stats={"bootstrap": 200}).iloc[0]
        assert row["n"] == 73, claim
        assert "7 image(s) excluded" in row["note"], claim
