"""One table across runs: how each claim reads in every report and autoencoder.

A verdict on one data set is a data point; the question a reader brings is whether it holds on
the next one. :func:`compare_runs` reads the ``results.csv`` of several run directories (no
re-analysis: each report's rows as committed) and gives one row per (report, autoencoder, claim,
null) with the row's reading in the words of :mod:`dimple_stats.report.verdicts`;
:func:`compare_markdown` lays it out as a matrix (claims and nulls down, report and autoencoder
across) followed by one detail table per claim and null with the numbers. Sweeps are left out:
their robustness lines already compare specifications (``summary.md`` of the sweep).

Examples
--------
>>> from pathlib import Path
>>> reports = Path(__file__).resolve().parents[2] / "reports"
>>> table = compare_runs([reports / "quickstart"])  # doctest: +SKIP
>>> sorted(table["reading"].unique())  # doctest: +SKIP
['contradicted', 'not supported', 'supported']
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from dimple_stats.errors import BadInput
from dimple_stats.report.verdicts import (
    _Context,
    _g,
    _row_reading,
    _variant_words,
    deciding_rows,
    quantity,
    verdicts,
)
from dimple_stats.results import DESCRIPTIVE, POOLED

__all__ = ["COMPARE_COLUMNS", "compare_runs", "compare_matrix", "compare_markdown"]

#: Columns of :func:`compare_runs`' table, in order.
COMPARE_COLUMNS = ("report", "autoencoder", "claim", "variant", "null", "deciding", "reading",
                   "verdict", "quantity", "estimate", "ci_low", "ci_high", "p_adj", "seeds",
                   "n", "n_censored")

_SHORT = {"supported": "supported", "not supported": "not supported",
          "contradicted": "contradicted", "uninformative": "uninformative"}


class CompareInputError(BadInput):
    """A report ``compare`` reads is damaged: its results.csv or manifest.json cannot be read,
    lacks a column, or holds values no analysis writes. The message ends in what to do
    (``remedy``; by default, render the report again from its measurements)."""

    section = "compare"

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        super().__init__(f"{message}; {remedy or _RERENDER}")


#: What to do about a damaged results.csv: a report's tables come back from its measurements.
_RERENDER = ("render it again from its measurements with `dimple-stats report RUN_DIR`, or "
             "leave that report out")


#: Columns of results.csv that compare reads.
NEEDED = ("claim", "variant", "autoencoder", "seed", "n", "n_censored", "estimate", "ci_low",
          "ci_high", "estimate_meaning", "p", "p_adj", "alpha", "decision", "test",
          "n_seeds", "n_seeds_reject")
#: Decisions an analysis writes (dimple_stats.results).
DECISIONS = frozenset({"reject H0", "retain H0", "descriptive", "uninformative", "undefined"})


def _manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareInputError(f"{path}: not a readable manifest ({exc})",
                                remedy=_NO_MANIFEST) from None
    if not isinstance(manifest, dict):
        raise CompareInputError(f"{path}: not a readable manifest (not a JSON object)",
                                remedy=_NO_MANIFEST)
    return manifest


#: What to do about a missing or damaged manifest.json (only a run writes one).
_NO_MANIFEST = ("name a report folder that `dimple-stats run` wrote (its manifest.json comes "
                "only from the run), or leave that folder out")


def _check_rectangular(path: Path) -> None:
    """Every record of a CSV has as many fields as its header (pandas pads a short row with
    empty values and reads it as a row; a report never writes one)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError("empty file")
        for record in reader:
            if len(record) != len(header):
                raise ValueError(f"line {reader.line_num}: {len(record)} field(s) where the "
                                 f"header has {len(header)}")


