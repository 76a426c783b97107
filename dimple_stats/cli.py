"""The ``dimple-stats`` command.

Subcommands that only read protocols or stored tables (validate, schema, claims, report) never import
torch; those that compute import ``runners`` lazily, inside the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from dimple_stats import __version__
from dimple_stats.claims import get_claim, list_claims
from dimple_stats.claims.catalogue import UnknownClaimError
from dimple_stats.claims.analysis import OPTIONAL_COLUMNS
from dimple_stats.protocol import Protocol, ProtocolError, load_protocol
from dimple_stats.seeds import parse_seeds

__all__ = ["app", "main"]

EXIT_BAD_INPUT = 2

app = typer.Typer(
    name="dimple-stats",
    help="Significance tests for the dimpled manifold model of adversarial examples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options the compute commands share: declared once, so their help and defaults cannot drift.
SeedsOption = Annotated[Optional[str], typer.Option(
    "--seeds", help="Seeds, e.g. 0-4 or 0,2 (default: the protocol's).")]
StoreOption = Annotated[Optional[Path], typer.Option(
    "--store", help="Artifact store directory (default: $DIMPLE_STATS_STORE or "
    "~/.cache/dimple-stats/store).")]
DeviceOption = Annotated[Optional[str], typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N (default: the protocol's).")]

SetOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        help="Override a protocol field, e.g. --set attack.eps=0.5 --set seeds=[0,1] (repeatable).",
        metavar="KEY=VALUE",
    ),
]


def _fail(message: str) -> typer.Exit:
    # Plain stderr, not rich: the message must survive intact in logs and pipes.
    typer.echo(message, err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _warn(file: Path, protocol: Protocol) -> None:
    """Settings that validate but are probably not meant (stderr; the exit code stays 0)."""
    for message in protocol.attack.unreachable():
        typer.echo(f"warning: {file}: {message}", err=True)


def _load_for_compute(protocol_file: Path, overrides: list[str], seeds: Optional[str],
                      device: Optional[str] = None
                      ) -> tuple[Protocol, Optional[tuple[int, ...]]]:
    """Protocol and --seeds of `train` and `run` (--device overrides the protocol's): exit 2 on
    bad input, warnings to stderr."""
    if device is not None:
        overrides = [*overrides, f"device={device}"]
    try:
        protocol = load_protocol(protocol_file, overrides=overrides)
        seed_list = parse_seeds(seeds) if seeds else None
    except ProtocolError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(f"--seeds: {exc}") from None
    _warn(protocol_file, protocol)
    return protocol, seed_list


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dimple-stats {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Significance tests for the dimpled manifold model of adversarial examples."""


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Protocol YAML files.", show_default=False)],
    set_: SetOption = None,
) -> None:
    """Check protocol files against the schema; exit 2 naming file, line and key on any error."""
    console = Console()
    failed = False
    for file in files:
        try:
            protocol = load_protocol(file, overrides=set_ or ())
        except ProtocolError as exc:
            typer.echo(str(exc), err=True)
            failed = True
            continue
        _warn(file, protocol)
        console.print(
            f"[green]ok[/green] {file}: {protocol.name} (hash {protocol.hash}), "
            f"dataset {protocol.dataset.name}, {len(protocol.autoencoders)} autoencoder(s), "
            f"{len(protocol.claims)} claim(s), seeds {list(protocol.seeds)}",
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def schema(
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the protocol JSON Schema (for editor completion and validation)."""
    text = json.dumps(Protocol.model_json_schema(by_alias=True), indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")


@app.command()
def claims(
    claim_id: Annotated[Optional[str], typer.Argument(help="Show one claim in full.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the claim catalogue: ids, hypotheses, statistics, tests and nulls."""
    try:
        chosen = [get_claim(claim_id)] if claim_id else list_claims()
    except UnknownClaimError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([
            {
                "id": c.id, "source": c.source, "hypothesis": c.hypothesis,
                "statistic": c.statistic, "test": c.test, "nulls": c.nulls,
                # with the default options (e.g. dmm.perpendicular's null changes them)
                "columns": list(c.required_columns()),
                "optional_columns": list(OPTIONAL_COLUMNS), "censoring": c.censoring,
                "options": c.options.model_json_schema(),
            }
            for c in chosen
        ], indent=2))
        return
    console = Console()
    if claim_id:
        c = chosen[0]
        console.print(f"[bold]{c.id}[/bold]  ({c.source})", highlight=False)
        for label, text in (("H1", c.hypothesis), ("statistic", c.statistic), ("test", c.test),
                            ("censoring", c.censoring)):
            console.print(f"  [cyan]{label}[/cyan]: {text}", highlight=False)
        for name, text in c.nulls.items():
            console.print(f"  [cyan]null {name}[/cyan]: {text}", highlight=False)
        opts = ", ".join(f"{k}={f.default!r}" for k, f in c.options.model_fields.items())
        console.print(f"  [cyan]options[/cyan]: {opts or '(none)'}", highlight=False)
        return
    table = Table(title="dimple-stats claim catalogue (details: dimple-stats claims ID)")
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("H1 (what the claim says)", overflow="fold")
    table.add_column("nulls", overflow="fold")
    for c in chosen:
        table.add_row(c.id, c.hypothesis, ", ".join(c.nulls))
    console.print(table)


@app.command()
def train(
    protocol_file: Annotated[Path, typer.Argument(help="Protocol YAML file.", show_default=False)],
    seeds: SeedsOption = None,
    store: StoreOption = None,
    device: DeviceOption = None,
    set_: SetOption = None,
) -> None:
    """Train (or load from the store) every model a protocol names and print their metrics."""
    protocol, seed_list = _load_for_compute(protocol_file, list(set_ or ()), seeds, device)
    # Imported here: everything above runs without torch.
    from runners.datasets import DatasetConfigError, DatasetNotFoundError
    from runners.store import ArtifactStore
    from runners.training import train_protocol

    try:
        rows = train_protocol(protocol, seeds=seed_list, store=ArtifactStore(store),
                              device=protocol.device, progress=sys.stderr.isatty())
    except (DatasetNotFoundError, DatasetConfigError) as exc:
        raise _fail(f"{protocol_file}: dataset: {exc}") from None
    _print_metrics(rows)


@app.command()
def run(
    protocol_file: Annotated[Path, typer.Argument(help="Protocol YAML file.", show_default=False)],
    seeds: SeedsOption = None,
    executor: Annotated[Optional[str], typer.Option(
        help="local | processes | ray (default: the protocol's).")] = None,
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster address (default: start a local Ray instance).")] = None,
    store: StoreOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Report directory "
                                                "(default: reports/<protocol name>).")] = None,
    device: DeviceOption = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N eval "
                                                 "images (a quick, reduced run).")] = None,
    set_: SetOption = None,
) -> None:
    """Run a protocol end to end: train or load, attack and measure, test every claim, report."""
    overrides = list(set_ or ())
    if executor is not None:
        overrides.append(f"executor={executor}")
    protocol, seed_list = _load_for_compute(protocol_file, overrides, seeds, device)
    # Imported here: everything above runs without torch.
    from runners.datasets import DatasetConfigError, DatasetNotFoundError
    from runners.pipeline import UnsupportedClaimError, run_protocol
    from runners.measure import MembershipError
    from runners.training import CollapsedAutoencoderError

    console = Console(stderr=True)
    try:
        outcome = run_protocol(
            protocol, seeds=seed_list, address=address, store_root=store, out_dir=out,
            limit=limit, progress=sys.stderr.isatty(),
            on_seed=lambda o: console.print(_seed_line(o), highlight=False),
        )
    except (DatasetNotFoundError, DatasetConfigError) as exc:
        raise _fail(f"{protocol_file}: dataset: {exc}") from None
    except UnsupportedClaimError as exc:
        raise _fail(f"{protocol_file}: claims: {exc}") from None
    except (CollapsedAutoencoderError, MembershipError) as exc:
        # A run-time outcome, not malformed input: exit 1 (seeds already done stay in the store).
        typer.echo(f"error: {protocol_file}: {exc}", err=True)
        raise typer.Exit(1) from None
    _print_summary(outcome.results)
    typer.echo(f"report: {outcome.out_dir}")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes everywhere (CI): checks "
                                        "agreement, the timings are not the issue's.")] = False,
    out: Annotated[Path, typer.Option(help="Directory for benchmarks.md and benchmarks.json.")
                   ] = Path("reports/benchmarks"),
    only: Annotated[Optional[list[str]], typer.Option(
        "--only", help="Run only these benchmarks (repeatable): tangent, projection, attacks, "
        "end_to_end, regulariser, threads, feasible.")] = None,
) -> None:
    """Benchmark side by side (issue 8): ratios, agreement checks, targets MET / NOT MET.

    Exits 1 when any comparison's results disagree or a benchmark failed: a fast wrong answer
    must not pass.
    """
    # Imported here: everything above runs without torch.
    from runners.bench import run_benchmarks

    try:
        data = run_benchmarks(quick=quick, out=out, only=only,
                              log=lambda m: typer.echo(m, err=True))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    for t in data["targets"]:
        typer.echo(f"{'MET    ' if t['met'] else 'NOT MET'}  {t['benchmark']}: {t['name']} "
                   f"{t['target']}: {t['display']}")
    typer.echo(f"wrote {out / 'benchmarks.md'} and {out / 'benchmarks.json'}")
    if not data["all_agree"]:
        typer.echo("some results DISAGREE or a benchmark failed: see the report", err=True)
        raise typer.Exit(1)


