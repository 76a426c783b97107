"""Combining seed replications: random-effects meta-analysis (with a Hartung-Knapp test) and
Stouffer's combined p."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from dimple_stats.stats.result import Alternative

__all__ = ["MetaEstimate", "MetaTest", "random_effects", "hartung_knapp", "fixed_effect",
           "stouffer", "normal_p"]

# Stouffer maps p to z = Phi^-1(1 - p). Only p = 0 and p = 1 themselves (an infinite z, and
# +inf + -inf is NaN) are moved to the nearest representable values; a p of 1e-40 stays what it
# is (clipping at 1e-15 used to print a combined p of 1e-69 that no seed's data supported).
_P_TINY = float(np.nextafter(0.0, 1.0))
_P_ONE = float(np.nextafter(1.0, 0.0))


@dataclass(frozen=True)
class MetaEstimate:
    """Random-effects pooled estimate over k seeds, with between-seed variance tau2."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    tau2: float
    k: int


def random_effects(effects: npt.ArrayLike, variances: npt.ArrayLike, *,
                   confidence: float = 0.95) -> MetaEstimate:
    """Inverse-variance random-effects estimate (statsmodels ``combine_effects``).

    tau2 is estimated by Paule-Mandel (``method_re="iterated"``, truncated at 0). statsmodels'
    DerSimonian-Laird option does not truncate a negative tau2 (it can return negative weights),
    and Paule-Mandel is the estimator recommended by Veroniki et al. (2016) anyway. The CI is
    normal-theory. One seed gives its own estimate and CI.

    Parameters
    ----------
    effects : array_like
        Per-seed estimates.
    variances : array_like
        Their sampling variances (positive).
    confidence : float
        Confidence level of the interval.

    Returns
    -------
    MetaEstimate
        ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``tau2`` (between-seed variance) and ``k``
        (seeds).

    References
    ----------
    .. [1] DerSimonian, R., & Laird, N. (1986). Meta-analysis in clinical trials. Controlled
       Clinical Trials, 7(3), 177-188. See docs/references.md#dersimonian-laird-1986
    .. [2] Paule, R. C., & Mandel, J. (1982). Consensus values and weighting factors. J. Res. Natl.
       Bur. Stand., 87(5), 377-385. See docs/references.md#paule-mandel-1982
    .. [3] Veroniki, A. A., et al. (2016). Methods to estimate the between-study variance and its
       uncertainty in meta-analysis. Res. Synth. Methods, 7(1), 55-79.
       See docs/references.md#veroniki-2016

    Examples
    --------
    >>> m = random_effects([0.10, 0.50, 0.15], [0.010, 0.020, 0.015])
    >>> round(m.estimate, 4), round(m.se, 4), round(m.tau2, 4)
    (0.2357, 0.1226, 0.0305)
    """
    eff = np.asarray(effects, dtype=float).ravel()
    var = np.asarray(variances, dtype=float).ravel()
    if eff.size == 0 or eff.size != var.size or not np.all(var > 0):
        raise ValueError("need one positive variance per effect")
    crit = stats.norm.isf((1 - confidence) / 2)
    if eff.size == 1:
        se = math.sqrt(var[0])
        return MetaEstimate(float(eff[0]), se, eff[0] - crit * se, eff[0] + crit * se, 0.0, 1)
    with warnings.catch_warnings():
        # The HKSJ by-products divide by k - 1 and can be 0/0 for identical effects; unused here.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = combine_effects(eff, var, method_re="iterated", alpha=1 - confidence)
    est, se = float(res.mean_effect_re), float(res.sd_eff_w_re)
    return MetaEstimate(est, se, est - crit * se, est + crit * se, float(res.tau2), eff.size)


