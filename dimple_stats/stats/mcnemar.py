"""Paired binary outcomes: exact McNemar test and the paired difference of proportions.

With outcomes ``x`` (condition A) and ``y`` (condition B) on the same samples, only discordant
pairs inform the comparison: b = #(A fails, B succeeds), c = #(A succeeds, B fails). Under H0
b ~ Binomial(b + c, 1/2). The exact test is scipy's ``binomtest`` on b, which also gives the
one-sided version a directional claim needs (statsmodels' ``mcnemar(exact=True)`` is two-sided
only; both agree in the two-sided case, see the tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from dimple_stats.stats.result import Alternative, HypothesisResult

__all__ = [
    "DiscordantPairs",
    "discordant_pairs",
    "mcnemar_exact",
    "paired_risk_difference",
    "clustered_mcnemar",
]


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

    Parameters
    ----------
    x, y : array_like of bool
        Outcomes under conditions A and B on the same samples.
    alternative : {"two-sided", "less", "greater"}
        H1: B succeeds more often ("greater"), less often ("less"), or either.

    Returns
    -------
    HypothesisResult
        ``statistic`` (b), ``pvalue`` (binomial test of b among b + c), ``n`` (all pairs),
        ``test``, ``statistic_name``, ``alternative``.

    References
    ----------
    .. [1] McNemar, Q. (1947). Note on the sampling error of the difference between correlated
       proportions or percentages. Psychometrika, 12(2), 153-157. See docs/references.md#mcnemar-1947
    .. [2] Fagerland, M. W., Lydersen, S., & Laake, P. (2013). The McNemar test for binary
       matched-pairs data: mid-p and asymptotic are better than exact conditional. BMC Med. Res.
       Methodol., 13, 91. See docs/references.md#fagerland-lydersen-laake-2013

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


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    lo, hi = proportion_confint(successes, n, alpha=2 * stats.norm.sf(z), method="wilson")
    return float(lo), float(hi)


def paired_risk_difference(x: npt.ArrayLike, y: npt.ArrayLike, *,
                           confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Difference of success rates, mean(y) - mean(x), with Newcombe's CI for paired data.

    Returns ``(difference, ci_low, ci_high, se)``. The interval is Newcombe's (1998) method 10:
    the Wilson score intervals of the two marginal rates, combined with their correlation phi
    (continuity-adjusted as in the paper). Unlike the Wald interval it stays honest at the edges:
    with no discordant pair (every attack succeeded under both conditions, say) Wald has width
    zero, Newcombe +-z^2/(n + z^2). statsmodels 0.15 has Newcombe only for independent samples
    (``confint_proportions_2indep``), hence this function. ``se`` is the interval's half-width
    over z, so seeds without a discordant pair still carry weight when pooled.

    Parameters
    ----------
    x, y : array_like of bool
        Outcomes under the first and the second condition on the same samples.
    confidence : float
        Confidence level of the interval.

    Returns
    -------
    difference, ci_low, ci_high, se : float
        All NaN for no pairs.

    References
    ----------
    .. [1] Newcombe, R. G. (1998). Improved confidence intervals for the difference between
       binomial proportions based on paired data. Stat. Med., 17(22), 2635-2650.
       See docs/references.md#newcombe-1998
    .. [2] Wilson, E. B. (1927). Probable inference, the law of succession, and statistical
       inference. JASA, 22(158), 209-212. See docs/references.md#wilson-1927

    Examples
    --------
    >>> [round(v, 4) for v in paired_risk_difference([1, 0, 0, 1], [1, 1, 1, 0])]
    [0.25, -0.4613, 0.7469, 0.3082]
    >>> [round(v, 4) for v in paired_risk_difference([1] * 100, [1] * 100)]
    [0.0, -0.037, 0.037, 0.0189]
    """
    first = np.asarray(x, dtype=bool).ravel()
    second = np.asarray(y, dtype=bool).ravel()
    t = discordant_pairs(first, second)
    if t.n == 0:
        return (math.nan,) * 4
    both = int((first & second).sum())
    neither = t.n - both - t.b - t.c
    z = float(stats.norm.isf((1 - confidence) / 2))
    s1, s2 = both + t.c, both + t.b  # successes under x and under y
    p1, p2 = s1 / t.n, s2 / t.n
    l1, u1 = _wilson(s1, t.n, z)
    l2, u2 = _wilson(s2, t.n, z)
    margins = float(s1) * (t.n - s1) * s2 * (t.n - s2)
    phi = 0.0
    if margins > 0:
        cross = both * neither - t.b * t.c
        adjusted = cross - t.n / 2 if cross > t.n / 2 else (cross if cross < 0 else 0.0)
        phi = adjusted / math.sqrt(margins)
    diff = p2 - p1
    down = math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    up = math.sqrt(max((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2, 0.0))
    lo, hi = max(diff - down, -1.0), min(diff + up, 1.0)
    return diff, lo, hi, (hi - lo) / (2 * z)


def clustered_mcnemar(first: Sequence[npt.ArrayLike], second: Sequence[npt.ArrayLike],
                      ids: Sequence[npt.ArrayLike], *,
                      alternative: Alternative = "two-sided") -> HypothesisResult:
    """Exact McNemar over strata (seeds) whose pairs may share images: a sign-flip test.

    Per image j, s_j = sum over its pairs (in any seed) of second - first (+1 for a pair
    favouring the second condition, -1 for one favouring the first). Under H0 the two
    conditions are exchangeable for each image, so every s_j is as likely as -s_j, independently
    across images; the exact null distribution of S = sum s_j is that of sum eps_j |s_j| with
    fair signs, computed here by convolution (no Monte Carlo). When no image occurs twice this
    is the stratified exact McNemar test (sum of b ~ Binomial(sum(b + c), 1/2)), in which a seed
    without discordant pairs contributes nothing (combining per-seed p-values instead let such a
    seed, p = 1, cut the pooled power from 100% to 14%). The statistic is S.

    Parameters
    ----------
    first, second : sequence of array_like of bool
        Per-seed outcomes under the first and the second condition.
    ids : sequence of array_like
        Per-seed image ids, aligned with the outcomes.
    alternative : {"two-sided", "less", "greater"}
        H1: the second condition succeeds more often ("greater"), less often ("less"), or either.

    Returns
    -------
    HypothesisResult
        ``statistic`` (S), ``pvalue`` (exact), ``n`` (all pairs), ``test``, ``statistic_name``,
        ``alternative``.

    References
    ----------
    .. [1] McNemar, Q. (1947). Note on the sampling error of the difference between correlated
       proportions or percentages. Psychometrika, 12(2), 153-157. See docs/references.md#mcnemar-1947

    Examples
    --------
    >>> r = clustered_mcnemar([[0, 0, 1, 0], [0, 1]], [[1, 1, 1, 0], [1, 1]], [[1, 2, 3, 4], [5, 6]],
    ...                       alternative="greater")
    >>> r.statistic, r.pvalue  # three discordant pairs, all favouring the second: 1/8
    (3.0, 0.125)
    >>> clustered_mcnemar([[0, 0], [0, 0]], [[1, 1], [1, 1]], [[1, 2], [1, 2]],
    ...                   alternative="greater").pvalue  # the same two images twice: 1/4
    0.25
    """
    a = np.concatenate([np.asarray(x, dtype=bool).ravel() for x in first])
    b = np.concatenate([np.asarray(y, dtype=bool).ravel() for y in second])
    key = np.concatenate([np.asarray(i).ravel() for i in ids])
    if not a.size == b.size == key.size:
        raise ValueError("first, second and ids must have the same lengths")
    name = "S = #(favouring second) - #(favouring first)"
    _, inverse = np.unique(key, return_inverse=True)
    s = np.bincount(inverse, weights=b.astype(int) - a.astype(int)).astype(int)
    s = np.abs(s[s != 0])
    observed = int(np.sum(np.bincount(inverse, weights=b.astype(int) - a.astype(int))))
    if s.size == 0:
        return HypothesisResult(0.0, 1.0, int(a.size), "exact McNemar (clustered sign flip)", name,
                                alternative)
    # Distribution of sum eps_j s_j on the integer grid [-total, total], by convolution.
    total = int(s.sum())
    dist = np.zeros(2 * total + 1)
    dist[total] = 1.0
    for v in s:
        dist = 0.5 * (np.roll(dist, v) + np.roll(dist, -v))
    upper = float(dist[total + observed:].sum())
    lower = float(dist[:total + observed + 1].sum())
    p = upper if alternative == "greater" else lower if alternative == "less" else \
        min(1.0, 2 * min(upper, lower))
    return HypothesisResult(float(observed), min(p, 1.0), int(a.size),
                            "exact McNemar (clustered sign flip)", name, alternative)
