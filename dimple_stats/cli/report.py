"""``dimple-stats report``: re-analyse a stored run (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dimple_stats.cli.app import command, fail
from dimple_stats.cli.options import ReplaceOption
from dimple_stats.errors import BadInput


@command
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory: manifest.json + "
                                            "measurements.parquet (+ other tables).",
                                            show_default=False)],
    format_: Annotated[str | None, typer.Option(
        "--format", help="Comma-separated: csv,latex,markdown (default: the protocol's).",
        metavar="FORMATS")] = None,
    correction: Annotated[str | None, typer.Option(
        help="Multiplicity correction: holm | fdr_bh | none (default: the protocol's).")] = None,
    alpha: Annotated[float | None, typer.Option(
        help="Significance level (default: the protocol's).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the report here instead of into RUN_DIR.")] = None,
    figures: Annotated[bool | None, typer.Option(
        "--figures/--no-figures", help="Draw figures/*.png (default: the protocol's).",
        show_default=False)] = None,
    html: Annotated[bool, typer.Option(
        "--html/--no-html", help="Write report.html: the whole report in one self-contained "
        "page.")] = True,
    replace: ReplaceOption = False,
) -> None:
    """Re-analyse a stored run and write results.csv/.tex/.md, figures/*.png and report.html
    (no torch)."""
    from pydantic import ValidationError

    from dimple_stats.report import FORMATS
    from dimple_stats.report.destination import (
        check_destination,
        mark_rendered,
        same_folder,
        staged_report,
    )
    from dimple_stats.report.run import read_run, report_run
    from dimple_stats.stats_config import CORRECTIONS
    from dimple_stats.suggest import did_you_mean

    if out is not None and same_folder(out, run_dir):
        out = None  # --out naming the run folder itself: rendered in place
    if out is not None:
        try:  # before any work: a file, someone's folder or another run's folder is refused
            check_destination(out, replace=replace)
        except BadInput as exc:
            raise fail(exc.located("dimple-stats report")) from None
    formats = None
    if format_ is not None:
        formats = [f.strip() for f in format_.split(",") if f.strip()]
        try:
            formats = [FORMATS.check(f) for f in formats]
        except BadInput as exc:
            raise fail(f"--format: {exc}") from None
    if correction is not None and correction not in CORRECTIONS:
        raise fail(f"--correction: unknown correction {correction!r}"
                   f"{did_you_mean(correction, CORRECTIONS)}; allowed: {', '.join(CORRECTIONS)}")
    if alpha is not None and not 0 < alpha < 1:
        raise fail(f"--alpha must be between 0 and 1, got {alpha}")
    options = dict(formats=formats, correction=correction, alpha=alpha, figures=figures,
                   html=html)
    try:
        run = read_run(run_dir)  # a bad run folder: exit 2 before --out is touched
        if out is None:
            results, paths = report_run(run_dir, **options)
        else:
            # Replaced as a whole: an earlier report there (a run's or a render's) leaves no
            # file of its own beside this one, and an interrupted render leaves it whole.
            with staged_report(out, replace=replace) as staging:
                results, paths = report_run(run_dir, staging, **options)
                paths.append(mark_rendered(staging, run_dir))
    except BadInput as exc:
        raise fail(exc.located("dimple-stats report")) from None
    except ValidationError as exc:
        raise fail(f"dimple-stats report: {exc}") from None
    from dimple_stats.cli.display import print_summary

    print_summary(results, confidence=run.protocol.stats.confidence)
    console = Console()
    target = run_dir if out is None else out
    console.print(f"wrote {len(paths)} file(s) to {target}", highlight=False, soft_wrap=True)


@command
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories (each with results.csv and manifest.json); sweeps are skipped.",
        show_default=False)],
    out: Annotated[Path | None, typer.Option(
        help="Write compare.md and compare.csv here (default: print the Markdown).")] = None,
) -> None:
    """One table across reports: each claim and null's reading per report and autoencoder,
    then every report's numbers (no torch, no re-analysis)."""
    from dimple_stats.report.compare import compare_markdown, compare_runs, is_sweep_report

    for run_dir in run_dirs:
        for name in ("results.csv", "manifest.json"):
            if not (run_dir / name).is_file():
                raise fail(f"dimple-stats compare: {run_dir}: not a report directory: {name} "
                           "is missing; name report folders that `dimple-stats run` wrote (a "
                           "`report --out` folder renders one but holds no manifest.json)")
    if out is not None:
        from dimple_stats.report.destination import COMPARISON, check_destination

        check_destination(out, output=COMPARISON)  # before reading: someone's folder is refused
    sweeps = [str(d) for d in run_dirs if is_sweep_report(d)]
    if len(sweeps) == len(run_dirs):
        raise fail(f"dimple-stats compare: nothing to compare: {', '.join(sweeps)} "
                   f"{'is a sweep' if len(sweeps) == 1 else 'are sweeps'} (compare reads "
                   "single-specification reports; a sweep's report.html compares its cells)")
    if sweeps:
        Console(stderr=True).print(f"skipped sweep report(s): {', '.join(sweeps)}",
                                   highlight=False)
    table = compare_runs(run_dirs)
    text = compare_markdown(table)
    if out is None:
        typer.echo(text)
        return
    from dimple_stats.atomic import write_text_atomic
    from dimple_stats.report.destination import COMPARISON, mark_rendered, staged_report

    with staged_report(out, output=COMPARISON) as staging:
        write_text_atomic(staging / "compare.md", text)
        write_text_atomic(staging / "compare.csv", table.to_csv(index=False))
        mark_rendered(staging, run_dirs)
    Console().print(f"wrote compare.md and compare.csv to {out}", highlight=False)