def stouffer(pvalues: npt.ArrayLike, *, alternative: Alternative = "greater",
             directions: npt.ArrayLike | None = None) -> tuple[float, float]:
    """Stouffer's combined test over seeds: returns ``(Z, p)``.

    For one-sided per-seed p-values (``alternative`` "less" or "greater", all in the same
    direction) this is scipy's ``combine_pvalues(method="stouffer")``. Two-sided p-values carry no
    direction, and seeds pointing opposite ways must not add up; so each two-sided p is first
    turned into a one-sided p for "positive" using the sign in ``directions`` (p/2 when the seed's
    effect is positive, 1 - p/2 otherwise), combined, and the combined p is made two-sided again.

    Parameters
    ----------
    pvalues : array_like
        Per-seed p-values.
    alternative : {"two-sided", "less", "greater"}
        The alternative the p-values were computed for.
    directions : array_like, optional
        Sign of each seed's effect; required for two-sided p-values.

    Returns
    -------
    Z, p : float
        The combined z and its p (NaN for no p-values).

    References
    ----------
    .. [1] Stouffer, S. A., Suchman, E. A., DeVinney, L. C., Star, S. A., & Williams, R. M. (1949).
       The American Soldier, Vol. 1. Princeton University Press. See docs/references.md#stouffer-1949

    Examples
    --------
    >>> z, p = stouffer([0.01, 0.20, 0.04])
    >>> round(z, 4), round(p, 6)
    (2.8398, 0.002257)
    >>> round(stouffer([0.01, 0.01], alternative="two-sided", directions=[1, -1])[1], 12)
    1.0
    """
    p = np.clip(np.asarray(pvalues, dtype=float).ravel(), _P_TINY, _P_ONE)
    if p.size == 0:
        return math.nan, math.nan
    if alternative != "two-sided":
        res = stats.combine_pvalues(p, method="stouffer")
        return float(res.statistic), float(res.pvalue)
    if directions is None:
        raise ValueError("two-sided p-values need the direction of each seed's effect")
    sign = np.sign(np.asarray(directions, dtype=float).ravel())
    one_sided = np.where(sign > 0, p / 2, 1 - p / 2)
    one_sided = np.where(sign == 0, 0.5, one_sided)
    res = stats.combine_pvalues(one_sided, method="stouffer")
    z = float(res.statistic)
    return z, float(min(1.0, 2 * stats.norm.sf(abs(z))))


@dataclass(frozen=True)
class MetaTest(MetaEstimate):
    """A random-effects pooled estimate tested with the Hartung-Knapp t statistic.

    ``estimate`` and ``pvalue`` are about the same target (the mean of the seed-level
    estimates); ``ci_low``/``ci_high`` are the t(k - 1) interval; ``shared`` is the part of the
    variance that comes from images the seeds share (0 when they share none).
    """

    statistic: float
    df: int
    pvalue: float
    shared: float


def _t_p(t: float, df: int, alternative: Alternative) -> float:
    if not math.isfinite(t):
        return math.nan
    if alternative == "greater":
        return float(stats.t.sf(t, df))
    if alternative == "less":
        return float(stats.t.cdf(t, df))
    return float(min(1.0, 2 * stats.t.sf(abs(t), df)))


def normal_p(z: float, alternative: Alternative) -> float:
    """p-value of a standard normal statistic ``z`` for the alternative (NaN for NaN)."""
    if not math.isfinite(z):
        return math.nan
    if alternative == "greater":
        return float(stats.norm.sf(z))
    if alternative == "less":
        return float(stats.norm.cdf(z))
    return float(min(1.0, 2 * stats.norm.sf(abs(z))))


