"""Equivalence by two one-sided tests (TOST, Schuirmann 1987).

H0: the location of ``d`` lies outside [-margin, +margin]; H1: it lies inside. The lower test
rejects "location <= -margin" (``alternative="greater"`` against ``mu=-margin``), the upper test
rejects "location >= +margin" (``alternative="less"`` against ``mu=+margin``); equivalence is shown
at level alpha when both reject, so the TOST p-value is the larger of the two. With the Wilcoxon
test the location is the pseudo-median (Hodges-Lehmann), with the t-test the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy.typing as npt

from dimple_stats.stats.paired import PairedTest, location_test
from dimple_stats.stats.result import HypothesisResult

__all__ = ["TostResult", "tost"]


@dataclass(frozen=True)
class TostResult:
    """Outcome of a TOST: the binding (larger-p) one-sided test and both halves."""

    pvalue: float
    statistic: float
    statistic_name: str
    lower: HypothesisResult
    upper: HypothesisResult
    margin: tuple[float, float]
    test: str

    @property
    def n(self) -> int:
        return self.lower.n


def tost(d: npt.ArrayLike, margin: float | tuple[float, float], *,
         test: PairedTest = "wilcoxon") -> TostResult:
    """Two one-sided tests of ``d`` within ``(-margin, +margin)`` (or ``(low, high)``).

    Parameters
    ----------
    d : array_like
        Per-sample values (paired differences).
    margin : float or (float, float)
        Half-width of a symmetric equivalence interval, or its ``(low, high)`` ends.
    test : {"wilcoxon", "sign", "ttest"}
        The one-sided location test; the Wilcoxon test's location is the pseudo-median.

    Returns
    -------
    TostResult
        ``pvalue`` (the larger one-sided p), ``statistic`` and ``statistic_name`` of the binding
        side, ``lower`` and ``upper`` (both one-sided tests), ``margin`` (low, high), ``test``.

    References
    ----------
    .. [1] Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power
       approach for assessing the equivalence of average bioavailability. J. Pharmacokinet.
       Biopharm., 15(6), 657-680. See docs/references.md#schuirmann-1987
    .. [2] Lakens, D. (2017). Equivalence tests: A practical primer for t tests, correlations, and
       meta-analyses. Soc. Psychol. Personal. Sci., 8(4), 355-362. See docs/references.md#lakens-2017
    .. [3] Hodges, J. L., & Lehmann, E. L. (1963). Estimates of location based on rank tests.
       Ann. Math. Stat., 34(2), 598-611. See docs/references.md#hodges-lehmann-1963

    Examples
    --------
    >>> d = [0.01, -0.02, 0.03, 0.0, -0.01, 0.02, 0.01, -0.03, 0.02, 0.0, 0.01, -0.01]
    >>> r = tost(d, 0.05)
    >>> round(r.pvalue, 6), r.statistic_name
    (0.000244, 'W+ (binding side: lower)')
    >>> tost(d, 0.005).pvalue > 0.05
    True
    """
    low, high = (-margin, margin) if isinstance(margin, (int, float)) else margin
    if not low < high:
        raise ValueError(f"the equivalence interval must be increasing, got ({low}, {high})")
    lower = location_test(d, test, alternative="greater", mu=low)
    upper = location_test(d, test, alternative="less", mu=high)
    binding, side = (lower, "lower") if lower.pvalue >= upper.pvalue else (upper, "upper")
    if not lower.defined or not upper.defined:
        binding, side = (lower, "lower") if not lower.defined else (upper, "upper")
    return TostResult(
        pvalue=max(lower.pvalue, upper.pvalue) if lower.defined and upper.defined else float("nan"),
        statistic=binding.statistic,
        statistic_name=f"{binding.statistic_name} (binding side: {side})",
        lower=lower,
        upper=upper,
        margin=(float(low), float(high)),
        test=f"TOST ({lower.test})",
    )
