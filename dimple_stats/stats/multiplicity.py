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
    if finite.any():
        out[finite] = multipletests(p[finite], method=method)[1]
    return out
