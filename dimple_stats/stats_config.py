"""The statistics settings of a run (the protocol's ``stats:`` section) and their vocabulary.

Kept out of the protocol schema, because the claim analyses read them and the schema (which
lists the claims) must not be imported by the analyses it lists; and out of
:mod:`dimple_stats.stats`, whose modules load scipy and statsmodels, because validating a
protocol must stay light.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import ConfigDict, Field

from dimple_stats.strict_model import StrictScalars

__all__ = ["CORRECTIONS", "Correction", "StatsConfig"]

#: Multiplicity corrections (see :func:`dimple_stats.stats.multiplicity.adjust_pvalues`).
Correction = Literal["holm", "fdr_bh", "none"]
#: The correction names, in the order help texts list them.
CORRECTIONS: tuple[str, ...] = get_args(Correction)


class StatsConfig(StrictScalars):
    """Significance level, multiplicity correction, CI level, bootstrap size, target power.

    >>> StatsConfig(alpha=0.01).correction
    'holm'
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no `.nan`

    alpha: float = Field(0.05, gt=0, lt=1)
    correction: Correction = "holm"
    confidence: float = Field(0.95, gt=0, lt=1)
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples for CIs.")
    power: float = Field(0.8, gt=0, lt=1, description="Target power of the suggested n.")
