"""Report figures (matplotlib, Agg canvas); no pyplot, so no global state or GUI backend.

* :func:`r_histograms`: r_T against r_R per autoencoder, with the chance density of r
  (r^2 ~ Beta(k/2, (d-k)/2), so f_r(r) = 2 r f_Beta(r^2)).
* :func:`r_nulls_ecdf`: the ECDF of r_T against every control the measurements hold (random
  subspace, random subspace of the data span, top-k principal subspace, another image's
  tangent), with the chance median of r.
* :func:`norm_ratio_ecdf`: the ECDF of log(norm_on / norm_off) per image against its
  dimension-counting distribution, with censored images marked as the bounds they are.
* :func:`forest_plot` (from :mod:`dimple_stats.report.forest`): estimates with CIs per variant.
* :func:`training_curves`: per epoch, the median boundary distance and the median share of the
  perturbation in the tangent space, against chance and the random-subspace control.

Every function returns a :class:`~matplotlib.figure.Figure`; :func:`style.save_figure` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import optimize, stats

from dimple_stats.report.forest import forest_plot
from dimple_stats.report.labels import R_QUANTITIES
from dimple_stats.report.style import new_figure, styled
from dimple_stats.stats.chance import chance_median_r2, chance_params, chance_pdf_r

__all__ = ["r_histograms", "r_nulls_ecdf", "norm_ratio_ecdf", "forest_plot", "training_curves",
           "chance_cdf_log_on_off", "chance_r_median"]

_R_STYLE = {"r_T": ("black", "-", 1.8), "r_R": ("tab:orange", "--", 1.3),
            "r_Rdata": ("tab:green", "-.", 1.3), "r_PCA": ("tab:purple", ":", 1.6),
            "r_Tother": ("tab:blue", (0, (5, 1, 1, 1)), 1.3)}
_SHARE = "share of the perturbation's norm in the subspace,\n||P delta|| / ||delta||"
_LOWER, _UPPER, _NEITHER = "tab:orange", "tab:purple", "0.5"


def _grid(count: int, legend_lines: int, ncols_max: int = 3) -> tuple[Figure, list[Axes]]:
    """One 4.2 x 3.4 inch panel per autoencoder, at most ``ncols_max`` per row, each in its own
    subfigure with room for a legend of ``legend_lines`` lines below it (:func:`_legend_below`).
    """
    count = max(count, 1)
    ncols = min(count, ncols_max)
    nrows = math.ceil(count / ncols)
    fig = new_figure(4.2 * ncols, (3.4 + 0.3 + 0.19 * legend_lines) * nrows)
    subfigures = fig.subfigures(nrows, ncols, squeeze=False).flat
    return fig, [sf.subplots() for sf, _ in zip(subfigures, range(count))]


def _legend_below(ax: Axes) -> None:
    # A subfigure legend "outside" is one constrained layout makes room for; an axes legend
    # anchored below its axes is not (it was cut at the figure's edge).
    holder = ax.figure
    assert holder is not None
    holder.legend(*ax.get_legend_handles_labels(), loc="outside lower center", frameon=False)


def _pairs(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct valid (n, k) of a table and how many rows have each."""
    nk = g[["n", "k"]].to_numpy(float)
    nk = nk[np.isfinite(nk).all(axis=1) & (nk[:, 1] > 0) & (nk[:, 1] < nk[:, 0])]
    if not len(nk):
        return np.empty(0), np.empty(0), np.empty(0)
    pairs, counts = np.unique(nk, axis=0, return_counts=True)
    return pairs[:, 0], pairs[:, 1], counts / counts.sum()


def _nk_words(n: np.ndarray, k: np.ndarray) -> str:
    def span(v: np.ndarray) -> str:
        return f"{v.min():g}" if v.min() == v.max() else f"{v.min():g}-{v.max():g}"

    # d: the dimension (pixels); n is the number of images everywhere in a report.
    return f"d = {span(n)}, k = {span(k)}" if n.size else "d, k unknown"


def _mixture_quantile(cdf: Callable[[np.ndarray], np.ndarray], lo: float, hi: float,
                      q: float = 0.5) -> float:
    """The q-quantile of a continuous CDF on [lo, hi] (a mixture over images' (n, k))."""
    return float(optimize.brentq(lambda x: float(cdf(np.array([x]))[0]) - q, lo, hi))


