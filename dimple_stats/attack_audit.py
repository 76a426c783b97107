"""What the attacks could measure, per autoencoder: base points, exclusions, measurability.

A verdict on a norm claim is only as good as the norms under it. This audit, written into the
run's manifest and shown in results.md, says per autoencoder (pooled over seeds) how many images
were attacked, how many were EXCLUDED because the classifier gets their manifold point D(z*)
wrong (``attack.base: manifold``), how far the images lie from that point (``base_err``), how
many have no on-manifold norm at all (``measurable_on`` False: the strict tangent-plane set is
``{x}``), and each mode's success rate among the rest. Torch-free: it reads the measurements
table.

Examples
--------
>>> import pandas as pd
>>> m = pd.DataFrame({"seed": 0, "autoencoder": "plain", "base_ok": [True, True, False],
...                   "base_err": [1.0, 2.0, 3.0], "success_plain": [True, True, False],
...                   "success_on": [True, False, False], "success_off": [True, True, False]})
>>> audit = attack_audit(m)
>>> audit[0]["images"], audit[0]["excluded"], audit[0]["success_on"]
(3, 1, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["attack_audit", "audit_lines"]


def _median(values: pd.Series) -> float | None:
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else None


def attack_audit(measurements: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per autoencoder (see the module notes); an empty list for an empty table."""
    if measurements is None or not len(measurements) or "autoencoder" not in measurements:
        return []
    out = []
    for ae, g in measurements.groupby("autoencoder", sort=True):
        ok = (g["base_ok"].astype(bool) if "base_ok" in g.columns
              else pd.Series(True, index=g.index))
        measurable = (g["measurable_on"].astype(bool) if "measurable_on" in g.columns
                      else pd.Series(True, index=g.index))
        kept = g[ok]
        record: dict[str, Any] = {
            "autoencoder": str(ae), "images": int(len(g)), "excluded": int((~ok).sum()),
            "not_measurable_on": int((ok & ~measurable).sum()),
            "median_base_err": _median(g["base_err"]) if "base_err" in g.columns else None,
        }
        for mode in ("plain", "on", "off"):
            col = f"success_{mode}"
            if col in kept.columns and len(kept):
                rows = kept if mode != "on" else kept[measurable[ok]]
                record[col] = float(rows[col].astype(bool).mean()) if len(rows) else None
        if "path_on" in kept.columns and "norm_on" in kept.columns:
            s = kept["success_on"].astype(bool) if "success_on" in kept.columns else None
            if s is not None and bool(s.any()):
                record["median_path_over_chord_on"] = _median(
                    kept.loc[s, "path_on"] / kept.loc[s, "norm_on"])
        out.append(record)
    return out


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return ""
    if pct:
        return f"{100 * value:.1f}%"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def audit_lines(manifest: Mapping[str, Any] | None) -> list[str]:
    """results.md's "Attacks" section from ``manifest["attacks"]`` (nothing when absent)."""
    audit = (manifest or {}).get("attacks")
    if not audit:
        return []
    attack = (manifest or {}).get("protocol", {}).get("attack", {}) if isinstance(
        (manifest or {}).get("protocol"), Mapping) else {}
    where = []
    if attack:
        where.append(f"base point: {attack.get('base', 'image')}; on-manifold attack: "
                     f"{attack.get('on_manifold', 'tangent')}; pixel box: "
                     f"{attack.get('box', 'strict')}")
    lines = ["## Attacks", ""]
    if where:
        lines += [where[0] + ".", ""]
    lines += ["| autoencoder | images | excluded (D(z*) misclassified) | median base_err | "
              "not measurable on | success plain | success on | success off | median path/chord on |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in audit:
        lines.append(
            f"| {r['autoencoder']} | {r['images']} | {r['excluded']} | "
            f"{_fmt(r.get('median_base_err'))} | {r['not_measurable_on']} | "
            f"{_fmt(r.get('success_plain'), True)} | {_fmt(r.get('success_on'), True)} | "
            f"{_fmt(r.get('success_off'), True)} | {_fmt(r.get('median_path_over_chord_on'))} |")
    lines += ["", "Excluded images belong to no claim (their minimal perturbation from D(z*) is "
              "0); not-measurable images leave the norm claims, counted in their rows' notes; "
              "success rates are over the rest. base_err = ||x - D(z*)|| (or ||x - D(E(x))|| "
              "with attack.base image).", ""]
    return lines
