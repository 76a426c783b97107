"""A sweep's results: every cell analysed as its own protocol, one table, multiplicity across
the grid, and how often each claim holds (its robustness across specifications).

A swept run directory holds the measurements of every cell in one table with a ``cell``
column (the cell's index in :meth:`~dimple_stats.protocol.sweep.SweepConfig.cells`), and the
base protocol with its ``sweep:`` in the manifest, from which each cell's protocol is derived
again. :func:`analyse_sweep` analyses each cell with :func:`dimple_stats.api.analyse` on its
own rows and protocol, adds the cell's choices as columns (one per swept path, plus
``specification``, the cell's label), analyses the claims over the sweep (table
:data:`PAIRS_TABLE`, built here from pairs of cells) and re-adjusts the p-values in the sweep's
family (:class:`~dimple_stats.protocol.sweep.SweepConfig` ``family``; Holm within each claim
across cells by default); ``p_adj_cell`` keeps each cell's own adjustment.

A *specification* is one (cell, autoencoder): the unit the specification curve draws and the
robustness line counts ("supported in 12/40 specifications").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dimple_stats.errors import BadInput
from dimple_stats.protocol.schema import Protocol
from dimple_stats.protocol.sweep import cell_label, format_choice
from dimple_stats.results import POOLED
from dimple_stats.stats.multiplicity import adjust_pvalues
from dimple_stats.stats_config import StatsConfig

__all__ = ["CELL", "FAMILY", "PAIRS_TABLE", "PairChoice", "family_size", "SPECIFICATION", "ADVERSARIAL_PATH",
           "SweepError", "analyse_sweep", "adjust_across_grid", "classifier_pairs", "is_sweep",
           "swept_paths", "sweep_claim_ids"]

#: Column naming a row's cell (measurements and results of a swept run).
CELL = "cell"
#: Column holding a cell's label (``latent_dim=4, method=pgd``) in a sweep's results.
SPECIFICATION = "specification"
#: The table of claims over a sweep: two cells' measurements stacked, ``classifier`` column.
PAIRS_TABLE = "classifier_pairs"
#: Column naming the sweep's multiplicity family (``claim``, ``grid`` or ``cell``).
FAMILY = "sweep_family"
#: The swept path whose cells the pairs table pairs.
ADVERSARIAL_PATH = "classifier.adversarial"
_DECIDED = ("reject H0", "retain H0")


class SweepError(BadInput):
    """A sweep that cannot serve a claim (e.g. a claim over classifier pairs without a sweep
    over ``classifier.adversarial``)."""

    section = "sweep"


def swept_paths(results: pd.DataFrame) -> list[str]:
    """The swept paths of a sweep's results: the columns between ``specification`` and
    ``claim``."""
    columns = list(results.columns)
    return columns[columns.index(SPECIFICATION) + 1:columns.index("claim")]


def is_sweep(results: pd.DataFrame) -> bool:
    """Whether a results table is a sweep's (it has the ``cell`` column)."""
    return CELL in results.columns


def sweep_claim_ids(protocol: Protocol) -> list[str]:
    """Claims of the protocol that read the sweep as a whole (the pairs table)."""
    from dimple_stats.claims import get_claim

    return [cid for cid in dict.fromkeys(protocol.claim_ids)
            if get_claim(cid).table == PAIRS_TABLE]


def check_sweep_claims(protocol: Protocol) -> None:
    """Refuse claims over the sweep that the sweep cannot serve (before any compute)."""
    wanted = sweep_claim_ids(protocol)
    if not wanted:
        return
    paths = protocol.sweep.paths if protocol.sweep is not None else []
    if ADVERSARIAL_PATH not in paths:
        raise SweepError(
            f"claim(s) {', '.join(wanted)} compare the standard and the adversarially trained "
            f"classifier per image: they need a sweep over {ADVERSARIAL_PATH} with null and a "
            "setting among its values (e.g. sweep: {grid: {classifier.adversarial: [null, "
            "{norm: l2, eps: 1.0}]}})")
    values = (protocol.sweep.grid.get(ADVERSARIAL_PATH) or  # type: ignore[union-attr]
              protocol.sweep.zip.get(ADVERSARIAL_PATH, ()))  # type: ignore[union-attr]
    if None not in values or all(v is None for v in values):
        raise SweepError(f"claim(s) {', '.join(wanted)}: the values of {ADVERSARIAL_PATH} "
                         "must include null (standard training) and at least one setting")
    if not classifier_pairs(protocol.sweep.cells()):  # type: ignore[union-attr]
        raise SweepError(f"claim(s) {', '.join(wanted)}: no two cells differ only in "
                         f"{ADVERSARIAL_PATH} (put it under grid:, not zip:)")


