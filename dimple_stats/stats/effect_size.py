"""Effect sizes that go with the location tests.

The matched-pairs rank-biserial correlation (Kerby 2014) is the Wilcoxon test's natural effect
size: the proportion of the rank sum that favours positive values minus the proportion that
favours negative ones. scipy and statsmodels have none, so it is computed here from
``scipy.stats.rankdata``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from dimple_stats.stats.paired import PairedTest

__all__ = ["rank_biserial", "sign_effect", "cohens_dz", "location_effect"]


def rank_biserial(d: npt.ArrayLike, *, mu: float = 0.0) -> float:
    """Matched-pairs rank-biserial correlation r = (W+ - W-) / (W+ + W-), zeros dropped.

    In [-1, 1]; negative when ``d`` tends to lie below ``mu``.

    Parameters
    ----------
    d : array_like
        Per-sample values (paired differences).
    mu : float
        The location under H0; ranks are of ``|d - mu|``.

    Returns
    -------
    float
        r; NaN when every value equals ``mu``.

    References
    ----------
    .. [1] Kerby, D. S. (2014). The simple difference formula: An approach to teaching
       nonparametric correlation. Comprehensive Psychology, 3, 11.IT.3.1.
       See docs/references.md#kerby-2014

    Examples
    --------
    >>> rank_biserial([-0.3, -0.2, -0.5, 0.1, -0.4, -0.6])
    -0.9047619047619048
    """
    x = np.asarray(d, dtype=float).ravel() - mu
    x = x[x != 0]
    if x.size == 0:
        return float("nan")
    ranks = stats.rankdata(np.abs(x))
    w_plus, w_minus = ranks[x > 0].sum(), ranks[x < 0].sum()
    return float((w_plus - w_minus) / (w_plus + w_minus))


def sign_effect(d: npt.ArrayLike, *, mu: float = 0.0) -> float:
    """(#positive - #negative) / #non-zero: the sign test's effect, in [-1, 1].

    The simple difference formula (proportion favourable minus proportion unfavourable) applied to
    signs, as the rank-biserial r applies it to signed ranks.

    Parameters
    ----------
    d : array_like
        Per-sample values (paired differences).
    mu : float
        Signs are of ``d - mu``.

    Returns
    -------
    float
        The effect; NaN when every value equals ``mu``.

    References
    ----------
    .. [1] Kerby, D. S. (2014). The simple difference formula: An approach to teaching
       nonparametric correlation. Comprehensive Psychology, 3, 11.IT.3.1.
       See docs/references.md#kerby-2014

    Examples
    --------
    >>> sign_effect([1.0, 2.0, 0.5, -1.0, 0.0])
    0.5
    """
    x = np.asarray(d, dtype=float).ravel() - mu
    pos, neg = (x > 0).sum(), (x < 0).sum()
    return float((pos - neg) / (pos + neg)) if pos + neg else float("nan")


def cohens_dz(d: npt.ArrayLike, *, mu: float = 0.0) -> float:
    """Standardised mean of paired differences, (mean(d) - mu) / sd(d) (ddof = 1).

    Parameters
    ----------
    d : array_like
        Paired differences.
    mu : float
        The mean under H0.

    Returns
    -------
    float
        d_z; NaN for fewer than 2 values or sd 0.

    References
    ----------
    .. [1] Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences (2nd ed.).
       Lawrence Erlbaum. See docs/references.md#cohen-1988

    Examples
    --------
    >>> round(cohens_dz([1.0, 2.0, 3.0, 4.0]), 6)
    1.936492
    """
    x = np.asarray(d, dtype=float).ravel() - mu
    if x.size < 2:
        return float("nan")
    sd = x.std(ddof=1)
    return float(x.mean() / sd) if sd > 0 else float("nan")


def location_effect(d: npt.ArrayLike, test: PairedTest, *, mu: float = 0.0) -> tuple[float, str]:
    """The effect size matching ``test`` and its name.

    >>> location_effect([1.0, -2.0, 3.0], "wilcoxon")
    (0.3333333333333333, 'rank-biserial r')
    """
    if test == "wilcoxon":
        return rank_biserial(d, mu=mu), "rank-biserial r"
    if test == "sign":
        return sign_effect(d, mu=mu), "sign effect (pos-neg)/n"
    return cohens_dz(d, mu=mu), "Cohen's dz"
