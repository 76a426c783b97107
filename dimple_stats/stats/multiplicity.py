"""Adjusting p-values for multiple tests (statsmodels ``multipletests``)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from statsmodels.stats.multitest import multipletests

__all__ = ["Correction", "adjust_pvalues"]

Correction = Literal["holm", "fdr_bh", "none"]


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
    if method not in ("holm", "fdr_bh"):
        raise ValueError(f"unknown correction {method!r}; allowed: holm, fdr_bh, none")
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method=method)[1]
    return out
