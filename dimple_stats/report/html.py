"""``report.html``: a run in one self-contained page, for reading in any browser, offline.

The page holds the run's question (the protocol's description and its claims), the data and
models (accuracy, reconstruction, conditioning), the verdicts, every figure, the example gallery,
the full results table and the manifest (commit, versions, machine, timings), with a banner on a
reduced run. Images are inline ``data:`` URIs and the CSS is inline, so the file can be mailed or
archived alone and reads the same without network; a small inline script makes the tables
sortable, and the page reads fully without it.

The template is ``templates/report.html.j2`` (Jinja2, autoescaped: the protocol's description,
the command line and autoencoder names are user input). Output is deterministic: the same run
directory gives byte-identical HTML (no clock, no random ids; dictionaries in a fixed order).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dimple_stats.protocol.schema import Protocol
from dimple_stats.report.summary import reduced_run_notes
from dimple_stats.results import POOLED

__all__ = ["HTML_FILE", "CAPTIONS", "Image", "caption", "embed_png",
           "render_html"]

#: File name of the page inside the report directory.
HTML_FILE = "report.html"

#: Figures whose file name starts with this go to the "Examples" section (one per autoencoder).
GALLERY_PREFIX = "gallery_"

#: Captions by figure file name; forest plots and galleries are captioned from their names.
CAPTIONS: dict[str, str] = {
    "r_T_vs_r_R.png": (
        "Share of each minimal adversarial perturbation's norm that lies in the autoencoder's "
        "tangent space (r_T), against the same share for a random subspace of the same "
        "dimension (r_R), with the chance density of r for a random direction. A perpendicular "
        "perturbation has r_T well below chance."),
    "r_T_vs_nulls.png": (
        "Distribution (ECDF) of r_T against every control the run measured, per autoencoder; the "
        "vertical line is the chance median of r. Perpendicular means r_T's curve well left of "
        "it and of the controls."),
    "norm_on_off_vs_dimension_counting.png": (
        "Distribution (ECDF) over images of log(norm of the minimal on-manifold perturbation / "
        "norm of the minimal off-manifold one), per autoencoder, against the distribution "
        "dimension counting alone predicts (on/off = sqrt((1-B)/B), B ~ Beta(k/2, (d-k)/2)) and "
        "its median. Images whose on- or off-manifold attack failed are ticks below the curve "
        "(their ratio is only a bound); the legend counts them."),
    "training_curves.png": (
        "Per training epoch: median distance to the decision boundary, and median r_T against "
        "the chance median of r and the random-subspace control r_R "
        "(dmm.clinging_then_dimpling)."),
}

#: Columns of the models table: manifest key -> heading (those no model has are left out).
MODEL_COLUMNS: dict[str, str] = {
    "model": "model", "seed": "seed", "arch": "arch", "adversarial": "adversarial training",
    "latent_dim": "latent dim",
    "parameters": "parameters", "epochs_run": "epochs", "test_accuracy": "test accuracy",
    "recon_mse": "recon. MSE", "recon_vs_mean": "MSE / MSE of mean image",
    "median_cond": "median cond(J)", "numerical_rank": "numerical rank",
    "train_seconds": "train s",
}


@dataclass(frozen=True)
class Image:
    """A PNG ready to inline: its file name, caption, ``data:`` URI and pixel size."""

    name: str
    caption: str
    uri: str
    width: int
    height: int


def caption(name: str) -> str:
    """Caption of a report figure, by file name; a generic one for names it does not know.

    >>> caption("forest_dmm_perpendicular.png")[:35]
    'Forest plot of dmm.perpendicular: p'
    >>> caption("gallery_plain.png")[:45]
    'Examples for autoencoder plain: one row per i'
    >>> caption("loss.png")
    'Figure loss.png.'
    """
    if name in CAPTIONS:
        return CAPTIONS[name]
    stem = name.rsplit(".", 1)[0]
    if stem.startswith("forest_"):
        claim = stem[len("forest_"):].replace("_", ".", 1)
        return (f"Forest plot of {claim}: per-seed estimates with confidence intervals and the "
                "pooled estimate (diamond), one panel per variant, with the estimate's value under "
                "H0 marked.")
    if stem.startswith("spec_curve_"):
        claim = stem[len("spec_curve_"):].replace("_", ".", 1)
        return (f"Specification curve of {claim}: one point per specification of the sweep "
                "(cell x autoencoder), the pooled estimate of the claim's deciding variant with "
                "its confidence interval, sorted by estimate and coloured by the "
                "specification's verdict; below, the choices each specification made.")
    if stem.startswith(GALLERY_PREFIX):
        return (f"Examples for autoencoder {stem[len(GALLERY_PREFIX):]}: one row per image "
                "(first seed, in order of r_T): the image x, its reconstruction D(E(x)), x plus "
                "the minimal unrestricted, on- and off-manifold perturbations, and those three "
                "perturbations as signed heat maps; FAILED in red marks a censored attack.")
    return f"Figure {name}."


def embed_png(path: str | os.PathLike[str]) -> Image:
    """Read a PNG into an :class:`Image` (size from its IHDR header, for a stable layout)."""
    p = Path(path)
    data = p.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{p}: not a PNG file")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return Image(p.name, caption(p.name), uri, width, height)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if value == value else ""
    return str(value)


def _frame(frame: pd.DataFrame) -> dict[str, Any]:
    return {"columns": list(frame.columns), "rows": frame.astype(str).values.tolist()}


def _models(manifest: Mapping[str, Any]) -> dict[str, Any]:
    models = [m for m in manifest.get("models") or [] if isinstance(m, Mapping)]
    # A sweep's classifier rows carry their config: say which were adversarially trained.
    models = [{**m, "adversarial": _adversarial(m["config"]["adversarial"])}
              if isinstance(m.get("config"), Mapping) and "adversarial" in m["config"] else m
              for m in models]
    keys = [k for k in MODEL_COLUMNS if any(k in m for m in models)]
    return {"columns": [MODEL_COLUMNS[k] for k in keys],
            "rows": [[_fmt(m.get(k)) for k in keys] for m in models]}


def _adversarial(setting: Any) -> str:
    if not isinstance(setting, Mapping):
        return "no"
    return " ".join(f"{k}={v}" for k, v in sorted(setting.items()) if v is not None)


def _run_label(key: str) -> str:
    """A manifest's per-run key in words: ``"3"`` is seed 3, a sweep's ``"3/1"`` cell 3 seed 1."""
    cell, sep, seed = str(key).partition("/")
    return f"cell {cell}, seed {seed}" if sep else f"seed {key}"


def _by_seed(table: Any, *, max_columns: int = 10) -> dict[str, Any]:
    """``{seed: {key: value}}`` -> rows of keys, one column per seed; with more seeds (a
    sweep's cell and seed pairs) than ``max_columns``, one row per seed instead."""
    if not isinstance(table, Mapping) or not table:
        return {"columns": [], "rows": []}
    seeds = list(table)
    keys = sorted({k for per in table.values() if isinstance(per, Mapping) for k in per})

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else _fmt(v)

    if len(seeds) > max_columns:
        return {"columns": ["", *keys],
                "rows": [[_run_label(s), *(cell((table[s] or {}).get(k)) for k in keys)]
                         for s in seeds]}
    return {"columns": ["", *(_run_label(s) for s in seeds)],
            "rows": [[k, *(cell((table[s] or {}).get(k)) for s in seeds)] for k in keys]}


def _claims(protocol: Protocol | None) -> list[dict[str, str]]:
    from dimple_stats.claims.catalogue import CATALOGUE

    out = []
    for entry in protocol.claims if protocol is not None else ():
        options = entry.options.model_dump(mode="json", exclude_defaults=True)
        definition = CATALOGUE[entry.id] if entry.id in CATALOGUE else None
        out.append({"id": entry.id,
                    "options": ", ".join(f"{k}: {v}" for k, v in options.items()) or "defaults",
                    "source": definition.source if definition else "",
                    "hypothesis": definition.hypothesis if definition else ""})
    return out


def _verdicts(items: Iterable[Any]) -> list[dict[str, str]]:
    return [{"claim": v.claim, "autoencoder": v.autoencoder, "category": v.category,
             "label": getattr(v, "label", "") or v.category,
             "css": "v-" + v.category.replace(" ", "-"), "hypothesis": v.hypothesis,
             "text": v.text,
             # one badge per reading when the nulls disagree or are several
             "nulls": [{"css": "v-" + reading.replace(" ", "-"), "text": f"{reading} {names}"}
                       for reading, names in getattr(v, "null_readings", lambda: [])()]}
            for v in items]


def _counts(items: Sequence[Any]) -> list[tuple[str, int]]:
    """(category, count) for the verdict words present, in the verdicts module's order; a
    sweep's claims whose specifications disagree are counted apart (:func:`_varying`)."""
    from dimple_stats.report.verdicts import CATEGORIES

    seen = [v.category for v in items]
    return [(c, seen.count(c)) for c in CATEGORIES if c in seen]


def _varying(items: Sequence[Any]) -> int:
    """How many of a sweep's claims read differently across its specifications."""
    from dimple_stats.report.verdicts import CATEGORIES

    return sum(v.category not in CATEGORIES for v in items)


def render_html(results: pd.DataFrame, *, figures: Sequence[str | os.PathLike[str]] = (),
                manifest: Mapping[str, Any] | None = None, protocol: Protocol | None = None,
                title: str = "dimple-stats results",
                verdicts: Sequence[Any] | None = None) -> str:
    """The report page as a string.

    Parameters
    ----------
    results : DataFrame
        The results table (:data:`dimple_stats.results.RESULT_COLUMNS`).
    figures : sequence of path
        PNG files to inline, in order; names starting with ``gallery_`` go to "Examples",
        the others to "Figures". Other suffixes (a PDF copy) are ignored.
    manifest : mapping, optional
        The run's ``manifest.json``: data, models and provenance sections (left out when None).
    protocol : Protocol, optional
        The run's protocol (default: read from ``manifest["protocol"]`` when present).
    title : str
        Page title and heading.
    verdicts : sequence, optional
        Verdict objects (``claim``, ``autoencoder``, ``category``, ``hypothesis``, ``text``);
        by default :func:`dimple_stats.report.verdicts.verdicts` of ``results``.

    Returns
    -------
    str
        The HTML document; the same inputs give the same string.
    """
    import jinja2

    from dimple_stats.report.tables import summary_frame

    if protocol is None and manifest and isinstance(manifest.get("protocol"), Mapping):
        from dimple_stats.report.run import protocol_from_json

        protocol = protocol_from_json(manifest["protocol"])
    from dimple_stats.sweep import SPECIFICATION, is_sweep

    confidence = protocol.stats.confidence if protocol is not None else 0.95
    if verdicts is None and is_sweep(results):
        from dimple_stats.report.sweep_text import robustness_verdicts

        verdicts = robustness_verdicts(results, confidence)
    if verdicts is None:
        from dimple_stats.report.verdicts import verdicts as compute_verdicts

        verdicts = compute_verdicts(results, confidence=confidence)
    images = [embed_png(p) for p in figures if Path(p).suffix.lower() == ".png"]
    summary = summary_frame(results)
    if is_sweep(results):
        summary.insert(0, SPECIFICATION, results[SPECIFICATION].astype(str).to_numpy())
    tests = results[["claim", "variant", "null", "test"]].drop_duplicates().astype(str)
    m = dict(manifest or {})
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dimple_stats.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)
    return env.get_template("report.html.j2").render(
        title=title,
        protocol=protocol,
        description=protocol.description if protocol is not None else "",
        claims=_claims(protocol),
        reduced=reduced_run_notes(m, protocol),
        verdicts=_verdicts(verdicts),
        verdict_counts=_counts(verdicts), verdicts_varying=_varying(verdicts),
        figures=[i for i in images if not i.name.startswith(GALLERY_PREFIX)],
        gallery=[i for i in images if i.name.startswith(GALLERY_PREFIX)],
        pooled=_frame(summary[results["seed"].astype(str) == POOLED]),
        full=_frame(summary),
        tests=_frame(tests),
        manifest=m,
        models=_models(m),
        data=_by_seed(m.get("data")),
        timings=_by_seed(m.get("timings")),
        memory=_by_seed(m.get("peak_memory_MB")),
        provenance=_provenance(m),
        versions=sorted((str(k), _fmt(v)) for k, v in (m.get("versions") or {}).items()),
        machine=sorted((str(k), _fmt(v)) for k, v in (m.get("machine") or {}).items()),
        dataset=_dataset(protocol),
        protocol_json=(json.dumps(m["protocol"], indent=2, sort_keys=True)
                       if "protocol" in m else ""),
    )


