"""Commands that compute (train, run, bench): everything before their first ``runners`` import
runs without torch, so bad input is rejected before torch loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dimple_stats.cli.app import command, fail, run_failed
from dimple_stats.cli.display import print_metrics, print_summary, seed_line
from dimple_stats.cli.options import (
    DeviceOption,
    QuietOption,
    ReplaceOption,
    SeedsOption,
    SetOption,
    StoreOption,
    VerboseOption,
    load_for_compute,
    progress_mode,
)
from dimple_stats.errors import BadInput, RunFailure


@command
def train(
    protocol_file: Annotated[Path, typer.Argument(help="Protocol YAML file.", show_default=False)],
    seeds: SeedsOption = None,
    store: StoreOption = None,
    device: DeviceOption = None,
    set_: SetOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Train (or load from the store) every model a protocol names and print their metrics."""
    mode = progress_mode(quiet, verbose)
    protocol, seed_list = load_for_compute(protocol_file, list(set_ or ()), seeds, device)
    # Imported here: everything above runs without torch.
    from runners.seed_models import train_protocol
    from runners.store import ArtifactStore

    try:
        rows = train_protocol(protocol, seeds=seed_list,
                              store=ArtifactStore(store).check_location(),
                              device=protocol.device, progress=mode)
    except BadInput as exc:
        raise fail(exc.located(protocol_file)) from None
    except RunFailure as exc:
        # A training outcome, not malformed input: exit 1 (the weights stay in the store).
        raise run_failed(f"{protocol_file}: {exc}") from None
    print_metrics(rows)


@command
def run(
    protocol_file: Annotated[Path, typer.Argument(help="Protocol YAML file.", show_default=False)],
    seeds: SeedsOption = None,
    executor: Annotated[str | None, typer.Option(
        help="local | processes | ray (default: the protocol's).")] = None,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster address (default: start a local Ray instance).")] = None,
    store: StoreOption = None,
    out: Annotated[Path | None, typer.Option(help="Report directory "
                                                "(default: reports/<protocol name>).")] = None,
    device: DeviceOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N eval "
                                                 "images (a quick, reduced run; on data with "
                                                 "fewer than dataset.eval_samples, N of "
                                                 "them are selected).")] = None,
    set_: SetOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    replace: ReplaceOption = False,
) -> None:
    """Run a protocol end to end: train or load, attack and measure, test every claim, report."""
    mode = progress_mode(quiet, verbose)
    protocol, seed_list = load_for_compute(protocol_file, list(set_ or ()), seeds, device,
                                           address=address, executor=executor)
    # Imported here: everything above runs without torch.
    from runners.pipeline import run_protocol

    console = Console(stderr=True)
    try:
        outcome = run_protocol(
            protocol, seeds=seed_list, address=address, store_root=store, out_dir=out,
            limit=limit, progress=mode, replace=replace,
            on_seed=lambda o: console.print(seed_line(o), highlight=False),
        )
    except BadInput as exc:  # dataset files, dataset settings, claims the run cannot serve
        raise fail(exc.located(protocol_file)) from None
    except RunFailure as exc:
        # A run-time outcome, not malformed input: exit 1 (seeds already done stay in the store).
        raise run_failed(f"{protocol_file}: {exc}") from None
    print_summary(outcome.results, confidence=protocol.stats.confidence)
    typer.echo(f"report: {outcome.out_dir}")


@command
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes everywhere (CI): checks "
                                        "agreement; the timings are not the targets' sizes.")] = False,
    out: Annotated[Path, typer.Option(help="Directory for benchmarks.md and benchmarks.json.")
                   ] = Path("reports/benchmarks"),
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Run only these benchmarks (repeatable): tangent, projection, attacks, "
        "end_to_end, regulariser, threads, feasible, store, multiverse.")] = None,
) -> None:
    """Benchmark side by side: ratios, agreement checks, targets MET / NOT MET.

    Exits 1 when any comparison's results disagree or a benchmark failed: a fast wrong answer
    must not pass.
    """
    from dimple_stats.report.destination import BENCHMARKS, check_destination

    check_destination(out, output=BENCHMARKS)  # a file or someone's folder: exit 2, no work
    # Imported here: everything above runs without torch.
    from runners.bench import run_benchmarks

    try:
        data = run_benchmarks(quick=quick, out=out, only=only,
                              log=lambda m: typer.echo(m, err=True))
    except BadInput as exc:  # an unknown --only name
        raise fail(f"--only: {exc}") from None
    for t in data["targets"]:
        typer.echo(f"{'MET    ' if t['met'] else 'NOT MET'}  {t['benchmark']}: {t['name']} "
                   f"{t['target']}: {t['display']}")
    typer.echo(f"wrote {out / 'benchmarks.md'} and {out / 'benchmarks.json'}")
    if not data["all_agree"]:
        typer.echo("some results DISAGREE or a benchmark failed: see the report", err=True)
        raise typer.Exit(1)
