"""Calibration: under a true null the per-seed tests reject at about alpha; under a planted
effect they reject almost always. Each simulated seed is one table (one per-seed row), run
through the same claim pipeline a user calls (``test_claim``), with no multiplicity correction.

With 600 tables the rejection rate's standard error at alpha = 0.05 is 0.0089, so [0.03, 0.07]
is more than two standard errors either side; the simulations are seeded, so the outcome is fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import dimple_stats as ds
from dimple_stats.stats import mcnemar_exact, tost

N_DIM, K_DIM = 64, 8  # r^2 ~ Beta(4, 28) at chance
STATS = {"alpha": 0.05, "correction": "none", "bootstrap": 100}


def chance_r(rng: np.random.Generator, size: int, n: int = N_DIM, k: int = K_DIM) -> np.ndarray:
    return np.sqrt(rng.beta(k / 2, (n - k) / 2, size))


def tables(rng: np.random.Generator, *, seeds: int, samples: int, shrink: float = 1.0,
           n: int = N_DIM, k: int = K_DIM) -> pd.DataFrame:
    """``seeds`` independent tables of ``samples`` rows, stacked (one seed = one table)."""
    size = seeds * samples
    return pd.DataFrame({
        "seed": np.repeat(np.arange(seeds), samples), "autoencoder": "ae",
        "sample": np.tile(np.arange(samples), seeds), "n": n, "k": k,
        "r_T": shrink * chance_r(rng, size, n, k), "r_R": chance_r(rng, size, n, k),
        "success_plain": True,
    })


def per_seed_rejection_rate(results: pd.DataFrame) -> float:
    per_seed = results[results["seed"] != "pooled"]
    return float((per_seed["decision"] == "reject H0").mean())


def test_random_subspace_null_rejects_at_alpha() -> None:
    df = tables(np.random.default_rng(101), seeds=600, samples=50)
    res = ds.test_claim(df, "dmm.perpendicular", null="random_subspace", stats=STATS)
    assert len(res) == 601
    # The exact sign test of 50 values cannot reach 0.05: its attained size is
    # P(Binomial(50, 1/2) >= 32) = 0.0325 (MC SE over 600 seeds: 0.0072).
    attained = float(stats.binom.sf(31, 50, 0.5))
    assert attained == pytest.approx(0.0325, abs=1e-4)
    assert abs(per_seed_rejection_rate(res) - attained) <= 3 * math.sqrt(attained * (1 - attained) / 600)


def test_random_subspace_planted_effect_rejects_almost_always() -> None:
    # r_T at 0.8 x chance: standardised effect of r_T - r_R about -0.65 at 50 samples.
    df = tables(np.random.default_rng(102), seeds=500, samples=50, shrink=0.8)
    res = ds.test_claim(df, "dmm.perpendicular", null="random_subspace", stats=STATS)
    assert per_seed_rejection_rate(res) >= 0.95
    # ... and the pooled row over 500 seeds rejects with every estimate below chance
    pooled = res[res["seed"] == "pooled"].iloc[0]
    assert pooled["decision"] == "reject H0" and pooled["ci_high"] < 1.0


def test_beta_null_rejects_at_alpha() -> None:
    df = tables(np.random.default_rng(103), seeds=600, samples=50)
    res = ds.test_claim(df, "dmm.perpendicular", null="beta", stats=STATS)
    assert 0.03 <= per_seed_rejection_rate(res) <= 0.07


def test_why_the_beta_null_is_tested_on_the_probability_scale() -> None:
    # The catalogue's literal statistic r^2 - k/n is not symmetric at chance (Beta(8, 384) is
    # right-skewed: median < mean k/n), so a signed-rank test of it rejects "less" far too often.
    rng = np.random.default_rng(104)
    n, k = 784, 16
    r2 = rng.beta(k / 2, (n - k) / 2, size=(500, 200))
    naive = stats.wilcoxon(r2 - k / n, axis=1, alternative="less").pvalue
    assert (naive <= 0.05).mean() > 0.15
    df = tables(rng, seeds=300, samples=200, n=n, k=k)
    res = ds.test_claim(df, "dmm.perpendicular", null="beta", stats=STATS)
    assert per_seed_rejection_rate(res) <= 0.08


def test_tost_is_calibrated_at_the_margin_and_powerful_inside() -> None:
    rng = np.random.default_rng(105)
    margin = 0.05
    d = chance_r(rng, (500, 80)) - chance_r(rng, (500, 80))  # symmetric about 0
    at_margin = np.mean([tost(row + margin, margin).pvalue <= 0.05 for row in d])
    inside = np.mean([tost(row, 0.1).pvalue <= 0.05 for row in d])
    assert at_margin <= 0.07
    assert inside >= 0.95


def test_exact_mcnemar_never_exceeds_alpha_under_the_null() -> None:
    rng = np.random.default_rng(106)
    on = rng.random((500, 60)) < 0.5
    off = rng.random((500, 60)) < 0.5
    rate = np.mean([mcnemar_exact(a, b, alternative="greater").pvalue <= 0.05
                    for a, b in zip(on, off)])
    assert 0.01 <= rate <= 0.06  # exact binomial tests are conservative
    off_more = rng.random((500, 60)) < 0.8
    assert np.mean([mcnemar_exact(a, b, alternative="greater").pvalue <= 0.05
                    for a, b in zip(on, off_more)]) >= 0.95


@pytest.mark.slow
def test_kink_test_is_calibrated_on_smooth_decays_and_finds_kinks() -> None:
    # A straight-line null was rejected by any smooth convex decay, and the
    # residual bootstrap treated per-epoch medians of the same samples as exchangeable. Curves
    # here: per-sample trajectories (40 samples, 12 epochs, the same samples at every epoch, a
    # per-sample level shared across epochs) around straight lines and exponential decays.
    from dimple_stats.stats.changepoint import kink_test

    rng = np.random.default_rng(107)
    e = np.arange(12.0)

    def curves(level: np.ndarray) -> np.ndarray:
        person = rng.gamma(20.0, 0.05, 40)  # each sample's own scale, the same every epoch
        return level[:, None] * person[None, :] * np.exp(rng.normal(0, 0.05, (12, 40)))

    smooth = [5 - 0.3 * e if i % 2 else 2 + 3 * np.exp(-e / rng.uniform(1.5, 6.0))
              for i in range(200)]
    p = np.array([kink_test(e, curves(lv), n_resamples=200, rng=rng).pvalue for lv in smooth])
    # 400 curves of this design (another seed; session 5): 6.5% (straight lines 7.5%, decays
    # 5.5%; a smoothed bootstrap gave 5.3% but lines 8%, so it was not adopted). 200 curves have
    # SE 0.017, hence the wide band; slightly liberal on lines, not the 100% a straight-line
    # null gave on these decays.
    assert 0.01 <= (p <= 0.05).mean() <= 0.12, (p <= 0.05).mean()
    bent = np.where(e <= 4, 5 - 0.6 * e, 2.6 - 0.1 * (e - 4))
    p_bent = [kink_test(e, curves(bent), n_resamples=200, rng=rng).pvalue for _ in range(40)]
    assert np.mean(np.array(p_bent) <= 0.05) >= 0.9


def test_skewed_null_with_the_median_at_chance_holds_its_size() -> None:
    """Issue 31, item 4: the nulls name a median. r_T - r_R left-skewed with median exactly 0
    (the claim's 'less' side holds the long tail): the default sign test keeps its size; the
    Wilcoxon option, a test of the pseudo-median (below 0 here), rejects most seeds (93.6% in
    the reviewers' simulation; 36.5% here)."""
    rng = np.random.default_rng(104)
    seeds, samples = 400, 60
    size = seeds * samples
    r_R = 0.2 + 0.01 * rng.random(size)
    skew = np.exp(rng.normal(0.0, 1.0, size)) - 1.0  # median 0, long right tail
    df = pd.DataFrame({"seed": np.repeat(np.arange(seeds), samples), "autoencoder": "ae",
                       "sample": np.tile(np.arange(samples), seeds), "n": 784, "k": 16,
                       "r_T": r_R - 0.05 * skew, "r_R": r_R, "success_plain": True})
    sign = per_seed_rejection_rate(ds.test_claim(df, "dmm.perpendicular", stats=STATS))
    assert sign <= 0.075, sign  # measured 0.0425; 60 values: attained size 0.0462
    wilcoxon = per_seed_rejection_rate(ds.test_claim(df, "dmm.perpendicular", test="wilcoxon",
                                                     stats=STATS))
    assert wilcoxon >= 0.2, wilcoxon  # measured 0.365