def _dataset(protocol: Protocol | None) -> list[tuple[str, str]]:
    if protocol is None:
        return []
    config = protocol.dataset.model_dump(mode="json")
    # The name first; unset options (None: the dataset's default) say nothing to a reader.
    keys = ["name", *(k for k in config if k != "name" and config[k] is not None)]
    return [(k, json.dumps(config[k]) if isinstance(config[k], (list, dict)) else _fmt(config[k]))
            for k in keys if k in config]


def _provenance(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The manifest's one-line facts, in reading order (those it lacks are left out)."""
    rows = []
    if "git_commit" in m:
        dirty = " (with uncommitted changes)" if m.get("git_dirty") else ""
        rows.append(("git commit", f"{_fmt(m['git_commit']) or 'unknown'}{dirty}"))
    for key, label in (("protocol_hash", "protocol hash"), ("seeds", "seeds"),
                       ("limit", "--limit"), ("executor", "executor"),
                       ("total_seconds", "total seconds"), ("tables", "tables")):
        if key in m:
            value = m[key]
            text = ", ".join(map(str, value)) if isinstance(value, list) else _fmt(value)
            rows.append((label, text or "none"))
    if "command" in m:
        command = m["command"]
        rows.append(("command", " ".join(map(str, command)) if isinstance(command, list)
                     else str(command)))
    return rows