@dataclass(frozen=True)
class PairChoice:
    """The ``classifier.adversarial`` choice of a pair row: standard against ``setting``."""

    setting: Any

    def __str__(self) -> str:
        return f"{format_choice(None)} vs {format_choice(self.setting)}"


def _key(choices: Mapping[str, Any], skip: str) -> str:
    return json.dumps({k: v for k, v in choices.items() if k != skip}, sort_keys=True)


def classifier_pairs(cells: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """``(standard cell, adversarial cell)`` index pairs: cells that differ only in
    ``classifier.adversarial``, null against each setting.

    >>> classifier_pairs([{"k": 2, ADVERSARIAL_PATH: None}, {"k": 2, ADVERSARIAL_PATH: {"eps": 1}},
    ...                   {"k": 4, ADVERSARIAL_PATH: None}, {"k": 4, ADVERSARIAL_PATH: {"eps": 1}}])
    [(0, 1), (2, 3)]
    """
    standard = {_key(c, ADVERSARIAL_PATH): i for i, c in enumerate(cells)
                if ADVERSARIAL_PATH in c and c[ADVERSARIAL_PATH] is None}
    return [(standard[_key(c, ADVERSARIAL_PATH)], i) for i, c in enumerate(cells)
            if c.get(ADVERSARIAL_PATH) is not None and _key(c, ADVERSARIAL_PATH) in standard]


def _of_cell(frame: pd.DataFrame | None, cell: int) -> pd.DataFrame | None:
    if frame is None or CELL not in frame.columns:
        return frame
    return frame[frame[CELL] == cell].drop(columns=CELL).reset_index(drop=True)


def _choice_columns(results: pd.DataFrame, cell: int, choices: Mapping[str, Any],
                    paths: Sequence[str], label: str) -> pd.DataFrame:
    front = {CELL: cell, SPECIFICATION: label,
             **{p: format_choice(choices[p]) if p in choices else "" for p in paths}}
    extra = pd.DataFrame({k: [v] * len(results) for k, v in front.items()}, index=results.index)
    return pd.concat([extra, results], axis=1)


def analyse_sweep(measurements: pd.DataFrame, protocol: Protocol, *,
                  tables: Mapping[str, pd.DataFrame] | None = None,
                  stats: StatsConfig | None = None) -> pd.DataFrame:
    """The results table of a swept run (see the module notes).

    Columns: ``cell``, ``specification``, one per swept path (the value as text), the results
    columns (:data:`dimple_stats.results.RESULT_COLUMNS`, ``p_adj`` and ``decision`` in the
    sweep's family) and ``p_adj_cell``.
    """
    from dimple_stats.api import analyse

    if protocol.sweep is None:
        raise SweepError("the protocol has no sweep")
    check_sweep_claims(protocol)
    stats = stats or protocol.stats
    sweep_claims = set(sweep_claim_ids(protocol))
    cells = protocol.cell_protocols()
    paths = protocol.sweep.paths
    frames = []
    for index, (choices, cell) in enumerate(cells):
        own = tuple(e for e in cell.claims if e.id not in sweep_claims)
        if not own:
            continue
        cell = cell.model_copy(update={"claims": own})
        rows = _of_cell(measurements, index)
        if "measurements" in cell.tables and (rows is None or not len(rows)):
            raise SweepError(f"cell {index} ({cell_label(choices, paths)}) has no measurements "
                             "in the run directory")
        cell_tables = {k: _of_cell(v, index) for k, v in (tables or {}).items()}
        results = analyse(rows, cell, tables=cell_tables, stats=stats)  # type: ignore[arg-type]
        frames.append(_choice_columns(results, index, choices, paths,
                                      cell_label(choices, paths)))
    frames += _pair_results(measurements, protocol, cells, paths, stats, sweep_claims)
    if not frames:
        raise SweepError("the sweep's claims gave no result rows")
    out = pd.concat(frames, ignore_index=True)
    out["p_adj_cell"] = out["p_adj"]
    out[FAMILY] = protocol.sweep.family
    return adjust_across_grid(out, stats, protocol.sweep.family)


def _pair_results(measurements: pd.DataFrame, protocol: Protocol, cells: Sequence[Any],
                  paths: Sequence[str], stats: StatsConfig, sweep_claims: set[str]
                  ) -> list[pd.DataFrame]:
    from dimple_stats.api import claim_rows
    from dimple_stats.results import finalise

    entries = [e for e in dict.fromkeys(protocol.claims) if e.id in sweep_claims]
    frames = []
    for std, adv in classifier_pairs([c for c, _ in cells]):
        table = pd.concat([_of_cell(measurements, std).assign(classifier="standard"),  # type: ignore[union-attr]
                           _of_cell(measurements, adv).assign(classifier="adversarial")],  # type: ignore[union-attr]
                          ignore_index=True)
        rows = [r for e in entries for r in claim_rows(e.id, table, e.options, stats)]
        if not rows:
            continue
        results = finalise(rows, stats)
        # Keyed by the adversarial cell: each pair has its own (a standard cell pairs with every
        # setting), and its label shows the comparison where the setting would be.
        choices = dict(cells[adv][0])
        shown = {**choices, ADVERSARIAL_PATH: PairChoice(choices[ADVERSARIAL_PATH])}
        frame = _choice_columns(results, adv, shown, paths, cell_label(shown, paths))
        frames.append(frame)
    return frames


def family_size(results: pd.DataFrame, claim: str, cell: int) -> int:
    """Tests in the family of ``claim``'s rows of ``cell`` (what Bonferroni divides by when a
    verdict reads a row as contradicting its claim): per the results' ``sweep_family``."""
    family = str(results[FAMILY].iloc[0]) if FAMILY in results.columns and len(results) \
        else "claim"
    scope = (results[results["claim"] == claim] if family == "claim" else
             results[results[CELL] == cell] if family == "cell" else results)
    # A verdict reads pooled rows: their family is the pooled rows (the per-seed rows are
    # adjusted in a family of their own).
    pooled = scope[scope["seed"].astype(str) == POOLED]
    scope = pooled if len(pooled) else scope
    return int(np.isfinite(scope["p_adj"].to_numpy(dtype=float)).sum())


def _relevel_pooled_cis(out: pd.DataFrame, confirmatory: np.ndarray, groups: pd.Series,
                        stats: StatsConfig) -> None:
    """Widen each pooled row's CI to the level of the sweep's family (in place).

    Rows pooled with a normal or t reference have a CI symmetric about the estimate, so the
    new one is the old half-width times the ratio of the two critical values. The others
    (paired risk differences, correlations: asymmetric Newcombe and Fisher-z intervals) get
    each side scaled by the normal ratio, a first-order re-levelling (those intervals widen
    with z about as a Wald interval does), kept inside [-1, 1]. A row whose CI then still
    excludes the null on the claim's side while its test retains says why in its note.
    """
    from scipy import stats as st

    from dimple_stats.results import ci_disagreement_note, family_level

    sizes = pd.Series(confirmatory, index=out.index).groupby(groups).transform("sum")
    rejected = pd.Series(confirmatory & (out["decision"] == "reject H0").to_numpy(),
                         index=out.index).groupby(groups).transform("sum")
    cols = out.columns.get_indexer(["ci_low", "ci_high", "ci_level"])
    for pos in np.flatnonzero(confirmatory):
        r = out.iloc[pos]
        est, lo, hi, old = (float(r[c]) for c in ("estimate", "ci_low", "ci_high", "ci_level"))
        if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(old)):
            continue
        level = family_level(stats.alpha, int(sizes.iloc[pos]), stats.correction,
                             str(r["alternative"]), int(rejected.iloc[pos]))
        symmetric = abs((hi + lo) / 2 - est) <= 1e-9 * max(1.0, abs(est))
        df = int(r["n_seeds"]) - 1 if symmetric and str(r["statistic_name"]).startswith("t ") \
            else 0

        def crit(lv: float, df: int = df) -> float:
            return float(st.t.isf((1 - lv) / 2, df) if df > 0 else st.norm.isf((1 - lv) / 2))
        ratio = crit(level) / crit(old)
        if symmetric:
            lo, hi = est - (est - lo) * ratio, est + (hi - est) * ratio
        else:
            lo, hi = max(est - (est - lo) * ratio, -1.0), min(est + (hi - est) * ratio, 1.0)
        out.iloc[pos, cols] = [lo, hi, level]
        note = ci_disagreement_note(out.iloc[pos])
        if note and note not in str(r["note"]):
            out.iloc[pos, out.columns.get_loc("note")] = "; ".join(
                x for x in (str(r["note"]) if str(r["note"]) != "nan" else "", note) if x)