def read_results_csv(path: Path) -> pd.DataFrame:
    """A report's results.csv, checked: the columns compare reads, numbers where numbers
    belong, p and p_adj in [0, 1] (or empty), counts non-negative, decisions from the known
    set. Anything else is a :class:`CompareInputError` naming the file, column and row."""
    try:
        _check_rectangular(path)
        results = pd.read_csv(path, dtype={"seed": str, "variant": str})
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, csv.Error) as exc:
        # One line: the parser's messages end in a newline inside the parentheses.
        raise CompareInputError(f"{path}: not a readable results table "
                                f"({' '.join(str(exc).split())})") from None
    missing = [c for c in NEEDED if c not in results.columns]
    if missing:
        raise CompareInputError(f"{path}: missing column(s) {', '.join(missing)}")

    def bad(col: str, rows: pd.Series, what: str) -> CompareInputError:
        row = int(rows.to_numpy().nonzero()[0][0])
        value = results[col].iloc[row]
        shown = repr(value) if isinstance(value, str) else f"{value:g}"
        return CompareInputError(f"{path}: line {row + 2}: column {col} must be {what}, got "
                                 f"{shown}")

    for col in ("n", "n_censored", "estimate", "ci_low", "ci_high", "p", "p_adj", "alpha",
                "n_seeds", "n_seeds_reject"):
        values = pd.to_numeric(results[col], errors="coerce")
        text = values.isna() & results[col].notna()
        if text.any():
            raise bad(col, text, "a number")
        results[col] = values
    for col in ("p", "p_adj", "alpha"):
        out = (results[col] < 0) | (results[col] > 1)
        if out.any():
            raise bad(col, out, "in [0, 1]")
    for col in ("n", "n_censored", "n_seeds", "n_seeds_reject"):
        out = (results[col] < 0) | (results[col] % 1 != 0)
        if out.any():
            raise bad(col, out, "a count (a whole number >= 0)")
    unknown = ~results["decision"].astype(str).isin(DECISIONS)
    if unknown.any():
        raise bad("decision", unknown, "one of " + ", ".join(sorted(DECISIONS)))
    _check_consistent(path, results, bad)
    return results


def _check_consistent(path: Path, results: pd.DataFrame,
                      bad: Callable[[str, pd.Series, str], CompareInputError]) -> None:
    """Rows a report cannot have written: compare reads each row's verdict from its numbers, so
    a decision that its p_adj contradicts, a CI upside down or a count above its total would be
    shown as a finding."""
    if not len(results):
        raise CompareInputError(f"{path}: the results table has no rows")
    seed = results["seed"].astype(str)
    odd_seed = ~(seed.str.fullmatch(r"\d+") | (seed == POOLED))
    if odd_seed.any():
        raise bad("seed", odd_seed, f"a seed number or {POOLED!r}")
    tested = results["p_adj"].notna() & results["alpha"].notna()
    # (1e-12: p_adj and alpha are written to 12 significant digits)
    reject = results["decision"].astype(str) == "reject H0"
    above = tested & reject & (results["p_adj"] > results["alpha"] * (1 + 1e-12))
    if above.any():
        raise bad("decision", above, "'retain H0' where p_adj exceeds alpha (the row reads "
                  "'reject H0')")
    below = tested & (results["decision"].astype(str) == "retain H0") & (
        results["p_adj"] <= results["alpha"] * (1 - 1e-12))
    if below.any():
        raise bad("decision", below, "'reject H0' where p_adj is at most alpha (the row reads "
                  "'retain H0')")
    upside = results["ci_low"] > results["ci_high"]
    if upside.any():
        raise bad("ci_low", upside, "at most ci_high")
    # Every analysis's estimate lies in its own CI, and is infinite only as a bound of
    # censored values (checked over the 11,000 rows of the committed reports).
    slack = 1e-9 * results["estimate"].abs().where(results["estimate"].abs() < math.inf, 0)
    outside = (results["estimate"] < results["ci_low"] - slack) | (
        results["estimate"] > results["ci_high"] + slack)
    if outside.any():
        raise bad("estimate", outside, "inside [ci_low, ci_high]")
    endless = results["estimate"].abs().eq(math.inf) & results["n_censored"].fillna(0).eq(0)
    if endless.any():
        raise bad("estimate", endless, "finite where no value is censored (n_censored 0)")
    if "ci_level" in results.columns:
        level = pd.to_numeric(results["ci_level"], errors="coerce")
        out = results["ci_level"].notna() & ~((level > 0) & (level < 1))
        if out.any():
            raise bad("ci_level", out, "a level in (0, 1)")
    for part, whole in (("n_censored", "n"), ("n_seeds_reject", "n_seeds")):
        over = results[part] > results[whole]
        if over.any():
            raise bad(part, over, f"at most {whole}")
    key = ["claim", "variant", "autoencoder", "seed"]
    twice = results.duplicated(key, keep="first")
    if twice.any():
        raise bad("seed", twice, "once per claim, variant and autoencoder (a repeated row)")


