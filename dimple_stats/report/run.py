"""Re-analysing a stored run directory: ``manifest.json`` + ``measurements.parquet`` (+ the other
tables when present) -> results table and report, with no torch import.

A run directory (written by ``dimple-stats run``) holds::

    manifest.json           {"protocol": {...}, ...}: the validated protocol as JSON, and provenance
    measurements.parquet    the per-sample measurements table
    defense.parquet         optional: iso.defense
    training.parquet        optional: dmm.clinging_then_dimpling
    adv_training.parquet    optional: dmm.adv_training_deepens
    gallery.parquet         optional: example images and perturbations (dimple_stats.gallery)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from dimple_stats.errors import BadInput
from dimple_stats.gallery import GALLERY_FILE, read_gallery
from dimple_stats.measurements import TABLE_FILES, MeasurementsError, read_measurements
from dimple_stats.protocol.schema import Protocol
from dimple_stats.stats_config import StatsConfig

__all__ = ["RunDirError", "RunData", "protocol_json", "protocol_from_json", "read_run",
           "report_run"]

MANIFEST = "manifest.json"


class RunDirError(BadInput):
    """A run directory is missing, incomplete or holds an invalid manifest."""


@dataclass(frozen=True)
class RunData:
    """What a run directory holds."""

    path: Path
    protocol: Protocol
    measurements: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    #: The example gallery (:mod:`dimple_stats.gallery`), None when the run kept none.
    gallery: pd.DataFrame | None = None


def protocol_json(protocol: Protocol) -> dict[str, Any]:
    """The protocol as JSON-ready data that :func:`protocol_from_json` reads back unchanged.

    >>> from dimple_stats import load_protocol
    >>> p = load_protocol("protocols/quickstart.yaml")
    >>> protocol_from_json(json.loads(json.dumps(protocol_json(p)))).hash == p.hash
    True
    """
    return protocol.model_dump(mode="json", by_alias=True)


def protocol_from_json(data: Mapping[str, Any]) -> Protocol:
    """Validate a protocol stored as JSON (``manifest["protocol"]``)."""
    return Protocol.model_validate(dict(data))


#: What to do about a run folder that cannot be read, ending each such error line.
_RERUN = ("a run folder's manifest.json and tables are written by `dimple-stats run`: name the "
          "folder it wrote, or run the protocol again (finished stages load from its store)")


def read_run(run_dir: str | os.PathLike[str]) -> RunData:
    """Load and validate a run directory; :class:`RunDirError` says what is wrong and what to
    do."""
    try:
        return _read_run(Path(run_dir))
    except (RunDirError, MeasurementsError) as exc:
        text = str(exc)
        if "re-run" in text or "run the protocol" in text:  # it says what to do already
            raise
        raise type(exc)(f"{text}; {_RERUN}") from None


def _read_run(path: Path) -> RunData:
    if not path.is_dir():
        raise RunDirError(f"{path}: not a run directory (no such directory)")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise RunDirError(f"{path}: not a run directory: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{manifest_path}: not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("protocol"), dict):
        raise RunDirError(f"{manifest_path}: no protocol object under the key 'protocol'")
    try:
        protocol = protocol_from_json(manifest["protocol"])
    except ValidationError as exc:
        # One line: pydantic's text spans several (a header, then each error and a URL).
        issues = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'protocol'}: {e['msg']}"
                           for e in exc.errors()[:3])
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        raise RunDirError(f"{manifest_path}: invalid protocol under 'protocol': {issues}{more}"
                          ) from None
    measurements_path = path / TABLE_FILES["measurements"]
    if not measurements_path.is_file():
        raise RunDirError(f"{path}: not a run directory: {TABLE_FILES['measurements']} is "
                          "missing")
    measurements = read_measurements(measurements_path, require=())
    tables = {kind: read_measurements(path / name, kind, require=())  # type: ignore[arg-type]
              for kind, name in TABLE_FILES.items()
              if kind != "measurements" and (path / name).is_file()}
    if not len(measurements) and not any(len(t) for t in tables.values()):
        # (a defense-only run has an empty measurements table beside its defense table)
        raise RunDirError(f"{path}: every table has no rows (nothing was measured); re-run "
                          "the protocol")
    gallery = read_gallery(path / GALLERY_FILE) if (path / GALLERY_FILE).is_file() else None
    named = {TABLE_FILES["measurements"]: measurements,
             **{TABLE_FILES[kind]: table for kind, table in tables.items()},
             **({GALLERY_FILE: gallery} if gallery is not None else {})}
    _check_tables_match(path, protocol, manifest, named)
    return RunData(path, protocol, measurements, tables, manifest, gallery)


def _check_tables_match(path: Path, protocol: Protocol, manifest: Mapping[str, Any],
                        tables: Mapping[str, pd.DataFrame]) -> None:
    """Refuse tables whose autoencoder, defense or seed the manifest does not name: an
    autoencoder name becomes part of figure file names (``gallery_<name>.png``), so an edited
    table must not steer a write outside the report, and rows of a seed that was not run are
    not this run's. Image dimensions ``n`` must be the data's pixel count (where the config
    fixes it) and ``sample`` an index among the run's evaluation images."""
    cells = [cell for _, cell in protocol.cell_protocols()]
    names = {name for cell in cells for name in cell.autoencoders}
    seeds = manifest.get("seeds")
    shapes = [cell.dataset.known_shape()[1] for cell in cells]
    pixels = ({s[0] * s[1] * s[2] for s in shapes if s is not None}
              if all(s is not None for s in shapes) else None)
    most = max(cell.dataset.eval_samples for cell in cells)
    for file, table in tables.items():
        if pixels and "n" in table.columns:
            odd_n = sorted(set(table["n"].dropna().astype(int).unique()) - pixels)
            if odd_n:
                raise RunDirError(f"{path / file}: column 'n' holds {odd_n[0]}, but the "
                                  f"manifest's data have {', '.join(map(str, sorted(pixels)))} "
                                  "pixels per image")
        if "sample" in table.columns and len(table) and (
                (table["sample"] < 0) | (table["sample"] >= most)).any():
            bad = table["sample"][(table["sample"] < 0) | (table["sample"] >= most)].iloc[0]
            raise RunDirError(f"{path / file}: column 'sample' holds {bad}, outside the "
                              f"manifest's {most} evaluation image(s) (0 to {most - 1})")
        if "defense" in table.columns:
            known = {"none"} | {f"{n}{suffix}" for n in names for suffix in ("", ":tangent")}
            alien = sorted(set(map(str, table["defense"].dropna().unique())) - known)
            if alien:
                raise RunDirError(f"{path / file}: column 'defense' holds {alien[0]!r}, which "
                                  "is neither 'none' nor a projection of an autoencoder the "
                                  "manifest's protocol names")
        if "autoencoder" in table.columns:
            unknown = sorted(set(map(str, table["autoencoder"].dropna().unique())) - names)
            if unknown:
                raise RunDirError(f"{path / file}: column 'autoencoder' holds "
                                  f"{', '.join(map(repr, unknown[:3]))}, which the manifest's "
                                  f"protocol does not name (it names {', '.join(sorted(names))})")
        if isinstance(seeds, list) and "seed" in table.columns:
            odd = sorted(set(table["seed"].dropna().unique()) - set(seeds), key=str)
            if odd:
                raise RunDirError(f"{path / file}: column 'seed' holds {odd[0]!r}, a seed the "
                                  f"manifest's run did not have (seeds {seeds})")