def fixed_effect(effects: npt.ArrayLike, variances: npt.ArrayLike, *,
                 shared_cov: npt.ArrayLike | None = None, null: float = math.nan,
                 alternative: Alternative = "two-sided",
                 equivalence: tuple[float, float] | None = None,
                 confidence: float = 0.95) -> MetaTest:
    """Inverse-variance mean of k seed estimates for THESE k models, with a normal test.

    The target is the mean over the k trained models of each one's estimand (images are the
    unit of sampling; the models are fixed), so no between-seed variance enters: the variance
    of the weighted mean is w' C w / (sum w)^2 with w = 1 / v and C the estimates' covariance,
    diag(v) plus the covariance of images the seeds share (``shared_cov``'s off-diagonal). It
    says nothing about other training runs; :func:`hartung_knapp` does, and needs more seeds.
    ``df`` is 0 (a normal reference) and ``tau2`` 0.

    Parameters
    ----------
    effects, variances : array_like
        Per-seed estimates and their sampling variances (positive).
    shared_cov : array_like, optional
        (k x k) covariance of the estimates from shared images (its diagonal is not used).
    null : float
        The estimate's value under H0 (NaN: no test).
    alternative : {"two-sided", "less", "greater"}
        The direction of H1.
    equivalence : (float, float), optional
        An equivalence interval; the p-value is then the TOST p.
    confidence : float
        Confidence level of the interval.

    Returns
    -------
    MetaTest
        As :func:`hartung_knapp`'s, with ``df`` 0 and ``tau2`` 0.

    Examples
    --------
    >>> m = fixed_effect([0.10, 0.50, 0.15], [0.010, 0.020, 0.015], null=0.0,
    ...                  alternative="greater")
    >>> round(m.estimate, 4), round(m.se, 4), m.df, round(m.pvalue, 4) < 0.002
    (0.2077, 0.0679, 0, True)
    """
    eff = np.asarray(effects, dtype=float).ravel()
    var = np.asarray(variances, dtype=float).ravel()
    if eff.size == 0 or eff.size != var.size or not np.all(var > 0):
        raise ValueError("need one positive variance per effect")
    k = int(eff.size)
    w = 1.0 / var
    est = float(np.sum(w * eff) / np.sum(w))
    cov = np.diag(var)
    shared = 0.0
    if shared_cov is not None and k > 1:
        c = np.asarray(shared_cov, dtype=float).reshape(k, k)
        off = c - np.diag(np.diag(c))
        cov = cov + off
        shared = max(float(w @ off @ w) / float(np.sum(w)) ** 2, 0.0)
    variance = max(float(w @ cov @ w) / float(np.sum(w)) ** 2, 1.0 / float(np.sum(w)))
    se = math.sqrt(variance)
    z_crit = float(stats.norm.isf((1 - confidence) / 2))
    if equivalence is not None:
        lo_b, hi_b = equivalence
        t_lo, t_hi = (est - lo_b) / se, (hi_b - est) / se
        p = max(normal_p(t_lo, "greater"), normal_p(t_hi, "greater"))
        t = min(t_lo, t_hi)
    else:
        t = (est - null) / se if math.isfinite(null) else math.nan
        p = normal_p(t, alternative)
    return MetaTest(est, se, est - z_crit * se, est + z_crit * se, 0.0, k, float(t), 0, p,
                    shared)


