"""Reports: the results table as CSV, LaTeX and Markdown, the figures and the HTML page, written
atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dimple_stats.atomic import write_text_atomic
from dimple_stats.protocol.vocabulary import REPORT_FORMATS
from dimple_stats.registry import resolve
from dimple_stats.report.labels import R_QUANTITIES

if TYPE_CHECKING:
    from dimple_stats.protocol.schema import Protocol

__all__ = ["FORMATS", "write_report", "figure_names"]

#: The table formats (a registry: a plugin may add one): name -> file name and renderer.
FORMATS = REPORT_FORMATS


#: Figure drawn from the ``training`` table (dmm.clinging_then_dimpling).
TRAINING_FIGURE = "training_curves.png"

#: r_T against every control the measurements hold (r_R, r_Rdata, r_PCA, r_Tother).
NULLS_FIGURE = "r_T_vs_nulls.png"

#: Formats every figure is written in (:func:`dimple_stats.report.style.save_figure`), PNG
#: first: Markdown and the HTML page embed it, the PDF is the print version.
FIGURE_FORMATS = ("png", "pdf")

#: Key of the example gallery (:mod:`dimple_stats.gallery`) in ``tables``.
GALLERY = "gallery"


def _gallery_figures(tables: Mapping[str, pd.DataFrame] | None) -> dict[str, str]:
    """``gallery_<autoencoder>.png`` -> autoencoder, for each one with image-shaped rows."""
    gallery = (tables or {}).get(GALLERY)
    if gallery is None or not len(gallery):
        return {}
    from dimple_stats.gallery import drawable

    return {f"gallery_{name}.png": name for name in drawable(gallery)}


def figure_names(results: pd.DataFrame, measurements: pd.DataFrame | None,
                 tables: Mapping[str, pd.DataFrame] | None = None) -> list[str]:
    """File names (under ``figures/``) that :func:`write_report` draws for these inputs.

    Each figure is listed once per format of :data:`FIGURE_FORMATS`, the PNG first
    (``forest_x.png``, ``forest_x.pdf``, ...): the PNG is drawn, then saved in every format.
    """
    from dimple_stats.sweep import is_sweep

    if is_sweep(results):
        # Figures of the measurements would mix the cells: a sweep draws its curves.
        from dimple_stats.report.spec_curve import spec_curve_name

        tested = results[results["decision"].isin(["reject H0", "retain H0"])]
        return [f"{spec_curve_name(c).removesuffix('.png')}.{fmt}"
                for c in dict.fromkeys(tested["claim"]) for fmt in FIGURE_FORMATS]
    names = []
    columns = set(measurements) if measurements is not None else set()
    if {"r_T", "r_R", "n", "k", "autoencoder"} <= columns:
        names.append("r_T_vs_r_R.png")
    if {"r_T", "n", "k", "autoencoder"} <= columns and (set(R_QUANTITIES) - {"r_T"}) & columns:
        names.append(NULLS_FIGURE)
    if {"norm_on", "norm_off", "success_on", "success_off", "n", "k",
            "autoencoder"} <= columns:
        names.append("norm_on_off_vs_dimension_counting.png")
    finite = results[pd.to_numeric(results["estimate"], errors="coerce").notna()]
    names += [f"forest_{c.replace('.', '_')}.png" for c in dict.fromkeys(finite["claim"])]
    training = (tables or {}).get("training")
    if training is not None and len(training) and {"epoch", "norm_plain", "r_T", "r_R", "n",
                                                     "k", "seed"} <= set(training):
        names.append(TRAINING_FIGURE)
    names += list(_gallery_figures(tables))
    return [f"{name.removesuffix('.png')}.{fmt}" for name in names for fmt in FIGURE_FORMATS]


def write_report(results: pd.DataFrame, measurements: pd.DataFrame | None,
                 out_dir: str | os.PathLike[str], *,
                 formats: Iterable[str] = ("csv", "latex", "markdown"), figures: bool = True,
                 title: str = "dimple-stats results",
                 tables: Mapping[str, pd.DataFrame] | None = None, html: bool = True,
                 manifest: Mapping[str, Any] | None = None,
                 protocol: Protocol | None = None) -> list[Path]:
    """Write ``results.{csv,tex,md}``, ``figures/*.png`` and ``report.html`` into ``out_dir``;
    returns the paths.

    ``report.html`` (``html=True``) is the whole report in one self-contained page: verdicts,
    the figures written here, tables and, given the run's ``manifest`` (and ``protocol``, read
    from the manifest by default), the question, data, models and provenance
    (:mod:`dimple_stats.report.html`). It is written whatever the table ``formats``: those are
    the tables' file formats, the page is the report.

    Every file goes to a temporary name first and is moved into place with ``os.replace``.
    Output is deterministic: the same inputs give byte-identical files.
    """
    from dimple_stats.report.summary import SUMMARY_FILE, to_summary
    from dimple_stats.sweep import is_sweep

    out = Path(out_dir)
    # A sweep's table has a row per cell: its text renderers count specifications instead.
    sweep_renderers: dict[str, Any] = {}
    if is_sweep(results):
        from dimple_stats.report import sweep_text

        sweep_renderers = {"markdown": sweep_text.sweep_markdown,
                           "latex": sweep_text.sweep_latex, "summary": sweep_text.sweep_summary}
    if len(results) and "decision" in results.columns:
        from dimple_stats.report.verdicts import with_verdicts

        # Every table says each row's verdict, not just its decision: a retained H0 whose CI
        # lies on the other side with a significant reverse test reads "contradicted" (a
        # sweep's rows in their sweep family).
        results = with_verdicts(results)
    written: list[Path] = []
    if protocol is None and manifest and isinstance(manifest.get("protocol"), Mapping):
        from dimple_stats.report.run import protocol_from_json

        protocol = protocol_from_json(manifest["protocol"])
    context: dict[str, Any] = {"manifest": manifest, "protocol": protocol,
                               "confidence": protocol.stats.confidence if protocol else None}
    for fmt in [FORMATS.check(f) for f in dict.fromkeys(formats)]:
        entry = FORMATS[fmt]
        render = sweep_renderers.get(fmt) or (resolve(entry.render) if isinstance(entry.render, str)
                                              else entry.render)
        text = render(results, **({entry.title_keyword: title} if entry.title_keyword else {}),
                      **(context if entry.context else {}))
        written.append(write_text_atomic(out / entry.filename, text))
    # The verdicts in words are the report's front page, whatever the table formats.
    summary = sweep_renderers.get("summary", to_summary)
    written.append(write_text_atomic(out / SUMMARY_FILE, summary(results, title=title, **context)))
    if sweep_renderers and measurements is not None and manifest and "sweep" in manifest:
        from dimple_stats.report.attack_parity import (
            ATTACKS_FILE,
            attack_parity,
            attack_parity_markdown,
        )

        parity = attack_parity(measurements, [c["choices"] for c in manifest["sweep"]["cells"]])
        if len(parity):
            written.append(write_text_atomic(out / ATTACKS_FILE,
                                             attack_parity_markdown(parity, title)))
    drawn = _write_figures(results, measurements, out / "figures", tables,
                           confidence=context["confidence"] or 0.95) if figures else []
    written += drawn
    if html:
        from dimple_stats.report.html import HTML_FILE, render_html

        page = render_html(results, figures=drawn, manifest=manifest, protocol=protocol,
                           title=title)
        written.append(write_text_atomic(out / HTML_FILE, page))
    return written


def _write_figures(results: pd.DataFrame, measurements: pd.DataFrame | None,
                   folder: Path, tables: Mapping[str, pd.DataFrame] | None = None, *,
                   confidence: float = 0.95) -> list[Path]:
    from dimple_stats.report import figures as fg
    from dimple_stats.report.style import save_figure
    from dimple_stats.sweep import is_sweep

    drawn = []
    if is_sweep(results):
        from dimple_stats.report.spec_curve import spec_curve, spec_curve_name

        claims = {spec_curve_name(c): c for c in dict.fromkeys(results["claim"])}
        for name in figure_names(results, measurements, tables):
            if name.endswith(".png"):
                drawn += save_figure(spec_curve(results, claims[name], confidence=confidence),
                                     folder / name)
        return drawn
    galleries = _gallery_figures(tables)
    for name in figure_names(results, measurements, tables):
        if not name.endswith(".png"):
            continue  # drawn once, under its PNG name, and saved in every format below
        if name == TRAINING_FIGURE:
            fig = fg.training_curves((tables or {})["training"])
        elif name in galleries:
            from dimple_stats.report.gallery import gallery_figure

            fig = gallery_figure((tables or {})[GALLERY], galleries[name])
        elif name == "r_T_vs_r_R.png":
            fig = fg.r_histograms(measurements)  # type: ignore[arg-type]
        elif name == NULLS_FIGURE:
            fig = fg.r_nulls_ecdf(measurements)  # type: ignore[arg-type]
        elif name == "norm_on_off_vs_dimension_counting.png":
            fig = fg.norm_ratio_ecdf(measurements)  # type: ignore[arg-type]
        else:
            claim = next(c for c in results["claim"] if f"forest_{c.replace('.', '_')}.png" == name)
            fig = fg.forest_plot(results, claim)
        drawn += save_figure(fig, folder / name)  # PNG and PDF, byte-deterministic
    return drawn