def chance_r_median(n: npt.ArrayLike, k: npt.ArrayLike, weights: npt.ArrayLike) -> float:
    """Median of r under chance for a mix of (n, k): sqrt of the median of Beta(k/2, (d-k)/2)
    for one pair, the median of the weighted mixture otherwise.

    >>> round(chance_r_median([784], [16], [1.0]), 4)
    0.14
    >>> round(chance_r_median([784, 784], [16, 16], [0.5, 0.5]), 4)  # a mixture of one law
    0.14
    """
    n_, k_, w = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (n, k, weights))
    if n_.size == 1:
        return float(np.sqrt(chance_median_r2(n_[0], k_[0])))
    a, b = chance_params(n_, k_)
    return _mixture_quantile(lambda r: np.array([np.sum(w * stats.beta.cdf(x * x, a, b))
                                                 for x in r]), 0.0, 1.0)


def chance_cdf_log_on_off(x: npt.ArrayLike, n: npt.ArrayLike, k: npt.ArrayLike,
                          weights: npt.ArrayLike | None = None) -> np.ndarray:
    """CDF of log(norm_on / norm_off) under dimension counting.

    For a locally linear classifier whose gradient is unrelated to the tangent space T, the
    minimal on- and off-manifold norms are |m| / ||P_T g|| and |m| / ||P_perp g||, so
    on/off = sqrt((1 - B) / B) with B = r^2 ~ Beta(k/2, (d-k)/2); then
    P(log(on/off) <= x) = P(B >= 1 / (1 + exp(2x))). Several (n, k) mix with ``weights``.

    Examples
    --------
    >>> med = 0.5 * np.log((1 - chance_median_r2(784, 16)) / chance_median_r2(784, 16))
    >>> float(chance_cdf_log_on_off(med, [784], [16]).round(6))
    0.5
    """
    a, b = chance_params(np.atleast_1d(np.asarray(n, dtype=float)),
                         np.atleast_1d(np.asarray(k, dtype=float)))
    w = np.full(a.shape, 1 / a.size) if weights is None else np.asarray(weights, dtype=float)
    xs = np.atleast_1d(np.asarray(x, dtype=float))
    b_at = 1.0 / (1.0 + np.exp(2.0 * xs))
    out = np.sum(w[None, :] * stats.beta.sf(b_at[:, None], a[None, :], b[None, :]), axis=1)
    return out.reshape(np.shape(x))


@styled
def r_histograms(measurements: pd.DataFrame) -> Figure:
    """Histograms of r_T and r_R per autoencoder (all seeds) with the chance density of r."""
    names = sorted(measurements["autoencoder"].unique())
    fig, axes = _grid(len(names), 3)
    for ax, name in zip(axes, names):
        g = measurements[measurements["autoencoder"] == name]
        r_t = g["r_T"].to_numpy(float)
        r_r = g["r_R"].to_numpy(float)
        both = np.concatenate([r_t, r_r])
        both = both[np.isfinite(both)]
        hi = float(min(1.0, both.max() * 1.1)) if both.size else 1.0
        bins = np.linspace(0.0, hi, 31)
        ax.hist(r_t[np.isfinite(r_t)], bins=bins, density=True, alpha=0.55,
                label=f"share in the {R_QUANTITIES['r_T']}")
        ax.hist(r_r[np.isfinite(r_r)], bins=bins, density=True, alpha=0.55,
                label=f"share in a {R_QUANTITIES['r_R']}")
        n, k, w = _pairs(g)
        if n.size:
            grid = np.linspace(0.0, hi, 400)
            density = sum(wi * chance_pdf_r(grid, ni, ki) for ni, ki, wi in zip(n, k, w))
            ax.plot(grid, density, color="black", lw=1.2,
                    label="chance (a random direction): r^2 ~ Beta(k/2, (d-k)/2)")
        ax.set_title(f"{name} ({_nk_words(n, k)}, {len(g)} images)")
        ax.set_xlabel(_SHARE)
        ax.set_ylabel("density")
        _legend_below(ax)
    return fig


