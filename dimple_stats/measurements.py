"""The measurement tables: the contract between the compute side (``runners``) and the statistics.

Four tables, each a pandas DataFrame stored as parquet in a run directory:

``measurements`` (``measurements.parquet``)
    One row per (seed, autoencoder, sample); each per-sample quantity of the claims (``dimple-stats claims``).
``defense`` (``defense.parquet``)
    One row per (seed, defense, eps, sample); robust and clean correctness under white-box PGD
    through the projection (claim ``iso.defense``).
``training`` (``training.parquet``)
    One row per (seed, epoch, sample); measurements taken during classifier training
    (claim ``dmm.clinging_then_dimpling``).
``adv_training`` (``adv_training.parquet``)
    One row per (seed, classifier, sample) for a standard and an adversarially trained classifier
    (claim ``dmm.adv_training_deepens``).

``training`` and ``adv_training`` may carry an ``autoencoder`` column (str) when r_T was measured
under several autoencoders; it then joins the row key and the analyses run per autoencoder.

A failed attack keeps its row with ``success_* = False`` and ``norm_* = eps_*``: it is censored at
the budget, never dropped. The schemas below are the single source of truth; print them with
:func:`describe`. :func:`validate` names every missing or mistyped column in one error.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"seed": [0], "autoencoder": ["plain"], "sample": [3]})
>>> validate(df, require=("seed", "autoencoder", "sample")).shape
(1, 3)
>>> validate(df.rename(columns={"sample": "smaple"}), require=("seed", "sample"))
Traceback (most recent call last):
...
dimple_stats.measurements.MeasurementsError: measurements table: missing column 'sample' (did you ...
>>> validate(df.assign(seed=[0.5]), require=("seed",))
Traceback (most recent call last):
...
dimple_stats.measurements.MeasurementsError: measurements table: column 'seed' must be int, got float64
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dimple_stats.errors import BadInput

__all__ = [
    "Column",
    "SCHEMAS",
    "KEYS",
    "TABLE_FILES",
    "TableKind",
    "MeasurementsError",
    "validate",
    "check_ranges",
    "read_measurements",
    "write_measurements",
    "describe",
]

TableKind = Literal["measurements", "defense", "training", "adv_training", "classifier_pairs"]
DType = Literal["int", "float", "bool", "str"]


@dataclass(frozen=True)
class Column:
    """One column of a measurement table: its dtype, what it means and, for numbers, the
    closed range its finite values must lie in (NaN stays allowed: "not measured")."""

    dtype: DType
    meaning: str
    lo: float | None = None
    hi: float | None = None


#: Slack on a range's ends: a share computed in float32 can exceed 1 by rounding.
RANGE_SLACK = 1e-5


_SEED = Column("int", "replication seed")
_SAMPLE = Column("int", "index of the evaluation image; the same id is the same image within a seed")

SCHEMAS: dict[str, dict[str, Column]] = {
    "measurements": {
        "seed": _SEED,
        "autoencoder": Column("str", "autoencoder name from the protocol (defines the manifold)"),
        "sample": _SAMPLE,
        "image_id": Column("int", "index of the image in its dataset split: the same id is the "
                           "same image in every seed (seeds may draw overlapping eval sets)"),
        "label": Column("int", "true class of the image"),
        "n": Column("int", "input dimension"),
        "k": Column("int", "tangent dimension (numerical rank of the decoder Jacobian)"),
        "recon_err": Column("float", "||x - D(E(x))||_2", lo=0.0),
        "base_err": Column("float", "||x - D(z)||_2 at the tangent base point z (tangent.at: "
                           "encoder gives recon_err; nearest minimises it)", lo=0.0),
        "base_converged": Column("bool", "the base-point search converged (True for encoder)"),
        "base_ok": Column("bool", "the classifier classifies the attacks' base point correctly "
                          "(attack.base manifold: D(z*); always True for image); False rows are "
                          "excluded from every claim and counted"),
        "norm_plain": Column("float", "||delta|| of the unrestricted minimal adversarial "
                             "perturbation (eps_plain when the attack failed)", lo=0.0),
        "success_plain": Column("bool", "the unrestricted attack succeeded within eps_plain"),
        "eps_plain": Column("float", "budget of the unrestricted attack (censoring point)", lo=0.0),
        "norm_on": Column("float", "the same on the manifold (attack.on_manifold: latent, the "
                          "chord ||D(z* + delta) - D(z*)||; tangent, steps in T) (eps_on if "
                          "failed, NaN if not measurable)", lo=0.0),
        "success_on": Column("bool", "the on-manifold attack succeeded within eps_on"),
        "eps_on": Column("float", "budget of the on-manifold attack (censoring point)", lo=0.0),
        "norm_off": Column("float", "the same with every step projected onto T's orthogonal "
                           "complement (eps_off if failed)", lo=0.0),
        "success_off": Column("bool", "the off-manifold attack succeeded within eps_off"),
        "eps_off": Column("float", "budget of the off-manifold attack (censoring point)", lo=0.0),
        "in_T_on": Column("float", "||P_T d_on|| / ||d_on||: 1 when the on-manifold "
                          "perturbation lies in T (attack.box strict), less under clip", lo=0.0, hi=1.0),
        "in_T_off": Column("float", "||P_T d_off|| / ||d_off||: 0 when the off-manifold "
                           "perturbation lies in T-perp (attack.box strict)", lo=0.0, hi=1.0),
        "measurable_on": Column("bool", "the on-manifold norm exists: False where the strict "
                                "tangent-plane set (x + T) ∩ box is {x} or reaches < 1% of eps "
                                "(norm_on NaN; left out of the norm claims and counted)"),
        "reach_on": Column("float", "certified lower bound on the reach of (x + T) ∩ box ∩ ball "
                           "(strict tangent attack; NaN otherwise)", lo=0.0),
        "path_on": Column("float", "length of the decoded curve of the latent on-manifold "
                          "attack (attack.on_manifold latent; NaN otherwise or if it failed)", lo=0.0),
        "r_T": Column("float", "||P_T delta|| / ||delta|| for the unrestricted delta", lo=0.0, hi=1.0),
        "r_R": Column("float", "||P_R delta|| / ||delta||, R a random k-dim subspace", lo=0.0, hi=1.0),
        "r_Tother": Column("float", "||P_T' delta|| / ||delta||, T' the tangent space at another "
                           "image of the same class", lo=0.0, hi=1.0),
        "r_PCA": Column("float", "||P delta|| / ||delta||, P onto the top-k principal subspace "
                        "of the training images", lo=0.0, hi=1.0),
        "r_Rdata": Column("float", "||P delta|| / ||delta||, P onto a random k-subspace drawn "
                          "with the training-data covariance", lo=0.0, hi=1.0),
        "r_T_grad": Column("float", "||P_T g|| / ||g||, g the input gradient of the margin", lo=0.0, hi=1.0),
        "r_T_grad_other": Column("float", "||P_T' g|| / ||g||, T' the tangent space at the "
                                 "other image of r_Tother", lo=0.0, hi=1.0),
        "iso_cond": Column("float", "condition number of J^T J at E(x)"),
    },
    "defense": {
        "seed": _SEED,
        "defense": Column("str", "'none', or the autoencoder whose projection precedes the "
                          "classifier"),
        "eps": Column("float", "attack budget", lo=0.0),
        "sample": _SAMPLE,
        "robust_correct": Column("bool", "still correctly classified under white-box PGD "
                                 "through the projection"),
        "clean_correct": Column("bool", "correctly classified without attack"),
    },
    "training": {
        "seed": _SEED,
        "epoch": Column("int", "classifier training epoch at which the sample was measured"),
        "sample": _SAMPLE,
        "norm_plain": Column("float", "unrestricted minimal adversarial norm (eps if failed)", lo=0.0),
        "success_plain": Column("bool", "the attack succeeded within eps"),
        "r_T": Column("float", "||P_T delta|| / ||delta||", lo=0.0, hi=1.0),
        "r_R": Column("float", "||P_R delta|| / ||delta||, R a random k-dim subspace", lo=0.0, hi=1.0),
        "n": Column("int", "input dimension"),
        "k": Column("int", "tangent dimension"),
    },
    "adv_training": {
        "seed": _SEED,
        "classifier": Column("str", "'standard' or 'adversarial'"),
        "sample": _SAMPLE,
        "r_T": Column("float", "||P_T delta|| / ||delta||", lo=0.0, hi=1.0),
        "norm_plain": Column("float", "unrestricted minimal adversarial norm (eps if failed)", lo=0.0),
        "success_plain": Column("bool", "the attack succeeded within eps"),
    },
}

# Two cells of a sweep (standard and adversarially trained classifier) stacked: built by
# dimple_stats.sweep for dmm.dimpled_or_robust, never written to a run directory.
SCHEMAS["classifier_pairs"] = {
    **SCHEMAS["measurements"],
    "classifier": Column("str", "'standard' or 'adversarial' (the cell the row comes from)"),
}

#: Columns that identify a row; no two rows of a table may share them.
KEYS: dict[str, tuple[str, ...]] = {
    "classifier_pairs": ("seed", "autoencoder", "classifier", "sample"),
    "measurements": ("seed", "autoencoder", "sample"),
    "defense": ("seed", "defense", "eps", "sample"),
    "training": ("seed", "epoch", "sample"),
    "adv_training": ("seed", "classifier", "sample"),
}

#: File name of each table inside a run directory.
TABLE_FILES: dict[str, str] = {kind: f"{kind}.parquet" for kind in SCHEMAS}


class MeasurementsError(BadInput):
    """A measurement table is missing columns, has mistyped ones or repeats a row key."""


def _dtype_ok(series: pd.Series, dtype: DType) -> bool:
    if dtype == "int":
        return pd.api.types.is_integer_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if dtype == "float":
        return (pd.api.types.is_float_dtype(series) or pd.api.types.is_integer_dtype(series)) \
            and not pd.api.types.is_bool_dtype(series)
    if dtype == "bool":
        if pd.api.types.is_bool_dtype(series):
            return True
        # 0/1 integers are unambiguous booleans (some writers have no bool type).
        return bool(pd.api.types.is_integer_dtype(series) and series.isin([0, 1]).all())
    return bool(pd.api.types.is_string_dtype(series) or (
        series.dtype == object and series.map(lambda v: isinstance(v, str)).all()))


def _cast(series: pd.Series, dtype: DType) -> pd.Series:
    if dtype == "int":
        return series.astype("int64")
    if dtype == "float":
        return series.astype("float64")
    if dtype == "bool":
        return series.astype(bool)
    return series.astype(str)


def _out_of_range(table: pd.DataFrame, col: str, spec: Column) -> list[str]:
    """A problem naming the first row where ``col`` is infinite or outside its range."""
    values = table[col].to_numpy(dtype=float)
    bad = np.isinf(values)
    what = "finite"
    if spec.lo is not None:
        bad |= values < spec.lo - RANGE_SLACK
        what = f">= {spec.lo:g}" if spec.hi is None else f"in [{spec.lo:g}, {spec.hi:g}]"
    if spec.hi is not None:
        bad |= values > spec.hi + RANGE_SLACK
    if not bad.any():
        return []
    row = int(np.flatnonzero(bad)[0])
    where = ", ".join(f"{k} {table[k].iloc[row]}" for k in ("seed", "autoencoder", "sample")
                      if k in table.columns)
    return [f"column {col!r} must be {what} (NaN: not measured), got {values[row]:g} in "
            f"{int(bad.sum())} row(s), first at row {row}" + (f" ({where})" if where else "")]


#: Norms of a found minimal perturbation: never 0 (every measured image is correctly
#: classified, so its adversarial perturbation moves it), and the claims divide by them.
_POSITIVE = ("norm_plain", "norm_on", "norm_off", "eps_plain", "eps_on", "eps_off")


def _impossible(table: pd.DataFrame, kind: TableKind = "measurements") -> list[str]:
    """Problems no measurement can produce: a tangent dimension k outside 0 < k < n (the
    chance laws need both sides), a negative label; in the measurements table also a
    successful attack's norm beyond its budget and a zero minimal norm or budget."""
    problems = []
    if {"n", "k"} <= set(table.columns) and len(table):
        n, k = table["n"].to_numpy(dtype=float), table["k"].to_numpy(dtype=float)
        bad = np.isfinite(n) & np.isfinite(k) & ~((k > 0) & (k < n))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            problems.append(f"column 'k' must satisfy 0 < k < n (the input dimension), got "
                            f"k {k[row]:g} with n {n[row]:g} in {int(bad.sum())} row(s), first "
                            f"at row {row}")
    if "label" in table.columns and len(table):
        negative = table["label"].to_numpy(dtype=float) < 0
        if negative.any():
            problems.append(f"column 'label' must be a class index >= 0, got "
                            f"{table['label'].iloc[int(np.flatnonzero(negative)[0])]} in "
                            f"{int(negative.sum())} row(s), first at row "
                            f"{int(np.flatnonzero(negative)[0])}")
    if kind != "measurements":
        # (the training-dynamics tables record norm 0 for an image a checkpoint already gets
        # wrong: nothing to attack)
        return problems
    for attack in ("plain", "on", "off"):
        norm, eps, success = f"norm_{attack}", f"eps_{attack}", f"success_{attack}"
        if {norm, eps, success} <= set(table.columns) and len(table):
            # A successful attack's minimal norm lies within its budget (the search never
            # leaves the eps-ball); 1e-6 relative for float32 norms.
            over = (table[success].to_numpy(dtype=bool)
                    & (table[norm].to_numpy(dtype=float)
                       > table[eps].to_numpy(dtype=float) * (1 + 1e-6)))
            if over.any():
                row = int(np.flatnonzero(over)[0])
                problems.append(f"column {norm!r} must be at most {eps!r} where {success!r} is "
                                f"true, got {table[norm].iloc[row]:g} > "
                                f"{table[eps].iloc[row]:g} in {int(over.sum())} row(s), first "
                                f"at row {row}")
    for col in _POSITIVE:
        if col in table.columns:
            zero = table[col].to_numpy(dtype=float) == 0
            if zero.any():
                problems.append(f"column {col!r} must be > 0 (NaN: not measured), got 0 in "
                                f"{int(zero.sum())} row(s), first at row "
                                f"{int(np.flatnonzero(zero)[0])}")
    return problems


