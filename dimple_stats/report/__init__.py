"""Reports: the results table as CSV, LaTeX and Markdown, and the figures, written atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dimple_stats.atomic import write_atomic, write_text_atomic
from dimple_stats.protocol.vocabulary import REPORT_FORMATS
from dimple_stats.registry import resolve

__all__ = ["FORMATS", "write_report", "figure_names"]

#: The table formats (a registry: a plugin may add one): name -> file name and renderer.
FORMATS = REPORT_FORMATS


#: Figure drawn from the ``training`` table (dmm.clinging_then_dimpling).
TRAINING_FIGURE = "training_curves.png"


def figure_names(results: pd.DataFrame, measurements: pd.DataFrame | None,
                 tables: Mapping[str, pd.DataFrame] | None = None) -> list[str]:
    """File names (under ``figures/``) that :func:`write_report` draws for these inputs."""
    names = []
    if measurements is not None and {"r_T", "r_R", "n", "k", "autoencoder"} <= set(measurements):
        names.append("r_T_vs_r_R.png")
    if measurements is not None and {"norm_on", "norm_off", "success_on", "success_off", "n",
                                     "k"} <= set(measurements):
        names.append("norm_on_off_vs_dimension_counting.png")
    finite = results[pd.to_numeric(results["estimate"], errors="coerce").notna()]
    names += [f"forest_{c.replace('.', '_')}.png" for c in dict.fromkeys(finite["claim"])]
    training = (tables or {}).get("training")
    if training is not None and len(training) and {"epoch", "norm_plain", "r_T", "r_R", "n",
                                                     "k", "seed"} <= set(training):
        names.append(TRAINING_FIGURE)
    return names


def write_report(results: pd.DataFrame, measurements: pd.DataFrame | None,
                 out_dir: str | os.PathLike[str], *,
                 formats: Iterable[str] = ("csv", "latex", "markdown"), figures: bool = True,
                 title: str = "dimple-stats results",
                 tables: Mapping[str, pd.DataFrame] | None = None) -> list[Path]:
    """Write ``results.{csv,tex,md}`` and ``figures/*.png`` into ``out_dir``; returns the paths.

    Every file goes to a temporary name first and is moved into place with ``os.replace``.
    Output is deterministic: the same inputs give byte-identical files.
    """
    out = Path(out_dir)
    written: list[Path] = []
    for fmt in [FORMATS.check(f) for f in dict.fromkeys(formats)]:
        entry = FORMATS[fmt]
        render = resolve(entry.render) if isinstance(entry.render, str) else entry.render
        text = render(results, **({entry.title_keyword: title} if entry.title_keyword else {}))
        written.append(write_text_atomic(out / entry.filename, text))
    if figures:
        written += _write_figures(results, measurements, out / "figures", tables)
    return written


def _write_figures(results: pd.DataFrame, measurements: pd.DataFrame | None,
                   folder: Path, tables: Mapping[str, pd.DataFrame] | None = None) -> list[Path]:
    from dimple_stats.report import figures as fg

    drawn = []
    for name in figure_names(results, measurements, tables):
        if name == TRAINING_FIGURE:
            fig = fg.training_curves((tables or {})["training"])
        elif name == "r_T_vs_r_R.png":
            fig = fg.r_histograms(measurements)  # type: ignore[arg-type]
        elif name == "norm_on_off_vs_dimension_counting.png":
            fig = fg.norm_ratio_plot(measurements)  # type: ignore[arg-type]
        else:
            claim = next(c for c in results["claim"] if f"forest_{c.replace('.', '_')}.png" == name)
            fig = fg.forest_plot(results, claim)
        # No metadata: PNGs are byte-identical across runs and matplotlib versions' stamps.
        drawn.append(write_atomic(folder / name, lambda tmp, f=fig: f.savefig(
            tmp, format="png", dpi=110, metadata={"Software": None})))
    return drawn
