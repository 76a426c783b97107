"""How the attacks of a sweep over ``attack.method`` compare on the same images.

Cells that differ only in ``attack.method`` attack the same images with the same classifier, so
their unrestricted (plain) minimal norms can be compared image by image: a minimal-norm attack
that finds the boundary nearer is the better estimate of the distance the claims read. The
on- and off-manifold attacks are always the project's PGD, so only the plain mode differs.
Written as ``attacks.md`` in a swept run's report (when its measurements allow it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dimple_stats.protocol.sweep import cell_label

__all__ = ["ATTACK_PATH", "ATTACKS_FILE", "attack_parity", "attack_parity_markdown"]

ATTACK_PATH = "attack.method"
ATTACKS_FILE = "attacks.md"


def attack_parity(measurements: pd.DataFrame, cells: list[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (other method, setting of the other swept fields): the other method's plain
    minimal norm against the first method's on the images both broke.

    Columns: ``method``, ``reference``, ``setting`` (the other choices), ``images`` (broken by
    both), ``median_ratio`` (median of norm(method) / norm(reference)), ``smaller_5pct``
    (share of those images where the method's norm is more than 5% smaller), ``larger_5pct``,
    ``censored_method`` / ``censored_reference`` (share of failed plain attacks),
    ``median_abs_dr_T`` (median |r_T(method) - r_T(reference)|, same autoencoder).
    """
    if not cells or ATTACK_PATH not in cells[0] or "cell" not in measurements.columns:
        return pd.DataFrame()
    methods = list(dict.fromkeys(c[ATTACK_PATH] for c in cells))
    if len(methods) < 2:
        return pd.DataFrame()
    reference = methods[0]
    others = [p for p in cells[0] if p != ATTACK_PATH]
    key = ["seed", "autoencoder", "sample"]
    rows = []
    for index, cell in enumerate(cells):
        if cell[ATTACK_PATH] == reference:
            continue
        twin = next((j for j, c in enumerate(cells) if c[ATTACK_PATH] == reference and
                     all(c[p] == cell[p] for p in others)), None)
        if twin is None:
            continue
        mine = measurements[measurements["cell"] == index].set_index(key)
        theirs = measurements[measurements["cell"] == twin].set_index(key)
        both = mine.merge(theirs, how="inner", left_index=True, right_index=True,
                          suffixes=("_m", "_r"))
        ok = both["success_plain_m"].to_numpy(bool) & both["success_plain_r"].to_numpy(bool)
        ratio = both["norm_plain_m"].to_numpy(float)[ok] / both["norm_plain_r"].to_numpy(float)[ok]
        rows.append({
            "method": cell[ATTACK_PATH], "reference": reference,
            "setting": cell_label({p: cell[p] for p in others}, others) if others else "",
            "images": int(ok.sum()),
            "median_ratio": float(np.median(ratio)) if ratio.size else np.nan,
            "smaller_5pct": float((ratio < 0.95).mean()) if ratio.size else np.nan,
            "larger_5pct": float((ratio > 1.05).mean()) if ratio.size else np.nan,
            "censored_method": float((~both["success_plain_m"].to_numpy(bool)).mean()),
            "censored_reference": float((~both["success_plain_r"].to_numpy(bool)).mean()),
            "median_abs_dr_T": float(np.median(np.abs(
                both["r_T_m"].to_numpy(float) - both["r_T_r"].to_numpy(float)))),
        })
    return pd.DataFrame(rows)


def attack_parity_markdown(table: pd.DataFrame, title: str) -> str:
    """``attacks.md``: the table, and what its columns mean."""
    if not len(table):
        return ""
    reference = str(table["reference"].iloc[0])
    lines = [f"# {title}: attacks compared", "",
             f"Plain (unrestricted) minimal norms of each attack against {reference} on the same "
             "images (same cell otherwise: classifier, autoencoder, seed). Ratio: norm(attack) / "
             f"norm({reference}) over images both broke; < 1 finds the boundary nearer. "
             "On- and off-manifold attacks are the project's PGD in every cell.", "",
             "| attack | setting | images | median ratio | > 5% smaller | > 5% larger | "
             f"censored (attack) | censored ({reference}) | median abs r_T change |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.method} | {r.setting} | {r.images} | {r.median_ratio:.4f} | "
                     f"{r.smaller_5pct:.3f} | {r.larger_5pct:.3f} | {r.censored_method:.3f} | "
                     f"{r.censored_reference:.3f} | {r.median_abs_dr_T:.4f} |")
    pooled = table["images"].sum()
    lines += ["", f"Over all {len(table)} settings ({pooled} image pairs): median of the settings' "
              f"median ratios {table['median_ratio'].median():.4f}; settings where the median "
              f"ratio is within 5% of 1: {int((table['median_ratio'].sub(1).abs() <= 0.05).sum())}"
              f"/{len(table)}."]
    return "\n".join(lines) + "\n"
