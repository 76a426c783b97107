"""Combining seed replications: random-effects meta-analysis and Stouffer's combined p."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from dimple_stats.stats.result import Alternative

__all__ = ["MetaEstimate", "random_effects", "stouffer"]

# Stouffer maps p to z = Phi^-1(1 - p); p = 0 or 1 would give an infinite z that swamps every
# other seed (and +inf + -inf is NaN), so p is clipped to this distance from 0 and 1 first.
_P_CLIP = 1e-15


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

    Examples
    --------
    >>> z, p = stouffer([0.01, 0.20, 0.04])
    >>> round(z, 4), round(p, 6)
    (2.8398, 0.002257)
    >>> round(stouffer([0.01, 0.01], alternative="two-sided", directions=[1, -1])[1], 12)
    1.0
    """
    p = np.clip(np.asarray(pvalues, dtype=float).ravel(), _P_CLIP, 1 - _P_CLIP)
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
