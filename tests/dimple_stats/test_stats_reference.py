"""Each statistics wrapper against reference values written inline.

The literals were computed once, directly with scipy 1.17 / statsmodels 0.15 (not through the
wrappers), and pasted here; where a value is also derivable by hand the derivation is in the
comment. Tolerance 1e-6 unless exact.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from dimple_stats.stats import (
    adjust_pvalues,
    chance_cdf_r2,
    chance_pdf_r,
    cohens_dz,
    fit_two_segment,
    mcnemar_exact,
    median_ci,
    paired_risk_difference,
    paired_ttest,
    random_effects,
    rank_biserial,
    sign_test,
    spearman,
    spearman_ci,
    stouffer,
    suggested_n_location,
    suggested_n_mcnemar,
    suggested_n_spearman,
    suggested_n_tost,
    tost,
    wilcoxon_signed_rank,
)

TOL = 1e-6
# 12 paired differences: 4 negative, 8 positive.
D = [0.42, -0.13, 0.88, 0.27, -0.51, 0.64, 0.19, 0.73, -0.08, 0.35, 0.56, -0.22]
# 80 values: np.round(np.random.default_rng(20240601).normal(-0.3, 1.0, 80), 3).
X = [0.348, 0.169, -0.943, -1.478, -0.445, 0.903, 1.034, 0.608, 0.047, 1.3, 0.933, -0.52, -1.362,
     -0.665, -0.72, 0.388, -2.199, -0.491, 1.371, -1.22, -1.058, -0.384, -1.718, -0.43, -0.316,
     -0.305, -1.289, -0.666, 0.354, -1.015, 0.247, 0.356, -1.727, -0.945, 0.355, 0.193, -0.121,
     -0.649, -0.191, 1.575, -0.521, 0.28, -0.717, -0.498, 0.348, -1.229, -0.542, -0.91, -1.159,
     -0.124, 0.94, -0.079, -0.682, -1.751, 0.519, -0.09, -0.931, 0.561, 1.274, -1.932, 0.29,
     0.546, 0.281, 1.302, 0.325, -1.204, 3.5, -0.154, 1.182, 1.666, 0.581, -2.098, -2.004,
     -0.978, -0.266, -1.689, -1.237, -0.745, -0.775, -0.111]


# --- Wilcoxon signed-rank -----------------------------------------------------------------------

def test_wilcoxon_exact_one_sided() -> None:
    # scipy.stats.wilcoxon(D, alternative="greater", method="exact") -> (63.0, 0.031982421875)
    r = wilcoxon_signed_rank(D, alternative="greater")
    assert r.statistic == 63.0 and r.statistic_name == "W+"
    assert r.pvalue == pytest.approx(0.031982421875, abs=TOL)
    # Independent check: enumerate all 2^12 sign patterns of the ranks 1..12.
    ranks = np.arange(1, 13)
    w_plus = np.array([ranks[list(s)].sum() for s in itertools.product([False, True], repeat=12)])
    assert r.pvalue == pytest.approx((w_plus >= 63).mean(), abs=1e-12)


def test_wilcoxon_two_sided_and_less() -> None:
    # scipy.stats.wilcoxon(D) -> (15.0, 0.06396484375): min(W+, W-) = 78 - 63
    r = wilcoxon_signed_rank(D)
    assert (r.statistic, r.statistic_name) == (15.0, "min(W+, W-)")
    assert r.pvalue == pytest.approx(0.06396484375, abs=TOL)
    assert wilcoxon_signed_rank(D, alternative="less").pvalue > 0.95


def test_wilcoxon_asymptotic_n80() -> None:
    # scipy.stats.wilcoxon(X, alternative="less", method="asymptotic") -> (1133.0, 0.00975095841054715)
    r = wilcoxon_signed_rank(X, alternative="less")
    assert r.statistic == 1133.0 and r.n == 80
    assert r.pvalue == pytest.approx(0.00975095841054715, abs=TOL)


def test_wilcoxon_mu_shifts_the_null() -> None:
    # Testing D against mu = 1 is testing D - 1 against 0: every value below, W+ = 0.
    r = wilcoxon_signed_rank(D, alternative="less", mu=1.0)
    assert r.statistic == 0.0 and r.pvalue == pytest.approx(1 / 4096, abs=1e-12)


def test_wilcoxon_all_zero_is_undefined_not_an_error() -> None:
    r = wilcoxon_signed_rank([0.0, 0.0, 0.0])
    assert math.isnan(r.pvalue) and not r.defined


def test_nonfinite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        wilcoxon_signed_rank([0.1, float("nan"), 0.3])


# --- sign test, t-test ---------------------------------------------------------------------------

def test_sign_test() -> None:
    # 8 of 12 positive. scipy.stats.binomtest(8, 12, 0.5, "greater").pvalue = 0.19384765625
    # = (C(12,8) + C(12,9) + ... + C(12,12)) / 2^12 = 794 / 4096.
    r = sign_test(D, alternative="greater")
    assert r.statistic == 8.0
    assert r.pvalue == pytest.approx(794 / 4096, abs=1e-12)
    # two-sided: scipy binomtest(8, 12).pvalue = 0.3876953125; against mu = -0.2: 10 of 12
    # positive (-0.51 and -0.22 stay below), binomtest(10, 12, "greater") = 79 / 4096.
    assert sign_test(D).pvalue == pytest.approx(0.3876953125, abs=TOL)
    assert sign_test(D, alternative="greater", mu=-0.2).pvalue == pytest.approx(79 / 4096,
                                                                                abs=1e-12)


def test_paired_ttest() -> None:
    # scipy.stats.ttest_1samp(D, 0, alternative="greater") -> (2.114969564244397, 0.029037216219152433)
    r = paired_ttest(D, alternative="greater")
    assert r.statistic == pytest.approx(2.114969564244397, abs=TOL)
    assert r.pvalue == pytest.approx(0.029037216219152433, abs=TOL)
    # against mu = 0.1, two-sided: ttest_1samp(D - 0.1, 0) -> (1.2962716684078563, 0.2214177197509433)
    r = paired_ttest(D, mu=0.1)
    assert (r.statistic, r.pvalue) == pytest.approx((1.2962716684078563, 0.2214177197509433),
                                                     abs=TOL)


# --- TOST ----------------------------------------------------------------------------------------

def test_tost_wilcoxon_margin_half() -> None:
    # Lower: scipy wilcoxon(D + 0.5, "greater") -> (77.0, 0.00048828125);
    # upper: scipy wilcoxon(D - 0.5, "less") -> (17.5, 0.04833984375). TOST p = max.
    r = tost(D, 0.5)
    assert r.pvalue == pytest.approx(0.04833984375, abs=TOL)
    assert r.statistic == 17.5 and "upper" in r.statistic_name
    assert r.lower.pvalue == pytest.approx(0.00048828125, abs=TOL)
    assert r.margin == (-0.5, 0.5)


def test_tost_fails_with_a_narrow_margin_and_checks_the_interval() -> None:
    assert tost(D, 0.05).pvalue > 0.5
    with pytest.raises(ValueError, match="increasing"):
        tost(D, (0.2, -0.2))


# --- McNemar, paired proportions -----------------------------------------------------------------

ON = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0], bool)
OFF = np.array([1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1], bool)  # b = 8, c = 1


def test_mcnemar_exact_one_sided() -> None:
    # P(B >= 8 | B ~ Bin(9, 1/2)) = (9 + 1) / 512 = 0.01953125 (scipy binomtest, "greater").
    r = mcnemar_exact(ON, OFF, alternative="greater")
    assert r.statistic == 8.0
    assert r.pvalue == pytest.approx(0.01953125, abs=1e-12)


def test_mcnemar_exact_two_sided_matches_statsmodels() -> None:
    # statsmodels mcnemar([[5, 1], [8, 6]], exact=True) -> statistic 1.0, pvalue 0.0390625
    r = mcnemar_exact(ON, OFF)
    assert r.pvalue == pytest.approx(0.0390625, abs=1e-12)
    assert mcnemar_exact(OFF, ON, alternative="greater").pvalue > 0.99


def test_mcnemar_without_discordant_pairs_is_p_one() -> None:
    assert mcnemar_exact(ON, ON, alternative="greater").pvalue == 1.0


def test_paired_risk_difference_newcombe() -> None:
    # b = 8, c = 1, n = 20: diff = 7/20. Newcombe (1998) method 10 from the Wilson intervals of
    # the marginal rates 6/20 and 13/20 (statsmodels proportion_confint, checked separately) and
    # phi = (a*d - b*c) / sqrt(6 * 14 * 13 * 7) with a = 5, d = 6 (a*d - b*c = 22 > n/2 -> 12).
    diff, lo, hi, se = paired_risk_difference(ON, OFF)
    assert diff == pytest.approx(0.35, abs=1e-12)
    l1, u1 = 0.14547724486760422, 0.5189728183535234  # Wilson 6/20 (statsmodels)
    l2, u2 = 0.43285427668523624, 0.818808175898918  # Wilson 13/20 (statsmodels)
    phi = 12 / math.sqrt(6 * 14 * 13 * 7)
    p1, p2 = 0.3, 0.65
    assert lo == pytest.approx(0.35 - math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)
                                                + (u1 - p1) ** 2), abs=TOL)
    assert hi == pytest.approx(0.35 + math.sqrt((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1)
                                                + (p1 - l1) ** 2), abs=TOL)
    assert se == pytest.approx((hi - lo) / (2 * 1.959963984540054), abs=TOL)


def test_paired_risk_difference_without_discordant_pairs_has_a_width() -> None:
    # Every pair succeeds under both: Wilson for 100/100 is [n / (n + z^2), 1], phi = 0, so the
    # interval is +-z^2 / (n + z^2) (Wald would give [0, 0] and no weight when pooled).
    z2 = 1.959963984540054**2
    diff, lo, hi, se = paired_risk_difference([1] * 100, [1] * 100)
    assert (diff, lo, hi) == pytest.approx((0.0, -z2 / (100 + z2), z2 / (100 + z2)), abs=TOL)
    assert se > 0


def test_paired_risk_difference_covers_the_true_difference() -> None:
    # Coverage against ground truth: correlated pairs with known marginal rates 0.9 and 0.97
    # (difference 0.07), n = 60. Newcombe's method 10 keeps close to 95%.
    rng = np.random.default_rng(0)
    cells = np.array([0.89, 0.01, 0.08, 0.02])  # (both, x only, y only, neither)
    true = (cells[0] + cells[2]) - (cells[0] + cells[1])
    hits = 0
    trials = 2000
    for _ in range(trials):
        kind = rng.choice(4, size=60, p=cells)
        x = (kind == 0) | (kind == 1)
        y = (kind == 0) | (kind == 2)
        _, lo, hi, _ = paired_risk_difference(x, y)
        hits += lo <= true <= hi
    assert 0.93 <= hits / trials <= 0.985


# --- Spearman ------------------------------------------------------------------------------------

def test_spearman_asymptotic() -> None:
    x = [3.1, 0.4, 2.2, 5.0, 1.7, 4.4, 2.9, 0.9, 3.8, 1.1, 4.9, 2.0]
    y = [2.0, 1.1, 1.9, 4.2, 2.5, 3.0, 2.2, 0.3, 3.9, 1.6, 3.1, 2.8]
    # scipy.stats.spearmanr(x, y) -> (0.8601398601398602, 0.000331668339126921)
    r = spearman(x, y)
    assert r.statistic == pytest.approx(0.8601398601398602, abs=TOL)
    assert r.pvalue == pytest.approx(0.000331668339126921, abs=TOL)


def test_spearman_exact_for_small_n() -> None:
    # rho = 0.8285714 (scipy); 42 of the 720 pairings have |rho| >= that (itertools enumeration).
    r = spearman([1.0, 2.5, 3.1, 0.2, 4.4, 2.0], [0.5, 1.5, 2.0, 1.0, 3.0, 0.9])
    assert r.statistic == pytest.approx(0.8285714285714287, abs=TOL)
    assert r.pvalue == pytest.approx(42 / 720, abs=TOL)


def test_spearman_ci_fisher_z() -> None:
    # tanh(atanh(0.5) -+ 1.959964 * sqrt(1.06 / 47)), se = 0.75 * sqrt(1.06 / 47)
    lo, hi, se = spearman_ci(0.5, 50)
    z, s = math.atanh(0.5), math.sqrt(1.06 / 47)
    assert (lo, hi, se) == pytest.approx((math.tanh(z - 1.959963984540054 * s),
                                          math.tanh(z + 1.959963984540054 * s), 0.75 * s), abs=TOL)
    assert math.isnan(spearman_ci(0.5, 3)[0])


# --- effect sizes ---------------------------------------------------------------------------------

def test_rank_biserial_by_hand() -> None:
    # |D| ranks: negatives -0.08 (1), -0.13 (2), -0.22 (4), -0.51 (8): W- = 15, W+ = 78 - 15 = 63
    assert rank_biserial(D) == pytest.approx((63 - 15) / 78, abs=1e-12)
    assert rank_biserial([-0.3, -0.2, -0.5, 0.1, -0.4, -0.6]) == pytest.approx(-19 / 21, abs=1e-12)


def test_cohens_dz() -> None:
    # mean 0.25666..., sd (ddof 1) 0.420400...; equals the t statistic / sqrt(n)
    assert cohens_dz(D) == pytest.approx(2.114969564244397 / math.sqrt(12), abs=TOL)


# --- bootstrap ------------------------------------------------------------------------------------

def test_median_ci_matches_scipy_bootstrap_with_the_same_seed() -> None:
    z = [1.0025, 1.5975, 0.4517, -0.7812, 0.0907, -0.9833, 1.1203, 3.6804, 0.0156, -0.2409,
         1.9797, 1.7138, 1.2108, -0.8609, 0.9415, 2.3906, -1.6884, 0.0848, -2.8024, -1.5791,
         -2.6835, 0.5298, -1.5349, 1.5425, 1.3135, 0.6261, -4.0335, -0.0774, 0.903, 1.2266,
         -2.0603, 0.0445, -0.957, -0.6177, 3.1218, -0.6151, 0.935, 2.7688, -0.1672, 0.7766,
         1.2209, 1.1276, -1.4501, 1.1523, 3.7176, -2.0943, 2.7188, 1.2387, -0.2829, 5.0008]
    # scipy.stats.bootstrap((z,), np.median, n_resamples=1000, confidence_level=0.9, method="BCa",
    #   rng=np.random.default_rng(11)) -> CI (0.0156, 1.0025), standard_error 0.359880999526952
    e = median_ci(z, confidence=0.9, n_resamples=1000, rng=np.random.default_rng(11))
    assert e.estimate == pytest.approx(0.57795, abs=1e-12)
    assert (e.ci_low, e.ci_high) == pytest.approx((0.0156, 1.0025), abs=TOL)
    assert e.se == pytest.approx(0.359880999526952, abs=TOL)


def test_median_ci_degenerate_sample() -> None:
    e = median_ci([2.0, 2.0, 2.0])
    assert (e.estimate, e.ci_low, e.ci_high, e.se) == (2.0, 2.0, 2.0, 0.0)


# --- multiplicity ---------------------------------------------------------------------------------

P = [0.001, 0.04, 0.03, 0.2, 0.012, 0.5, 0.049]


def test_holm_matches_statsmodels_exactly() -> None:
    expected = multipletests(P, method="holm")[1]
    assert np.array_equal(adjust_pvalues(P, "holm"), expected)
    # by hand: sorted p times (7, 6, 5, 4, 3, 2, 1), running maximum
    assert adjust_pvalues(P, "holm") == pytest.approx(
        [0.007, 0.16, 0.15, 0.4, 0.072, 0.5, 0.16], abs=1e-12)


def test_holm_is_not_statsmodels_default_holm_sidak() -> None:
    assert not np.allclose(adjust_pvalues(P, "holm"), multipletests(P)[1])


def test_bh_and_none_and_nan() -> None:
    # statsmodels multipletests(P, method="fdr_bh")
    assert adjust_pvalues(P, "fdr_bh") == pytest.approx(
        [0.007, 0.0686, 0.0686, 0.23333333333333336, 0.042, 0.5, 0.0686], abs=1e-12)
    assert adjust_pvalues(P, "none").tolist() == P
    out = adjust_pvalues([0.01, np.nan, 0.02], "holm")
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])
    with pytest.raises(ValueError, match="allowed"):
        adjust_pvalues(P, "bonferonni")  # type: ignore[arg-type]


# --- meta-analysis, Stouffer ---------------------------------------------------------------------

def test_random_effects_paule_mandel() -> None:
    # statsmodels combine_effects(e, v, method_re="iterated"): mean_effect_re 0.26676540302991336,
    # sd_eff_w_re 0.06348213544240174, tau2 0.0026486313935412597
    m = random_effects([0.31, 0.12, 0.45, 0.22], [0.010, 0.015, 0.020, 0.012])
    assert (m.estimate, m.se, m.tau2) == pytest.approx(
        (0.26676540302991336, 0.06348213544240174, 0.0026486313935412597), abs=TOL)
    assert m.ci_low == pytest.approx(m.estimate - 1.959963984540054 * m.se, abs=TOL)


def test_random_effects_homogeneous_seeds_truncate_tau2_at_zero() -> None:
    # Q < k - 1: DerSimonian-Laird in statsmodels goes negative; Paule-Mandel gives 0 and the
    # fixed-effect estimate sum(e/v) / sum(1/v) = 0.13846153846153847.
    m = random_effects([0.10, 0.20, 0.15], [0.01, 0.02, 0.015])
    assert m.tau2 == 0.0
    assert m.estimate == pytest.approx(0.13846153846153847, abs=TOL)


def test_stouffer() -> None:
    # scipy combine_pvalues([0.02, 0.3, 0.04, 0.11], method="stouffer") -> (2.777681807314322,
    # 0.002737410112549247)
    z, p = stouffer([0.02, 0.3, 0.04, 0.11])
    assert (z, p) == pytest.approx((2.777681807314322, 0.002737410112549247), abs=TOL)


def test_stouffer_two_sided_respects_direction() -> None:
    same = stouffer([0.02, 0.02], alternative="two-sided", directions=[1, 1])[1]
    opposite = stouffer([0.02, 0.02], alternative="two-sided", directions=[1, -1])[1]
    # same direction: z = 2 * isf(0.01) / sqrt(2) = 3.2900..., p = 2 * sf(3.29) = 0.001002...
    assert same == pytest.approx(0.0010020006, abs=TOL)
    assert opposite == pytest.approx(1.0, abs=1e-9)


# --- power ---------------------------------------------------------------------------------------

def _with_dz(dz: float, n: int = 40) -> np.ndarray:
    z = np.random.default_rng(0).normal(size=n)
    return (z - z.mean()) / z.std(ddof=1) + dz  # exactly mean dz, sd 1


def test_suggested_n_location_uses_ttest_power_and_are() -> None:
    # statsmodels TTestPower().power(0.5, nobs, 0.05, "larger"): 0.79805 at 26, 0.81183 at 27,
    # so the t-test needs 27; Wilcoxon (ARE 3/pi): ceil(27 / 0.9549) = 29; sign (2/pi): 43.
    d = _with_dz(0.5)
    assert suggested_n_location(d, test="ttest", alternative="greater") == 27
    assert suggested_n_location(d, test="wilcoxon", alternative="greater") == 29
    assert suggested_n_location(d, test="sign", alternative="greater") == 43
    assert math.isnan(suggested_n_location(d, alternative="less"))


def test_suggested_n_for_a_huge_effect_is_small_not_nan() -> None:
    assert suggested_n_location(_with_dz(-5.0), test="ttest", alternative="less") == 3


def test_suggested_n_tost_mcnemar_spearman() -> None:
    # TOST: dz to the nearer margin = (0.5 - 0) / 1 -> same 27 (t) as above.
    assert suggested_n_tost(_with_dz(0.0), 0.5, test="ttest") == 27
    # McNemar: Cohen's h(0.75, 0.5) = 0.5236; NormalIndPower(ratio=0) power >= 0.8 first at 23
    # discordant pairs; observed discordant fraction 20/100 -> 115 pairs.
    assert suggested_n_mcnemar(15, 5, 100) == 115
    # Spearman rho = 0.3: Fisher z 0.3095 / sqrt(1.06); normal power first >= 0.8 at 87, + 3.
    assert suggested_n_spearman(0.3) == 90


# --- chance distribution, change point ------------------------------------------------------------

def test_chance_distribution() -> None:
    # scipy.stats.beta.cdf(0.1, 4, 28) = 0.37616962143138666;
    # scipy.stats.beta.cdf(0.02, 8, 384) = 0.5228253916162006
    assert chance_cdf_r2([0.1, 0.02], [64, 784], [8, 16]) == pytest.approx(
        [0.37616962143138666, 0.5228253916162006], abs=TOL)
    # density of r integrates to 1 and its mean of r^2 is k/n
    grid = np.linspace(0, 1, 200_001)
    f = chance_pdf_r(grid, 64, 8)
    assert np.trapezoid(f, grid) == pytest.approx(1.0, abs=1e-6)
    assert np.trapezoid(grid**2 * f, grid) == pytest.approx(8 / 64, abs=1e-6)


def test_two_segment_fit_by_hand() -> None:
    # Exact hinge at 3 (slopes -2 then -0.5) plus a +-0.1 wiggle.
    e = np.arange(10.0)
    y = np.where(e <= 3, 10 - 2 * e, 4 - 0.5 * (e - 3)) + 0.1 * (-1) ** np.arange(10)
    fit = fit_two_segment(e, y)
    assert fit.change_point == 3.0
    assert fit.slope_before == pytest.approx(-2.0, abs=0.1)
    assert fit.slope_after == pytest.approx(-0.5, abs=0.05)
    # statsmodels OLS: line ssr 9.25151515151515; hinge (best over tau in 1..7, at 3) ssr
    # 0.09604863221884459; F = ((9.2515 - 0.0960) / 2) / (0.0960 / 6) = 285.9634637514396,
    # scipy.stats.f.sf(F, 2, 6) = 1.1190125589363526e-06.
    assert (fit.rss_line, fit.rss_two) == pytest.approx((9.25151515151515, 0.09604863221884459),
                                                        abs=TOL)
    assert fit.f_statistic == pytest.approx(285.9634637514396, rel=1e-9)
    assert fit.df == (2, 6)
    assert fit.pvalue == pytest.approx(1.1190125589363526e-06, abs=TOL)
    # A straight line has no change point to find.
    flat = fit_two_segment(e, 5 - 0.3 * e + 0.1 * (-1) ** np.arange(10))
    assert flat.pvalue > 0.05


# --- references that are not the formula under test (issue 33: three one-line mutations of the
# statistics survived the suite; each of these fails on one) ---------------------------------------

def test_spearman_ci_covers_at_its_level_only_with_the_fieller_variance() -> None:
    """40,000 samples of 30 bivariate-normal pairs (r = 0.6; Spearman's population rho
    (6/pi) asin(r/2)): the 95% interval covers 94.7% (MC error 0.11%) with the variance
    1.06/(n-3); with Pearson's 1/(n-3) (the mutation) it covers 94.0%."""
    from scipy import stats as scipy_stats

    rng = np.random.default_rng(1)
    n, r, trials = 30, 0.6, 40_000
    xy = rng.multivariate_normal([0.0, 0.0], [[1.0, r], [r, 1.0]], size=(trials, n))
    rx, ry = (scipy_stats.rankdata(xy[..., i], axis=1) for i in (0, 1))
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    rho = (rx * ry).sum(1) / np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    true = 6 / math.pi * math.asin(r / 2)
    bounds = np.array([spearman_ci(float(v), n)[:2] for v in rho])
    coverage = float(((bounds[:, 0] <= true) & (true <= bounds[:, 1])).mean())
    assert 0.944 <= coverage <= 0.952, coverage


