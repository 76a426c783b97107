"""What "chance" means for r = ||P_S v|| / ||v||: S a uniformly random k-dim subspace of R^n.

For a fixed direction v and a uniformly random k-dim subspace (equivalently a uniformly random
direction and a fixed subspace), r^2 ~ Beta(k/2, (n-k)/2), with mean k/n.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["chance_params", "chance_cdf_r2", "chance_median_r2", "chance_pdf_r"]


def chance_params(n: npt.ArrayLike, k: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Beta parameters (k/2, (n-k)/2) of r^2 under chance.

    >>> [float(v) for v in chance_params(784, 16)]
    [8.0, 384.0]
    """
    n_, k_ = np.asarray(n, dtype=float), np.asarray(k, dtype=float)
    if np.any(k_ <= 0) or np.any(k_ >= n_):
        raise ValueError("need 0 < k < n")
    return k_ / 2, (n_ - k_) / 2


def chance_cdf_r2(r2: npt.ArrayLike, n: npt.ArrayLike, k: npt.ArrayLike) -> np.ndarray:
    """P(R^2 <= r2) under chance: the probability integral transform of r^2.

    Uniform on (0, 1) when r^2 is at chance, so ``chance_cdf_r2(r_T**2, n, k) - 0.5`` is symmetric
    about 0 under the null, which is what a signed-rank test needs.

    Parameters
    ----------
    r2 : array_like
        Squared ratios r^2 = ||P_S v||^2 / ||v||^2.
    n, k : array_like
        Input dimension and subspace dimension, 0 < k < n (broadcast with ``r2``).

    Returns
    -------
    numpy.ndarray
        F_Beta(r2; k/2, (n-k)/2).

    Notes
    -----
    A uniformly random unit vector is X / ||X|| with X ~ N(0, I_n); by rotation invariance take S
    the first k coordinates, so r^2 = (X_1^2 + ... + X_k^2) / (X_1^2 + ... + X_n^2), a ratio
    chi2_k / (chi2_k + chi2_(n-k)) of independent parts, i.e. Beta(k/2, (n-k)/2) [1]_ [2]_.

    References
    ----------
    .. [1] Dasgupta, S., & Gupta, A. (2003). An elementary proof of a theorem of Johnson and
       Lindenstrauss. Random Structures & Algorithms, 22(1), 60-65.
       See docs/references.md#dasgupta-gupta-2003
    .. [2] Frankl, P., & Maehara, H. (1990). Some geometric applications of the beta distribution.
       Ann. Inst. Stat. Math., 42(3), 463-474. See docs/references.md#frankl-maehara-1990

    Examples
    --------
    >>> float(chance_cdf_r2(16 / 784, 784, 16).round(4))
    0.5456
    """
    a, b = chance_params(n, k)
    return np.asarray(stats.beta.cdf(np.asarray(r2, dtype=float), a, b))


def chance_median_r2(n: npt.ArrayLike, k: npt.ArrayLike) -> np.ndarray:
    """Median of r^2 under chance, the median of Beta(k/2, (n-k)/2).

    Chance is a distribution, not its mean: the median of r^2 lies below k/n (the Beta is
    right-skewed), so "r / sqrt(k/n) = 1" is not where a chance direction's median sits (it is
    at 0.980 for n = 784, k = 16). Every monotone function of r^2 (r, on/off norm ratios) has its
    chance median at the same quantile, so normalising by this keeps "1 = chance" exact.

    Parameters
    ----------
    n, k : array_like
        Input dimension and subspace dimension, 0 < k < n.

    Returns
    -------
    numpy.ndarray
        The median of Beta(k/2, (n-k)/2).

    References
    ----------
    .. [1] Dasgupta, S., & Gupta, A. (2003). An elementary proof of a theorem of Johnson and
       Lindenstrauss. Random Structures & Algorithms, 22(1), 60-65.
       See docs/references.md#dasgupta-gupta-2003
    .. [2] Frankl, P., & Maehara, H. (1990). Some geometric applications of the beta distribution.
       Ann. Inst. Stat. Math., 42(3), 463-474. See docs/references.md#frankl-maehara-1990

    Examples
    --------
    >>> round(float(chance_median_r2(784, 16)) / (16 / 784), 4)
    0.9603
    """
    a, b = chance_params(n, k)
    return np.asarray(stats.beta.median(a, b))


def chance_pdf_r(r: npt.ArrayLike, n: float, k: float) -> np.ndarray:
    """Density of r = sqrt(r^2) under chance: f_r(r) = 2 r f_Beta(r^2; k/2, (n-k)/2).

    >>> from scipy.integrate import quad
    >>> round(quad(lambda t: float(chance_pdf_r(t, 64, 8)), 0, 1)[0], 6)
    1.0
    """
    a, b = chance_params(n, k)
    x = np.asarray(r, dtype=float)
    return np.asarray(2 * x * stats.beta.pdf(x**2, a, b))
