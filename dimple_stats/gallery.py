"""The example gallery: for a few measured images per (seed, autoencoder), the arrays behind the
numbers of the measurements table (``gallery.parquet`` in a run directory).

A row holds one image ``x``, its reconstruction ``D(E(x))`` and its three perturbations ``d``
(unrestricted), ``d_on`` and ``d_off`` (on-/off-manifold attacks) as flat float32 lists in
``(C, H, W)`` order, with the measurement-table values of that sample (norms, successes, r_T,
in_T_on, in_T_off) and what the classifier predicts on ``x``, ``D(E(x))`` and each ``x + d``.
The runner stores the rows with each measurement shard, so a report shows them without torch
and without recomputing an attack.

Selection rule (:func:`quantile_positions`)
    Among the samples whose plain attack succeeded (r_T finite), sorted by ``(r_T, sample)``,
    the ones at the nearest ranks to the levels :data:`QUANTILES` (0, 1/6, ..., 1: the minimum,
    the median and the maximum of r_T and four between; a half rank rounds down): 7 images at
    most, fewer when fewer samples succeeded. No random draw: ties go to the smaller sample id.
Shards (:func:`reduce_to_quantiles`)
    A (seed, autoencoder) is measured in shards; each shard keeps the rows the rule selects
    within it (its candidates). The gallery then takes, at each level, the sample the rule
    selects over all shards when it is a candidate, else the candidate nearest to it in r_T.
    With one shard that is the rule exactly; the extremes are exact with any number of shards
    (the overall minimum is its shard's minimum).

Examples
--------
>>> import numpy as np
>>> r = np.array([0.5, 0.1, 0.9, 0.3, np.nan])
>>> ok = np.array([True, True, True, False, True])
>>> pos, levels = quantile_positions(r, ok, np.arange(5))
>>> pos.tolist(), [round(q, 3) for q in levels]
([1, 0, 2], [0.0, 0.5, 1.0])
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dimple_stats.errors import BadInput
from dimple_stats.measurements import SCHEMAS, Column

__all__ = ["ARRAYS", "COLUMNS", "GALLERY_FILE", "QUANTILES", "GalleryError", "drawable",
           "from_parquet_bytes", "image", "quantile_positions", "read_gallery",
           "reduce_to_quantiles", "to_parquet_bytes", "validate_gallery", "write_gallery"]

#: File name in a run directory and in a measurement shard's artifact.
GALLERY_FILE = "gallery.parquet"

#: Quantile levels of r_T that the selection rule shows (7: the median is one of them).
QUANTILES: tuple[float, ...] = tuple(i / 6 for i in range(7))

_MEASURED = ("seed", "autoencoder", "sample", "image_id", "label", "recon_err", "r_T", "in_T_on",
             "in_T_off", "norm_plain", "norm_on", "norm_off", "success_plain", "success_on",
             "success_off")

#: Scalar columns: those shared with the measurements table mean the same there.
COLUMNS: dict[str, Column] = {
    **{name: SCHEMAS["measurements"][name] for name in _MEASURED},
    "level": Column("float", "the quantile of r_T the image sits at among the successful "
                    "samples of its (seed, autoencoder), rank / (N - 1); for a stand-in "
                    "(several shards) that of the sample it stands in for"),
    "channels": Column("int", "C of the image shape (C, H, W)"),
    "height": Column("int", "H of the image shape"),
    "width": Column("int", "W of the image shape"),
    "pixel_lo": Column("float", "lower end of the data's pixel range (display range)"),
    "pixel_hi": Column("float", "upper end of the data's pixel range"),
    "pred_x": Column("int", "classifier's label for x"),
    "pred_x_hat": Column("int", "classifier's label for D(E(x))"),
    "pred_plain": Column("int", "classifier's label for x + d"),
    "pred_on": Column("int", "classifier's label for x + d_on"),
    "pred_off": Column("int", "classifier's label for x + d_off"),
}

#: Array columns: float32, C * H * W values each, in (C, H, W) order.
ARRAYS: dict[str, str] = {
    "x": "the image",
    "x_hat": "its reconstruction D(E(x))",
    "d_plain": "the unrestricted perturbation d (its last iterate when the attack failed)",
    "d_on": "the on-manifold perturbation d_on",
    "d_off": "the off-manifold perturbation d_off",
}

_NUMPY = {"int": np.int64, "float": np.float64, "bool": np.bool_}


class GalleryError(BadInput):
    """A gallery table lacks columns or holds arrays that do not fit its image shape."""


def _ranked(r_T: np.ndarray, success: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Positions of the eligible rows (success, finite r_T) sorted by (r_T, sample)."""
    r_T, sample = np.asarray(r_T, dtype=float), np.asarray(sample)
    eligible = np.flatnonzero(np.asarray(success, dtype=bool) & np.isfinite(r_T))
    return eligible[np.lexsort((sample[eligible], r_T[eligible]))]


