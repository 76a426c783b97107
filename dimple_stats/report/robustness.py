"""How often each claim holds across a sweep's specifications: the "robustness" line of a
sweep's verdicts ("supported in 12/40 specifications") and where it flips.

A specification is one (cell, autoencoder) of a sweep (:mod:`dimple_stats.sweep`); its verdict is
what :func:`dimple_stats.report.verdicts.verdicts` says on its cell's rows, with the p-values
adjusted in the sweep's family.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dimple_stats.protocol.sweep import labelled_choices
from dimple_stats.report.verdicts import CATEGORIES, deciding_rows, verdicts
from dimple_stats.sweep import CELL, SPECIFICATION, family_size, swept_paths

__all__ = ["Robustness", "robustness", "spec_verdicts"]


@dataclass
class Robustness:
    """How often one claim holds across the specifications of a sweep.

    ``counts`` maps each verdict category to its number of specifications (cell x
    autoencoder); ``by_choice`` maps ``(axis, value)`` to ``(supported, total)``; ``specs`` lists
    ``(specification, autoencoder, category)``.
    """

    claim: str
    hypothesis: str
    total: int
    counts: dict[str, int]
    by_choice: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    specs: list[tuple[str, str, str]] = field(default_factory=list)
    #: Supported specifications of a two-sided claim by the sign of the estimate's change
    #: (``> 0`` / ``< 0`` relative to its null value): which way the claim holds.
    directions: dict[str, int] = field(default_factory=dict)
    #: Each null's readings across the specifications (short null name -> category -> count),
    #: data-shaped nulls included; empty for a claim tested against one null.
    by_null: dict[str, dict[str, int]] = field(default_factory=dict)

    def null_line(self) -> str:
        """'vs random subspace: supported in 0/40, contradicted in 36/40; vs data-shaped PCA
        subspace: supported in 17/40, ...' ("" with one null)."""
        if len(self.by_null) < 2:
            return ""
        parts = []
        for name, counts in self.by_null.items():
            n = sum(counts.values())
            words = [f"supported in {counts.get('supported', 0)}/{n}"]
            words += [f"{c} in {counts[c]}/{n}" for c in CATEGORIES
                      if c != "supported" and counts.get(c)]
            parts.append(f"vs {name}: " + ", ".join(words))
        return "By null: " + "; ".join(parts) + "."

    @property
    def supported(self) -> int:
        return self.counts.get("supported", 0)

    def line(self) -> str:
        """``claim: supported in k/N specifications (...)``, with where it flips."""
        rest = ", ".join(f"{self.counts[c]} {c}" for c in CATEGORIES
                         if c != "supported" and self.counts.get(c))
        text = (f"**{self.claim}**: supported in {self.supported}/{self.total} "
                f"specifications" + (f" ({rest})" if rest else ""))
        if self.directions:
            text += " [supported ones by direction: " + ", ".join(
                f"{n} with estimate {sign}" for sign, n in sorted(self.directions.items())) + "]"
        # An axis with one value (the pairs' adversarial column) says nothing about where.
        values: dict[str, int] = {}
        for a, _ in self.by_choice:
            values[a] = values.get(a, 0) + 1
        varied = {key: kn for key, kn in self.by_choice.items() if values[key[0]] > 1}
        always = [f"{a}={v}" for (a, v), (k, n) in varied.items() if n and k == n]
        never = [f"{a}={v}" for (a, v), (k, n) in varied.items() if n and k == 0]
        # Each choice listed holds on its own ("every specification with k=2, and every
        # specification with k=4"), not jointly.
        if 0 < self.supported < self.total:
            parts = []
            if always:
                parts.append("in every specification with " + " or ".join(always))
            if never:
                parts.append("in none with " + " or ".join(never))
            # Only axes whose values differ in how often the claim holds say where it flips.
            rates: dict[str, set[float]] = {}
            for (a, _), (k, n) in varied.items():
                rates.setdefault(a, set()).add(k / n if n else 0.0)
            mixed = [f"{a}={v} {k}/{n}" for (a, v), (k, n) in varied.items()
                     if 0 < k < n and len(rates[a]) > 1]
            if mixed:
                parts.append("by choice: " + ", ".join(mixed))
            text += "; supported " + "; ".join(parts)
        nulls = self.null_line()
        return text + "." + (f" {nulls}" if nulls else "")


def spec_verdicts(results: pd.DataFrame, cell_rows: pd.DataFrame, *,
                  confidence: float = 0.95) -> list[Any]:
    """The verdicts of one specification group's rows (one cell, or one classifier pair), each
    claim read at its sweep family's size (:func:`dimple_stats.sweep.family_size`)."""
    out = []
    cell = int(cell_rows[CELL].iloc[0])
    for claim, g in cell_rows.groupby("claim", sort=False):
        out += verdicts(g, confidence=confidence,
                        family=family_size(results, str(claim), cell))
    return out


#: The last frame read, its confidence and its counts: one report asks for the same counts
#: three or four times (summary.md, results.md, report.html, the console), each 23 s on the
#: 120 specifications of multiverse_digits. The frame itself is held, so its identity cannot
#: be taken by another frame; the renderers never modify it.
_LAST: list[tuple[pd.DataFrame, float, list[Robustness]]] = []


def robustness(results: pd.DataFrame, *, confidence: float = 0.95) -> list[Robustness]:
    """One :class:`Robustness` per claim of a sweep's results: each (cell, autoencoder)'s verdict
    (:func:`dimple_stats.report.verdicts.verdicts` on the cell's rows, at the sweep family's
    size), counted; supported two-sided claims also by the sign of their deciding estimate."""
    for frame, level, found in _LAST:
        if frame is results and level == confidence:
            return copy.deepcopy(found)
    found = _count(results, confidence)
    _LAST[:] = [(results, confidence, found)]
    return copy.deepcopy(found)


def _count(results: pd.DataFrame, confidence: float) -> list[Robustness]:
    axes = swept_paths(results)
    found: dict[str, Robustness] = {}
    # A cell's own rows and each classifier pair's rows differ in their specification label.
    for (_, spec), g in results.groupby([CELL, SPECIFICATION], sort=False):
        choices = labelled_choices({a: g[a].iloc[0] for a in axes}, axes)
        for v in spec_verdicts(results, g, confidence=confidence):
            rob = found.setdefault(v.claim, Robustness(v.claim, v.hypothesis, 0,
                                                       {c: 0 for c in CATEGORIES}))
            rob.total += 1
            rob.counts[v.category] = rob.counts.get(v.category, 0) + 1
            rob.specs.append((str(spec), v.autoencoder, v.category))
            for name, reading in v.by_null:
                counts = rob.by_null.setdefault(name, {})
                counts[reading] = counts.get(reading, 0) + 1
            if v.category == "supported":
                decide = deciding_rows(g[(g["claim"] == v.claim)
                                         & (g["autoencoder"] == v.autoencoder)])
                if len(decide) and (decide["alternative"].astype(str) == "two-sided").all():
                    sign = "> 0" if float(decide["estimate"].iloc[0]) > float(
                        decide["null_value"].iloc[0]) else "< 0"
                    rob.directions[sign] = rob.directions.get(sign, 0) + 1
            for key in [*choices, ("autoencoder", v.autoencoder)]:
                k, n = rob.by_choice.get(key, (0, 0))
                rob.by_choice[key] = (k + (v.category == "supported"), n + 1)
    return list(found.values())