def _read(run_dir: Path) -> tuple[pd.DataFrame, float | None]:
    results = read_results_csv(run_dir / "results.csv")
    protocol = _manifest(run_dir).get("protocol") or {}
    named = {next(iter(c)) if isinstance(c, dict) and c else c
             for c in protocol.get("claims") or () if isinstance(c, (dict, str))}
    # A claim the run did not ask for is no analysis's row (a plugin's claim is named there
    # too, so it needs no registration in this process).
    stray = ~results["claim"].astype(str).isin(named)
    if stray.any():
        row = int(stray.to_numpy().nonzero()[0][0])
        raise CompareInputError(
            f"{run_dir / 'results.csv'}: line {row + 2}: column claim must be a claim its "
            f"manifest.json names ({', '.join(sorted(map(str, named))) or 'none'}), got "
            f"{results['claim'].iloc[row]!r}")
    confidence = protocol.get("stats", {}).get("confidence")
    return results, confidence


def is_sweep_report(run_dir: str | Path) -> bool:
    """Whether the report at ``run_dir`` is a sweep's (compare skips those)."""
    return "sweep" in _manifest(Path(run_dir))


def compare_runs(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """The tested pooled rows of each run (per-seed rows where a run has no pooled ones), each
    with its reading (supported / not supported / contradicted / uninformative, as
    :func:`~dimple_stats.report.verdicts.verdicts` reads a row) and its claim's verdict.

    ``report`` is the run directory's name; ``deciding`` marks the rows the verdict rests on
    (the others, e.g. the data-shaped nulls of ``dmm.perpendicular``, are read beside them).
    Sweep directories are skipped.
    """
    out = []
    seen: dict[str, Path] = {}
    for run_dir in map(Path, run_dirs):
        real = os.path.realpath(run_dir)
        if real in seen:
            raise CompareInputError(f"{run_dir}: named twice (also as {seen[real]})",
                                    remedy="name each report once")
        seen[real] = run_dir
        if is_sweep_report(run_dir):
            continue
        results, confidence = _read(run_dir)
        tested = results[results["test"].astype(str) != DESCRIPTIVE]
        family = int(tested["p_adj"].notna().sum())
        alpha = float(results["alpha"].iloc[0]) if len(results) else 0.05
        seeds = tested[tested["seed"] != POOLED]
        verdict_of = {(v.claim, v.autoencoder): v.category
                      for v in verdicts(results, confidence=confidence)}
        for (claim, autoencoder), g in tested.groupby(["claim", "autoencoder"], sort=False):
            pooled = g[g["seed"] == POOLED]
            rows = pooled if len(pooled) else g
            decide = set(deciding_rows(g).index)
            ctx = _Context(alpha, family, confidence,
                           seeds[(seeds["claim"] == claim) & (seeds["autoencoder"] == autoencoder)])
            for idx, r in rows.iterrows():
                out.append({
                    "report": run_dir.name, "autoencoder": str(autoencoder),
                    "claim": str(claim), "variant": str(r["variant"]),
                    "null": _variant_words(str(r["variant"]), str(claim)), "deciding": idx in decide,
                    "reading": _row_reading(r, ctx),
                    "verdict": verdict_of.get((claim, autoencoder), ""),
                    "quantity": quantity(str(r["estimate_meaning"])),
                    "estimate": float(r["estimate"]), "ci_low": float(r["ci_low"]),
                    "ci_high": float(r["ci_high"]), "p_adj": float(r["p_adj"]),
                    "seeds": (f"{int(r['n_seeds_reject'])}/{int(r['n_seeds'])}"
                              if str(r["seed"]) == POOLED else f"seed {r['seed']}"),
                    "n": int(r["n"]), "n_censored": int(r["n_censored"]),
                })
    return pd.DataFrame(out, columns=list(COMPARE_COLUMNS))


def _number(r: pd.Series) -> str:
    est = float(r["estimate"])
    return _g(est) if math.isfinite(est) else ""


def _row_order(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(claim, variant) pairs: claims in order of first appearance, each claim's nulls together."""
    claims = list(dict.fromkeys(table["claim"]))
    pairs = list(dict.fromkeys(zip(table["claim"], table["variant"])))
    return sorted(pairs, key=lambda cv: claims.index(cv[0]))


def compare_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Claims and nulls down, ``report: autoencoder`` across; each cell the row's reading and
    its estimate ("supported -0.172"); empty where a report does not test that claim."""
    if table.empty:
        return pd.DataFrame()
    cols = list(dict.fromkeys(f"{r}: {a}" for r, a in zip(table["report"], table["autoencoder"])))
    rows = _row_order(table)
    cells: dict[tuple[str, str], dict[str, str]] = {row: {} for row in rows}
    for _, r in table.iterrows():
        number = _number(r)
        cells[(r["claim"], r["variant"])][f"{r['report']}: {r['autoencoder']}"] = (
            _SHORT[r["reading"]] + (f" {number}" if number else ""))
    matrix = pd.DataFrame([{"claim": c, "null": _variant_words(v, c),
                            **{col: cells[(c, v)].get(col, "") for col in cols}}
                           for c, v in rows])
    return matrix


def _pipe(frame: pd.DataFrame) -> list[str]:
    from dimple_stats.report.tables import _pipe_table

    return _pipe_table(frame).splitlines()


def compare_markdown(table: pd.DataFrame, *, title: str = "Claims across reports") -> str:
    """The matrix, then per claim and null a table of every report's numbers (estimate and CI,
    adjusted p, seeds rejecting, n and censored)."""
    lines = [f"# {title}", ""]
    if table.empty:
        return "\n".join(lines + ["No tested claim.", ""])
    lines += ["Each cell: the row's reading (pooled over seeds where the report pools) and its "
              "estimate; the verdict of a claim rests on its deciding nulls, the others are read "
              "beside them. Reports: " + ", ".join(dict.fromkeys(table["report"])) + ".", ""]
    lines += _pipe(compare_matrix(table)) + [""]
    for claim, variant in _row_order(table):
        g = table[(table["claim"] == claim) & (table["variant"] == variant)]
        lines += [f"## {claim}: against {_variant_words(variant, claim)}", "",
                  f"Quantity: {g['quantity'].iloc[0]}"
                  + ("" if g["deciding"].all() else " (read beside the deciding null)"), ""]
        detail = pd.DataFrame({
            "report": g["report"], "autoencoder": g["autoencoder"], "reading": g["reading"],
            "estimate [CI]": [f"{_g(e)} [{_g(lo)}, {_g(hi)}]" if math.isfinite(e) else ""
                              for e, lo, hi in zip(g["estimate"], g["ci_low"], g["ci_high"])],
            "p_adj": [_g(p) if math.isfinite(p) else "" for p in g["p_adj"]],
            "seeds rejecting": g["seeds"],
            "n (censored)": [f"{n} ({c})" if c else str(n) for n, c in zip(g["n"],
                                                                             g["n_censored"])],
        })
        lines += _pipe(detail) + [""]
    return "\n".join(lines)