@styled
def r_nulls_ecdf(measurements: pd.DataFrame) -> Figure:
    """ECDF of r_T against each control present, one panel per autoencoder (all seeds).

    A control is drawn when its column exists and holds a finite value for the autoencoder.
    The vertical line is the chance median of r, sqrt(median Beta(k/2, (d-k)/2)): where a
    random direction's share sits; "perpendicular" means r_T's curve well left of it.
    """
    names = sorted(measurements["autoencoder"].unique())
    fig, axes = _grid(len(names), 2 + sum(c in measurements for c in R_QUANTITIES))
    for ax, name in zip(axes, names):
        g = measurements[measurements["autoencoder"] == name]
        hi = 0.0
        for col, words in R_QUANTITIES.items():
            values = g[col].to_numpy(float) if col in g else np.empty(0)
            values = values[np.isfinite(values)]
            if not values.size:
                continue
            colour, ls, lw = _R_STYLE[col]
            ax.ecdf(values, color=colour, ls=ls, lw=lw, gid=col,
                    label=f"{words}: median {np.median(values):.3g}")
            hi = max(hi, float(values.max()))
        n, k, w = _pairs(g)
        if n.size:
            med = chance_r_median(n, k, w)
            ax.axvline(med, color="0.4", lw=1.0, ls=(0, (1, 1)), gid="chance",
                       label=f"chance median of r = {med:.3g},\n"
                       "sqrt(median of Beta(k/2, (d-k)/2))")
            hi = max(hi, med)
        ax.set_xlim(0.0, min(1.0, hi * 1.05) if hi > 0 else 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_title(f"{name} ({_nk_words(n, k)}, {len(g)} images)")
        ax.set_xlabel(_SHARE)
        ax.set_ylabel("share of images at or below")
        _legend_below(ax)
    return fig


def _log_on_off_quantile(q: float, n: np.ndarray, k: np.ndarray, w: np.ndarray) -> float:
    """The q-quantile of log(on/off) under dimension counting (exact median for one (n, k))."""
    m = np.asarray(chance_median_r2(n, k), dtype=float)
    medians = 0.5 * np.log((1 - m) / m)
    if q == 0.5 and n.size == 1:
        return float(medians[0])
    # the chance law of log(on/off) has sd ~ 1/sqrt(2k): +-10 around the medians brackets it
    return _mixture_quantile(lambda t: chance_cdf_log_on_off(t, n, k, w), float(medians.min()) - 10,
                             float(medians.max()) + 10, q)


def _rug(ax: Axes, x: np.ndarray, y: float, marker: int, colour: str, label: str) -> None:
    # Drawn when empty too: every panel's legend then says how many of each kind, 0 included.
    ax.plot(x, np.full(x.shape, y), ls="none", marker=marker, ms=5, color=colour, alpha=0.6,
            label=label)


@styled
def norm_ratio_ecdf(measurements: pd.DataFrame) -> Figure:
    """ECDF of log(norm_on / norm_off) per image against its dimension-counting CDF.

    A failed attack's norm is only its budget, so a failed on-manifold attack makes the ratio a
    lower bound (true value to the right: a right-pointing tick below the curve) and a failed
    off-manifold one an upper bound (a left-pointing tick); the legend counts each kind. Without
    censoring the blue curve is the ECDF; with it, a band between the ECDF with every censored
    ratio as small as its interval allows and as large (a bound is never drawn as a value), and
    the legend gives the interval the median lies in. The black curve is the distribution
    dimension counting alone predicts, on/off = sqrt((1-B)/B) with B ~ Beta(k/2, (d-k)/2),
    and the dotted line its median: the claim (dmm.norm_asymmetry) says the ECDF lies right
    of it.
    """
    names = sorted(measurements["autoencoder"].unique())
    fig, axes = _grid(len(names), 7)
    for ax, name in zip(axes, names):
        g = measurements[measurements["autoencoder"] == name]
        ratio = g["norm_on"].to_numpy(float) / g["norm_off"].to_numpy(float)
        ok = np.isfinite(ratio) & (ratio > 0)
        x = np.log(np.where(ok, ratio, 1.0))
        on_ok, off_ok = g["success_on"].to_numpy(bool), g["success_off"].to_numpy(bool)
        lower, upper, neither = ok & ~on_ok & off_ok, ok & on_ok & ~off_ok, ok & ~on_ok & ~off_ok
        if ok.any() and not (lower | upper | neither).any():
            ax.ecdf(x[ok], color="tab:blue", lw=1.6, gid="observed",
                    label=f"images ({int(ok.sum())}), median {np.median(x[ok]):.3g}")
        elif ok.any():
            # A censored ratio is a bound, not a value: draw the two ECDFs between which the
            # true one lies (each censored ratio at the end of its interval), not one curve.
            least = np.where(lower | neither, np.inf, x)[ok]  # every unknown as large as can be
            most = np.where(upper | neither, -np.inf, x)[ok]  # ... and as small as can be
            med_lo, med_hi = np.median(most), np.median(least)
            where = (f"at least {med_lo:.3g}" if not np.isfinite(med_hi) else
                     f"at most {med_hi:.3g}" if not np.isfinite(med_lo) else
                     f"between {med_lo:.3g} and {med_hi:.3g}")
            grid_x = np.sort(np.unique(x[ok]))
            f_high = np.searchsorted(np.sort(most), grid_x, side="right") / ok.sum()
            f_low = np.searchsorted(np.sort(least), grid_x, side="right") / ok.sum()
            ax.fill_between(grid_x, f_low, f_high, step="post", color="tab:blue", alpha=0.25,
                            lw=0, gid="observed bounds",
                            label=f"images ({int(ok.sum())}): the ECDF lies in the band "
                            f"(censored ratios are bounds); median {where}")
            ax.step(grid_x, f_high, where="post", color="tab:blue", lw=1.0, gid="observed high")
            ax.step(grid_x, f_low, where="post", color="tab:blue", lw=1.0, gid="observed low")
        n, k, w = _pairs(g)
        lo, hi = (float(x[ok].min()), float(x[ok].max())) if ok.any() else (0.0, 1.0)
        if n.size:
            med = _log_on_off_quantile(0.5, n, k, w)
            for q in (0.005, 0.995):  # the chance curve whole, even where no image lies
                edge = _log_on_off_quantile(q, n, k, w)
                lo, hi = min(lo, edge), max(hi, edge)
            grid = np.linspace(lo, hi, 400)
            ax.plot(grid, chance_cdf_log_on_off(grid, n, k, w), color="black", lw=1.2,
                    gid="chance", label="dimension counting: on/off = sqrt((1-B)/B),\n"
                    "B ~ Beta(k/2, (d-k)/2)")
            ax.axvline(med, color="black", lw=0.9, ls=(0, (1, 1)), gid="chance median",
                       label=f"its median, log(on/off) = {med:.3g} (on/off = {math.exp(med):.3g})")
        total = int(ok.sum())
        _rug(ax, x[lower], -0.05, 5, _LOWER,  # CARETRIGHT: the true ratio is larger
             f"on-manifold attack failed: lower bound ({int(lower.sum())} of {total})")
        _rug(ax, x[upper], -0.13, 4, _UPPER,  # CARETLEFT: the true ratio is smaller
             f"off-manifold attack failed: upper bound ({int(upper.sum())} of {total})")
        _rug(ax, x[neither], -0.09, "x", _NEITHER,  # type: ignore[arg-type]
             f"both attacks failed: no bound ({int(neither.sum())} of {total})")
        ax.set_ylim(-0.16, 1.02)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_title(f"{name} ({_nk_words(n, k)}, {len(g)} images)")
        ax.set_xlabel("log(on-manifold norm / off-manifold norm) per image")
        ax.set_ylabel("share of images at or below")
        _legend_below(ax)
    return fig


@styled
def training_curves(training: pd.DataFrame) -> Figure:
    """Median boundary distance and median r_T per epoch (one line per seed), with chance.

    The left panel is the boundary distance the claim says falls fast then slowly; the right
    one the share of the perturbation in the tangent space against the chance median of r,
    sqrt(median Beta(k/2, (d-k)/2)), and the median of the random-subspace control r_R measured
    on the same perturbations. One pair of panels per autoencoder when the table has that
    column.
    """
    df = training if "autoencoder" in training else training.assign(autoencoder="")
    names = sorted(df["autoencoder"].unique())
    fig = new_figure(9.0, 3.4 * max(len(names), 1))
    axes = fig.subplots(max(len(names), 1), 2, squeeze=False)
    for (ax_norm, ax_r), name in zip(axes, names):
        g = df[df["autoencoder"] == name]
        for seed, s in g.groupby("seed", sort=True):
            per = s.groupby("epoch", sort=True)
            epochs = np.asarray(list(per.groups), dtype=float)
            line = ax_norm.plot(epochs, per["norm_plain"].median().to_numpy(float), marker="o",
                                ms=3, label=f"seed {seed}")[0]
            ax_r.plot(epochs, per["r_T"].median().to_numpy(float), marker="o", ms=3,
                      color=line.get_color(), label=f"tangent space, seed {seed}")
            ax_r.plot(epochs, per["r_R"].median().to_numpy(float), ls=":", color="grey",
                      label="random subspace (control)" if seed == g["seed"].min() else None)
        n, k, w = _pairs(g)
        if n.size:
            med = chance_r_median(n, k, w)
            ax_r.axhline(med, color="black", lw=1, gid="chance",
                         label=f"chance median of r = {med:.3g}")
        title = f"{name}: " if name else ""
        ax_norm.set_title(f"{title}distance to the decision boundary")
        ax_norm.set_xlabel("training epoch")
        ax_norm.set_ylabel("median norm of the minimal\nunrestricted perturbation")
        ax_r.set_title(f"{title}alignment with the manifold")
        ax_r.set_xlabel("training epoch")
        ax_r.set_ylabel("median share of the perturbation\nin the subspace")
        ax_r.set_ylim(0.0, 1.0)
        ax_norm.legend()
        ax_r.legend()
    return fig