def hartung_knapp(effects: npt.ArrayLike, variances: npt.ArrayLike, *,
                  shared_cov: npt.ArrayLike | None = None, null: float = math.nan,
                  alternative: Alternative = "two-sided",
                  equivalence: tuple[float, float] | None = None,
                  confidence: float = 0.95,
                  sizes: npt.ArrayLike | None = None) -> MetaTest:
    """Random-effects mean of k seed estimates with the Hartung-Knapp(-Sidik-Jonkman) test.

    Weights are 1 / (v_i + tau2) with tau2 by Paule-Mandel, or, with ``sizes``, proportional to
    the seeds' sample sizes (stable weights: see below). The variance of the weighted mean is
    Hartung and Knapp's q / sum(w), q = sum w_i (y_i - mean)^2 / (k - 1), which estimates it from
    the seeds' own dispersion, and the test and CI use t(k - 1), not the normal: with 5 seeds
    the normal quantile covered a pooled mean 87% of the time at 95%. A variance built from the
    per-seed standard errors alone also lets a seed with a tiny n (and a tiny bootstrap SE) carry
    the pool; the dispersion does not.

    Seeds that measure the same images are correlated, and their dispersion does not show the
    part they share. ``shared_cov`` (k x k, e.g. from
    :func:`~dimple_stats.stats.bootstrap.joint_median_covariance`) adds it: the weighted mean of
    its off-diagonal entries is added to the variance (with equal weights and a common
    covariance c, the dispersion estimates V - c, and the mean's variance is (V - c)/k + c).

    Inverse-variance weights from noisy variances make the test liberal: with bootstrap SEs of
    5 seeds' medians of 60 images each, the weights pick up the seeds whose SE came out small,
    and the pooled size at alpha 0.05 was 0.071 (MC SE 0.005, 3,000 simulated pools, no seed
    effect; 0.059 with one). Weights fixed in advance by the sample sizes (the variance of a
    median is about proportional to 1/n) keep Hartung-Knapp's variance, which any fixed weights
    leave unbiased, and gave 0.058 / 0.046 (equal n: the one-sample t test of the seeds'
    estimates). The bootstrap SEs still enter tau2 (reported) and the shared-image covariance.

    ``null`` is the estimate's value under H0 and ``alternative`` the direction of H1; with
    ``equivalence = (low, high)`` the p-value is that of two one-sided t tests (H1: the mean lies
    inside). One seed: its estimate with a normal interval and test from its own SE.

    Parameters
    ----------
    effects : array_like
        Per-seed estimates.
    variances : array_like
        Their sampling variances (positive).
    shared_cov : array_like, optional
        (k x k) covariance of the estimates from shared images.
    null : float
        The estimate's value under H0 (NaN: no test).
    alternative : {"two-sided", "less", "greater"}
        The direction of H1.
    equivalence : (float, float), optional
        An equivalence interval; the p-value is then the TOST p.
    confidence : float
        Confidence level of the interval.
    sizes : array_like, optional
        Per-seed sample sizes: weights proportional to them instead of 1 / (v_i + tau2).

    Returns
    -------
    MetaTest
        ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``tau2``, ``k``, ``statistic`` (t),
        ``df``, ``pvalue`` and ``shared`` (the variance from shared images).

    References
    ----------
    .. [1] Hartung, J., & Knapp, G. (2001). On tests of the overall treatment effect in
       meta-analysis with normally distributed responses. Stat. Med., 20(12), 1771-1782.
       See docs/references.md#hartung-knapp-2001
    .. [2] Sidik, K., & Jonkman, J. N. (2002). A simple confidence interval for meta-analysis.
       Stat. Med., 21(21), 3153-3159. See docs/references.md#sidik-jonkman-2002
    .. [3] IntHout, J., Ioannidis, J. P. A., & Borm, G. F. (2014). The Hartung-Knapp-Sidik-Jonkman
       method for random effects meta-analysis is straightforward and considerably outperforms the
       standard DerSimonian-Laird method. BMC Med. Res. Methodol., 14, 25.
       See docs/references.md#inthout-2014
    .. [4] Paule, R. C., & Mandel, J. (1982). Consensus values and weighting factors. J. Res. Natl.
       Bur. Stand., 87(5), 377-385. See docs/references.md#paule-mandel-1982
    .. [5] Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power
       approach for assessing the equivalence of average bioavailability. J. Pharmacokinet.
       Biopharm., 15(6), 657-680. See docs/references.md#schuirmann-1987

    Examples
    --------
    >>> m = hartung_knapp([0.10, 0.50, 0.15], [0.010, 0.020, 0.015], null=0.0,
    ...                   alternative="greater")
    >>> round(m.estimate, 4), round(m.se, 4), m.df, round(m.pvalue, 4)
    (0.2357, 0.1226, 2, 0.0973)
    >>> m = hartung_knapp([0.10, 0.50, 0.15], [0.010, 0.020, 0.015], null=0.0,
    ...                   alternative="greater", sizes=[60, 60, 60])
    >>> round(m.estimate, 4) == round(sum([0.10, 0.50, 0.15]) / 3, 4)  # equal n: the plain mean
    True
    >>> m = hartung_knapp([0.01, -0.02, 0.015], [1e-4, 1e-4, 1e-4], equivalence=(-0.1, 0.1))
    >>> m.pvalue < 0.01
    True
    """
    eff = np.asarray(effects, dtype=float).ravel()
    var = np.asarray(variances, dtype=float).ravel()
    if eff.size == 0 or eff.size != var.size or not np.all(var > 0):
        raise ValueError("need one positive variance per effect")
    k = int(eff.size)
    tail = (1 - confidence) / 2
    if k == 1:
        se = math.sqrt(var[0])
        z = float(stats.norm.isf(tail))
        est = float(eff[0])
        t = (est - null) / se if math.isfinite(null) else math.nan
        p = (float(stats.norm.sf(t)) if alternative == "greater" else
             float(stats.norm.cdf(t)) if alternative == "less" else
             float(2 * stats.norm.sf(abs(t)))) if math.isfinite(t) else math.nan
        if equivalence is not None:
            lo_b, hi_b = equivalence
            p = max(float(stats.norm.sf((est - lo_b) / se)), float(stats.norm.cdf((est - hi_b) / se)))
            t = min((est - lo_b) / se, (hi_b - est) / se)
        return MetaTest(est, se, est - z * se, est + z * se, 0.0, 1, float(t), 0, p, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tau2 = float(combine_effects(eff, var, method_re="iterated").tau2)
    if sizes is None:
        w = 1.0 / (var + tau2)
    else:
        w = np.asarray(sizes, dtype=float).ravel()
        if w.size != k or not np.all(w > 0):
            raise ValueError("need one positive size per effect")
    est = float(np.sum(w * eff) / np.sum(w))
    q = float(np.sum(w * (eff - est) ** 2) / (k - 1))
    variance = q / float(np.sum(w))
    shared = 0.0
    if shared_cov is not None:
        c = np.asarray(shared_cov, dtype=float).reshape(k, k)
        off = c - np.diag(np.diag(c))
        # With a common covariance c between seeds, the seeds' dispersion estimates V - c, while
        # the mean's variance is V/k + (k-1)c/k = (V - c)/k + c: the HK variance misses c, the
        # (weighted) mean off-diagonal covariance, hence the k/(k-1).
        shared = max(float(w @ off @ w) / float(np.sum(w)) ** 2 * k / (k - 1), 0.0)
    variance += shared
    se = math.sqrt(variance)
    # t(k - 1) for the sum, although the shared part is estimated from many images. Measured
    # with 40% of the variance shared by images (5 seeds x 60 of 150 images): size 0.039 (SE
    # 0.002, 8,000 simulated experiments, independent code) at alpha 0.05; 0.094 without the
    # shared term. The bootstrap's shared covariance is unbiased there (0.98 of the true one),
    # but the total variance comes out at 0.85 of the weighted mean's true variance (the
    # data-dependent weights), and t(k - 1) more than absorbs that. Welch-Satterthwaite degrees
    # of freedom were liberal (0.068-0.075).
    df = k - 1
    crit = float(stats.t.isf(tail, df))
    if equivalence is not None:
        lo_b, hi_b = equivalence
        t_lo, t_hi = (est - lo_b) / se, (hi_b - est) / se
        p = max(_t_p(t_lo, df, "greater"), _t_p(t_hi, df, "greater")) if se > 0 else math.nan
        t = min(t_lo, t_hi)
    else:
        t = (est - null) / se if math.isfinite(null) and se > 0 else math.nan
        p = _t_p(t, df, alternative)
    return MetaTest(est, se, est - crit * se, est + crit * se, tau2, k, float(t), df, p, shared)
