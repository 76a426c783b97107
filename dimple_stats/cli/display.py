"""Console tables of the commands: the claims summary and the trained models."""

from __future__ import annotations

import math
import sys
import textwrap
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["cell", "print_metrics", "print_summary", "seed_line"]


def seed_line(output: Any) -> str:
    rows = {"measurement": len(output.measurements),
            **{kind: len(table) for kind, table in output.tables.items()}}
    counts = ", ".join(f"{n} {kind} rows" for kind, n in rows.items() if n)
    cell = getattr(output, "cell", None)
    return (f"{'' if cell is None else f'cell {cell}, '}seed {output.seed}: {counts or 'no rows'} "
            f"({output.shards.get('computed', 0)} stages computed, "
            f"{output.shards.get('loaded', 0)} loaded from the store)")


#: Width of the console summary when stdout is not a terminal (logs, CI, pipes): it is laid
#: out to fit 80 columns without cutting a name.
SUMMARY_WIDTH = 80


def print_summary(results: Any, *, confidence: float | None = None,
                  width: int | None = None) -> None:
    """The verdicts in words, then one two-line entry per pooled tested row, within 80 columns.

    Each entry's first line names claim, variant and autoencoder in full; the second gives n,
    censored, the estimate with its CI, p_adj, the decision and the seeds that reject. Rows are
    never cut: a long name wraps onto the next line.
    """
    from rich.text import Text

    from dimple_stats.report.pvalue_text import format_p
    from dimple_stats.report.summary import tally
    from dimple_stats.report.verdicts import verdicts
    from dimple_stats.results import DESCRIPTIVE, censoring_warnings

    for line in censoring_warnings(results):
        typer.echo(textwrap.fill(f"warning: {line}", SUMMARY_WIDTH, subsequent_indent="  "),
                   err=True)
    console = Console(width=width or (None if sys.stdout.isatty() else SUMMARY_WIDTH),
                      soft_wrap=False, highlight=False)
    from dimple_stats.report.robustness import robustness
    from dimple_stats.sweep import is_sweep

    if is_sweep(results):  # one line per claim: the rows are in results.md
        console.print(Text("Robustness across specifications", style="bold"))
        for r in robustness(results, confidence=confidence or 0.95):
            console.print(textwrap.fill(r.line().replace("**", ""), console.width or
                                        SUMMARY_WIDTH, subsequent_indent="  ",
                                        break_on_hyphens=False))
        return
    found = verdicts(results, confidence=confidence)
    console.print(Text(f"Verdicts ({tally(found)})", style="bold"))
    for v in found:
        who = f" ({v.autoencoder})" if v.autoencoder not in ("-", "") else ""
        head = Text(f"{v.category.upper():<14}", style=_STYLE.get(v.category, ""))
        head.append(f"{v.claim}{who}", style="bold")
        console.print(head)
        if v.headline():
            console.print(textwrap.fill(v.headline(), (console.width or SUMMARY_WIDTH),
                                        initial_indent="  ", subsequent_indent="  ",
                                        break_on_hyphens=False), highlight=False)
        # Wrapped here (not by rich, which pads every line to the console width).
        para = textwrap.fill(f"{v.hypothesis} {v.body}".strip(),
                             (console.width or SUMMARY_WIDTH), initial_indent="  ",
                             subsequent_indent="  ", break_on_hyphens=False)
        console.print(Text(para, style="dim" if v.category == "uninformative" else ""))
    pooled = results[results["seed"].astype(str) == "pooled"]
    shown = pooled if len(pooled) else results
    shown = shown[shown["test"].astype(str) != DESCRIPTIVE]
    console.print()
    console.print(Text("Tested rows" + (" (pooled over seeds)" if len(pooled) else ""),
                       style="bold"))
    for r in shown.itertuples(index=False):
        console.print(Text(f"{r.claim} / {r.variant} / {r.autoencoder}"))
        tested = r.decision in ("reject H0", "retain H0")
        pieces = [f"n {r.n} ({r.n_censored} cens.)"]
        if math.isfinite(float(r.estimate)):
            pieces.append(f"{_g3(r.estimate)} [{_g3(r.ci_low)}, {_g3(r.ci_high)}]")
        if tested:
            pieces.append(f"p_adj {format_p(r.p_adj)}")
        pieces.append(str(r.decision))
        if len(pooled) and tested:
            pieces.append(f"{r.n_seeds_reject}/{r.n_seeds} seeds")
        # Packed into lines of the console's width, never cut inside a piece.
        line = "   "
        for piece in pieces:
            if len(line) + 2 + len(piece) > (console.width or SUMMARY_WIDTH):
                console.print(Text(line))
                line = "   "
            line += "  " + piece
        console.print(Text(line))


def _g3(value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    return f"{v:.3g}" if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "-")


_STYLE = {"supported": "bold green", "not supported": "bold yellow",
          "contradicted": "bold red", "uninformative": "bold"}


def print_metrics(rows: list[dict]) -> None:
    columns = ["seed", "model", "arch", "loaded", "test_accuracy", "recon_mse", "recon_vs_mean",
               "median_cond", "mean_sigma_spread", "epochs_run", "train_seconds"]
    table = Table(title="trained models")
    for col in columns:
        table.add_column(col, justify="right" if col not in ("model", "arch") else "left")
    for row in rows:
        table.add_row(*(cell(row.get(col)) for col in columns))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
