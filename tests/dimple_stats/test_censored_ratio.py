"""Censored norm ratios: the modelled sign test against the exact one, and its size and power
through the public API at realistic censoring (the largest on-manifold norms fail, so the
ratio's censoring point eps / norm_off depends on the off norm, which depends on the ratio).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import dimple_stats as ds
from dimple_stats.stats.censored_ratio import (
    BivariateNormal,
    CensoredLogRatio,
    conditional_medians,
    fit_bivariate_normal,
    model_median,
    model_sign_test,
    prob_above,
)

K, N = 16, 784


def _uncensored(v: np.ndarray) -> CensoredLogRatio:
    n = v.size
    return CensoredLogRatio(np.exp(v), np.ones(n), np.ones(n, bool), np.ones(n, bool),
                            np.zeros(n))


def test_without_censoring_it_is_the_exact_sign_test_and_the_sample_median() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(0.2, 1.0, 41)
    r, model = _uncensored(v), BivariateNormal(0.0, 0.0, 1.0, 1.0, 0.3)
    for alternative in ("greater", "less"):
        exact = stats.binomtest(int((v > 0).sum()) if alternative == "greater" else
                                int((v < 0).sum()), v.size, 0.5, alternative="greater").pvalue
        assert model_sign_test(r, model, alternative=alternative).pvalue == pytest.approx(exact)
    assert model_median(r, model).estimate == pytest.approx(float(np.median(v)))
    even = _uncensored(v[:40])
    assert model_median(even, model).estimate == pytest.approx(float(np.median(v[:40])))


def test_the_fit_recovers_a_known_bivariate_normal_through_both_censorings() -> None:
    rng = np.random.default_rng(1)
    n, rho = 4000, 0.6
    w = rng.normal(0.0, 0.4, n)
    u = 1.0 + rho * 0.5 / 0.4 * w + math.sqrt(1 - rho**2) * 0.5 * rng.normal(size=n)
    eps_u, eps_w = np.quantile(u, 0.75), np.quantile(w, 0.9)
    r = CensoredLogRatio(np.exp(np.minimum(u, eps_u)), np.exp(np.minimum(w, eps_w)), u <= eps_u,
                         w <= eps_w, np.zeros(n))
    m = fit_bivariate_normal(r)
    assert (m.mean_u, m.mean_w) == pytest.approx((1.0, 0.0), abs=0.03)
    assert (m.sd_u, m.sd_w, m.rho) == pytest.approx((0.5, 0.4, rho), abs=0.03)
    # The probability a censored pair lies above a value is the truncated normal's, and the
    # truth among the censored pairs agrees with the model's expectation.
    truth = u - w
    for cens in (~r.top_ok & r.bottom_ok, r.top_ok & ~r.bottom_ok):
        p = prob_above(r.keep(cens), m, 0.9)
        assert float(p.sum()) == pytest.approx(float((truth[cens] > 0.9).sum()),
                                               abs=4 * math.sqrt(cens.sum() / 4) + 5)
    # Closed-form conditional medians are where the conditional probability is one half.
    some = np.flatnonzero(r.censored)[:5]
    med = conditional_medians(r, m)
    for j in some:
        one = r.keep(np.arange(n) == j)
        assert float(prob_above(one, m, float(med[j]))[0]) == pytest.approx(0.5, abs=1e-6)


def _table(rng: np.random.Generator, autoencoders: int, seeds: int, n: int, excess: float,
           rho: float, off_fail: float = 0.0) -> pd.DataFrame:
    """Minimal norms of a locally linear classifier (on/off = sqrt(1 - B) / sqrt(B), B =
    r_T^2 ~ Beta(k/2, (n-k)/2)) with an image scale shared by both norms and correlated with
    r_T (``rho``, on the normal scale), the on norm multiplied by exp(excess); the largest 20%
    of on norms fail (censored at eps = their 80% quantile), and the largest ``off_fail`` of
    the off norms."""
    rows = autoencoders * seeds * n
    z1 = rng.normal(size=rows)
    z2 = rho * z1 + math.sqrt(1 - rho**2) * rng.normal(size=rows)
    r = np.sqrt(stats.beta.ppf(stats.norm.cdf(z1), K / 2, (N - K) / 2))
    scale = np.exp(0.3 * z2)
    on, off = math.exp(excess) * scale / r, scale / np.sqrt(1 - r**2)
    eps = np.quantile(on, 0.8)
    eps_off = np.quantile(off, 1 - off_fail) if off_fail else np.inf
    e = np.repeat(np.arange(autoencoders), seeds * n)
    s = np.tile(np.repeat(np.arange(seeds), n), autoencoders)
    return pd.DataFrame({
        "autoencoder": [f"e{i}" for i in e], "seed": s, "sample": np.tile(np.arange(n), seeds *
                                                                          autoencoders),
        "image_id": np.arange(rows), "n": N, "k": K, "norm_plain": scale, "success_plain": True,
        "success_on": on <= eps, "norm_on": np.minimum(on, eps), "success_off": off <= eps_off,
        "norm_off": np.minimum(off, eps_off)})


def _per_seed_rejections(df: pd.DataFrame, censored: float = 0.2) -> np.ndarray:
    res = ds.test_claim(df, "dmm.norm_asymmetry",
                        stats={"alpha": 0.05, "correction": "none", "bootstrap": 100})
    rows = res[(res["variant"] == "beyond_dimension_counting") & (res["seed"] != "pooled")]
    assert (rows["n_censored"] / rows["n"]).mean() == pytest.approx(censored, abs=0.03)
    assert rows["test"].str.contains("bivariate log-normal model").all()
    return (rows["p"].to_numpy(float) <= 0.05)


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.5, 0.0])
def test_twenty_percent_censoring_holds_size_and_keeps_power(rho: float) -> None:
    """At 20% censoring of the largest on norms the least-favourable bound rejected a true null
    0/1000 times and kept 23% of the power for a 5% on-norm excess (98% uncensored); the
    modelled test (3,000 simulations of 200 images each, outside the suite): size 5.3% +-
    0.4% (rho 0), 5.4% +- 0.4% (rho 0.5, the realistic direction: larger off norms, smaller
    ratios), 4.4% +- 0.4% (rho -0.5); power 92-93%. Here 300 seeds at the null (MC SE 1.3%)
    and 60 under the excess."""
    rng = np.random.default_rng(2027 + int(10 * rho))
    null = _per_seed_rejections(_table(rng, 60, 5, 200, 0.0, rho))
    size, se = null.mean(), math.sqrt(0.06 * 0.94 / null.size)
    print(f"rho {rho}: size {size:.3f} +- {se:.3f}")
    assert 0.025 - 2 * se <= size <= 0.075 + 2 * se, (size, se)
    power = _per_seed_rejections(_table(rng, 12, 5, 200, math.log(1.05), rho)).mean()
    print(f"rho {rho}: power {power:.3f}")
    assert power >= 0.75, power


def test_a_pooled_row_reads_its_modelled_seed_not_its_first_seed() -> None:
    """Five seeds whose on/off ratios all lie far below dimension counting, one failed on
    attack in seed 1 (modelled, an estimate): every seed and the pool read "contradicted".
    Before, the pooled row took seed 0's test text ("sign test", nothing censored there), so
    its 1 censored pair counted as a bound and the pool read "not supported" (Fashion-MNIST
    plain and MNIST IRVAE in the committed records)."""
    from dimple_stats.report.verdicts import row_verdicts

    rng = np.random.default_rng(5)
    df = _table(rng, 1, 5, 150, math.log(0.3), 0.5)
    df["success_on"] = True
    hit = df.index[df["seed"] == 1][0]
    df.loc[hit, "success_on"] = False  # censored at the norm it reached
    res = ds.test_claim(df, "dmm.norm_asymmetry", stats={"bootstrap": 200})
    rows = res[res["variant"] == "beyond_dimension_counting"].reset_index(drop=True)
    pooled = rows[rows["seed"] == "pooled"]
    assert int(pooled["n_censored"].iloc[0]) == 1
    assert "bivariate log-normal model" in str(pooled["test"].iloc[0])
    readings = row_verdicts(rows)
    assert list(readings) == ["contradicted"] * 6, list(readings)


@pytest.mark.slow
def test_a_few_failed_off_attacks_are_modelled_and_many_keep_the_worst_case() -> None:
    """Pairs with a failed off (bottom) attack enter through the model while they are at most
    5% of a row (MODEL_BOTTOM_AT_MOST; its table gives the simulations behind it: at 10% the
    pooled test drifted liberal, 8.5% +- 1.1%). Here 3% failed off besides 20% failed on
    (nearly every row under the 5%): per-seed size within 2.5-7.5% (150 seeds, MC SE 1.8%) and
    the note counts the modelled failed off attacks; at 12% the row falls back to the worst
    case and says so."""
    from dimple_stats.claims.rows import WORST_OFF

    rng = np.random.default_rng(4242)
    df = _table(rng, 30, 5, 200, 0.0, 0.5, off_fail=0.03)
    null = _per_seed_rejections(df, censored=0.205)
    size, se = null.mean(), math.sqrt(0.06 * 0.94 / null.size)
    print(f"3% failed off: size {size:.3f} +- {se:.3f}")
    assert 0.025 - 2 * se <= size <= 0.075 + 2 * se, (size, se)
    res = ds.test_claim(df[df["autoencoder"] == "e0"], "dmm.norm_asymmetry",
                        stats={"bootstrap": 100})
    row = res[(res["variant"] == "beyond_dimension_counting")
              & (res["seed"].astype(str) == "0")].iloc[0]
    assert "with a failed bottom attack enter through a model" in row["note"], row["note"]
    assert WORST_OFF not in row["test"]
    many = _table(np.random.default_rng(7), 1, 1, 200, 0.0, 0.5, off_fail=0.12)
    res = ds.test_claim(many, "dmm.norm_asymmetry", stats={"bootstrap": 100})
    row = res[(res["variant"] == "beyond_dimension_counting")
              & (res["seed"].astype(str) == "0")].iloc[0]
    assert WORST_OFF in row["test"] and "beyond what the model covers" in row["note"]
