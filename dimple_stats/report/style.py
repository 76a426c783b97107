"""The report figures' look and files: fonts, a pyplot-free Agg figure, byte-deterministic saves.

Every figure is saved as PNG (for Markdown and the README) and PDF (vector, for a paper). Both
are byte-identical across renders of the same inputs: no timestamps or version stamps in the
metadata, and the PDF's font subset and ids depend only on the drawn text.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dimple_stats.atomic import write_atomic
from dimple_stats.report import FIGURE_FORMATS

__all__ = ["FIGURE_FORMATS", "RC", "DPI", "new_figure", "styled", "save_figure"]

#: Raster resolution: 110 dpi keeps a 7-inch figure readable on screen at ~100 kB per PNG
#: (reports are committed to git); the PDF is the print version.
DPI = 110

#: No text below 8 pt at the saved size. TrueType (Type 42) fonts in the PDF: journals reject
#: the default Type 3. A fixed SVG hash salt keeps SVG ids stable should one be saved.
RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "svg.hashsalt": "dimple-stats",
}

#: Metadata with every run-dependent stamp removed, per format.
_METADATA: dict[str, dict[str, None]] = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}

P = ParamSpec("P")


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on its own Agg canvas (no pyplot: no global figure state)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def styled(draw: Callable[P, Figure]) -> Callable[P, Figure]:
    """Run a figure function under :data:`RC` (rcParams are read as artists are created)."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with matplotlib.rc_context(RC):
            return draw(*args, **kwargs)

    return wrapper


def save_figure(fig: Figure, path: str | os.PathLike[str],
                formats: tuple[str, ...] = FIGURE_FORMATS) -> list[Path]:
    """Write ``fig`` beside ``path`` once per format (``path`` with each suffix), atomically.

    Returns the written paths in ``formats`` order.

    Examples
    --------
    >>> import tempfile
    >>> fig = new_figure(2, 1)
    >>> _ = fig.subplots().plot([0, 1], [0, 1])
    >>> [p.name for p in save_figure(fig, Path(tempfile.mkdtemp()) / "line.png")]
    ['line.png', 'line.pdf']
    """
    base = Path(path)
    written = []
    for fmt in formats:
        target = base.with_suffix(f".{fmt}")
        with matplotlib.rc_context(RC):  # pdf.fonttype and the SVG salt are read at save time
            written.append(write_atomic(target, lambda tmp, f=fmt: fig.savefig(
                tmp, format=f, dpi=DPI, metadata=_METADATA.get(f, {}))))
    return written
