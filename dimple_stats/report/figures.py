"""Report figures (matplotlib, Agg canvas, PNG); no pyplot, so no global state or GUI backend.

* :func:`r_histograms`: r_T against r_R per autoencoder, with the chance density of r
  (r^2 ~ Beta(k/2, (n-k)/2), so f_r(r) = 2 r f_Beta(r^2)).
* :func:`norm_ratio_plot`: norm_on / norm_off per sample against the dimension-counting
  prediction sqrt((n-k)/k), on log axes with the line y = x.
* :func:`forest_plot`: per-seed estimates with CIs and the pooled estimate, one panel per variant.
* :func:`training_curves`: per epoch, median boundary distance (norm_plain) and median r_T with
  the chance level sqrt(k/n) and the random-subspace control r_R (dmm.clinging_then_dimpling).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from dimple_stats.results import POOLED
from dimple_stats.stats.chance import chance_pdf_r

__all__ = ["r_histograms", "norm_ratio_plot", "forest_plot", "training_curves"]

def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def r_histograms(measurements: pd.DataFrame) -> Figure:
    """Histograms of r_T and r_R per autoencoder (all seeds) with the chance density of r."""
    names = sorted(measurements["autoencoder"].unique())
    fig = _figure(4.2 * max(len(names), 1), 3.4)
    axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
    for ax, name in zip(axes, names):
        g = measurements[measurements["autoencoder"] == name]
        r_t = g["r_T"].to_numpy(float)
        r_r = g["r_R"].to_numpy(float)
        both = np.concatenate([r_t, r_r])
        both = both[np.isfinite(both)]
        hi = float(min(1.0, both.max() * 1.1)) if both.size else 1.0
        bins = np.linspace(0.0, hi, 31)
        ax.hist(r_t[np.isfinite(r_t)], bins=bins, density=True, alpha=0.55, label="r_T (tangent)")
        ax.hist(r_r[np.isfinite(r_r)], bins=bins, density=True, alpha=0.55,
                label="r_R (random subspace)")
        n, k = float(np.median(g["n"])), float(np.median(g["k"]))
        if 0 < k < n:
            grid = np.linspace(0.0, hi, 400)
            ax.plot(grid, chance_pdf_r(grid, n, k), color="black", lw=1.2,
                    label="chance: r^2 ~ Beta(k/2, (n-k)/2)")
        ax.set_title(f"{name} (n = {n:g}, k = {k:g})", fontsize=9)
        ax.set_xlabel("||P v|| / ||v||")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    return fig


def norm_ratio_plot(measurements: pd.DataFrame) -> Figure:
    """norm_on / norm_off against sqrt((n-k)/k); hollow markers where either attack failed."""
    fig = _figure(5.0, 4.0)
    ax = fig.subplots()
    lo, hi = math.inf, -math.inf
    for name, g in measurements.groupby("autoencoder", sort=True):
        n, k = g["n"].to_numpy(float), g["k"].to_numpy(float)
        x = np.sqrt((n - k) / k)
        y = g["norm_on"].to_numpy(float) / g["norm_off"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        cens = ~(g["success_on"].to_numpy(bool) & g["success_off"].to_numpy(bool))
        pts = ax.scatter(x[ok & ~cens], y[ok & ~cens], s=12, alpha=0.6, label=str(name))
        if (ok & cens).any():
            ax.scatter(x[ok & cens], y[ok & cens], s=12, facecolors="none",
                       edgecolors=pts.get_facecolor()[0], label=f"{name} (censored)")
        if ok.any():
            lo, hi = min(lo, x[ok].min(), y[ok].min()), max(hi, x[ok].max(), y[ok].max())
    if math.isfinite(lo):
        line = np.array([lo / 1.5, hi * 1.5])
        ax.plot(line, line, color="black", lw=1, label="dimension counting: sqrt((n-k)/k)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1-2-5 steps, not 2x10^0
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("sqrt((n - k) / k)")
    ax.set_ylabel("norm_on / norm_off")
    ax.legend(fontsize=7)
    return fig


def forest_plot(results: pd.DataFrame, claim: str) -> Figure:
    """Per-seed estimates with CIs and the pooled estimate (diamond), one panel per variant."""
    rows = results[(results["claim"] == claim) & np.isfinite(results["estimate"].astype(float))]
    variants = list(dict.fromkeys(rows["variant"]))
    heights = [max(len(rows[rows["variant"] == v]), 1) for v in variants] or [1]
    fig = _figure(6.5, 1.0 + 0.28 * sum(heights) + 0.5 * len(heights))
    axes = fig.subplots(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, variant in zip(axes, variants):
        v = rows[rows["variant"] == variant]
        ypos = np.arange(len(v))[::-1]
        labels = [f"{a} / {'pooled' if s == POOLED else f'seed {s}'}"
                  for a, s in zip(v["autoencoder"], v["seed"])]
        est = v["estimate"].to_numpy(float)
        lo = v["ci_low"].to_numpy(float)
        hi = v["ci_high"].to_numpy(float)
        pooled = (v["seed"] == POOLED).to_numpy()
        err = np.vstack([np.where(np.isfinite(lo), est - lo, 0),
                         np.where(np.isfinite(hi), hi - est, 0)])
        ax.errorbar(est[~pooled], ypos[~pooled], xerr=err[:, ~pooled], fmt="o", ms=4,
                    color="tab:blue", capsize=2)
        ax.errorbar(est[pooled], ypos[pooled], xerr=err[:, pooled], fmt="D", ms=7,
                    color="tab:red", capsize=3)
        nulls = v["null_value"].to_numpy(float) if "null_value" in v else np.array([])
        nulls = nulls[np.isfinite(nulls)]
        if nulls.size:  # the estimate's value under H0, from the results table
            ax.axvline(float(nulls[0]), color="grey", lw=0.8, ls="--")
        ax.set_yticks(ypos, labels, fontsize=7)
        ax.set_title(f"{claim}: {variant}", fontsize=9)
        meaning = str(v["estimate_meaning"].iloc[0])
        ax.set_xlabel(meaning if len(meaning) < 90 else meaning[:87] + "...", fontsize=7)
    return fig


def training_curves(training: pd.DataFrame) -> Figure:
    """Median norm_plain and median r_T per epoch (one line per seed), with chance.

    The left panel is the boundary distance the claim says falls fast then slowly; the right
    one r_T against chance, sqrt(k/n) (the root of E[r^2] = k/n for a random direction), and
    the median r_R of the random-subspace control measured on the same perturbations. One pair
    of panels per autoencoder when the table has that column.
    """
    df = training if "autoencoder" in training else training.assign(autoencoder="")
    names = sorted(df["autoencoder"].unique())
    fig = _figure(9.0, 3.2 * max(len(names), 1))
    axes = fig.subplots(max(len(names), 1), 2, squeeze=False)
    for (ax_norm, ax_r), name in zip(axes, names):
        g = df[df["autoencoder"] == name]
        for seed, s in g.groupby("seed", sort=True):
            per = s.groupby("epoch", sort=True)
            epochs = np.asarray(list(per.groups), dtype=float)
            ax_norm.plot(epochs, per["norm_plain"].median().to_numpy(float), marker="o", ms=3,
                         label=f"seed {seed}")
            ax_r.plot(epochs, per["r_T"].median().to_numpy(float), marker="o", ms=3,
                      label=f"r_T, seed {seed}")
            ax_r.plot(epochs, per["r_R"].median().to_numpy(float), ls=":", color="grey",
                      label="r_R (random subspace)" if seed == g["seed"].min() else None)
        n, k = float(np.median(g["n"])), float(np.median(g["k"]))
        if 0 < k < n:
            ax_r.axhline(math.sqrt(k / n), color="black", lw=1,
                         label=f"chance sqrt(k/n) = {math.sqrt(k / n):.3g}")
        title = f"{name}: " if name else ""
        ax_norm.set_title(f"{title}boundary distance", fontsize=9)
        ax_norm.set_xlabel("epoch")
        ax_norm.set_ylabel("median norm_plain")
        ax_r.set_title(f"{title}alignment with the manifold", fontsize=9)
        ax_r.set_xlabel("epoch")
        ax_r.set_ylabel("median ||P_T d|| / ||d||")
        ax_r.set_ylim(0.0, 1.0)
        ax_norm.legend(fontsize=7)
        ax_r.legend(fontsize=7)
    return fig
