"""Paired binary outcomes: exact McNemar test and the paired difference of proportions.

With outcomes ``x`` (condition A) and ``y`` (condition B) on the same samples, only discordant
pairs inform the comparison: b = #(A fails, B succeeds), c = #(A succeeds, B fails). Under H0
b ~ Binomial(b + c, 1/2). The exact test is scipy's ``binomtest`` on b, which also gives the
one-sided version a directional claim needs (statsmodels' ``mcnemar(exact=True)`` is two-sided
only; both agree in the two-sided case, see the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from dimple_stats.stats.result import Alternative, HypothesisResult

__all__ = ["DiscordantPairs", "discordant_pairs", "mcnemar_exact", "paired_risk_difference"]


@dataclass(frozen=True)
class DiscordantPairs:
    """Counts of a paired 2x2 table: b favours B, c favours A; n is all pairs."""

    b: int
    c: int
    n: int


def discordant_pairs(x: npt.ArrayLike, y: npt.ArrayLike) -> DiscordantPairs:
    """Count discordant pairs of two boolean outcome vectors.

    >>> discordant_pairs([1, 1, 0, 0, 1], [1, 0, 1, 1, 1])
    DiscordantPairs(b=2, c=1, n=5)
    """
    a = np.asarray(x, dtype=bool).ravel()
    b = np.asarray(y, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes must have the same length, got {a.size} and {b.size}")
    return DiscordantPairs(int((~a & b).sum()), int((a & ~b).sum()), int(a.size))


def mcnemar_exact(x: npt.ArrayLike, y: npt.ArrayLike, *,
                  alternative: Alternative = "two-sided") -> HypothesisResult:
    """Exact McNemar test; ``alternative="greater"`` means H1: B succeeds more often than A.

    The statistic is b. With no discordant pairs there is no evidence either way: p = 1.

    Examples
    --------
    >>> on  = [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    >>> off = [1, 1, 1, 1, 1, 1, 1, 0, 1, 0]
    >>> r = mcnemar_exact(on, off, alternative="greater")
    >>> r.statistic, r.pvalue
    (5.0, 0.03125)
    """
    t = discordant_pairs(x, y)
    name = "b (discordant pairs favouring the second)"
    if t.b + t.c == 0:
        return HypothesisResult(0.0, 1.0, t.n, "exact McNemar", name, alternative)
    res = stats.binomtest(t.b, t.b + t.c, 0.5, alternative=alternative)
    return HypothesisResult(float(t.b), float(res.pvalue), t.n, "exact McNemar", name, alternative)


def paired_risk_difference(x: npt.ArrayLike, y: npt.ArrayLike, *,
                           confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Difference of success rates, mean(y) - mean(x), with a Wald CI for paired data.

    Returns ``(difference, ci_low, ci_high, se)`` with
    se = sqrt(b + c - (b - c)^2 / n) / n (Agresti, Categorical Data Analysis, 10.1.1).
    statsmodels only has CIs for independent proportions, hence this formula.

    >>> [round(v, 4) for v in paired_risk_difference([1, 0, 0, 1], [1, 1, 1, 0])]
    [0.25, -0.5626, 1.0, 0.4146]
    """
    t = discordant_pairs(x, y)
    if t.n == 0:
        return (math.nan,) * 4
    diff = (t.b - t.c) / t.n
    se = math.sqrt(max(t.b + t.c - (t.b - t.c) ** 2 / t.n, 0.0)) / t.n
    z = stats.norm.isf((1 - confidence) / 2)
    return diff, float(max(diff - z * se, -1.0)), float(min(diff + z * se, 1.0)), se
