"""The notebook-facing API: test one claim, analyse a protocol, write a report.

>>> import dimple_stats as ds                                   # doctest: +SKIP
>>> df = ds.read_measurements("reports/quickstart/measurements.parquet")  # doctest: +SKIP
>>> ds.test_claim(df, "dmm.perpendicular", null="beta")        # doctest: +SKIP
>>> results = ds.analyse(df, protocol)                          # doctest: +SKIP
>>> ds.write_report(results, df, "out/")                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from pydantic import BaseModel

from dimple_stats.claims.analysis import ClaimAnalysis, get_analysis
from dimple_stats.claims.catalogue import get_claim
from dimple_stats.claims.rows import join_notes
from dimple_stats.measurements import MeasurementsError, TableKind, validate
from dimple_stats.protocol.schema import Protocol
from dimple_stats.results import ResultRow, finalise
from dimple_stats.stats_config import StatsConfig

__all__ = ["test_claim", "analyse", "claim_rows"]

Tables = Mapping[str, pd.DataFrame]


def _stats(stats: StatsConfig | Mapping[str, Any] | None) -> StatsConfig:
    if stats is None:
        return StatsConfig()
    return stats if isinstance(stats, StatsConfig) else StatsConfig.model_validate(dict(stats))


def _table_for(analysis: ClaimAnalysis, measurements: pd.DataFrame | None,
               tables: Tables | None) -> pd.DataFrame:
    from dimple_stats.measurements import TABLE_FILES

    kind: TableKind = analysis.table
    table = measurements if kind == "measurements" else (tables or {}).get(kind)
    if table is None:
        raise MeasurementsError(
            f"claim {analysis.claim_id} needs the {kind} table ({TABLE_FILES[kind]}); "
            f"pass it as tables={{'{kind}': df}}")
    return table


def claim_rows(claim_id: str, table: pd.DataFrame, options: BaseModel | Mapping[str, Any] | None,
               stats: StatsConfig) -> list[ResultRow]:
    """Per-seed result rows of one claim (no pooling, no adjustment)."""
    analysis = get_analysis(claim_id)
    definition = get_claim(claim_id)
    opts = options if isinstance(options, definition.options) else \
        definition.options.model_validate(dict(options or {}))
    data = validate(table, analysis.table, require=analysis.columns(opts))
    data, excluded = without_bad_base_points(data)
    rows = analysis.run(data, opts, stats)
    for row in rows:
        count = excluded.get((row.autoencoder, row.seed), 0)
        if count:
            row.note = join_notes(row.note, f"{count} image(s) excluded: the classifier gets "
                                  "their manifold point D(z*) wrong (base_ok False)")
    return rows


def without_bad_base_points(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, Any], int]]:
    """``table`` without the rows whose attack base point is misclassified (``base_ok`` False:
    attack.base manifold), and their count per (autoencoder, seed).

    Such an image has no minimal perturbation from D(z*) (it is 0), so it belongs to no claim;
    it is counted, never silently dropped.

    >>> t = pd.DataFrame({"seed": [0, 0], "autoencoder": ["a", "a"], "base_ok": [True, False]})
    >>> kept, excluded = without_bad_base_points(t)
    >>> len(kept), excluded
    (1, {('a', 0): 1})
    """
    if "base_ok" not in table.columns:
        return table, {}
    bad = ~table["base_ok"].astype(bool)
    if not bool(bad.any()):
        return table, {}
    counts = table.loc[bad].groupby(["autoencoder", "seed"]).size()
    excluded = {(str(ae), int(seed)): int(v) for (ae, seed), v in counts.items()}
    return table.loc[~bad].reset_index(drop=True), excluded


def test_claim(data: pd.DataFrame, claim_id: str, *,
               stats: StatsConfig | Mapping[str, Any] | None = None,
               **options: Any) -> pd.DataFrame:
    """Test one claim on a table; returns the results table (per-seed rows and pooled rows).

    ``data`` is the table the claim reads: the measurements table for most claims, the
    ``defense``, ``training`` or ``adv_training`` table for ``iso.defense``,
    ``dmm.clinging_then_dimpling`` and ``dmm.adv_training_deepens``. Keyword arguments are the
    claim's options (validated by its options model, e.g. ``null="beta"``); ``stats`` overrides
    alpha, correction, confidence, bootstrap resamples and target power. p-values are adjusted
    within this claim's rows only.

    Parameters
    ----------
    data : pandas.DataFrame
        The table the claim reads (validated against its schema).
    claim_id : str
        A catalogue id, e.g. ``"dmm.perpendicular"`` (``dimple-stats claims`` lists them; the
        README's Claims section summarises them).
    stats : StatsConfig or mapping, optional
        Overrides of the statistics settings.
    **options
        The claim's options.

    Returns
    -------
    pandas.DataFrame
        The results table: one row per (variant, autoencoder, seed) plus the pooled rows, with the
        columns of :data:`dimple_stats.results.RESULT_COLUMNS`.

    References
    ----------
    .. [1] Shamir, A., Melamed, O., & BenShmuel, O. (2021). The dimpled manifold model of
       adversarial examples in machine learning. arXiv:2106.10151. See docs/references.md#shamir-2021
    .. [2] Zhao & Pushpita (2021). Code comparing perturbations with random subspaces (write-up not
       public). See docs/references.md#zhao-pushpita-2021
    .. [3] Xiao, J., et al. (2022). Understanding adversarial robustness against on-manifold
       perturbations. arXiv:2210.00430. See docs/references.md#xiao-2022
    .. [4] Gropp, A., Atzmon, M., & Lipman, Y. (2020). Isometric autoencoders. arXiv:2006.09289.
       See docs/references.md#gropp-2020
    .. [5] Lee, Y., Yoon, S., Son, M., & Park, F. C. (2022). Regularized autoencoders for isometric
       representation learning. ICLR 2022. See docs/references.md#lee-2022
    .. [6] Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J.
       Stat., 6(2), 65-70. See docs/references.md#holm-1979

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> n = 60
    >>> df = pd.DataFrame({"seed": 0, "autoencoder": "plain", "sample": np.arange(n),
    ...     "n": 64, "k": 8, "r_T": np.sqrt(rng.beta(4, 28, n)) * 0.6,
    ...     "r_R": np.sqrt(rng.beta(4, 28, n)), "success_plain": True})
    >>> res = test_claim(df, "dmm.perpendicular", stats={"bootstrap": 200})
    >>> res[["seed", "n", "decision"]].values.tolist()
    [[0, 60, 'reject H0'], ['pooled', 60, 'reject H0']]
    """
    stats_ = _stats(stats)
    return finalise(claim_rows(claim_id, data, options, stats_), stats_)


test_claim.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


def analyse(measurements: pd.DataFrame | None, protocol: Protocol, *,
            tables: Tables | None = None,
            stats: StatsConfig | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Test every claim of a protocol; returns one results table for the whole run.

    ``tables`` holds the other tables by kind (``defense``, ``training``, ``adv_training``) for
    the claims that read them. ``stats`` defaults to the protocol's. Multiplicity is adjusted
    across all claims in two families, the pooled rows (the verdicts) and the per-seed rows
    (replications); see :func:`dimple_stats.results.finalise`. A claim listed twice with the
    same options is analysed once.
    """
    stats_ = protocol.stats if stats is None else _stats(stats)
    rows: list[ResultRow] = []
    seen: set[tuple[str, str]] = set()
    for entry in protocol.claims:
        key = (entry.id, entry.options.model_dump_json())
        if key in seen:
            continue
        seen.add(key)
        analysis = get_analysis(entry.id)
        rows += claim_rows(entry.id, _table_for(analysis, measurements, tables), entry.options,
                           stats_)
    return finalise(_once(rows), stats_)


def _once(rows: list[ResultRow]) -> list[ResultRow]:
    """Each (claim, variant, autoencoder, seed) row once. A claim listed twice with different
    options (``iso.defense`` at two budget lists) gives the rows its options do not change
    twice (its per-seed clean-cost rows): kept twice, the pooled row counted one seed twice.
    Two different rows under one name are an error: the options would change a row its name
    does not say."""
    from dimple_stats.claims.analysis import AnalysisError

    first: dict[tuple[str, str, str, str], ResultRow] = {}
    for row in rows:
        key = (row.claim, row.variant, row.autoencoder, str(row.seed))
        if key not in first:
            first[key] = row
        elif not all(a == b or (a != a and b != b) for a, b in zip(  # NaN == NaN here
                (row.estimate, row.p, row.n), (first[key].estimate, first[key].p, first[key].n))):
            raise AnalysisError(f"{row.claim} is listed twice with options that give two "
                                f"different rows {row.variant!r} ({row.autoencoder}, seed "
                                f"{row.seed}); list it once with the options you want")
    return list(first.values())
