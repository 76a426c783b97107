"""The specification curve of one claim over a sweep (Simonsohn, Simmons & Nelson 2020).

Top panel: one point per specification (cell x autoencoder), the pooled estimate of the claim's
deciding variant with its confidence interval, sorted by estimate, coloured by the
specification's verdict (:func:`dimple_stats.report.verdicts.verdicts` on its cell's rows, so the
colour says what the report says in words); the dashed line is the estimate's value under H0.
Middle panel (a claim tested against several nulls): each null's reading in each
specification, the data-shaped nulls included, coloured as above. Bottom panel: the choices of
each specification, one row per (swept field, value), a dot where
the specification made that choice, so a reader sees at a glance which choices the verdict
follows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dimple_stats.protocol.sweep import labelled_choices
from dimple_stats.report.labels import claim_words, reference_value, variant_words, wrap
from dimple_stats.report.style import styled

__all__ = ["CATEGORY_COLOURS", "spec_curve", "spec_curve_name", "spec_points"]

#: Verdict category -> colour (the HTML report's verdict colours, in matplotlib names).
CATEGORY_COLOURS = {"supported": "tab:green", "not supported": "0.55",
                    "contradicted": "tab:red", "uninformative": "white"}


def _ordered(values: list[str]) -> list[str]:
    """Numbers in numeric order (k = 2, 4, 8, 16, 32), anything else as first seen."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def spec_curve_name(claim: str) -> str:
    """File name of a claim's specification curve (``spec_curve_dmm_perpendicular.png``)."""
    return f"spec_curve_{claim.replace('.', '_')}.png"


def spec_points(results: pd.DataFrame, claim: str, *, confidence: float = 0.95
                ) -> pd.DataFrame:
    """One row per specification of ``claim``: its choices, estimate, CI, null value, variant
    and verdict category, sorted by estimate (NaN last)."""
    from dimple_stats.report.robustness import spec_verdicts
    from dimple_stats.report.verdicts import deciding_rows
    from dimple_stats.sweep import CELL, SPECIFICATION, swept_paths

    axes = swept_paths(results)
    rows = []
    of_claim = results[results["claim"] == claim]
    for (_, spec), g in of_claim.groupby([CELL, SPECIFICATION], sort=False):
        found = {v.autoencoder: v for v in spec_verdicts(results, g, confidence=confidence)}
        for ae, h in g.groupby("autoencoder", sort=False):
            decide = deciding_rows(h)
            decide = decide[decide["test"].astype(str) != "descriptive"]
            if not len(decide) or str(ae) not in found:
                continue  # no verdict: not a specification the robustness line counts
            r = decide.iloc[0]  # the first deciding variant (the preferred null)
            chosen = [*labelled_choices({a: r[a] for a in axes}, axes), ("autoencoder", str(ae))]
            rows.append({SPECIFICATION: spec, "autoencoder": str(ae), "choices": tuple(chosen),
                         "variant": str(r["variant"]),
                         "estimate": float(r["estimate"]), "ci_low": float(r["ci_low"]),
                         "ci_high": float(r["ci_high"]),
                         "null_value": float(r["null_value"]),
                         "meaning": str(r["estimate_meaning"]),
                         "category": found[str(ae)].category,
                         # each null's reading, data-shaped ones included (empty: one null)
                         "by_null": dict(found[str(ae)].by_null)})
    frame = pd.DataFrame(rows)
    if not len(frame):
        return frame
    order = np.argsort(np.where(np.isfinite(frame["estimate"]), frame["estimate"], np.inf),
                       kind="stable")
    return frame.iloc[order].reset_index(drop=True)


