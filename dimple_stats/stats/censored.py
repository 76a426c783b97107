"""Tests and estimates for per-sample values known only within bounds (censored attacks).

A failed attack is a right-censored norm: the true minimal norm is at least ``eps``. A per-sample
statistic built from such a norm (a log ratio, say) is then known only within an interval
``[lo, hi]``: a censored numerator gives ``hi = +inf``, a censored denominator ``lo = -inf``,
both censored ``(-inf, +inf)`` (the sample says nothing). Uncensored samples have ``lo == hi``.

The norm-ratio claims' default sign test models its censored pairs instead
(:mod:`dimple_stats.stats.censored_ratio`); the bounds here serve the other tests, the
equivalence tests and the descriptive rows. Why bounds and not a Kaplan-Meier model: the
censoring here is informative (an attack fails *because* the norm it needs is large, and a
ratio's two norms are censored at different budgets),
so the independent-censoring assumption of survival estimators does not hold. What holds for
any censoring mechanism is the worst case: every test here imputes each censored value at the
end of its interval least favourable to the alternative, so a rejection stands whatever the
censored values are (the test is valid, and conservative by at most the censored share). The
estimate's CI runs from the lower end of the bootstrap CI of the lower bounds to the upper end
of that of the upper bounds (an interval for the partially identified median). Rows whose data
are more than :data:`UNINFORMATIVE_SHARE` censored are not tested at all (see the claims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from dimple_stats.stats.bootstrap import BootstrapEstimate, median_ci
from dimple_stats.stats.paired import PairedTest, location_test
from dimple_stats.stats.result import Alternative, HypothesisResult

__all__ = [
    "UNINFORMATIVE_SHARE",
    "WARN_SHARE",
    "Bounds",
    "censored_location_test",
    "censored_sign_test",
    "median_tost",
    "bounded_median_ci",
]

#: A row whose data are more than this share censored gets decision ``uninformative``.
UNINFORMATIVE_SHARE = 0.5
#: A run warns about rows more than this share censored.
WARN_SHARE = 0.2


@dataclass(frozen=True)
class Bounds:
    """Per-sample values known within ``[lo, hi]`` (``lo == hi`` where uncensored)."""

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def exact(cls, values: npt.ArrayLike) -> Bounds:
        v = np.asarray(values, dtype=float).ravel()
        return cls(v, v.copy())

    @property
    def censored(self) -> np.ndarray:
        """Samples whose value is not known exactly."""
        return self.lo != self.hi

    def keep(self, mask: np.ndarray) -> Bounds:
        return Bounds(self.lo[mask], self.hi[mask])


def censored_sign_test(b: Bounds, *, alternative: Alternative, mu: float = 0.0
                       ) -> HypothesisResult:
    """Exact sign test of median = ``mu`` with every unknown sign counted against H1.

    For "greater" a sample counts as positive only if its lower bound exceeds ``mu`` and as
    negative whenever its lower bound is below ``mu``; "less" mirrors that with the upper bound;
    "two-sided" doubles the smaller one-sided p. Bounds may be infinite. With no censoring this
    is :func:`~dimple_stats.stats.paired.sign_test`.

    Parameters
    ----------
    b : Bounds
        Per-sample values known within ``[lo, hi]``; bounds may be infinite.
    alternative : {"two-sided", "less", "greater"}
        H1: the median is above ``mu`` ("greater"), below it ("less"), or either.
    mu : float
        The median under H0.

    Returns
    -------
    HypothesisResult
        ``statistic`` (samples surely on the H1 side of ``mu``), ``pvalue`` (NaN when no sign is
        known), ``n`` (all samples), ``test``, ``statistic_name``, ``alternative``.

    References
    ----------
    .. [1] Dixon, W. J., & Mood, A. M. (1946). The statistical sign test. JASA, 41(236), 557-566.
       See docs/references.md#dixon-mood-1946
    .. [2] Manski, C. F. (2003). Partial Identification of Probability Distributions. Springer.
       See docs/references.md#manski-2003

    Examples
    --------
    >>> inf = float("inf")
    >>> b = Bounds(np.array([1.0, 2.0, 3.0, 0.5, -1.0]), np.array([1.0, inf, 3.0, 0.5, inf]))
    >>> censored_sign_test(b, alternative="greater").pvalue  # 4 of 5 positive
    0.1875
    >>> censored_sign_test(b, alternative="less").pvalue  # -1's upper bound is +inf: no evidence
    1.0
    """
    if alternative == "two-sided":
        g = censored_sign_test(b, alternative="greater", mu=mu)
        s = censored_sign_test(b, alternative="less", mu=mu)
        binding = g if g.pvalue <= s.pvalue else s
        p = min(1.0, 2 * min(g.pvalue, s.pvalue)) if g.defined and s.defined else math.nan
        return HypothesisResult(binding.statistic, p, b.lo.size, "sign test (censoring-aware)",
                                binding.statistic_name, "two-sided")
    side = b.lo if alternative == "greater" else b.hi
    favour = int((side > mu).sum()) if alternative == "greater" else int((side < mu).sum())
    against = int((side < mu).sum()) if alternative == "greater" else int((side > mu).sum())
    name = "n above mu (worst case)" if alternative == "greater" else "n below mu (worst case)"
    if favour + against == 0:
        return HypothesisResult(math.nan, math.nan, b.lo.size, "sign test (censoring-aware)",
                                name, alternative)
    p = float(stats.binomtest(favour, favour + against, 0.5, alternative="greater").pvalue)
    return HypothesisResult(float(favour), p, b.lo.size, "sign test (censoring-aware)", name,
                            alternative)


def censored_location_test(b: Bounds, test: PairedTest, *, alternative: Alternative,
                           mu: float = 0.0) -> HypothesisResult:
    """A location test with censored values imputed at their least favourable bound.

    Wilcoxon and t statistics are monotone in every value, so imputing each censored value at
    the bound least favourable to H1 (the lower bound for "greater", the upper for "less") can
    only raise p: the test stays valid under any censoring mechanism. An infinite bound is
    ranked beyond every finite value (Wilcoxon, sign); the t-test is undefined with one.

    Parameters
    ----------
    b : Bounds
        Per-sample values known within ``[lo, hi]``.
    test : {"wilcoxon", "sign", "ttest"}
        The location test to run on the imputed values.
    alternative : {"two-sided", "less", "greater"}
        H1: the location is above ``mu`` ("greater"), below it ("less"), or either.
    mu : float
        The location under H0.

    Returns
    -------
    HypothesisResult
        ``statistic``, ``pvalue``, ``n``, ``test``, ``statistic_name``, ``alternative`` of the test
        on the worst-case values (two-sided: the binding one-sided test, p doubled).

    References
    ----------
    .. [1] Wilcoxon, F. (1945). Individual comparisons by ranking methods. Biometrics Bulletin,
       1(6), 80-83. See docs/references.md#wilcoxon-1945
    .. [2] Manski, C. F. (2003). Partial Identification of Probability Distributions. Springer.
       See docs/references.md#manski-2003

    Examples
    --------
    >>> b = Bounds(np.array([0.3, 0.2, 0.4, 0.1, 0.25, -0.05]), np.array([0.3, 0.5, 0.4, 0.1, 0.25, -0.05]))
    >>> round(censored_location_test(b, "wilcoxon", alternative="greater").pvalue, 6)
    0.03125
    """
    if not b.censored.any():
        return location_test(b.lo, test, alternative=alternative, mu=mu)
    if test == "sign":
        return censored_sign_test(b, alternative=alternative, mu=mu)
    if alternative == "two-sided":
        g = censored_location_test(b, test, alternative="greater", mu=mu)
        s = censored_location_test(b, test, alternative="less", mu=mu)
        binding = g if g.pvalue <= s.pvalue else s
        p = min(1.0, 2 * min(g.pvalue, s.pvalue)) if g.defined and s.defined else math.nan
        return HypothesisResult(binding.statistic, p, b.lo.size, binding.test,
                                binding.statistic_name, "two-sided")
    side = b.lo if alternative == "greater" else b.hi
    if not np.all(np.isfinite(side)):
        if test == "ttest":  # a mean has no worst case when a value is unbounded
            return HypothesisResult(math.nan, math.nan, b.lo.size, "paired t-test", "t",
                                    alternative)
        # Signed ranks only need order: any value beyond every finite |x - mu| has the same
        # rank as the unbounded worst case.
        finite = side[np.isfinite(side)]
        reach = float(np.max(np.abs(finite - mu))) + 1.0 if finite.size else 1.0
        side = np.where(side == np.inf, mu + reach, np.where(side == -np.inf, mu - reach, side))
    return location_test(side, test, alternative=alternative, mu=mu)


@dataclass(frozen=True)
class MedianTost:
    """Equivalence of the median within ``(low, high)``: two censoring-aware sign tests."""

    pvalue: float
    statistic: float
    statistic_name: str
    lower: HypothesisResult
    upper: HypothesisResult


def median_tost(b: Bounds, low: float, high: float) -> MedianTost:
    """TOST on the MEDIAN: H0 median <= low or median >= high; p = the larger one-sided p.

    Both halves are exact sign tests, so the tested location is the median the estimate reports
    (a Wilcoxon TOST tests the pseudo-median, which differs from the median of a skewed
    distribution: at median = -margin it rejected 52% of tables). Censored values count against
    equivalence on each side; a sample censored on both sides counts against both.

    Parameters
    ----------
    b : Bounds
        Per-sample values known within ``[lo, hi]``.
    low, high : float
        The equivalence interval, ``low < high``.

    Returns
    -------
    MedianTost
        ``pvalue`` (the larger one-sided p; NaN when either is undefined), ``statistic`` and
        ``statistic_name`` of the binding side, ``lower`` and ``upper`` (the two sign tests).

    References
    ----------
    .. [1] Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power
       approach for assessing the equivalence of average bioavailability. J. Pharmacokinet.
       Biopharm., 15(6), 657-680. See docs/references.md#schuirmann-1987
    .. [2] Dixon, W. J., & Mood, A. M. (1946). The statistical sign test. JASA, 41(236), 557-566.
       See docs/references.md#dixon-mood-1946

    Examples
    --------
    >>> d = Bounds.exact([0.01, -0.02, 0.03, 0.0, -0.01, 0.02, 0.01, -0.03, 0.02, 0.01, 0.01])
    >>> round(median_tost(d, -0.05, 0.05).pvalue, 6)
    0.000488
    """
    if not low < high:
        raise ValueError(f"the equivalence interval must be increasing, got ({low}, {high})")
    lower = censored_sign_test(b, alternative="greater", mu=low)
    upper = censored_sign_test(b, alternative="less", mu=high)
    if not (lower.defined and upper.defined):
        return MedianTost(math.nan, math.nan, "", lower, upper)
    binding, side = (lower, "lower") if lower.pvalue >= upper.pvalue else (upper, "upper")
    return MedianTost(max(lower.pvalue, upper.pvalue), binding.statistic,
                      f"{binding.statistic_name} (binding side: {side})", lower, upper)


def _percentile_medians(columns: list[np.ndarray], confidence: float, n_resamples: int,
                        rng: np.random.Generator) -> list[BootstrapEstimate]:
    """Percentile-bootstrap medians of several value vectors on ONE set of resampled indices.

    Values may be infinite: they are resampled through finite stand-ins beyond every finite
    value, and endpoints landing on a stand-in map back to +-inf. The SE is robust (half the
    central 68% range of the bootstrap medians), so a few unbounded resamples do not make it
    infinite and many do.
    """
    size = columns[0].size
    idx = rng.integers(0, size, size=(n_resamples, size))
    tail = (1 - confidence) / 2
    out = []
    for v in columns:
        finite = v[np.isfinite(v)]
        base = float(np.max(np.abs(finite))) + 1.0 if finite.size else 1.0
        stand = np.where(v == -np.inf, -2 * base, np.where(v == np.inf, 2 * base, v))
        meds = np.median(stand[idx], axis=1)
        back = lambda x, b=base: -math.inf if x <= -b else (math.inf if x >= b else float(x))  # noqa: E731
        lo, hi, q16, q84 = (back(q) for q in np.quantile(meds, [tail, 1 - tail, 0.1587, 0.8413]))
        se = (q84 - q16) / 2 if math.isfinite(q16) and math.isfinite(q84) else math.inf
        out.append(BootstrapEstimate(float(np.median(v)), lo, hi, se))
    return out


def bounded_median_ci(b: Bounds, *, side: str = "observed", confidence: float = 0.95,
                      n_resamples: int = 2000, rng: np.random.Generator | None = None
                      ) -> tuple[BootstrapEstimate, str]:
    """Median with a CI that covers every value the censored samples could take.

    Returns the estimate and a note. Uncensored: :func:`~dimple_stats.stats.bootstrap.median_ci`.
    Censored: the estimate is the median of the ``side`` values: ``"lo"`` (every censored value
    at its lower bound: the least favourable to a "greater" claim, so the estimate is a lower
    bound, and the value a one-sided test of "greater" uses), ``"hi"``, or ``"observed"`` (each
    censored value at its finite bound); its SE is that of those values. The CI runs from the
    lower end of the lower bounds' CI to the upper end of the upper bounds' CI, and the note
    gives the identified interval of the median, [median(lo), median(hi)].

    Parameters
    ----------
    b : Bounds
        Per-sample values known within ``[lo, hi]``.
    side : {"observed", "lo", "hi"}
        Which values the point estimate is the median of.
    confidence : float
        Confidence level of the interval.
    n_resamples : int
        Bootstrap resamples.
    rng : numpy.random.Generator, optional
        Source of the resamples; ``default_rng(0)`` when omitted.

    Returns
    -------
    estimate : BootstrapEstimate
        ``estimate``, ``ci_low``, ``ci_high``, ``se`` (all NaN for no samples).
    note : str
        The identified interval and the censored count; empty when nothing is censored.

    References
    ----------
    .. [1] Imbens, G. W., & Manski, C. F. (2004). Confidence intervals for partially identified
       parameters. Econometrica, 72(6), 1845-1857. See docs/references.md#imbens-manski-2004
    .. [2] Efron, B., & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.
       See docs/references.md#efron-tibshirani-1993

    Examples
    --------
    >>> inf = float("inf")
    >>> b = Bounds(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.0, inf, 5.0]))
    >>> est, note = bounded_median_ci(b, rng=np.random.default_rng(0))
    >>> est.estimate, note
    (3.0, 'censored: the median lies in [3, 3] (bounds), 1 sample(s) known only within bounds')
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    if b.lo.size == 0:
        return BootstrapEstimate(math.nan, math.nan, math.nan, math.nan), ""
    cens = b.censored
    if not cens.any():
        return median_ci(b.lo, confidence=confidence, n_resamples=n_resamples, rng=rng), ""
    values = {"lo": b.lo, "hi": b.hi,
              "observed": np.where(np.isfinite(b.lo), b.lo, b.hi)}[side]
    # Percentile on one shared set of resamples (BCa needs finite values, and three scipy
    # bootstraps per censored row cost more than the whole rest of the analysis).
    low, high, own = _percentile_medians([b.lo, b.hi, values], confidence, n_resamples, rng)
    note = (f"censored: the median lies in [{float(np.median(b.lo)):.4g}, "
            f"{float(np.median(b.hi)):.4g}] (bounds), {int(cens.sum())} sample(s) known only "
            "within bounds")
    return BootstrapEstimate(float(np.median(values)), low.ci_low, high.ci_high, own.se), note
