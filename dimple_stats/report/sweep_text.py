"""A sweep's report text: the robustness of each claim across specifications (``summary.md``,
the top of ``results.md``), the specification tables (Markdown and LaTeX) and the console lines.

Everything is generated from the sweep's results table (:func:`dimple_stats.sweep.analyse_sweep`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from dimple_stats.report.summary import reduced_run, summary_head
from dimple_stats.results import POOLED

if TYPE_CHECKING:
    from dimple_stats.protocol.schema import Protocol

__all__ = ["FAMILY_WORDS", "RobustnessVerdict", "robustness_lines", "robustness_verdicts",
           "sweep_latex", "sweep_markdown", "sweep_summary"]

#: How each sweep family adjusts, in words (the summary and results.md say which one applied).
FAMILY_WORDS = {
    "claim": "each claim's tested pooled rows across every cell form one family (its per-seed "
    "rows another)",
    "grid": "every tested pooled row of every claim and cell forms one family (the per-seed "
    "rows another)",
    "cell": "each cell is its own family (no adjustment for the number of cells)",
}


@dataclass(frozen=True)
class RobustnessVerdict:
    """A claim's verdict across a sweep, in the shape the HTML page lists verdicts:
    ``category`` is the common verdict when every specification agrees, else ``varies`` (a
    style key, never shown); ``label`` is what the badge reads, in the four verdict words
    only: "supported" when every specification agrees, else "supported in 24/120, not
    supported in 96/120"."""

    claim: str
    autoencoder: str
    category: str
    hypothesis: str
    text: str
    label: str = ""


def robustness_verdicts(results: pd.DataFrame, confidence: float = 0.95
                        ) -> list[RobustnessVerdict]:
    """One :class:`RobustnessVerdict` per claim of a sweep's results."""
    from dimple_stats.report.robustness import robustness
    from dimple_stats.report.verdicts import CATEGORIES

    out = []
    for r in robustness(results, confidence=confidence):
        present = [c for c in CATEGORIES if r.counts.get(c)]
        label = present[0] if len(present) == 1 else ", ".join(
            f"{c} in {r.counts[c]}/{r.total}" for c in present)
        out.append(RobustnessVerdict(r.claim, f"{r.total} specifications",
                                     present[0] if len(present) == 1 else VARIES,
                                     r.hypothesis, r.line().replace("**", ""), label))
    return out


#: The style key of a claim whose specifications disagree (not a verdict word: never shown).
VARIES = "varies"


def _family(protocol: Protocol | None) -> str:
    return protocol.sweep.family if protocol is not None and protocol.sweep is not None \
        else "claim"


def robustness_lines(results: pd.DataFrame, confidence: float | None = None) -> list[str]:
    """One Markdown list item per claim: "supported in k/N specifications", where it flips."""
    from dimple_stats.report.robustness import robustness

    return [f"- {r.line()}" for r in robustness(results, confidence=confidence or 0.95)]


def _how(results: pd.DataFrame, protocol: Protocol | None) -> str:
    alpha = float(results["alpha"].iloc[0]) if len(results) else 0.05
    from dimple_stats.sweep import CELL

    cells = results[CELL].nunique() if len(results) else 0
    return (f"A specification is one cell of the sweep with one autoencoder ({cells} cells). "
            "Each specification's verdict reads the pooled rows of its cell as the single-run "
            f"report would, with decisions at alpha = {alpha:g} on p_adj adjusted across the "
            f"sweep: {FAMILY_WORDS[_family(protocol)]} (correction: "
            f"{protocol.stats.correction if protocol is not None else 'holm'}); p_adj_cell in "
            "results.csv keeps each cell's own adjustment (a classifier pair's rows: the "
            "pair's). Rows of "
            "dmm.dimpled_or_robust compare two cells (standard vs adversarially trained "
            "classifier) paired per image.")


def sweep_summary(results: pd.DataFrame, *, title: str = "dimple-stats results",
                  manifest: Mapping[str, Any] | None = None,
                  protocol: Protocol | None = None, confidence: float | None = None) -> str:
    """``summary.md`` of a sweep: the question, the banner, one robustness line per claim."""
    lines = summary_head(title, manifest, protocol)
    lines += ["## Robustness across specifications", ""]
    lines += robustness_lines(results, confidence) or ["No tested claim."]
    if len(results):
        from dimple_stats.sweep import swept_paths

        attacks = (" How the swept attacks' minimal norms compare image by image: attacks.md."
                   if "attack.method" in swept_paths(results) else "")
        lines += ["", _how(results, protocol) + " Every specification's numbers: results.md; "
                  "every column: results.csv; the specification curves: figures/." + attacks]
    return "\n".join(lines) + "\n"


