"""Spearman rank correlation with a Fisher-z confidence interval."""


from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from dimple_stats.stats.result import Alternative, HypothesisResult

__all__ = ["EXACT_MAX_N", "FIELLER_VARIANCE", "fisher_z_se", "spearman", "spearman_ci"]

#: n - 3 times the variance of Fisher's z of Spearman's rho (Fieller, Hartley & Pearson 1957):
#: with 1 (Pearson's) the 95% interval covers 94.0% at n = 30, with 1.06 94.7%
#: (tests/dimple_stats/test_stats_reference.py simulates it).
FIELLER_VARIANCE = 1.06

#: Up to this many pairs the p-value is exact (all n! pairings, scipy.stats.permutation_test);
#: scipy's t approximation is poor for a handful of points (e.g. p = 0 at rho = 1).
EXACT_MAX_N = 8


def spearman(x: npt.ArrayLike, y: npt.ArrayLike, *,
             alternative: Alternative = "two-sided") -> HypothesisResult:
    """Spearman's rho and its p-value (scipy.stats.spearmanr).

    The p-value is exact for n <= :data:`EXACT_MAX_N` (permutation distribution over all
    pairings) and scipy's t approximation above.

    Parameters
    ----------
    x, y : array_like
        Paired observations.
    alternative : {"two-sided", "less", "greater"}
        H1: rho > 0 ("greater"), rho < 0 ("less"), or rho != 0.

    Returns
    -------
    HypothesisResult
        ``statistic`` (rho), ``pvalue``, ``n``, ``test``, ``statistic_name``, ``alternative``;
        NaN for fewer than 3 pairs or a constant variable.

    References
    ----------
    .. [1] Spearman, C. (1904). The proof and measurement of association between two things.
       Am. J. Psychol., 15(1), 72-101. See docs/references.md#spearman-1904

    Examples
    --------
    >>> r = spearman([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 1, 4, 3, 6, 5, 8, 7, 10, 9])
    >>> round(r.statistic, 6), round(r.pvalue, 6)
    (0.939394, 5.5e-05)
    >>> spearman([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]).pvalue  # exact: 2 of 720 pairings
    0.002777777777777778
    """
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return HypothesisResult(np.nan, np.nan, a.size, "Spearman", "rho", alternative)
    rho = float(stats.spearmanr(a, b).statistic)
    if a.size <= EXACT_MAX_N:
        def statistic(u: np.ndarray, axis: int = -1) -> np.ndarray:
            # Pearson on ranks, vectorised over permutations of u along `axis`.
            ru = stats.rankdata(u, axis=axis)
            rb = stats.rankdata(b)
            ru = ru - ru.mean(axis=axis, keepdims=True)
            rb = rb - rb.mean()
            return (ru * rb).sum(axis=axis) / np.sqrt((ru**2).sum(axis=axis) * (rb**2).sum())

        p = float(stats.permutation_test((a,), statistic, permutation_type="pairings",
                                         n_resamples=np.inf, alternative=alternative,
                                         vectorized=True).pvalue)
        return HypothesisResult(rho, p, a.size, "Spearman (exact)", "rho", alternative)
    res = stats.spearmanr(a, b, alternative=alternative)
    return HypothesisResult(rho, float(res.pvalue), a.size, "Spearman", "rho", alternative)


def fisher_z_se(n: int) -> float:
    """The standard error of Fisher's z of Spearman's rho over ``n`` pairs (n > 3).

    >>> round(fisher_z_se(50), 4)
    0.1502
    """
    return math.sqrt(FIELLER_VARIANCE / (n - 3))


def spearman_ci(rho: float, n: int, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Fisher-z CI of Spearman's rho with the Fieller-Hartley-Pearson variance 1.06 / (n - 3).

    Returns ``(ci_low, ci_high, se)``, se by the delta method on the rho scale.

    Parameters
    ----------
    rho : float
        Spearman's rho.
    n : int
        Pairs it was computed from.
    confidence : float
        Confidence level of the interval.

    Returns
    -------
    ci_low, ci_high, se : float
        NaN for n <= 3 or |rho| >= 1.

    References
    ----------
    .. [1] Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation deduced
       from a small sample. Metron, 1, 3-32. See docs/references.md#fisher-1921
    .. [2] Fieller, E. C., Hartley, H. O., & Pearson, E. S. (1957). Tests for rank correlation
       coefficients. I. Biometrika, 44(3/4), 470-481.
       See docs/references.md#fieller-hartley-pearson-1957

    Examples
    --------
    >>> [round(v, 4) for v in spearman_ci(0.5, 50)]
    [0.2496, 0.6877, 0.1126]
    """
    if n <= 3 or not math.isfinite(rho) or abs(rho) >= 1:
        return math.nan, math.nan, math.nan
    se_z = fisher_z_se(n)
    z = math.atanh(rho)
    crit = stats.norm.isf((1 - confidence) / 2)
    return math.tanh(z - crit * se_z), math.tanh(z + crit * se_z), (1 - rho**2) * se_z
