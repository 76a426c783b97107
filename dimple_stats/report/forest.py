"""Forest plots: one claim's estimates with their CIs, one panel per variant.

The figure is titled with the claim's hypothesis, each panel with its variant in words; the x
label is the estimate's meaning in full, wrapped. Marker shape says seed or pooled, fill says the
verdict (filled: supported; hollow: not supported; red: contradicted; grey: uninformative;
black: not tested), read from the table's ``verdict`` column (the decision where it has none). The
dashed reference line is where the estimate means "no effect" (:func:`labels.reference_value`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dimple_stats.report.labels import (
    claim_words,
    equivalence_margin,
    reference_value,
    row_label,
    variant_words,
    wrap,
)
from dimple_stats.report.style import new_figure, styled
from dimple_stats.results import POOLED

__all__ = ["forest_plot", "MAX_FULL_ROWS"]

#: Above this many rows a claim's figure shows one row per (variant, autoencoder): the pooled
#: estimate with its CI and the single seeds as small dots on the same line. iso.defense (258
#: rows) would otherwise be a 70-inch figure; every seed's CI stays in results.csv.
MAX_FULL_ROWS = 36

_SEED_COLOUR, _POOLED_COLOUR = "tab:blue", "tab:red"
_UNINFORMATIVE, _UNTESTED, _CONTRADICTED = "0.6", "black", "#b2182b"
#: Decisions of tables without a verdict column, as verdicts.
_FROM_DECISION = {"reject H0": "supported", "retain H0": "not supported",
                  "undefined": "uninformative"}
_ROW_IN = 0.24  # inches per row: 8 pt labels with a little air


@dataclass
class _Row:
    label: str
    estimate: float
    low: float
    high: float
    pooled: bool
    decision: str
    seeds: list[tuple[float, str]] = field(default_factory=list)  # compact: (estimate, decision)


def _decision(row: pd.Series) -> str:
    """The row's verdict word (what its marker shows)."""
    decision = str(row.get("decision", ""))
    if str(row.get("test", "")) == "descriptive" or decision == "descriptive":
        return "descriptive"
    verdict = row.get("verdict")
    if isinstance(verdict, str) and verdict:
        return verdict
    return _FROM_DECISION.get(decision, decision)


def _rows(v: pd.DataFrame, compact: bool) -> list[_Row]:
    """The panel's rows, top to bottom; in compact mode seeds ride on their pooled row."""
    out: list[_Row] = []
    for ae, g in v.groupby("autoencoder", sort=False):
        pooled = g[g["seed"].astype(str) == POOLED]
        seeds = g[g["seed"].astype(str) != POOLED]
        shown = pooled if compact and len(pooled) else g
        for _, r in shown.iterrows():
            is_pooled = str(r["seed"]) == POOLED
            n_seeds = r.get("n_seeds", len(seeds)) if is_pooled else None
            out.append(_Row(row_label(str(ae), r["seed"], n_seeds), float(r["estimate"]),
                            float(r["ci_low"]), float(r["ci_high"]), is_pooled, _decision(r)))
        if compact and len(pooled):
            out[-1].seeds = [(float(s["estimate"]), _decision(s)) for _, s in seeds.iterrows()]
    return out


def _look(decision: str, pooled: bool) -> dict[str, object]:
    colour = _POOLED_COLOUR if pooled else _SEED_COLOUR
    if decision == "descriptive":
        colour = _UNTESTED
    elif decision == "uninformative":
        colour = _UNINFORMATIVE
    elif decision == "contradicted":
        colour = _CONTRADICTED
    filled = decision in ("supported", "contradicted", "descriptive")
    return {"color": colour, "mec": colour, "mfc": colour if filled else "white",
            "marker": "D" if pooled else "o", "ms": 6.5 if pooled else 4.5}


def _meaning(v: pd.DataFrame) -> str:
    """The panel's estimate meaning; rows that name their own autoencoder say 'this row'."""
    meanings = list(dict.fromkeys(v["estimate_meaning"].astype(str)))
    if len(meanings) > 1:
        general = list(dict.fromkeys(
            m.replace(f"({ae})", "(this row)")
            for m, ae in zip(v["estimate_meaning"].astype(str), v["autoencoder"].astype(str))))
        meanings = general if len(general) < len(meanings) else meanings
    return "; ".join(meanings)


