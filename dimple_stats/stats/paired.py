"""One-sample and paired location tests: Wilcoxon signed-rank, sign test, t-test.

Each takes the per-sample values ``d`` (a paired difference, or a one-sample quantity) and tests
its location against ``mu``: ``alternative="less"`` means H1: location(d) < mu. The tests are
scipy's; these wrappers fix the conventions (explicit alternative and zero handling) and return a
:class:`~dimple_stats.stats.result.HypothesisResult` that names its statistic.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from dimple_stats.stats.result import Alternative, HypothesisResult

__all__ = ["PairedTest", "wilcoxon_signed_rank", "sign_test", "paired_ttest", "location_test"]

PairedTest = Literal["wilcoxon", "sign", "ttest"]
ZeroMethod = Literal["wilcox", "pratt", "zsplit"]

ArrayLike = npt.ArrayLike


def _centred(d: ArrayLike, mu: float) -> np.ndarray:
    x = np.asarray(d, dtype=float).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite; drop or impute NaN/inf before testing")
    return x - mu


def wilcoxon_signed_rank(
    d: ArrayLike,
    *,
    alternative: Alternative = "two-sided",
    mu: float = 0.0,
    zero_method: ZeroMethod = "wilcox",
    method: Literal["auto", "exact", "asymptotic"] = "auto",
) -> HypothesisResult:
    """Wilcoxon signed-rank test of ``d - mu`` (scipy.stats.wilcoxon).

    ``zero_method="wilcox"`` (scipy's default, stated explicitly) drops exact zeros: they carry no
    sign. ``method="auto"`` is exact for small samples without ties or zeros, else the normal
    approximation. The statistic is W+ (sum of ranks of positive values) for a one-sided test and
    min(W+, W-) for a two-sided one, as scipy reports it.

    Parameters
    ----------
    d : array_like
        Per-sample values (paired differences); must be finite.
    alternative : {"two-sided", "less", "greater"}
        H1: the location of ``d`` is above ``mu`` ("greater"), below it ("less"), or either.
    mu : float
        The location under H0.
    zero_method : {"wilcox", "pratt", "zsplit"}
        How exact zeros are treated (scipy's options).
    method : {"auto", "exact", "asymptotic"}
        How the p-value is computed.

    Returns
    -------
    HypothesisResult
        ``statistic`` (W+ or min(W+, W-)), ``pvalue``, ``n`` (values, zeros included), ``test``,
        ``statistic_name``, ``alternative``; NaN when every value equals ``mu``.

    References
    ----------
    .. [1] Wilcoxon, F. (1945). Individual comparisons by ranking methods. Biometrics Bulletin,
       1(6), 80-83. See docs/references.md#wilcoxon-1945

    Examples
    --------
    >>> r = wilcoxon_signed_rank([-0.3, -0.2, -0.5, 0.1, -0.4, -0.6], alternative="less")
    >>> r.statistic, round(r.pvalue, 6)
    (1.0, 0.03125)
    """
    x = _centred(d, mu)
    name = "W+" if alternative != "two-sided" else "min(W+, W-)"
    if np.count_nonzero(x) == 0:
        return HypothesisResult(np.nan, np.nan, x.size, "Wilcoxon signed-rank", name, alternative)
    res = stats.wilcoxon(x, zero_method=zero_method, alternative=alternative, method=method)
    return HypothesisResult(float(res.statistic), float(res.pvalue), x.size,
                            "Wilcoxon signed-rank", name, alternative)


def sign_test(d: ArrayLike, *, alternative: Alternative = "two-sided",
              mu: float = 0.0) -> HypothesisResult:
    """Exact sign test: binomial test of #(d > mu) among non-zero ``d - mu`` (scipy.stats.binomtest).

    Parameters
    ----------
    d : array_like
        Per-sample values (paired differences); must be finite.
    alternative : {"two-sided", "less", "greater"}
        H1: the location of ``d`` is above ``mu`` ("greater"), below it ("less"), or either.
    mu : float
        The location under H0.

    Returns
    -------
    HypothesisResult
        ``statistic`` (#(d > mu)), ``pvalue``, ``n`` (values, zeros included), ``test``,
        ``statistic_name``, ``alternative``; NaN when every value equals ``mu``.

    References
    ----------
    .. [1] Dixon, W. J., & Mood, A. M. (1946). The statistical sign test. JASA, 41(236), 557-566.
       See docs/references.md#dixon-mood-1946

    Examples
    --------
    >>> r = sign_test([1.0, 2.0, 0.5, -1.0, 3.0, 0.0], alternative="greater")
    >>> r.statistic, r.pvalue
    (4.0, 0.1875)
    """
    x = _centred(d, mu)
    pos, neg = int((x > 0).sum()), int((x < 0).sum())
    if pos + neg == 0:
        return HypothesisResult(np.nan, np.nan, x.size, "sign test", "n positive", alternative)
    res = stats.binomtest(pos, pos + neg, 0.5, alternative=alternative)
    return HypothesisResult(float(pos), float(res.pvalue), x.size, "sign test", "n positive",
                            alternative)


def paired_ttest(d: ArrayLike, *, alternative: Alternative = "two-sided",
                 mu: float = 0.0) -> HypothesisResult:
    """One-sample (paired) t-test of ``d`` against ``mu`` (scipy.stats.ttest_1samp).

    Parameters
    ----------
    d : array_like
        Per-sample values (paired differences); must be finite.
    alternative : {"two-sided", "less", "greater"}
        H1: the location of ``d`` is above ``mu`` ("greater"), below it ("less"), or either.
    mu : float
        The location under H0.

    Returns
    -------
    HypothesisResult
        ``statistic`` (t), ``pvalue``, ``n`` (values, zeros included), ``test``,
        ``statistic_name``, ``alternative``; NaN for fewer than 2 values or no spread.

    References
    ----------
    .. [1] Student (1908). The probable error of a mean. Biometrika, 6(1), 1-25.
       See docs/references.md#student-1908

    Examples
    --------
    >>> r = paired_ttest([1.0, 2.0, 3.0, 4.0], alternative="greater", mu=1.0)
    >>> round(r.statistic, 6), round(r.pvalue, 6)
    (2.32379, 0.051364)
    """
    x = _centred(d, mu)
    if x.size < 2 or np.ptp(x) == 0:
        return HypothesisResult(np.nan, np.nan, x.size, "paired t-test", "t", alternative)
    res = stats.ttest_1samp(x, 0.0, alternative=alternative)
    return HypothesisResult(float(res.statistic), float(res.pvalue), x.size, "paired t-test", "t",
                            alternative)


def location_test(d: ArrayLike, test: PairedTest = "wilcoxon", *,
                  alternative: Alternative = "two-sided", mu: float = 0.0) -> HypothesisResult:
    """Dispatch to :func:`wilcoxon_signed_rank`, :func:`sign_test` or :func:`paired_ttest`.

    >>> location_test([1.0, 2.0, 0.5, -1.0, 3.0], "sign", alternative="greater").test
    'sign test'
    """
    if test == "wilcoxon":
        return wilcoxon_signed_rank(d, alternative=alternative, mu=mu)
    if test == "sign":
        return sign_test(d, alternative=alternative, mu=mu)
    if test == "ttest":
        return paired_ttest(d, alternative=alternative, mu=mu)
    raise ValueError(f"unknown test {test!r}; allowed: wilcoxon, sign, ttest")