def check_ranges(table: pd.DataFrame, kind: TableKind = "measurements") -> pd.DataFrame:
    """``table`` unchanged if every float column's finite values lie in its schema range (shares
    in [0, 1], norms >= 0) and none is infinite, else a :class:`MeasurementsError` naming the
    column, the count and the first row. Applied to what is READ from files (a report or a
    store), where such a value is damage; simulations and tests may build tables freely."""
    problems: list[str] = []
    for col, spec in SCHEMAS[kind].items():
        if col in table.columns and spec.dtype == "float":
            problems += _out_of_range(table, col, spec)
    problems += _impossible(table, kind)
    if problems:
        raise MeasurementsError(f"{kind} table: " + "; ".join(problems))
    return table


def validate(
    df: pd.DataFrame,
    kind: TableKind = "measurements",
    *,
    require: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Check a table against its schema and return a normalised copy.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    kind : {"measurements", "defense", "training", "adv_training"}
        Which schema applies.
    require : iterable of str, optional
        Columns that must be present (default: every column of the schema). Columns of the
        schema that are present are type-checked whether required or not; other columns are kept
        unchecked.

    Returns
    -------
    pandas.DataFrame
        A copy with schema columns cast to int64, float64, bool or str, index reset.

    Raises
    ------
    MeasurementsError
        Naming every missing column (with the nearest present name), every mistyped column and
        repeated row keys.
    """
    from dimple_stats.suggest import did_you_mean

    if kind not in SCHEMAS:
        raise MeasurementsError(f"unknown table kind {kind!r}{did_you_mean(kind, SCHEMAS)}; "
                                f"allowed: {', '.join(SCHEMAS)}")
    if not isinstance(df, pd.DataFrame):
        raise MeasurementsError(f"{kind} table: expected a pandas DataFrame, got "
                                f"{type(df).__name__}")
    schema = SCHEMAS[kind]
    required = list(schema) if require is None else list(dict.fromkeys(require))
    unknown = [c for c in required if c not in schema]
    if unknown:
        raise MeasurementsError(f"{kind} table: no such column in the schema: {', '.join(unknown)}")
    problems: list[str] = []
    present = [str(c) for c in df.columns]
    extra = [c for c in present if c not in schema]
    for col in required:
        if col not in df.columns:
            problems.append(f"missing column {col!r}{did_you_mean(col, extra)}")
    for col, spec in schema.items():
        if col in df.columns and not _dtype_ok(df[col], spec.dtype):
            problems.append(f"column {col!r} must be {spec.dtype}, got {df[col].dtype}")
    if problems:
        raise MeasurementsError(f"{kind} table: " + "; ".join(problems))
    out = df.reset_index(drop=True).copy()
    for col, spec in schema.items():
        if col in out.columns:
            out[col] = _cast(out[col], spec.dtype)
    keys = [c for c in KEYS[kind] if c in out.columns]
    if kind in ("training", "adv_training") and "autoencoder" in out.columns:
        keys.append("autoencoder")  # optional there: r_T measured under several autoencoders
    if "cell" in out.columns:
        keys.insert(0, "cell")  # a sweep's table: one set of rows per cell (dimple_stats.sweep)
    if len(keys) >= len(KEYS[kind]) and len(out):
        dup = out.duplicated(keys, keep=False)
        if dup.any():
            first = out.loc[dup, keys].iloc[0].to_dict()
            raise MeasurementsError(
                f"{kind} table: {int(dup.sum())} rows repeat the key ({', '.join(keys)}), "
                f"e.g. {first}")
    return out


def read_measurements(path: str | os.PathLike[str], kind: TableKind = "measurements",
                      *, require: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a table from parquet (or CSV, by suffix) and validate it.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> t = pd.DataFrame({"seed": [0, 0], "classifier": ["standard", "adversarial"],
    ...                   "sample": [1, 1], "r_T": [0.1, 0.2], "norm_plain": [1.0, 2.0],
    ...                   "success_plain": [True, False]})
    >>> p = write_measurements(t, f"{d}/adv_training.parquet", kind="adv_training")
    >>> read_measurements(p, kind="adv_training").equals(t)
    True
    """
    path = Path(path)
    if not path.is_file():
        raise MeasurementsError(f"{kind} table: no such file {path}")
    try:
        df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise MeasurementsError(f"{kind} table: cannot read {path}: {exc}") from exc
    try:  # every error names the file: a run folder holds several tables
        return check_ranges(validate(df, kind, require=require), kind)
    except MeasurementsError as exc:
        raise MeasurementsError(f"{path}: {exc}") from None


def write_measurements(df: pd.DataFrame, path: str | os.PathLike[str],
                       kind: TableKind = "measurements") -> Path:
    """Validate and write a table to parquet atomically (temp file + ``os.replace``)."""
    from dimple_stats.atomic import write_atomic

    table = validate(df, kind, require=())
    return write_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))


def describe(kind: TableKind | None = None) -> str:
    """The schemas as text: ``column  dtype  meaning`` per line.

    >>> print(describe("adv_training").splitlines()[1])
      seed            int    replication seed
    """
    lines: list[str] = []
    for name, schema in SCHEMAS.items():
        if kind is not None and name != kind:
            continue
        lines.append(f"{name} ({TABLE_FILES[name]}; key: {', '.join(KEYS[name])})")
        lines += [f"  {col:<15} {c.dtype:<6} {c.meaning}" for col, c in schema.items()]
    return "\n".join(lines)