def _rank(level: float, count: int) -> int:
    return int(np.ceil(level * (count - 1) - 0.5))  # nearest rank, a half rounds down


def quantile_positions(r_T: Sequence[float] | np.ndarray, success: Sequence[bool] | np.ndarray,
                       sample: Sequence[int] | np.ndarray,
                       levels: Sequence[float] = QUANTILES) -> tuple[np.ndarray, list[float]]:
    """The rows the selection rule shows (see the module notes).

    Parameters
    ----------
    r_T, success, sample : array-like, shape (N,)
        Columns of one (seed, autoencoder) measurement table (or shard): ``r_T``,
        ``success_plain``, ``sample``.
    levels : sequence of float
        Quantile levels in [0, 1], increasing.

    Returns
    -------
    positions : numpy.ndarray of int
        Row positions in the inputs, one per distinct rank, in the order of ``levels``.
    levels : list of float
        The quantile each position sits at, ``rank / (N - 1)`` among the N eligible rows (0.5
        when N = 1: the only one is its own median).
    """
    order = _ranked(np.asarray(r_T), np.asarray(success), np.asarray(sample))
    ranks = list(dict.fromkeys(_rank(q, len(order)) for q in levels)) if len(order) else []
    at = [r / (len(order) - 1) if len(order) > 1 else 0.5 for r in ranks]
    return order[ranks].astype(np.int64), at


def reduce_to_quantiles(candidates: pd.DataFrame, measurements: pd.DataFrame,
                        levels: Sequence[float] = QUANTILES) -> pd.DataFrame:
    """The gallery of one (seed, autoencoder) from its shards' candidate rows.

    Parameters
    ----------
    candidates : pandas.DataFrame
        Gallery rows kept by the shards (all of one seed and autoencoder).
    measurements : pandas.DataFrame
        That (seed, autoencoder)'s measurement rows, all shards (``r_T``, ``success_plain``,
        ``sample``).
    levels : sequence of float
        As for :func:`quantile_positions`.

    Returns
    -------
    pandas.DataFrame
        One row per rank the rule selects over ``measurements``, in r_T order, ``level`` the
        quantile of that rank: the selected sample when it is a candidate, else the candidate
        nearest to it in r_T (ties: the smaller sample id). A sample is shown once.
    """
    if candidates.empty:
        return candidates.iloc[:0].copy()
    positions, chosen_levels = quantile_positions(
        measurements["r_T"].to_numpy(float), measurements["success_plain"].to_numpy(bool),
        measurements["sample"].to_numpy(), levels)
    targets = measurements.iloc[positions]
    by_sample = {int(s): i for i, s in enumerate(candidates["sample"])}
    cand_r = candidates["r_T"].to_numpy(float)
    cand_sample = candidates["sample"].to_numpy()
    rows: dict[int, float] = {}
    for (sample, r), level in zip(zip(targets["sample"], targets["r_T"]), chosen_levels):
        row = by_sample.get(int(sample))
        if row is None:
            row = int(np.lexsort((cand_sample, np.abs(cand_r - float(r))))[0])
        rows.setdefault(row, level)
    out = candidates.iloc[list(rows)].copy()
    out["level"] = list(rows.values())
    return out.reset_index(drop=True)


