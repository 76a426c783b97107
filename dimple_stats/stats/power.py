"""Suggested sample sizes for a target power at the observed effect (statsmodels power).

These are planning figures, not guarantees: the observed effect is itself an estimate, and power
computed from it is optimistic when the effect was selected by significance.

Approximations, stated so they can be judged:

* Location tests use the paired t-test's power (``TTestPower``) at the observed standardised effect
  dz = mean(d - mu) / sd(d), then divide n by the asymptotic relative efficiency (ARE) of the test
  actually run relative to the t-test under normal data: 3/pi (0.955) for the Wilcoxon
  signed-rank test, 2/pi (0.637) for the sign test, 1 for the t-test. Against heavy-tailed data
  the Wilcoxon test is more efficient than this suggests (its ARE is >= 0.864 for any continuous
  symmetric distribution and can exceed 1), so the figure errs towards larger n.
* TOST uses the one-sided t power at dz = (margin - |mean d|) / sd(d): the distance to the nearer
  margin in sd units. The other one-sided test has more power than this one, so the n is a
  slight underestimate when the true location is near 0 and accurate when it is near a margin.
* Exact McNemar uses the normal one-sample power (``NormalIndPower`` with ``ratio=0``) for the
  share of discordant pairs favouring H1, at Cohen's h against 1/2, then scales the discordant
  count by the observed discordant fraction.
* Spearman uses Fisher's z with the variance 1.06 / (n - 3) (normal power, ``ratio=0``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestPower
from statsmodels.stats.proportion import proportion_effectsize

from dimple_stats.stats.correlation import FIELLER_VARIANCE
from dimple_stats.stats.paired import PairedTest
from dimple_stats.stats.result import Alternative

__all__ = ["ARE", "suggested_n_location", "suggested_n_tost", "suggested_n_mcnemar",
           "suggested_n_spearman"]

#: Asymptotic relative efficiency relative to the t-test under normality.
ARE: dict[str, float] = {"wilcoxon": 3 / math.pi, "sign": 2 / math.pi, "ttest": 1.0}

# Below this standardised effect the n runs into the hundreds of millions: reported as NaN.
_MIN_EFFECT = 1e-4
_MAX_N = 10**9


def _sm_alternative(alternative: Alternative) -> str:
    return "two-sided" if alternative == "two-sided" else "larger"


def _directed(effect: float, alternative: Alternative) -> float:
    if alternative == "less":
        return -effect
    if alternative == "two-sided":
        return abs(effect)
    return effect


def _solve(solver: object, effect: float, alpha: float, power: float, alternative: Alternative,
           *, n_min: int = 2, **kw: float) -> float:
    """Smallest integer n >= n_min whose statsmodels power reaches ``power``.

    statsmodels' ``solve_power`` root-finds a real n and gives up (NaN, ConvergenceWarning) when
    the effect is so large that n would fall below its bracket; the power function itself is
    monotone in n, so an integer search on it is exact and never fails to converge.
    """
    if not math.isfinite(effect) or effect < _MIN_EFFECT:
        return math.nan

    def reaches(n: int) -> bool:
        got = solver.power(effect, n, alpha,  # type: ignore[attr-defined]
                           alternative=_sm_alternative(alternative), **kw)
        return bool(np.asarray(got).ravel()[0] >= power)

    # Start at the normal-theory n, (z_alpha + z_power)^2 / effect^2, and bracket the exact
    # answer around it: two or three power evaluations instead of a dozen from n_min up.
    z = stats.norm.isf(alpha if alternative != "two-sided" else alpha / 2) + stats.norm.isf(
        1 - power)
    guess = min(max(n_min, math.ceil((z / effect) ** 2)), _MAX_N)
    step = max(2, guess // 8)
    if reaches(guess):
        hi, lo = guess, max(n_min, guess - step)
        while lo > n_min and reaches(lo):
            hi, lo = lo, max(n_min, lo - step)
        if reaches(lo):
            return float(lo)
    else:
        lo, hi = guess, guess + step
        while not reaches(hi):
            if hi > _MAX_N:
                return math.nan
            lo, hi = hi, hi + step
            step *= 2
    while hi - lo > 1:  # invariant: lo fails, hi reaches
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return float(hi)


def _standardised(d: npt.ArrayLike, mu: float) -> tuple[float, float]:
    x = np.asarray(d, dtype=float).ravel() - mu
    if x.size < 2:
        return math.nan, math.nan
    sd = float(x.std(ddof=1))
    return float(x.mean()), sd


def suggested_n_location(d: npt.ArrayLike, *, test: PairedTest = "wilcoxon",
                         alternative: Alternative = "two-sided", mu: float = 0.0,
                         alpha: float = 0.05, power: float = 0.8) -> float:
    """Samples needed for ``power`` at the observed effect; NaN when the effect is nil or
    points against the alternative (no n reaches the power then).

    Parameters
    ----------
    d : array_like
        The observed per-sample values; their standardised effect is the planning effect.
    test : {"wilcoxon", "sign", "ttest"}
        The test to be run; n is the t-test's divided by its ARE.
    alternative : {"two-sided", "less", "greater"}
        The alternative to be tested.
    mu : float
        The location under H0.
    alpha, power : float
        Level and target power.

    Returns
    -------
    float
        The suggested n, or NaN.

    References
    ----------
    .. [1] Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences (2nd ed.).
       Lawrence Erlbaum. See docs/references.md#cohen-1988
    .. [2] Hodges, J. L., & Lehmann, E. L. (1956). The efficiency of some nonparametric
       competitors of the t-test. Ann. Math. Stat., 27(2), 324-335.
       See docs/references.md#hodges-lehmann-1956
    .. [3] Lehmann, E. L. (1975). Nonparametrics: Statistical Methods Based on Ranks. Holden-Day.
       See docs/references.md#lehmann-1975

    Examples
    --------
    >>> d = np.random.default_rng(0).normal(0.5, 1.0, size=40)
    >>> suggested_n_location(d, alternative="greater")
    24.0
    >>> math.isnan(suggested_n_location(d, alternative="less"))
    True
    """
    mean, sd = _standardised(d, mu)
    if not sd > 0:
        return math.nan
    n = _solve(TTestPower(), _directed(mean / sd, alternative), alpha, power, alternative)
    return float(math.ceil(n / ARE[test])) if math.isfinite(n) else math.nan


def suggested_n_tost(d: npt.ArrayLike, margin: float, *, test: PairedTest = "wilcoxon",
                     alpha: float = 0.05, power: float = 0.8) -> float:
    """Samples for TOST to show equivalence within ±``margin`` at the observed location.

    Parameters
    ----------
    d : array_like
        The observed per-sample values.
    margin : float
        Half-width of the equivalence interval.
    test : {"wilcoxon", "sign", "ttest"}
        The test to be run (n divided by its ARE).
    alpha, power : float
        Level and target power.

    Returns
    -------
    float
        The suggested n, or NaN.

    References
    ----------
    .. [1] Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences (2nd ed.).
       Lawrence Erlbaum. See docs/references.md#cohen-1988
    .. [2] Hodges, J. L., & Lehmann, E. L. (1956). The efficiency of some nonparametric
       competitors of the t-test. Ann. Math. Stat., 27(2), 324-335.
       See docs/references.md#hodges-lehmann-1956
    .. [3] Lehmann, E. L. (1975). Nonparametrics: Statistical Methods Based on Ranks. Holden-Day.
       See docs/references.md#lehmann-1975
    .. [4] Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power
       approach for assessing the equivalence of average bioavailability. J. Pharmacokinet.
       Biopharm., 15(6), 657-680. See docs/references.md#schuirmann-1987

    Examples
    --------
    >>> d = np.random.default_rng(0).normal(0.0, 0.1, size=40)
    >>> suggested_n_tost(d, 0.05)
    24.0
    """
    mean, sd = _standardised(d, 0.0)
    if not sd > 0:
        return math.nan
    n = _solve(TTestPower(), (margin - abs(mean)) / sd, alpha, power, "greater")
    return float(math.ceil(n / ARE[test])) if math.isfinite(n) else math.nan


def suggested_n_mcnemar(b: int, c: int, n: int, *, alternative: Alternative = "greater",
                        alpha: float = 0.05, power: float = 0.8) -> float:
    """Pairs needed for the exact McNemar test at the observed b, c among n pairs.

    Parameters
    ----------
    b, c : int
        Observed discordant pairs favouring the second and the first condition.
    n : int
        All observed pairs.
    alternative : {"two-sided", "less", "greater"}
        The alternative to be tested.
    alpha, power : float
        Level and target power.

    Returns
    -------
    float
        The suggested number of pairs, or NaN.

    References
    ----------
    .. [1] Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences (2nd ed.).
       Lawrence Erlbaum. See docs/references.md#cohen-1988
    .. [2] McNemar, Q. (1947). Note on the sampling error of the difference between correlated
       proportions or percentages. Psychometrika, 12(2), 153-157. See docs/references.md#mcnemar-1947

    Examples
    --------
    >>> suggested_n_mcnemar(15, 5, 100)
    115.0
    """
    if n <= 0 or b + c == 0:
        return math.nan
    h = _directed(float(proportion_effectsize(b / (b + c), 0.5)), alternative)
    n_disc = _solve(NormalIndPower(), h, alpha, power, alternative, n_min=1, ratio=0.0)
    return float(math.ceil(n_disc * n / (b + c))) if math.isfinite(n_disc) else math.nan


def suggested_n_spearman(rho: float, *, alternative: Alternative = "two-sided",
                         alpha: float = 0.05, power: float = 0.8) -> float:
    """Samples for the Spearman test to detect ``rho``.

    Parameters
    ----------
    rho : float
        The correlation to detect.
    alternative : {"two-sided", "less", "greater"}
        The alternative to be tested.
    alpha, power : float
        Level and target power.

    Returns
    -------
    float
        The suggested n, or NaN.

    References
    ----------
    .. [1] Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation deduced
       from a small sample. Metron, 1, 3-32. See docs/references.md#fisher-1921
    .. [2] Fieller, E. C., Hartley, H. O., & Pearson, E. S. (1957). Tests for rank correlation
       coefficients. I. Biometrika, 44(3/4), 470-481.
       See docs/references.md#fieller-hartley-pearson-1957

    Examples
    --------
    >>> suggested_n_spearman(0.3)
    90.0
    """
    if not math.isfinite(rho) or abs(rho) >= 1:
        return math.nan
    z = _directed(math.atanh(rho), alternative) / math.sqrt(FIELLER_VARIANCE)
    n = _solve(NormalIndPower(), z, alpha, power, alternative, n_min=1, ratio=0.0)
    return float(n + 3) if math.isfinite(n) else math.nan
