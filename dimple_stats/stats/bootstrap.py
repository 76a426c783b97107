"""Seeded bootstrap confidence intervals (scipy.stats.bootstrap)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from dimple_stats.seeds import numpy_rng

__all__ = ["BootstrapEstimate", "median_ci", "stable_rng", "shares_images", "joint_median_covariance",
           "joint_spearman_z_covariance", "resample_counts"]


@dataclass(frozen=True)
class BootstrapEstimate:
    """A point estimate with its bootstrap CI and standard error."""

    estimate: float
    ci_low: float
    ci_high: float
    se: float


def stable_rng(*key: object) -> np.random.Generator:
    """A generator seeded from ``key`` by SHA-256, so the same key gives the same draws in any
    process (Python's ``hash`` of a str is salted per process).

    >>> float(stable_rng("a", 1).random()) == float(stable_rng("a", 1).random())
    True
    """
    return numpy_rng(*key)


def median_ci(x: npt.ArrayLike, *, confidence: float = 0.95, n_resamples: int = 2000,
              rng: np.random.Generator | None = None) -> BootstrapEstimate:
    """Median with a BCa bootstrap CI; percentile when BCa is undefined (e.g. heavy ties).

    A sample of identical values gives the degenerate interval [m, m] and se 0.

    Parameters
    ----------
    x : array_like
        The sample (flattened).
    confidence : float
        Confidence level of the interval.
    n_resamples : int
        Bootstrap resamples.
    rng : numpy.random.Generator, optional
        Source of the resamples; a fixed seeded one when omitted.

    Returns
    -------
    BootstrapEstimate
        ``estimate`` (the sample median), ``ci_low``, ``ci_high`` and ``se`` (the bootstrap
        standard error); all NaN for an empty sample.

    References
    ----------
    .. [1] Efron, B. (1987). Better bootstrap confidence intervals. JASA, 82(397), 171-185.
       See docs/references.md#efron-1987
    .. [2] Efron, B., & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.
       See docs/references.md#efron-tibshirani-1993

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=200)
    >>> e = median_ci(x, rng=np.random.default_rng(1))
    >>> e.ci_low < e.estimate < e.ci_high
    True
    >>> round(e.estimate, 4)
    1.0484
    """
    v = np.asarray(x, dtype=float).ravel()
    if v.size == 0:
        return BootstrapEstimate(math.nan, math.nan, math.nan, math.nan)
    m = float(np.median(v))
    if v.size < 2 or np.ptp(v) == 0:
        return BootstrapEstimate(m, m, m, 0.0 if v.size > 1 else math.nan)
    rng = rng if rng is not None else stable_rng("median_ci")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # BCa on a median can be degenerate; that case is retried with percentile below.
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            res = stats.bootstrap((v,), np.median, n_resamples=n_resamples,
                                  confidence_level=confidence, method=method, vectorized=True,
                                  axis=-1, rng=rng)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return BootstrapEstimate(m, low, high, float(res.standard_error))
    return BootstrapEstimate(m, math.nan, math.nan, float(res.standard_error))


def shares_images(ids: Sequence[npt.ArrayLike]) -> bool:
    """Whether any image id occurs in more than one of the groups (seeds).

    >>> shares_images([[1, 2], [3, 4]]), shares_images([[1, 2], [2, 5]])
    (False, True)
    """
    seen: set[object] = set()
    for group in ids:
        mine = set(np.asarray(group).tolist())
        if seen & mine:
            return True
        seen |= mine
    return False


def resample_counts(size: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicity of each of ``size`` items in ``n_resamples`` draws of ``size`` with
    replacement, shape (n_resamples, size): a bincount of uniform indices, the same law as
    ``rng.multinomial(size, [1/size] * size)`` at a third of its cost (one bincount, not a
    binomial per cell).

    >>> c = resample_counts(5, 3, np.random.default_rng(0))
    >>> c.shape, c.sum(axis=1).tolist()
    ((3, 5), [5, 5, 5])
    """
    flat = rng.integers(0, size, size=(n_resamples, size))
    flat += np.arange(n_resamples)[:, None] * size
    return np.bincount(flat.ravel(), minlength=n_resamples * size).reshape(n_resamples, size)