def validate_gallery(df: pd.DataFrame) -> pd.DataFrame:
    """Check a gallery table and return a normalised copy (scalars cast, arrays float32).

    Raises
    ------
    GalleryError
        Naming every missing column and every row whose arrays do not have C * H * W values.
    """
    missing = [c for c in [*COLUMNS, *ARRAYS] if c not in df.columns]
    if missing:
        raise GalleryError(f"gallery table: missing column(s) {', '.join(missing)}")
    out = df.reset_index(drop=True).copy()
    for name, spec in COLUMNS.items():
        out[name] = out[name].astype(str) if spec.dtype == "str" else \
            out[name].to_numpy().astype(_NUMPY[spec.dtype])
    size = (out["channels"] * out["height"] * out["width"]).to_numpy()
    for name in ARRAYS:
        out[name] = [np.asarray(a, dtype=np.float32).ravel() for a in out[name]]
        bad = [i for i, a in enumerate(out[name]) if a.size != size[i]]
        if bad:
            raise GalleryError(f"gallery table: column {name!r}: rows {bad[:10]} do not hold "
                               "channels * height * width values")
    return out[[*COLUMNS, *ARRAYS]]


def _arrow_table(df: pd.DataFrame):  # -> pyarrow.Table
    import pyarrow as pa

    table = validate_gallery(df)
    types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
    fields = [pa.field(n, types[c.dtype]) for n, c in COLUMNS.items()]
    fields += [pa.field(n, pa.list_(pa.float32())) for n in ARRAYS]
    schema = pa.schema(fields)
    if not len(table):
        # pandas gives an empty array column dtype float64, which pyarrow will not read as a
        # list column (a run where no plain attack succeeded keeps no example).
        return schema.empty_table()
    return pa.Table.from_pandas(table, schema=schema, preserve_index=False)


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """A gallery table as Parquet bytes (the arrays as ``list<float>`` columns)."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(_arrow_table(df), sink)
    return sink.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    """The table :func:`to_parquet_bytes` wrote."""
    return validate_gallery(pd.read_parquet(io.BytesIO(data), engine="pyarrow"))


def write_gallery(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and write a gallery table to Parquet atomically."""
    from dimple_stats.atomic import write_bytes_atomic

    return write_bytes_atomic(path, to_parquet_bytes(df))


def read_gallery(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate ``gallery.parquet``.

    Examples
    --------
    >>> import tempfile
    >>> row = {**{c: [0] for c in COLUMNS}, "autoencoder": ["plain"], "channels": [1],
    ...        "height": [2], "width": [2], **{a: [np.zeros(4)] for a in ARRAYS}}
    >>> p = write_gallery(pd.DataFrame(row), f"{tempfile.mkdtemp()}/gallery.parquet")
    >>> image(read_gallery(p).iloc[0], "x").shape
    (1, 2, 2)
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GalleryError(f"gallery table: cannot read {path}: {exc}") from exc
    try:
        return from_parquet_bytes(data)
    except GalleryError:
        raise
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise GalleryError(f"gallery table: cannot read {path}: {exc}") from exc


def image(row: pd.Series, column: str) -> np.ndarray:
    """One array of a gallery row, shaped ``(C, H, W)`` (a writable copy)."""
    return np.array(row[column], dtype=np.float32).reshape(
        int(row["channels"]), int(row["height"]), int(row["width"]))


def drawable(gallery: pd.DataFrame) -> list[str]:
    """Autoencoders whose gallery rows are images a figure can show, sorted.

    An image is 1 (greyscale) or 3 (RGB) channels of at least 2 x 2 pixels; other data (a flat
    vector, as a ``(1, 1, n)`` shape, or many channels) gets no gallery figure, because a
    picture of it would suggest a spatial structure it does not have.
    """
    ok = (gallery["channels"].isin([1, 3]) & (gallery["height"] > 1) & (gallery["width"] > 1))
    return sorted(set(gallery.loc[ok, "autoencoder"].astype(str)))
