"""A change of slope in a trend: continuous two-segment (hinge) regression.

Model: y = a + b e + c (e - tau)_+ with the change point tau chosen among the observed epochs by
least squares (for each candidate the model is linear, so the search is exact). Against one line
(c = 0) the F statistic is

    F = ((RSS_line - RSS_two) / 2) / (RSS_two / (m - 4)),

counting tau as a fitted parameter (two extra parameters, c and tau; four in all).

Because tau is chosen to maximise F and is not identified under H0 (Davies 1987), F does not
follow F(2, m - 4) exactly. Measured at alpha = 0.05 on straight lines of 12 epochs: with iid
normal noise the F table rejected 5.5% and the bootstrap below 4.75%; with the heteroscedastic
noise of per-epoch medians of multiplicative per-sample noise, 10.5% against 7.3%.
:func:`sup_f_pvalue` therefore calibrates the same
statistic by a residual bootstrap under the fitted single line (the sup-F approach of Hansen
1996): residuals of the line, rescaled by sqrt(m / (m - 2)), are resampled onto the fitted line
and the whole search is repeated. The F-table p-value is still returned (``pvalue_f_table``).
The change point's CI comes from a paired bootstrap of samples (the same samples are measured at
every epoch, so sample ids are resampled jointly across epochs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["TwoSegmentFit", "candidate_change_points", "fit_two_segment", "sup_f_pvalue",
           "change_point_ci"]


@dataclass(frozen=True)
class TwoSegmentFit:
    """Least-squares hinge fit and its F-test against a single line."""

    change_point: float
    slope_before: float
    slope_after: float
    rss_line: float
    rss_two: float
    f_statistic: float
    pvalue: float
    df: tuple[int, int]


def candidate_change_points(epochs: npt.ArrayLike) -> np.ndarray:
    """Epochs that leave at least two epochs on each side (<= tau and > tau).

    >>> candidate_change_points([0, 1, 2, 3, 4, 5]).tolist()
    [1, 2, 3]
    """
    e = np.asarray(epochs)
    return e[1:-2] if e.size >= 4 else e[:0]


def _residual_makers(epochs: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    e = epochs.astype(float)
    eye = np.eye(e.size)
    out = np.empty((candidates.size, e.size, e.size))
    for i, tau in enumerate(candidates.astype(float)):
        x = np.column_stack([np.ones_like(e), e, np.maximum(e - tau, 0.0)])
        out[i] = eye - x @ np.linalg.pinv(x)
    return out


def _rss(y: np.ndarray, makers: np.ndarray) -> np.ndarray:
    # y (..., m), makers (T, m, m) -> RSS (..., T); residual makers are symmetric idempotent.
    r = np.einsum("tij,...j->...ti", makers, y)
    return np.einsum("...ti,...ti->...t", r, r)


def fit_two_segment(epochs: npt.ArrayLike, y: npt.ArrayLike) -> TwoSegmentFit:
    """Fit one line and the best hinge; F-test the change of slope.

    Examples
    --------
    >>> e = np.arange(12)
    >>> y = np.where(e < 4, 10 - 2.0 * e, 2 - 0.1 * (e - 4)) + [0.1, -0.1] * 6
    >>> fit = fit_two_segment(e, y)
    >>> fit.change_point, round(fit.slope_before, 2), round(fit.slope_after, 2), fit.pvalue < 1e-6
    (4.0, -2.01, -0.1, True)
    """
    e = np.asarray(epochs, dtype=float).ravel()
    v = np.asarray(y, dtype=float).ravel()
    order = np.argsort(e)
    e, v = e[order], v[order]
    m = e.size
    nan = math.nan
    if m < 5 or np.unique(e).size != m:
        return TwoSegmentFit(nan, nan, nan, nan, nan, nan, nan, (2, max(m - 4, 0)))
    line = np.column_stack([np.ones(m), e])
    rss_line = float(np.sum((v - line @ np.linalg.lstsq(line, v, rcond=None)[0]) ** 2))
    cands = candidate_change_points(e)
    rss = _rss(v, _residual_makers(e, cands))
    best = int(np.argmin(rss))
    tau = float(cands[best])
    x = np.column_stack([np.ones(m), e, np.maximum(e - tau, 0.0)])
    coef = np.linalg.lstsq(x, v, rcond=None)[0]
    rss_two = float(rss[best])
    df2 = m - 4
    if rss_two <= 0:
        f, p = (math.inf, 0.0) if rss_line > 0 else (nan, nan)
    else:
        f = max((rss_line - rss_two) / 2, 0.0) / (rss_two / df2)
        p = float(stats.f.sf(f, 2, df2))
    return TwoSegmentFit(tau, float(coef[1]), float(coef[1] + coef[2]), rss_line, rss_two,
                         float(f), p, (2, df2))


def _line_maker(epochs: np.ndarray) -> np.ndarray:
    x = np.column_stack([np.ones_like(epochs), epochs])
    return np.eye(epochs.size) - x @ np.linalg.pinv(x)


def sup_f_pvalue(epochs: npt.ArrayLike, y: npt.ArrayLike, *, n_resamples: int = 2000,
                 rng: np.random.Generator | None = None) -> float:
    """Residual-bootstrap p-value of the two-segment F statistic under one line (see module).

    Returns ``(1 + #{F* >= F}) / (n_resamples + 1)``; NaN when the fit is undefined.

    >>> e = np.arange(12)
    >>> y = np.where(e < 4, 10 - 2.0 * e, 2 - 0.1 * (e - 4)) + [0.1, -0.1] * 6
    >>> sup_f_pvalue(e, y, n_resamples=999, rng=np.random.default_rng(0))
    0.001
    """
    e = np.asarray(epochs, dtype=float).ravel()
    v = np.asarray(y, dtype=float).ravel()
    order = np.argsort(e)
    e, v = e[order], v[order]
    observed = fit_two_segment(e, v).f_statistic
    if not math.isfinite(observed):
        return math.nan if math.isnan(observed) else 1 / (n_resamples + 1)
    m = e.size
    line = _line_maker(e)
    resid = line @ v
    fitted = v - resid
    scaled = resid * math.sqrt(m / (m - 2))
    rng = rng if rng is not None else np.random.default_rng(0)
    star = fitted + rng.choice(scaled, size=(n_resamples, m), replace=True)
    rss_line = np.einsum("ij,bj->bi", line, star)
    rss_line = np.einsum("bi,bi->b", rss_line, rss_line)
    rss_two = _rss(star, _residual_makers(e, candidate_change_points(e))).min(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_star = np.maximum(rss_line - rss_two, 0) / 2 / (rss_two / (m - 4))
    return float((1 + np.sum(f_star >= observed)) / (n_resamples + 1))


def change_point_ci(epochs: npt.ArrayLike, values: npt.ArrayLike, *, confidence: float = 0.95,
                    n_resamples: int = 2000,
                    rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Percentile bootstrap CI of the change point of per-epoch medians.

    ``values`` is an (epochs x samples) matrix (NaN where a sample is missing at an epoch);
    samples are resampled jointly across epochs (``scipy.stats.bootstrap(paired=True)``) and the
    per-epoch medians refitted. The change point is discrete, so the CI is percentile, not BCa.
    Returns ``(ci_low, ci_high, se)``.

    >>> e = np.arange(10)
    >>> truth = np.where(e < 4, 10 - 2.0 * e, 2 - 0.1 * (e - 4))
    >>> vals = truth[:, None] + np.random.default_rng(0).normal(0, 0.3, size=(10, 60))
    >>> lo, hi, se = change_point_ci(e, vals, n_resamples=200, rng=np.random.default_rng(1))
    >>> lo <= 4 <= hi
    True
    """
    e = np.asarray(epochs, dtype=float).ravel()
    mat = np.asarray(values, dtype=float)
    cands = candidate_change_points(e)
    if cands.size == 0 or mat.shape[1] < 2:
        return math.nan, math.nan, math.nan
    makers = _residual_makers(e, cands)

    def statistic(*rows: np.ndarray, axis: int = -1) -> np.ndarray:
        med = np.stack([np.nanmedian(r, axis=axis) for r in rows], axis=-1)
        return cands[np.argmin(_rss(med, makers), axis=-1)].astype(float)

    res = stats.bootstrap(tuple(mat), statistic, paired=True, vectorized=True, axis=-1,
                          n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", batch=250, rng=rng)
    return (float(res.confidence_interval.low), float(res.confidence_interval.high),
            float(res.standard_error))
