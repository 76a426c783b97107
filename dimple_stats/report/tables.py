"""Rendering the results table: CSV (every column), LaTeX (a compact pooled table that fits a
page, then the per-seed rows) and Markdown (the verdicts in words first, then the pooled and
per-seed tables, the nulls and tests, and the notes once each).

The Markdown renderer is a few lines written here rather than ``DataFrame.to_markdown``: that
needs the ``tabulate`` package for one pipe table, and this keeps the output format under the
project's control (stable across tabulate versions). LaTeX is written here too: a claim's rows
sit under a header row spanning the table, which pandas' Styler does not produce; booktabs
rules in a longtable so long result tables break across pages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from dimple_stats.report.pvalue_text import format_p
from dimple_stats.results import POOLED, RESULT_COLUMNS

__all__ = ["SUMMARY_COLUMNS", "summary_frame", "to_csv_text", "to_latex", "to_markdown"]

#: Columns of the LaTeX and Markdown tables (CSV has all of RESULT_COLUMNS, and the report adds
#: ``verdict`` after ``decision``: :func:`dimple_stats.report.verdicts.with_verdicts`).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "claim", "variant", "autoencoder", "seed", "n", "n_censored", "estimate", "CI",
    "effect_size", "statistic", "p", "p_adj", "decision", "verdict",
)
_NUMERIC = {"n", "n_censored", "estimate", "CI", "effect_size", "statistic", "p", "p_adj"}


def _num(x: object, digits: int = 4) -> str:
    if x is None:
        return ""
    v = float(x)  # type: ignore[arg-type]
    if math.isnan(v):
        return ""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


_p = format_p


# <, > and | print as other glyphs in the default OT1 font encoding (inverted punctuation, an
# em dash); this escapes them with every LaTeX-special character in one pass.
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
        "|": r"\textbar{}"}
_TEX_RE = re.compile("|".join(map(re.escape, _TEX)))


def latex_escape(text: str) -> str:
    r"""Escape LaTeX specials.

    >>> print(latex_escape(r"a_b & c<d ~ 100% \ {x}"))
    a\_b \& c\textless{}d \textasciitilde{} 100\% \textbackslash{} \{x\}
    """
    return _TEX_RE.sub(lambda m: _TEX[m.group(0)], text)


def summary_frame(results: pd.DataFrame) -> pd.DataFrame:
    """The reader's view: numbers formatted as strings, CI as ``[low, high]``.

    >>> from dimple_stats.results import finalise, ResultRow
    >>> row = ResultRow("c", "v", "a", 0, 10, 1, 0.5, 0.25, 0.75, 0.1, "m", 0.3, "r", 12.0,
    ...                 "W+", 0.01, "null", "t", "less")
    >>> summary_frame(finalise([row])).iloc[0].tolist()
    ['c', 'v', 'a', '0', '10', '1', '0.5', '[0.25, 0.75]', '0.3', '12', '0.01', '0.01', 'reject H0', '']

    The verdict column stays empty until :func:`dimple_stats.report.verdicts.with_verdicts`
    has read each row.
    """
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"not a results table: missing columns {', '.join(missing)}")
    ci = [f"[{_num(lo)}, {_num(hi)}]" if _num(lo) and _num(hi) else ""
          for lo, hi in zip(results["ci_low"], results["ci_high"])]
    return pd.DataFrame({
        "claim": results["claim"].astype(str),
        "variant": results["variant"].astype(str),
        "autoencoder": results["autoencoder"].astype(str),
        "seed": results["seed"].astype(str),
        "n": results["n"].map(lambda v: str(int(v))),
        "n_censored": results["n_censored"].map(lambda v: str(int(v))),
        "estimate": results["estimate"].map(_num),
        "CI": ci,
        "effect_size": results["effect_size"].map(lambda v: _num(v, 3)),
        "statistic": results["statistic"].map(_num),
        "p": results["p"].map(_p),
        "p_adj": results["p_adj"].map(_p),
        "decision": results["decision"].astype(str),
        "verdict": (results["verdict"].astype(str) if "verdict" in results.columns
                    else pd.Series("", index=results.index)),
    }, columns=list(SUMMARY_COLUMNS))


#: Significant digits of floats in results.csv: far beyond any reported precision, and stable
#: under the last-bit differences that numpy/scipy releases and BLAS builds make in the same
#: computation (full 17-digit output made committed reports fail to re-render byte-identically
#: after a numpy 2.4 upgrade).
CSV_DIGITS = 12


def to_csv_text(results: pd.DataFrame) -> str:
    """Every column of the results table, floats to :data:`CSV_DIGITS` significant digits,
    ``\\n`` line ends."""
    return results.to_csv(index=False, lineterminator="\n", float_format=f"%.{CSV_DIGITS}g")


#: Columns of the compact LaTeX tables: (header, alignment). Pooled rows show the seeds that
#: reject; per-seed rows their seed. Variant and autoencoder wrap in fixed-width columns, so the
#: table fits a page (article, 1 in margins, \footnotesize) whatever the names.
_TEX_COLUMNS = (("variant", r">{\raggedright\arraybackslash}p{2.9cm}"),
                ("autoencoder", r">{\raggedright\arraybackslash}p{1.9cm}"),
                ("n", "r"), ("cens.", "r"), ("estimate", "r"), ("CI", "r"), ("$p_{adj}$", "r"),
                ("verdict", "l"))
#: Verdicts (or, in tables without them, decisions) as the compact tables print them.
_SHORT_DECISION = {"reject H0": "reject", "retain H0": "retain", "uninformative": "uninform.",
                   "descriptive": "descr.", "undefined": "undef.", "supported": "supported",
                   "not supported": "not supp.", "contradicted": "contrad."}


def _tex_rows(rows: pd.DataFrame, last: str) -> list[str]:
    """Body lines: a claim header row, then one row per result (``last``: seeds or seed)."""
    lines: list[str] = []
    width = len(_TEX_COLUMNS) + 1
    frame = summary_frame(rows)
    ci = [f"[{_num(lo, 3)}, {_num(hi, 3)}]" if _num(lo) and _num(hi) else ""
          for lo, hi in zip(rows["ci_low"], rows["ci_high"])]
    current = None
    for i, (r, f) in enumerate(zip(rows.itertuples(index=False), frame.itertuples(index=False))):
        if r.claim != current:
            current = r.claim
            if lines:
                lines.append(r"\addlinespace")
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textbf{{{latex_escape(str(r.claim))}}}}} \\")
        tested = r.decision in ("reject H0", "retain H0")
        shown = str(getattr(r, "verdict", "") or r.decision)
        tail = (str(r.seed) if last != "seeds" else
                f"{int(r.n_seeds_reject)}/{int(r.n_seeds)}" if tested else "")
        cells = [str(r.variant), str(r.autoencoder), f.n, f.n_censored, _num(r.estimate, 3),
                 ci[i], _p(r.p_adj), _SHORT_DECISION.get(shown, shown), tail]
        tex = [latex_escape(c) for c in cells]
        # Long names break after an underscore rather than running into the next column.
        tex[:2] = [t.replace(r"\_", r"\_\allowbreak{}").replace(":", r":\allowbreak{}")
                   for t in tex[:2]]
        lines.append(" & ".join(tex) + r" \\")
    return lines


def _tex_table(rows: pd.DataFrame, last: str, caption: str | None, label: str | None) -> str:
    header = [h for h, _ in _TEX_COLUMNS] + (["seeds rej."] if last == "seeds" else ["seed"])
    spec = "".join(a for _, a in _TEX_COLUMNS) + "r"
    head = " & ".join(h if h.startswith("$") else latex_escape(h) for h in header) + r" \\"
    out = [r"\begingroup\footnotesize\setlength{\tabcolsep}{3.5pt}",
           rf"\begin{{longtable}}{{{spec}}}"]
    if caption:
        out.append(rf"\caption{{{latex_escape(caption)}}}" + (rf"\label{{{label}}}" if label
                                                              else "") + r" \\")
    out += [r"\toprule", head, r"\midrule", r"\endfirsthead",
            r"\toprule", head, r"\midrule", r"\endhead",
            r"\bottomrule", r"\endfoot"]
    out += _tex_rows(rows, last)
    out += [r"\end{longtable}", r"\endgroup"]
    return "\n".join(out)


def to_latex(results: pd.DataFrame, *, caption: str | None = None,
             label: str = "tab:dimple-stats-results") -> str:
    """Two booktabs longtables: the pooled rows (what a paper shows), then every per-seed row.

    Needs ``\\usepackage{booktabs,longtable,array}``; every text cell is escaped. The columns
    are the reader's (estimate with its CI, adjusted p, decision); CSV keeps every column.
    A run whose rows are all per-seed (no pooled rows) gets one table.
    """
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"not a results table: missing columns {', '.join(missing)}")
    pooled_mask = results["seed"].astype(str) == POOLED
    pooled, per_seed = results[pooled_mask], results[~pooled_mask]
    parts = ["% dimple-stats results: needs \\usepackage{booktabs,longtable,array}"]
    if len(pooled):
        parts.append(_tex_table(pooled, "seeds", f"{caption}: pooled over seeds" if caption
                                else None, label if caption else None))
        levels = sorted({f"{100 * float(v):.4g}\\%" for v in pooled["ci_level"] if _num(v)})
        if levels:
            parts.append(r"{\footnotesize\noindent Pooled CIs are at the level their decision "
                         r"used (the confirmatory family of pooled rows): "
                         + ", ".join(levels) + r".\par}")
    if len(per_seed):
        parts.append(_tex_table(per_seed, "seed", f"{caption}: per seed" if caption else None,
                                f"{label}-per-seed" if caption else None))
    return "\n\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _pipe_table(frame: pd.DataFrame, numeric: Sequence[str] = ()) -> str:
    header = "| " + " | ".join(_md_cell(str(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if c in numeric else "---" for c in frame.columns) + "|"
    body = ["| " + " | ".join(_md_cell(str(v)) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _pooled_view(rows: pd.DataFrame) -> pd.DataFrame:
    """The pooled table's columns: seeds and seeds rejecting instead of the seed, each CI's
    level (the level its decision used) and whom the verdict is about (scope)."""
    view = summary_frame(rows).drop(columns=["seed"])
    view.insert(3, "seeds", rows["n_seeds"].map(lambda v: str(int(v))).to_numpy())
    view.insert(list(view.columns).index("CI") + 1, "CI level",
                [f"{100 * float(v):.4g}%" if _num(v) else "" for v in rows["ci_level"]])
    view["scope"] = rows["scope"].astype(str).to_numpy()
    view["seeds rejecting"] = [f"{int(a)}/{int(b)}" if d in ("reject H0", "retain H0") else ""
                               for a, b, d in zip(rows["n_seeds_reject"], rows["n_seeds"],
                                                  rows["decision"])]
    return view


def nulls_and_tests(results: pd.DataFrame) -> list[str]:
    """results.md's "Nulls and tests": each (claim, variant)'s null, test, estimate and effect."""
    lines = ["## Nulls and tests", ""]
    for (claim, variant), g in results.groupby(["claim", "variant"], sort=False):
        r = g.iloc[0]
        lines += [f"- **{claim}** / {variant}: H0: {r['null']}",
                  f"  - test: {r['test']} (alternative: {r['alternative'] or 'n/a'})",
                  f"  - estimate: {r['estimate_meaning']}"]
        if r["effect_name"]:
            lines.append(f"  - effect size: {r['effect_name']}")
    return lines


def _notes(results: pd.DataFrame) -> list[str]:
    """Each distinct note once, with the rows it applies to (claim / variant / autoencoder:
    seeds)."""
    noted = results[results["note"].astype(str) != ""]
    lines = []
    for note, g in noted.groupby(noted["note"].astype(str), sort=False):
        where = []
        for (c, v, a), h in g.groupby(["claim", "variant", "autoencoder"], sort=False):
            seeds = ", ".join(str(s) for s in h["seed"])
            where.append(f"{c} / {v} / {a} (seed {seeds})")
        lines.append(f"- {note}: " + "; ".join(where))
    return lines


def to_markdown(results: pd.DataFrame, *, title: str = "dimple-stats results",
                manifest: Mapping[str, Any] | None = None, protocol: Any = None,
                confidence: float | None = None) -> str:
    """Summary first (verdicts in words), then the pooled table, the per-seed table, each
    (claim, variant)'s null, test and estimate, and the notes, each distinct note once."""
    from dimple_stats.report.summary import reduced_run, tally, verdict_lines
    from dimple_stats.report.verdicts import verdicts
    found = verdicts(results, confidence=confidence)
    lines = [f"# {title}", ""]
    banner = reduced_run(manifest, protocol)
    if banner:
        lines += [f"> **{banner}**", ""]
    lines += [f"## Summary ({tally(found)})", "", *(verdict_lines(found) or ["No tested claim."]),
              ""]
    numeric = sorted(_NUMERIC | {"seeds"})
    pooled_mask = (results["seed"].astype(str) == POOLED).to_numpy()
    if pooled_mask.any():
        lines += ["## Pooled over seeds", "", _pipe_table(_pooled_view(results[pooled_mask]),
                                                         numeric), ""]
    if len(results):
        alpha = results["alpha"].iloc[0]
        lines += [f"Decisions at alpha = {alpha:g} on p_adj. The pooled rows are the run's "
                  "verdicts, adjusted together over every claim (the confirmatory family); "
                  "each CI is at the level its decision used (CI level). The per-seed rows are "
                  "replications, adjusted in a family of their own and counted as 'seeds "
                  "rejecting'. 'uninformative': too censored or too few samples to answer "
                  "(see the notes).", ""]
    if (~pooled_mask).any():
        lines += ["## Per seed", "", _pipe_table(summary_frame(results[~pooled_mask]), numeric),
                  ""]
    from dimple_stats.attack_audit import audit_lines
    lines += audit_lines(manifest)
    lines += nulls_and_tests(results)
    notes = _notes(results)
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"