def _spec_table(rows: pd.DataFrame) -> pd.DataFrame:
    from dimple_stats.report.tables import summary_frame
    from dimple_stats.sweep import SPECIFICATION

    view = summary_frame(rows).drop(columns=["claim", "seed", "statistic"])
    view.insert(0, "specification", rows[SPECIFICATION].astype(str).to_numpy())
    view["seeds rejecting"] = [f"{int(a)}/{int(b)}" if d in ("reject H0", "retain H0") else ""
                               for a, b, d in zip(rows["n_seeds_reject"], rows["n_seeds"],
                                                  rows["decision"])]
    return view


def sweep_markdown(results: pd.DataFrame, *, title: str = "dimple-stats results",
                   manifest: Mapping[str, Any] | None = None, protocol: Any = None,
                   confidence: float | None = None) -> str:
    """``results.md`` of a sweep: robustness lines, then per claim the pooled rows of every
    specification, the nulls and tests, and the notes."""
    from dimple_stats.report.tables import _notes, _pipe_table, nulls_and_tests

    lines = [f"# {title}", ""]
    banner = reduced_run(manifest, protocol)
    if banner:
        lines += [f"> **{banner}**", ""]
    lines += ["## Robustness across specifications", "",
              *(robustness_lines(results, confidence) or ["No tested claim."]), ""]
    if len(results):
        lines += [_how(results, protocol), ""]
    pooled = results[results["seed"].astype(str) == POOLED]
    shown = pooled if len(pooled) else results
    for claim, g in shown.groupby("claim", sort=False):
        lines += [f"## {claim}", "", _pipe_table(_spec_table(g), ("n", "n_censored", "estimate",
                                                                  "effect_size", "p", "p_adj")),
                  ""]
    lines += nulls_and_tests(results)
    notes = _notes(results)
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def sweep_latex(results: pd.DataFrame, *, caption: str | None = None,
                label: str = "tab:dimple-stats-results") -> str:
    """One booktabs longtable per claim: the pooled deciding-variant rows of every
    specification (needs ``\\usepackage{booktabs,longtable,array}``)."""
    from dimple_stats.report.tables import _SHORT_DECISION, _num, _p, latex_escape
    from dimple_stats.report.verdicts import deciding_rows
    from dimple_stats.sweep import CELL, SPECIFICATION

    parts = ["% dimple-stats sweep results: needs \\usepackage{booktabs,longtable,array}"]
    head = (r"specification & autoencoder & variant & n & cens. & estimate & CI & $p_{adj}$ & "
            r"decision \\")
    spec = (r">{\raggedright\arraybackslash}p{3.8cm}>{\raggedright\arraybackslash}p{1.65cm}"
            r">{\raggedright\arraybackslash}p{1.9cm}rrrrrl")
    for claim, g in results.groupby("claim", sort=False):
        chosen = [deciding_rows(h) for _, h in g.groupby([CELL, SPECIFICATION, "autoencoder"],
                                                         sort=False)]
        rows = pd.concat(chosen) if chosen else g.iloc[:0]
        out = [r"\begingroup\footnotesize\setlength{\tabcolsep}{3.5pt}",
               rf"\begin{{longtable}}{{{spec}}}"]
        if caption:
            out.append(rf"\caption{{{latex_escape(f'{caption}: {claim}')}}}"
                       rf"\label{{{label}-{claim.replace('.', '-')}}} \\")
        out += [r"\toprule", head, r"\midrule", r"\endfirsthead", r"\toprule", head,
                r"\midrule", r"\endhead", r"\bottomrule", r"\endfoot"]
        for r in rows.itertuples(index=False):
            ci = (f"[{_num(r.ci_low, 3)}, {_num(r.ci_high, 3)}]"
                  if _num(r.ci_low) and _num(r.ci_high) else "")
            cells = [str(getattr(r, SPECIFICATION)), str(r.autoencoder), str(r.variant),
                     str(int(r.n)), str(int(r.n_censored)), _num(r.estimate, 3), ci,
                     _p(r.p_adj), _SHORT_DECISION.get(str(r.decision), str(r.decision))]
            tex = [latex_escape(c) for c in cells]
            tex[:3] = [t.replace(r"\_", r"\_\allowbreak{}").replace(",", r",\allowbreak{}")
                       for t in tex[:3]]
            out.append(" & ".join(tex) + r" \\")
        out += [r"\end{longtable}", r"\endgroup"]
        parts.append("\n".join(out))
    return "\n\n".join(parts) + "\n"
