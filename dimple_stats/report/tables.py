"""Rendering the results table: CSV (every column), LaTeX and Markdown (the columns a reader
scans, with the nulls and tests listed below the table in Markdown).

The Markdown renderer is a few lines written here rather than ``DataFrame.to_markdown``: that
needs the ``tabulate`` package for one pipe table, and this keeps the output format under the
project's control (stable across tabulate versions). LaTeX goes through pandas' Styler (which
needs Jinja2), with booktabs rules in a longtable so long result tables break across pages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pandas as pd

from dimple_stats.results import RESULT_COLUMNS

__all__ = ["SUMMARY_COLUMNS", "summary_frame", "to_csv_text", "to_latex", "to_markdown"]

#: Columns of the LaTeX and Markdown tables (CSV has all of RESULT_COLUMNS).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "claim", "variant", "autoencoder", "seed", "n", "n_censored", "estimate", "CI",
    "effect_size", "statistic", "p", "p_adj", "decision",
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


#: p-values below this print as "< 1e-15": double precision cannot resolve smaller tail
#: probabilities reliably, and a reader should not take 1e-69 at face value.
P_FLOOR = 1e-15


def format_p(x: object) -> str:
    """A p-value for people: 3 significant digits, "< 1e-15" below that, "" for NaN.

    >>> format_p(0.012345), format_p(3e-70), format_p(float("nan"))
    ('0.0123', '< 1e-15', '')
    """
    v = float(x)  # type: ignore[arg-type]
    if math.isnan(v):
        return ""
    return f"< {P_FLOOR:g}" if v < P_FLOOR else f"{v:.3g}"


_p = format_p


# Styler's escape="latex" leaves < and >, which the default OT1 font encoding prints as
# inverted punctuation; this escapes every LaTeX-special character in one pass.
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}"}
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
    ['c', 'v', 'a', '0', '10', '1', '0.5', '[0.25, 0.75]', '0.3', '12', '0.01', '0.02', 'reject H0']
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


def to_latex(results: pd.DataFrame, *, caption: str | None = None,
             label: str = "tab:dimple-stats-results") -> str:
    """A booktabs longtable (needs ``\\usepackage{booktabs,longtable}``); text is escaped."""
    table = summary_frame(results).map(latex_escape)
    table.columns = [latex_escape(c) for c in table.columns]
    align = "".join("r" if c in _NUMERIC else "l" for c in SUMMARY_COLUMNS)
    styler = table.style.hide(axis="index")
    return styler.to_latex(environment="longtable", hrules=True, column_format=align,
                           caption=latex_escape(caption) if caption else None,
                           label=label if caption else None)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _pipe_table(frame: pd.DataFrame, numeric: Sequence[str] = ()) -> str:
    header = "| " + " | ".join(_md_cell(str(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if c in numeric else "---" for c in frame.columns) + "|"
    body = ["| " + " | ".join(_md_cell(str(v)) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def to_markdown(results: pd.DataFrame, *, title: str = "dimple-stats results") -> str:
    """Results table, then each (claim, variant)'s null, test and estimate, then row notes."""
    lines = [f"# {title}", "", _pipe_table(summary_frame(results), sorted(_NUMERIC)), ""]
    if len(results):
        alpha = results["alpha"].iloc[0]
        lines += [f"Decisions at alpha = {alpha:g} on p_adj, adjusted over every tested row "
                  "of the run (one family). 'uninformative': too censored or too few samples "
                  "to answer (see the notes).", ""]
    lines += ["## Nulls and tests", ""]
    for (claim, variant), g in results.groupby(["claim", "variant"], sort=False):
        r = g.iloc[0]
        lines += [f"- **{claim}** / {variant}: H0: {r['null']}",
                  f"  - test: {r['test']} (alternative: {r['alternative'] or 'n/a'})",
                  f"  - estimate: {r['estimate_meaning']}"]
        if r["effect_name"]:
            lines.append(f"  - effect size: {r['effect_name']}")
    noted = results[results["note"].astype(str) != ""]
    if len(noted):
        lines += ["", "## Notes", ""]
        lines += [f"- {r.claim} / {r.variant} / {r.autoencoder} / seed {r.seed}: {r.note}"
                  for r in noted.itertuples(index=False)]
    return "\n".join(lines) + "\n"
