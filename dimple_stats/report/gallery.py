"""The example-gallery figure: what the numbers of one autoencoder mean on real images.

One row per image of :mod:`dimple_stats.gallery` (the first seed's, in r_T order), eight
panels per row: ``x``, ``D(E(x))``, ``x + d``, ``x + d_on``, ``x + d_off`` as images, then
``d``, ``d_on``, ``d_off`` as signed heat maps. Images use the data's pixel range as the display
range, so values outside it (a reconstruction that overshoots, an ``x + d`` the feasible set did
not clip) are shown clipped to it. Heat maps share one symmetric colour scale per figure, so
their colours compare across rows and modes; for RGB they show the mean over the channels.
Norms are the attack's (``attack.norm``: L2 or Linf). A failed (censored) attack keeps its
panels, titled ``FAILED`` in red with a red frame: its perturbation is the last iterate, and
its norm the budget it was censored at (``>= eps``).

Data that is not an image (a flat vector, more than 3 channels) gets no figure; see
:func:`dimple_stats.gallery.drawable`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dimple_stats.gallery import image

__all__ = ["gallery_figure"]

_FAILED = "tab:red"
_MODES = (("plain", "d", "r_T"), ("on", "d_on", "in_T_on"), ("off", "d_off", "in_T_off"))


def _show_image(ax: Axes, img: np.ndarray, lo: float, hi: float) -> None:
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    else:
        ax.imshow(np.clip((img.transpose(1, 2, 0) - lo) / (hi - lo), 0.0, 1.0),
                  interpolation="nearest")


def _bare(ax: Axes, title: str, *, failed: bool = False) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=6, color=_FAILED if failed else "black")
    if failed:
        for spine in ax.spines.values():
            spine.set_color(_FAILED)
            spine.set_linewidth(2.0)


def _heat(row: pd.Series, column: str) -> np.ndarray:
    return image(row, column).mean(axis=0)


def gallery_figure(gallery: pd.DataFrame, autoencoder: str, *, seed: int | None = None
                   ) -> Figure:
    """The gallery of one autoencoder (one seed) as a figure.

    Parameters
    ----------
    gallery : pandas.DataFrame
        A gallery table (:func:`dimple_stats.gallery.read_gallery`) with image-shaped rows
        (:func:`dimple_stats.gallery.drawable`) for ``autoencoder``.
    autoencoder : str
        Whose rows to draw.
    seed : int or None
        Which seed's rows; the smallest seed in the table by default.

    Returns
    -------
    matplotlib.figure.Figure
        Agg canvas, no pyplot state.

    Raises
    ------
    ValueError
        When the table has no row for that autoencoder (and seed).
    """
    mine = gallery[gallery["autoencoder"] == autoencoder]
    if mine.empty:
        raise ValueError(f"the gallery has no rows for autoencoder {autoencoder!r}")
    seed = int(mine["seed"].min()) if seed is None else seed
    rows = mine[mine["seed"] == seed].sort_values(["r_T", "sample"], kind="stable")
    if rows.empty:
        raise ValueError(f"the gallery has no rows for autoencoder {autoencoder!r}, seed {seed}")
    heats = [_heat(r, c) for _, r in rows.iterrows() for c in ("d_plain", "d_on", "d_off")]
    vmax = float(max(np.abs(h).max() for h in heats))
    vmax = vmax if np.isfinite(vmax) and vmax > 0 else 1.0
    fig = Figure(figsize=(8 * 1.25 + 0.8, 1.4 * len(rows) + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 8, squeeze=False)
    heat_image = None
    for ax_row, (_, r) in zip(axes, rows.iterrows()):
        lo, hi = float(r["pixel_lo"]), float(r["pixel_hi"])
        _show_image(ax_row[0], image(r, "x"), lo, hi)
        _bare(ax_row[0], f"x, label {r['label']}\npred {r['pred_x']}")
        ax_row[0].set_ylabel(f"q = {r['level']:.2f}\nsample {r['sample']}", fontsize=6)
        _show_image(ax_row[1], image(r, "x_hat"), lo, hi)
        _bare(ax_row[1], f"D(E(x)), pred {r['pred_x_hat']}\n||x - D(E(x))|| {r['recon_err']:.3g}")
        for i, (mode, name, ratio) in enumerate(_MODES):
            failed = not bool(r[f"success_{mode}"])
            tag = "FAILED, " if failed else ""
            _show_image(ax_row[2 + i], image(r, "x") + image(r, f"d_{mode}"), lo, hi)
            _bare(ax_row[2 + i], f"x + {name}\n{tag}pred {r[f'pred_{mode}']}", failed=failed)
            norm = f">= {r[f'norm_{mode}']:.3g}" if failed else f"{r[f'norm_{mode}']:.3g}"
            heat_image = ax_row[5 + i].imshow(_heat(r, f"d_{mode}"), cmap="RdBu_r", vmin=-vmax,
                                              vmax=vmax, interpolation="nearest")
            label = "r_T" if ratio == "r_T" else "in_T"
            _bare(ax_row[5 + i], f"{tag}||{name}|| {norm}\npred {r[f'pred_{mode}']}, "
                  f"{label} {r[ratio]:.3f}", failed=failed)
    channels = "mean over channels, " if int(rows["channels"].iloc[0]) == 3 else ""
    bar = fig.colorbar(heat_image, ax=axes[:, 5:], shrink=0.8)
    bar.set_label(f"perturbation ({channels}one symmetric scale)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(f"{autoencoder}, seed {seed}: images at quantiles q of r_T among successful "
                 f"attacks (pixel range [{lo:g}, {hi:g}], shown clipped to it)", fontsize=8)
    return fig
