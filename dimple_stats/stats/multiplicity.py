"""Adjusting p-values for multiple tests (statsmodels ``multipletests``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from statsmodels.stats.multitest import multipletests

from dimple_stats.stats_config import CORRECTIONS, Correction

__all__ = ["CORRECTIONS", "Correction", "adjust_pvalues"]



def adjust_pvalues(pvalues: npt.ArrayLike, method: Correction = "holm") -> np.ndarray:
    """Adjusted p-values; NaN entries (untested rows) stay NaN and do not count as tests.

    ``holm`` is Holm's step-down (family-wise error), ``fdr_bh`` Benjamini-Hochberg (false
    discovery rate), ``none`` returns the p-values unchanged. The method is always passed to
    statsmodels by name: its default, Holm-Sidak, is not what this project documents.

    Parameters
    ----------
    pvalues : array_like
        Raw p-values; NaN for untested rows.
    method : {"holm", "fdr_bh", "none"}
        The correction.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, NaN where the input is NaN.

    References
    ----------
    .. [1] Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J.
       Stat., 6(2), 65-70. See docs/references.md#holm-1979
    .. [2] Benjamini, Y., & Hochberg, Y. (1995). Controlling the false discovery rate: a practical
       and powerful approach to multiple testing. J. R. Stat. Soc. B, 57(1), 289-300.
       See docs/references.md#benjamini-hochberg-1995

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, np.nan, 0.03], "holm").round(4).tolist()
    [0.03, 0.06, nan, 0.06]
    >>> adjust_pvalues([0.01, 0.04, 0.03], "fdr_bh").round(4).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(pvalues, dtype=float)
    out = p.copy()
    if method == "none":
        return out
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; allowed: {', '.join(CORRECTIONS)}")
    finite = np.isfinite(p)
    if finite.any() and method == "holm":
        out[finite] = _holm(p[finite])
    elif finite.any():
        out[finite] = multipletests(p[finite], method=method)[1]
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, as statsmodels' ``multipletests(method="holm")``.

    Written out because statsmodels' Holm branch calls ``gc.collect()`` on every call: 0.5 s in
    a process that holds torch, paid by every results table (tests/dimple_stats/test_families.py
    checks the two agree).
    """
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(
        np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1)), 1.0)
    return adjusted