def adjust_across_grid(results: pd.DataFrame, stats: StatsConfig, family: str) -> pd.DataFrame:
    """Re-adjust ``p_adj`` and re-decide in the sweep's ``family`` (``claim``, ``grid`` or
    ``cell``), over the rows each cell's own adjustment tested (decided rows), and recount
    ``n_seeds_reject`` of pooled rows.

    >>> df = pd.DataFrame({"cell": [0, 1], "specification": ["k=2", "k=4"],
    ...     "claim": ["c", "c"], "variant": "v",
    ...     "autoencoder": "a", "seed": [0, 0], "p": [0.01, 0.04], "p_adj": [0.01, 0.04],
    ...     "decision": "reject H0", "alpha": 0.05, "n_seeds_reject": 1})
    >>> adjust_across_grid(df, StatsConfig(), "claim")["p_adj"].tolist()  # Holm over 2
    [0.02, 0.04]
    """
    out = results.copy()
    if family == "cell":
        return out
    tested = out["decision"].isin(_DECIDED).to_numpy() & np.isfinite(
        out["p"].to_numpy(dtype=float))
    is_pooled = out["seed"].astype(str) == POOLED
    # Pooled rows (the verdicts) and per-seed rows (replication) are separate families, as in
    # a single run (dimple_stats.results.finalise).
    groups = (out["claim"] if family == "claim" else pd.Series("all", index=out.index)) \
        .astype(str) + np.where(is_pooled, " [pooled]", " [seeds]")
    p_adj = out["p_adj"].to_numpy(dtype=float).copy()
    for _, idx in out[tested].groupby(groups[tested], sort=False).groups.items():
        pos = out.index.get_indexer(idx)
        p_adj[pos] = adjust_pvalues(out["p"].to_numpy(dtype=float)[pos], stats.correction)
    out["p_adj"] = p_adj
    decided = np.where(p_adj <= out["alpha"].to_numpy(dtype=float), "reject H0", "retain H0")
    out["decision"] = np.where(tested, decided, out["decision"].to_numpy(dtype=object))
    if "ci_level" in out.columns:
        _relevel_pooled_cis(out, tested & is_pooled.to_numpy(), groups, stats)
    keys = [CELL, SPECIFICATION, "claim", "variant", "autoencoder"]
    per_seed = out[~is_pooled]
    rejects = per_seed.groupby(keys, sort=False)["decision"].agg(
        lambda s: int((s == "reject H0").sum()))
    out["n_seeds_reject"] = [
        int(rejects.get(tuple(k), 0)) if pool else int(d == "reject H0")
        for k, pool, d in zip(out[keys].itertuples(index=False, name=None), is_pooled,
                              out["decision"])]
    return out