def report_run(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
               *, formats: Iterable[str] | None = None, correction: str | None = None,
               alpha: float | None = None, figures: bool | None = None, html: bool = True
               ) -> tuple[pd.DataFrame, list[Path]]:
    """Re-analyse a run directory and write its report (into the run directory by default,
    staged: :func:`~dimple_stats.report.destination.staged_render`).

    ``formats``, ``figures`` default to the protocol's ``report``; ``correction`` and ``alpha``
    override its ``stats``; ``html`` writes ``report.html`` with the manifest's provenance.
    Returns the results table and the written paths.
    """
    from dimple_stats.api import analyse
    from dimple_stats.report import GALLERY, write_report
    from dimple_stats.report.destination import staged_render

    run = read_run(run_dir)
    overrides = {k: v for k, v in (("correction", correction), ("alpha", alpha)) if v is not None}
    stats = StatsConfig.model_validate({**run.protocol.stats.model_dump(), **overrides})
    # The report's prose names the correction and alpha it was adjusted with: it must read the
    # overridden ones, not the protocol file's.
    protocol = run.protocol.model_copy(update={"stats": stats})
    try:
        if run.protocol.sweep is not None:
            from dimple_stats.sweep import analyse_sweep

            results = analyse_sweep(run.measurements, run.protocol, tables=run.tables,
                                    stats=stats)
        else:
            results = analyse(run.measurements, run.protocol, tables=run.tables, stats=stats)
    except MeasurementsError as exc:  # a column a claim reads is missing or mistyped
        kind = str(exc).split(" table:", 1)[0]
        where = run.path / TABLE_FILES[kind] if kind in TABLE_FILES else run.path
        raise MeasurementsError(f"{where}: {exc}; {_RERUN}") from None

    def render(folder: Path) -> list[Path]:
        return write_report(
            results, run.measurements, folder,
            formats=run.protocol.report.formats if formats is None else formats,
            figures=run.protocol.report.figures if figures is None else figures,
            title=f"{run.protocol.name}: dimple-stats results", html=html,
            tables=run.tables if run.gallery is None else {**run.tables, GALLERY: run.gallery},
            manifest=run.manifest, protocol=protocol)

    if out_dir is not None:
        paths = render(Path(out_dir))
    else:
        # In place: rendered beside the inputs, then swapped in, so an interrupted render
        # leaves the old report whole and no output of an earlier render survives as stale.
        with staged_render(run.path) as staging:
            paths = [run.path / p.relative_to(staging) for p in render(staging)]
    return results, paths
