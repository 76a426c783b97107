"""How often each claim holds across a sweep's specifications: the "robustness" line of a
sweep's verdicts ("supported in 12/40 specifications") and where it flips.

A specification is one (cell, autoencoder) of a sweep (:mod:`dimple_stats.sweep`); its verdict is
what :func:`dimple_stats.report.verdicts.verdicts` says on its cell's rows, with the p-values
adjusted in the sweep's family.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from dimple_stats.protocol.sweep import labelled_choices
from dimple_stats.report.verdicts import CATEGORIES, verdicts
from dimple_stats.sweep import CELL, SPECIFICATION, swept_paths

__all__ = ["Robustness", "robustness"]


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

    @property
    def supported(self) -> int:
        return self.counts.get("supported", 0)

    def line(self) -> str:
        """``claim: supported in k/N specifications (...)``, with where it flips."""
        rest = ", ".join(f"{self.counts[c]} {c}" for c in CATEGORIES
                         if c != "supported" and self.counts.get(c))
        text = (f"**{self.claim}**: supported in {self.supported}/{self.total} "
                f"specifications" + (f" ({rest})" if rest else ""))
        # An axis with one value (the pairs' adversarial column) says nothing about where.
        values: dict[str, int] = {}
        for a, _ in self.by_choice:
            values[a] = values.get(a, 0) + 1
        varied = {key: kn for key, kn in self.by_choice.items() if values[key[0]] > 1}
        always = [f"{a}={v}" for (a, v), (k, n) in varied.items() if n and k == n]
        never = [f"{a}={v}" for (a, v), (k, n) in varied.items() if n and k == 0]
        if 0 < self.supported < self.total:
            parts = []
            if always:
                parts.append("in every specification with " + ", ".join(always))
            if never:
                parts.append("in none with " + ", ".join(never))
            mixed = [f"{a}={v} {k}/{n}" for (a, v), (k, n) in varied.items() if 0 < k < n]
            if mixed:
                parts.append("by choice: " + ", ".join(mixed))
            text += "; supported " + "; ".join(parts)
        return text + "."


def robustness(results: pd.DataFrame, *, confidence: float = 0.95) -> list[Robustness]:
    """One :class:`Robustness` per claim of a sweep's results: each (cell, autoencoder)'s verdict
    (:func:`dimple_stats.report.verdicts.verdicts` on the cell's rows), counted."""
    axes = swept_paths(results)
    found: dict[str, Robustness] = {}
    # A cell's own rows and the rows of a classifier pair (which carry the standard cell's
    # index) differ in their specification label.
    for (_, spec), g in results.groupby([CELL, SPECIFICATION], sort=False):
        choices = labelled_choices({a: g[a].iloc[0] for a in axes}, axes)
        for v in verdicts(g, confidence=confidence):
            rob = found.setdefault(v.claim, Robustness(v.claim, v.hypothesis, 0,
                                                       {c: 0 for c in CATEGORIES}))
            rob.total += 1
            rob.counts[v.category] = rob.counts.get(v.category, 0) + 1
            rob.specs.append((str(spec), v.autoencoder, v.category))
            for key in [*choices, ("autoencoder", v.autoencoder)]:
                k, n = rob.by_choice.get(key, (0, 0))
                rob.by_choice[key] = (k + (v.category == "supported"), n + 1)
    return list(found.values())