@styled
def spec_curve(results: pd.DataFrame, claim: str, *, confidence: float = 0.95) -> Figure:
    """The specification curve of ``claim`` (see the module notes)."""
    points = spec_points(results, claim, confidence=confidence)
    # One row per (field, value) the specifications chose, fields in order of appearance.
    seen: dict[str, dict[str, None]] = {}
    for chosen in (points["choices"] if len(points) else ()):
        for name, value in chosen:
            seen.setdefault(name, {})[value] = None
    choice_rows = [(name, value) for name, values in seen.items()
                   for value in _ordered(list(values))]
    n = max(len(points), 1)
    labels = [f"{a}={v}" for a, v in choice_rows]
    # Laid out by hand: the choice labels (left of the lower panel) can be long, and the
    # upper panel's y label must clear them; constrained layout lets the two collide.
    label_in = 0.065 * max((len(t) for t in labels), default=10) + 0.25
    width = min(12.0, max(6.5, 0.16 * n + label_in + 1.5))
    chars = int(width * 14)  # about 14 characters of 9-pt text per inch
    title = wrap(f"{claim}: {claim_words(claim)}", chars)
    title_in = 0.17 * (title.count("\n") + 2) + 0.15
    top_in, gap_in, bottom_in = 2.4, 0.15, 0.17 * max(len(choice_rows), 1) + 0.2
    # Every null's reading per specification, data-shaped nulls included: the top panel shows
    # the deciding null's estimate only.
    nulls = list(dict.fromkeys(name for readings in (points["by_null"] if len(points) else ())
                               for name in readings))
    nulls_in = 0.17 * len(nulls) + 0.2 if len(nulls) > 1 else 0.0
    xlabel_in = 0.45
    title_gap_in = 0.3  # room for the middle panel's title
    height = title_in + top_in + gap_in + bottom_in + xlabel_in + (title_gap_in + nulls_in
                                                                   if nulls_in else 0.0)
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    label_in = max(label_in, 0.065 * max((len(t) for t in nulls), default=0) + 0.25)
    left, right = label_in / width, 1 - 0.2 / width
    above_choices = xlabel_in + bottom_in + gap_in
    middle = None
    if nulls_in:
        middle = fig.add_axes((left, above_choices / height, right - left, nulls_in / height))
        above_choices += nulls_in + title_gap_in
    top = fig.add_axes((left, above_choices / height, right - left, top_in / height))
    bottom = fig.add_axes((left, xlabel_in / height, right - left, bottom_in / height),
                          sharex=top)
    top.tick_params(labelbottom=False)
    fig.text(0.01, 1 - 0.08 / height, title, ha="left", va="top", fontsize=9)
    x = np.arange(len(points))
    if len(points):
        est = points["estimate"].to_numpy(float)
        low, high = points["ci_low"].to_numpy(float), points["ci_high"].to_numpy(float)
        colours = [CATEGORY_COLOURS.get(c, "0.8") for c in points["category"]]
        ok = np.isfinite(low) & np.isfinite(high)
        top.vlines(x[ok], low[ok], high[ok], color="0.35", linewidth=0.9, zorder=1)
        top.scatter(x, est, c=colours, edgecolors="black", linewidths=0.6, s=22, zorder=2)
        ref = reference_value(str(points["variant"].iloc[0]), str(points["meaning"].iloc[0]),
                              float(points["null_value"].iloc[0]))
        if ref is not None and math.isfinite(ref):
            top.axhline(ref, color="black", linestyle="--", linewidth=0.8, zorder=0)
        variants = list(dict.fromkeys(points["variant"]))
        top.set_ylabel(wrap(str(points["meaning"].iloc[0]).split(",")[0], 30))
        top.set_title(wrap("; ".join(variant_words(v) for v in variants), chars), loc="left",
                      fontsize=8)
    shown = set(points["category"]) if len(points) else set()
    if middle is not None:
        shown |= {c for readings in points["by_null"] for c in readings.values()}
    handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor=c,
                      markeredgecolor="black", label=k) for k, c in CATEGORY_COLOURS.items()
               if k in shown]
    if handles:
        top.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
                   ncol=len(handles), title=None, handletextpad=0.2, columnspacing=0.8)
    if middle is not None:
        middle.sharex(top)
        for row, name in enumerate(nulls):
            shown = [(i, readings[name]) for i, readings in enumerate(points["by_null"])
                     if name in readings]
            middle.scatter([i for i, _ in shown], np.full(len(shown), row), marker="s", s=22,
                           c=[CATEGORY_COLOURS.get(c, "0.8") for _, c in shown],
                           edgecolors="black", linewidths=0.5)
        middle.set_yticks(range(len(nulls)), [f"vs {name}" for name in nulls])
        middle.set_ylim(len(nulls) - 0.5, -0.5)
        middle.tick_params(labelbottom=False)
        middle.spines["left"].set_visible(False)
        middle.set_title("each null's reading", loc="left", fontsize=8)
    for row, choice in enumerate(choice_rows):
        hit = np.array([choice in chosen for chosen in points["choices"]], dtype=bool) \
            if len(points) else np.zeros(0, dtype=bool)
        bottom.scatter(x[hit], np.full(hit.sum(), row), marker="s", s=14, color="black")
    bottom.set_yticks(range(len(choice_rows)), labels)
    bottom.set_ylim(len(choice_rows) - 0.5, -0.5)
    bottom.set_xlim(-0.7, max(len(points), 1) - 0.3)
    bottom.set_xticks(x, [str(i + 1) for i in x] if len(points) <= 60 else [])
    bottom.set_xlabel(wrap(f"specification (cell x autoencoder), sorted by estimate; "
                           f"{len(points)} in all", chars))
    bottom.spines["left"].set_visible(False)
    return fig
