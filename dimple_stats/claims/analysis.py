"""Running a claim's analysis: from a catalogue entry to per-seed result rows.

An analysis takes the table the claim reads (``measurements``, ``defense``, ``training`` or
``adv_training``; see :mod:`dimple_stats.measurements`), the claim's validated options, the
:class:`~dimple_stats.stats_config.StatsConfig` and the claim id, and returns per-seed
:class:`~dimple_stats.results.ResultRow` objects; :func:`dimple_stats.results.finalise` adds
the pooled rows, the multiplicity adjustment and the decisions. The analyses live by family
(:mod:`~dimple_stats.claims.perpendicularity`, :mod:`~dimple_stats.claims.norms`,
:mod:`~dimple_stats.claims.isometric`, :mod:`~dimple_stats.claims.training`) over the shared
row builders of :mod:`~dimple_stats.claims.rows`; the catalogue names each by a lazy
``"module:function"`` target, so the catalogue never imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import BaseModel

from dimple_stats.claims.catalogue import get_claim
from dimple_stats.claims.rows import AnalysisError, Rows
from dimple_stats.measurements import TableKind
from dimple_stats.stats_config import StatsConfig

__all__ = ["AnalysisError", "ClaimAnalysis", "OPTIONAL_COLUMNS", "get_analysis"]

#: Columns analyses read when the table has them, beyond those they require: the image's
#: index in its split (pooled rows then account for images the seeds share); base_ok (rows
#: whose attack base point is misclassified leave every claim, counted); measurable_on (rows
#: without an on-manifold norm leave the norm claims, counted); r_T_grad (the first-order null
#: of dmm.norm_asymmetry); reach_on and eps_on (dmm.off_succeeds_more says how many failed
#: strict on-manifold attacks had a feasible set certified to reach eps).
OPTIONAL_COLUMNS: tuple[str, ...] = ("image_id", "base_ok", "measurable_on", "r_T_grad",
                                     "reach_on", "eps_on")


@dataclass(frozen=True)
class ClaimAnalysis:
    """How a claim is analysed: the table it reads, the columns it needs, the function."""

    claim_id: str
    table: TableKind
    columns: Callable[[BaseModel], tuple[str, ...]]
    function: Callable[..., Rows]

    def run(self, df: pd.DataFrame, options: Any, stats: StatsConfig) -> Rows:
        """The per-seed rows of the claim on ``df`` (validated already)."""
        return self.function(df, options, stats, claim=self.claim_id)


def get_analysis(claim_id: str) -> ClaimAnalysis:
    """The analysis of a claim, resolved from its catalogue entry; unknown ids get a "did you
    mean".

    >>> get_analysis("dmm.norm_asymmetry").table
    'measurements'
    >>> get_analysis("dmm.norm_asymetry")
    Traceback (most recent call last):
    ...
    dimple_stats.claims.catalogue.UnknownClaimError: unknown claim 'dmm.norm_asymetry' (did you ...
    """
    definition = get_claim(claim_id)
    function = definition.analysis_function()
    return ClaimAnalysis(claim_id, definition.table, function.columns, function)