def joint_median_covariance(values: Sequence[npt.ArrayLike], ids: Sequence[npt.ArrayLike], *,
                            n_resamples: int = 2000,
                            rng: np.random.Generator | None = None) -> np.ndarray:
    """Covariance of the seeds' medians when images are resampled jointly (a cluster bootstrap).

    ``values[s]`` are seed s's per-image values and ``ids[s]`` their image ids. Each resample
    draws images (clusters) with replacement from the union of ids and gives every seed's
    values the multiplicity of its image, so two seeds that measured the same images move
    together, as they do when the evaluation set itself is a sample. The off-diagonal entries
    are what :func:`~dimple_stats.stats.meta.hartung_knapp` needs (seed-to-seed dispersion
    cannot show a component the seeds share). Medians are weighted lower medians.

    Parameters
    ----------
    values : sequence of array_like
        Per-seed values, one array per seed.
    ids : sequence of array_like
        The image id of each value, aligned with ``values``.
    n_resamples : int
        Bootstrap resamples (resamples where a seed drew no image are dropped).
    rng : numpy.random.Generator, optional
        Source of the resamples; a fixed seeded one when omitted.

    Returns
    -------
    numpy.ndarray
        The (seeds x seeds) covariance matrix of the bootstrap medians.

    References
    ----------
    .. [1] Davison, A. C., & Hinkley, D. V. (1997). Bootstrap Methods and their Application.
       Cambridge University Press. See docs/references.md#davison-hinkley-1997

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(size=300)  # an image effect every seed sees
    >>> vals = [img + 0.1 * rng.normal(size=300) for _ in range(3)]
    >>> cov = joint_median_covariance(vals, [np.arange(300)] * 3, n_resamples=500,
    ...                               rng=np.random.default_rng(1))
    >>> bool(cov[0, 1] > 0.5 * cov[0, 0])
    True
    """
    rng = rng if rng is not None else stable_rng("joint_median_covariance")
    vals = [np.asarray(v, dtype=float).ravel() for v in values]
    keys = [np.asarray(i).ravel() for i in ids]
    union, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    counts = resample_counts(union.size, n_resamples, rng)
    medians = np.empty((n_resamples, len(vals)))
    start = 0
    for s, v in enumerate(vals):
        pos = inverse[start:start + v.size]
        start += v.size
        order = np.argsort(v, kind="stable")
        w = counts[:, pos[order]].cumsum(axis=1)
        total = w[:, -1]
        idx = np.argmax(w >= total[:, None] / 2.0, axis=1)
        medians[:, s] = np.where(total > 0, v[order][idx], np.nan)
    medians = medians[np.all(np.isfinite(medians), axis=1)]
    return np.atleast_2d(np.cov(medians, rowvar=False))


def joint_spearman_z_covariance(xs: Sequence[npt.ArrayLike], ys: Sequence[npt.ArrayLike],
                                ids: Sequence[npt.ArrayLike], *, n_resamples: int = 2000,
                                rng: np.random.Generator | None = None) -> np.ndarray:
    """Covariance of the seeds' Fisher-z Spearman correlations under a joint image bootstrap.

    As :func:`joint_median_covariance`, for ``atanh(Spearman rho(x, y))`` per seed: each
    resample draws images with replacement from the union of ids, and every seed's pairs get
    their image's multiplicity, so seeds that measured the same images move together. Each
    seed's pairs are ranked once and a resample's rho is the weighted Pearson correlation of
    those ranks (the ranks are not recomputed per resample: a first-order approximation that
    keeps the bootstrap one matrix product per seed; scipy has no weighted Spearman).

    Parameters
    ----------
    xs, ys : sequence of array_like
        Per-seed paired values, one array per seed.
    ids : sequence of array_like
        The image id of each pair, aligned with ``xs`` and ``ys``.
    n_resamples : int
        Bootstrap resamples (resamples where a seed drew fewer than 3 pairs are dropped).
    rng : numpy.random.Generator, optional
        Source of the resamples; a fixed seeded one when omitted.

    Returns
    -------
    numpy.ndarray
        The (seeds x seeds) covariance matrix of the bootstrap Fisher z values.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(2, 300))
    >>> y = 0.5 * x + y  # every seed measures the same images
    >>> xs = [x + 0.05 * rng.normal(size=300) for _ in range(3)]
    >>> cov = joint_spearman_z_covariance(xs, [y] * 3, [np.arange(300)] * 3, n_resamples=500)
    >>> bool(cov[0, 1] > 0.8 * cov[0, 0]) and bool(abs(cov[0, 0] * 297 - 1.06) < 0.3)
    True
    """
    from scipy.stats import rankdata

    rng = rng if rng is not None else stable_rng("joint_spearman_z_covariance")
    keys = [np.asarray(i).ravel() for i in ids]
    union, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    counts = resample_counts(union.size, n_resamples, rng).astype(float)
    z = np.empty((n_resamples, len(keys)))
    start = 0
    for s, (x, y) in enumerate(zip(xs, ys)):
        rx = rankdata(np.asarray(x, dtype=float).ravel())
        ry = rankdata(np.asarray(y, dtype=float).ravel())
        w = counts[:, inverse[start:start + rx.size]]
        start += rx.size
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mx, my = (w @ rx) / total, (w @ ry) / total
            cxy = (w @ (rx * ry)) / total - mx * my
            vx = (w @ (rx * rx)) / total - mx * mx
            vy = (w @ (ry * ry)) / total - my * my
            rho = np.clip(cxy / np.sqrt(vx * vy), -0.999999, 0.999999)
        z[:, s] = np.where(total >= 3, np.arctanh(rho), np.nan)
    z = z[np.all(np.isfinite(z), axis=1)]
    return np.atleast_2d(np.cov(z, rowvar=False))
