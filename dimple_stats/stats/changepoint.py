"""A change of slope in a trend: continuous two-segment (hinge) regression.

Model: y = a + b e + c (e - tau)_+ with the change point tau chosen among the observed epochs by
least squares (for each candidate the model is linear, so the search is exact). Against one line
(c = 0) the F statistic is

    F = ((RSS_line - RSS_two) / 2) / (RSS_two / (m - 4)),

counting tau as a fitted parameter (two extra parameters, c and tau; four in all).

Because tau is chosen to maximise F and is not identified under H0 (Davies 1987), F does not
follow F(2, m - 4); and a straight line is the wrong null for "fast, then slow": every smooth
convex decay bends away from it. :func:`kink_test` is the test the claims use: a smooth
exponential decay (scale profiled) against the same plus a hinge, its p-value by resampling
samples around the smooth fit. The F-table p of :func:`fit_two_segment` is kept for reference.
The change point's CI comes from a paired bootstrap of samples (the same samples are measured at
every epoch, so sample ids are resampled jointly across epochs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["TwoSegmentFit", "candidate_change_points", "fit_two_segment", "change_point_ci",
           "KinkTest", "kink_test"]


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

    Parameters
    ----------
    epochs : array_like
        Distinct x values (at least 5); sorted here.
    y : array_like
        One value per epoch.

    Returns
    -------
    TwoSegmentFit
        ``change_point`` (tau), ``slope_before``, ``slope_after``, ``rss_line``, ``rss_two``,
        ``f_statistic``, ``pvalue`` (from F(2, m - 4), for reference only: see the module) and
        ``df``; NaN fields when there are too few or repeated epochs.

    References
    ----------
    .. [1] Hinkley, D. V. (1971). Inference in two-phase regression. JASA, 66(336), 736-743.
       See docs/references.md#hinkley-1971
    .. [2] Davies, R. B. (1987). Hypothesis testing when a nuisance parameter is present only under
       the alternative. Biometrika, 74(1), 33-43. See docs/references.md#davies-1987

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


def change_point_ci(epochs: npt.ArrayLike, values: npt.ArrayLike, *, confidence: float = 0.95,
                    n_resamples: int = 2000,
                    rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Percentile bootstrap CI of the change point of per-epoch medians.

    ``values`` is an (epochs x samples) matrix (NaN where a sample is missing at an epoch);
    samples are resampled jointly across epochs (``scipy.stats.bootstrap(paired=True)``) and the
    per-epoch medians refitted. The change point is discrete, so the CI is percentile, not BCa.
    Returns ``(ci_low, ci_high, se)``.

    Parameters
    ----------
    epochs : array_like
        One x value per row of ``values``.
    values : array_like
        The (epochs x samples) matrix.
    confidence : float
        Confidence level of the interval.
    n_resamples : int
        Bootstrap resamples.
    rng : numpy.random.Generator, optional
        Source of the resamples.

    Returns
    -------
    ci_low, ci_high, se : float
        The percentile interval of the change point and its bootstrap standard error (NaN when
        no change point can be fitted).

    References
    ----------
    .. [1] Efron, B., & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.
       See docs/references.md#efron-tibshirani-1993
    .. [2] Davison, A. C., & Hinkley, D. V. (1997). Bootstrap Methods and their Application.
       Cambridge University Press. See docs/references.md#davison-hinkley-1997

    Examples
    --------
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


# --- a kink beyond a smooth decay ---------------------------------------------------------------

#: Time scales of the smooth null's exponential decay, as multiples of the epoch span (a long
#: scale is a straight line; the grid is profiled like the change point).
_SCALES = np.geomspace(0.05, 20.0, 200)


@dataclass(frozen=True)
class KinkTest:
    """Does a kink (change of slope at tau) improve a smooth exponential decay?

    ``f_statistic`` compares the smooth null ``a + b exp(-e / s)`` (s profiled) with the same
    plus a hinge ``c (e - tau)_+`` (tau profiled); ``pvalue`` is its sample-bootstrap p-value.
    """

    change_point: float
    f_statistic: float
    pvalue: float
    df: tuple[int, int]


def _smooth_designs(e: np.ndarray) -> list[np.ndarray]:
    span = float(e.max() - e.min()) or 1.0
    z = (e - e.min()) / span
    designs = [np.column_stack([np.ones_like(z), z])]  # the straight line (s -> infinity)
    designs += [np.column_stack([np.ones_like(z), np.exp(-z / s)]) for s in _SCALES]
    return designs


def _makers(designs: list[np.ndarray]) -> np.ndarray:
    eye = np.eye(designs[0].shape[0])
    return np.stack([eye - x @ np.linalg.pinv(x) for x in designs])


def kink_test(epochs: npt.ArrayLike, values: npt.ArrayLike, *, n_resamples: int = 2000,
              rng: np.random.Generator | None = None) -> KinkTest:
    """A kink in the per-epoch medians beyond a smooth decay, with a bootstrap over samples.

    ``values`` is the (epochs x samples) matrix of per-sample values (the same samples at every
    epoch). The statistic is F = ((RSS_smooth - RSS_kink) / 2) / (RSS_kink / (m - 5)) on the
    per-epoch medians, each RSS minimised over its nuisance parameters (the decay scale s; s and
    the change point tau). Why not one straight line as the null: any smooth convex decay bends
    away from a line, so "no change point" was rejected by curves with no change point at all.

    The null distribution keeps the dependence across epochs: samples (whole trajectories) are
    resampled, their per-epoch medians' deviations from the observed medians are added to the
    smooth fit, and the whole search is repeated (the residual bootstrap it replaces treated the
    medians of the same samples at different epochs as exchangeable noise). p = (1 + #{F* >=
    F}) / (B + 1).

    Parameters
    ----------
    epochs : array_like
        One x value per row of ``values`` (at least 6).
    values : array_like
        The (epochs x samples) matrix.
    n_resamples : int
        Bootstrap resamples (B).
    rng : numpy.random.Generator, optional
        Source of the resamples; ``default_rng(0)`` when omitted.

    Returns
    -------
    KinkTest
        ``change_point`` (the best tau), ``f_statistic``, ``pvalue`` (bootstrap) and ``df``
        (2, m - 5); NaN fields when there are too few epochs or samples.

    References
    ----------
    .. [1] Davies, R. B. (1987). Hypothesis testing when a nuisance parameter is present only under
       the alternative. Biometrika, 74(1), 33-43. See docs/references.md#davies-1987
    .. [2] Hinkley, D. V. (1971). Inference in two-phase regression. JASA, 66(336), 736-743.
       See docs/references.md#hinkley-1971
    .. [3] Davison, A. C., & Hinkley, D. V. (1997). Bootstrap Methods and their Application.
       Cambridge University Press. See docs/references.md#davison-hinkley-1997

    Examples
    --------
    >>> e = np.arange(12)
    >>> rng = np.random.default_rng(1)
    >>> noise = np.exp(rng.normal(0, 0.05, (12, 80)))  # 80 samples, the same at every epoch
    >>> decay = (2 + 3 * np.exp(-e / 3.0))[:, None] * noise  # smooth: no kink
    >>> round(kink_test(e, decay, n_resamples=200, rng=np.random.default_rng(1)).pvalue, 2)
    0.63
    >>> kinked = np.where(e < 4, 10 - 2.0 * e, 2 - 0.1 * (e - 4))[:, None] * noise
    >>> r = kink_test(e, kinked, n_resamples=200, rng=np.random.default_rng(1))
    >>> r.change_point, r.pvalue < 0.01
    (4.0, True)
    """
    e = np.asarray(epochs, dtype=float).ravel()
    mat = np.asarray(values, dtype=float)
    order = np.argsort(e)
    e, mat = e[order], mat[order]
    m = e.size
    nan = math.nan
    cands = candidate_change_points(e)
    if m < 6 or cands.size == 0 or mat.shape[1] < 2:
        return KinkTest(nan, nan, nan, (2, max(m - 5, 0)))
    smooth = _smooth_designs(e)
    null_makers = _makers(smooth)
    kink_designs = [np.column_stack([x, np.maximum(e - t, 0.0)]) for x in smooth for t in cands]
    kink_makers = _makers(kink_designs)

    def f_stat(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rss0 = _rss(y, null_makers).min(axis=-1)
        rss1_all = _rss(y, kink_makers)
        rss1 = rss1_all.min(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.maximum(rss0 - rss1, 0.0) / 2 / (rss1 / (m - 5))
        return f, rss1_all.argmin(axis=-1) % cands.size

    med = np.nanmedian(mat, axis=1)
    f_obs, best = f_stat(med)
    rss0 = _rss(med, null_makers)
    fitted = med - np.einsum("ij,j->i", null_makers[int(np.argmin(rss0))], med)
    rng = rng if rng is not None else np.random.default_rng(0)
    cols = rng.integers(0, mat.shape[1], size=(n_resamples, mat.shape[1]))
    star_med = np.nanmedian(mat[:, cols], axis=2).T  # (B, m)
    f_star, _ = f_stat(fitted + (star_med - med))
    f_obs_v = float(f_obs)
    if not math.isfinite(f_obs_v):
        p = 1 / (n_resamples + 1) if f_obs_v == math.inf else nan
    else:
        p = float((1 + np.sum(f_star >= f_obs_v)) / (n_resamples + 1))
    return KinkTest(float(cands[int(best)]), f_obs_v, p, (2, m - 5))