def test_rank_biserial_drops_zero_differences_as_wilcoxon_does() -> None:
    """r = 2 W+ / (n'(n'+1)/2) - 1 over the n' non-zero differences, W+ from scipy's Wilcoxon
    with zero_method 'wilcox' (zeros dropped, Kerby 2014); keeping the zeros (the mutation)
    shifts every rank."""
    from scipy import stats as scipy_stats

    d = np.array([0.0, 0.4, -0.1, 0.0, 0.7, 0.25, -0.3, 0.0, 0.9, 0.15])
    w_plus = scipy_stats.wilcoxon(d, zero_method="wilcox", alternative="greater").statistic
    nz = int((d != 0).sum())
    assert rank_biserial(d) == pytest.approx(2 * w_plus / (nz * (nz + 1) / 2) - 1, abs=1e-12)
    # by hand: |d| ranks 0.1 (1, -), 0.15 (2), 0.25 (3), 0.3 (4, -), 0.4 (5), 0.7 (6), 0.9 (7)
    assert rank_biserial(d) == pytest.approx((23 - 5) / 28, abs=1e-12)


def test_clustered_mcnemar_two_sided_is_statsmodels_exact_mcnemar_without_repeats() -> None:
    """With every image once, the clustered test is the exact McNemar test: its two-sided p is
    statsmodels' (twice the smaller tail; the mutation kept one tail)."""
    from statsmodels.stats.contingency_tables import mcnemar

    from dimple_stats.stats.mcnemar import clustered_mcnemar

    first = [np.array([1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1], dtype=bool),
             np.array([0, 0, 1, 0, 0, 1, 0], dtype=bool)]
    second = [np.array([1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1], dtype=bool),
              np.array([1, 1, 1, 0, 1, 1, 0], dtype=bool)]
    ids = [np.arange(12), np.arange(100, 107)]
    a, b = np.concatenate(first), np.concatenate(second)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    reference = mcnemar(table, exact=True).pvalue  # 1 vs 8 discordant: 2 * (1 + 9) / 512
    got = clustered_mcnemar(first, second, ids, alternative="two-sided").pvalue
    assert got == pytest.approx(reference, abs=1e-12) and reference == pytest.approx(20 / 512)
