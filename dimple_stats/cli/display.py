"""Console tables of the commands: the claims summary and the trained models."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["cell", "print_metrics", "print_summary", "seed_line"]


def seed_line(output: Any) -> str:
    rows = {"measurement": len(output.measurements),
            **{kind: len(table) for kind, table in output.tables.items()}}
    counts = ", ".join(f"{n} {kind} rows" for kind, n in rows.items() if n)
    return (f"seed {output.seed}: {counts or 'no rows'} "
            f"({output.shards.get('computed', 0)} stages computed, "
            f"{output.shards.get('loaded', 0)} loaded from the store)")


def print_summary(results: Any) -> None:
    from dimple_stats.report.tables import format_p
    from dimple_stats.results import censoring_warnings

    for line in censoring_warnings(results):
        typer.echo(f"warning: {line}", err=True)
    pooled = results[results["seed"].astype(str) == "pooled"]
    shown = pooled if len(pooled) else results
    table = Table(title="claims (pooled over seeds)" if len(pooled) else "claims")
    for col in ("claim", "variant", "autoencoder", "n", "estimate [CI]", "p_adj", "decision",
                "seeds rejecting"):
        table.add_column(col, justify="right" if col in ("n", "p_adj") else "left")
    for row in shown.itertuples(index=False):
        table.add_row(str(row.claim), str(row.variant), str(row.autoencoder), cell(row.n),
                      f"{cell(row.estimate)} [{cell(row.ci_low)}, {cell(row.ci_high)}]",
                      format_p(row.p_adj), str(row.decision),
                      f"{cell(row.n_seeds_reject)}/{cell(row.n_seeds)}")
    Console(width=None if sys.stdout.isatty() else 200).print(table)


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