def _draw_panel(ax: Axes, v: pd.DataFrame, rows: list[_Row], label_width: int) -> set[str]:
    """Draw one variant; returns the legend keys it used."""
    used: set[str] = set()
    ypos = np.arange(len(rows))[::-1]
    for y, r in zip(ypos, rows):
        if r.seeds:
            for est, decision in r.seeds:
                look = _look(decision, False)
                ax.plot([est], [y], ls="none", marker="o", ms=3.5, color=look["color"],
                        mfc=look["mfc"], mec=look["mec"], alpha=0.8, zorder=2)
            used.add("seed dots")
        err = [[r.estimate - r.low if math.isfinite(r.low) else 0.0],
               [r.high - r.estimate if math.isfinite(r.high) else 0.0]]
        look = _look(r.decision, r.pooled)
        ax.errorbar([r.estimate], [y], xerr=err, fmt=str(look["marker"]), ms=look["ms"],
                    color=look["color"], mfc=look["mfc"], mec=look["mec"], ecolor=look["color"],
                    elinewidth=1.1, capsize=2.5, zorder=3)
        used |= {"pooled" if r.pooled else "seed", r.decision}
    refs = sorted({ref for _, r in v.iterrows() if (ref := reference_value(
        str(r["variant"]), str(r["estimate_meaning"]), float(r["null_value"]))) is not None})
    for ref in refs:
        ax.axvline(ref, color="0.15", lw=1.2, ls="--", zorder=1, gid="reference")
        used.add("reference")
    margins = {m for t in v.get("test", pd.Series(dtype=str)).astype(str)
               if (m := equivalence_margin(t)) is not None}
    if margins and refs:
        m = max(margins)
        ax.axvspan(refs[0] - m, refs[0] + m, color="0.9", zorder=0, gid="equivalence")
        used.add("equivalence")
    ax.set_yticks(ypos, [r.label for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_title(wrap(variant_words(str(v["variant"].iloc[0])), label_width + 20), loc="left")
    ax.set_xlabel(wrap(_meaning(v), label_width))
    ax.grid(axis="x", color="0.92", lw=0.6, zorder=0)
    return used


def _legend_handles(used: set[str]) -> list[Line2D | Patch]:
    entries: list[tuple[str, Line2D | Patch]] = [
        ("seed", Line2D([], [], ls="none", marker="o", ms=4.5, color=_SEED_COLOUR,
                        label="one seed, with CI")),
        ("pooled", Line2D([], [], ls="none", marker="D", ms=6, color=_POOLED_COLOUR,
                          label="pooled over seeds, with CI")),
        ("seed dots", Line2D([], [], ls="none", marker="o", ms=3.5, color=_SEED_COLOUR, alpha=0.8,
                             label="single seeds (CIs in results.csv)")),
        ("supported", Line2D([], [], ls="none", marker="o", ms=5, color="0.3",
                             label="filled: supported (H0 rejected)")),
        ("not supported", Line2D([], [], ls="none", marker="o", ms=5, color="0.3", mfc="white",
                                 label="hollow: not supported (H0 retained)")),
        ("contradicted", Line2D([], [], ls="none", marker="o", ms=5, color=_CONTRADICTED,
                                label="red: contradicted (the reverse test rejects)")),
        ("uninformative", Line2D([], [], ls="none", marker="o", ms=5, color=_UNINFORMATIVE,
                                 mfc="white", label="grey: uninformative (too many censored)")),
        ("descriptive", Line2D([], [], ls="none", marker="o", ms=5, color=_UNTESTED,
                               label="black: not tested (descriptive)")),
        ("reference", Line2D([], [], color="0.15", lw=1.2, ls="--",
                             label="reference: the estimate under H0 (no effect)")),
        ("equivalence", Patch(color="0.9", label="equivalence margin")),
    ]
    return [handle for key, handle in entries if key in used]


@styled
def forest_plot(results: pd.DataFrame, claim: str) -> Figure:
    """Estimates with CIs for one claim: one panel per variant, the hypothesis as the title.

    Parameters
    ----------
    results : pandas.DataFrame
        The results table (:data:`dimple_stats.results.RESULT_COLUMNS`); rows with a NaN
        estimate are left out.
    claim : str
        The claim id; its hypothesis (or the id, for a claim the catalogue does not know) is the
        figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Panels in one column, or two when there are more than four; above
        :data:`MAX_FULL_ROWS` rows, one row per autoencoder with the seeds as dots.
    """
    rows = results[(results["claim"] == claim)
                   & np.isfinite(pd.to_numeric(results["estimate"], errors="coerce"))]
    variants = list(dict.fromkeys(rows["variant"]))
    compact = len(rows) > MAX_FULL_ROWS
    panels = [(rows[rows["variant"] == v], _rows(rows[rows["variant"] == v], compact))
              for v in variants]
    ncols = 1 if len(panels) <= 4 else 2
    col_in = 7.0 if ncols == 1 else 5.6
    nrows = max(math.ceil(len(panels) / ncols), 1)
    heights = [max([len(p[1]) for p in panels[i * ncols:(i + 1) * ncols]] or [1])
               for i in range(nrows)]
    # x label lines: about 15 characters per inch of axes at 9 pt, the y labels take ~2 inches
    label_width = max(int((col_in - 2.0) * 15), 40)
    meaning_lines = max([len(wrap(_meaning(p[0]), label_width).splitlines()) for p in panels]
                        or [1])
    per_panel = 0.75 + 0.17 * meaning_lines
    title = wrap(claim_words(claim), int(col_in * ncols * 12))
    height = (0.35 + 0.2 * title.count("\n") + sum(_ROW_IN * h + per_panel for h in heights)
              + 0.6)
    fig = new_figure(col_in * ncols, height)
    fig.suptitle(title, fontweight="bold")
    axes = fig.subplots(nrows, ncols, squeeze=False, height_ratios=[h + 3 for h in heights])
    used: set[str] = set()
    for ax, (v, panel_rows) in zip(axes.flat, panels):
        used |= _draw_panel(ax, v, panel_rows, label_width)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles = _legend_handles(used)
    if handles:
        fig.legend(handles=handles, loc="outside lower center",
                   ncols=min(ncols + 1, len(handles)), frameon=False)
    return fig