def _seed_line(output: Any) -> str:
    rows = {"measurement": len(output.measurements),
            **{kind: len(table) for kind, table in output.tables.items()}}
    counts = ", ".join(f"{n} {kind} rows" for kind, n in rows.items() if n)
    return (f"seed {output.seed}: {counts or 'no rows'} "
            f"({output.shards.get('computed', 0)} stages computed, "
            f"{output.shards.get('loaded', 0)} loaded from the store)")


def _print_summary(results: "Any") -> None:
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
        table.add_row(str(row.claim), str(row.variant), str(row.autoencoder), _cell(row.n),
                      f"{_cell(row.estimate)} [{_cell(row.ci_low)}, {_cell(row.ci_high)}]",
                      format_p(row.p_adj), str(row.decision),
                      f"{_cell(row.n_seeds_reject)}/{_cell(row.n_seeds)}")
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _print_metrics(rows: list[dict]) -> None:
    columns = ["seed", "model", "arch", "loaded", "test_accuracy", "recon_mse", "recon_vs_mean",
               "median_cond", "mean_sigma_spread", "epochs_run", "train_seconds"]
    table = Table(title="trained models")
    for col in columns:
        table.add_column(col, justify="right" if col not in ("model", "arch") else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in columns))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory: manifest.json + "
                                            "measurements.parquet (+ other tables).",
                                            show_default=False)],
    format_: Annotated[Optional[str], typer.Option(
        "--format", help="Comma-separated: csv,latex,markdown (default: the protocol's).",
        metavar="FORMATS")] = None,
    correction: Annotated[Optional[str], typer.Option(
        help="Multiplicity correction: holm | fdr_bh | none (default: the protocol's).")] = None,
    alpha: Annotated[Optional[float], typer.Option(
        help="Significance level (default: the protocol's).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Write the report here instead of into RUN_DIR.")] = None,
    figures: Annotated[Optional[bool], typer.Option(
        "--figures/--no-figures", help="Draw figures/*.png (default: the protocol's).",
        show_default=False)] = None,
) -> None:
    """Re-analyse a stored run and write results.csv/.tex/.md and figures/*.png (no torch)."""
    from pydantic import ValidationError

    from dimple_stats.claims.analysis import AnalysisError
    from dimple_stats.measurements import MeasurementsError
    from dimple_stats.report import FORMATS
    from dimple_stats.report.run import RunDirError, report_run
    from dimple_stats.suggest import did_you_mean

    formats = None
    if format_ is not None:
        formats = [f.strip() for f in format_.split(",") if f.strip()]
        for f in formats:
            if f not in FORMATS:
                raise _fail(f"--format: unknown format {f!r}{did_you_mean(f, FORMATS)}; "
                            f"allowed: {', '.join(FORMATS)}")
    corrections = ("holm", "fdr_bh", "none")
    if correction is not None and correction not in corrections:
        raise _fail(f"--correction: unknown correction {correction!r}"
                    f"{did_you_mean(correction, corrections)}; allowed: {', '.join(corrections)}")
    if alpha is not None and not 0 < alpha < 1:
        raise _fail(f"--alpha must be between 0 and 1, got {alpha}")
    try:
        results, paths = report_run(run_dir, out, formats=formats, correction=correction,
                                    alpha=alpha, figures=figures)
    except (RunDirError, MeasurementsError, AnalysisError, UnknownClaimError,
            ValidationError) as exc:
        raise _fail(f"dimple-stats report: {exc}") from None
    from dimple_stats.report.tables import format_p
    from dimple_stats.results import censoring_warnings

    for line in censoring_warnings(results):
        typer.echo(f"warning: {line}", err=True)
    console = Console()
    pooled = results[results["seed"] == "pooled"]
    table = Table(title=f"pooled results ({len(results)} rows in all)")
    for col in ("claim", "variant", "autoencoder", "estimate", "p_adj", "decision"):
        table.add_column(col, overflow="fold", no_wrap=col in ("claim", "decision"))
    for r in pooled.itertuples(index=False):
        table.add_row(r.claim, r.variant, r.autoencoder, f"{r.estimate:.4g}",
                      format_p(r.p_adj), r.decision)
    console.print(table)
    target = run_dir if out is None else out
    console.print(f"wrote {len(paths)} file(s) to {target}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="dimple-stats")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
