"""The value every hypothesis-test wrapper returns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Alternative", "HypothesisResult"]

Alternative = Literal["two-sided", "less", "greater"]


@dataclass(frozen=True)
class HypothesisResult:
    """Outcome of one test.

    Attributes
    ----------
    statistic : float
        The test statistic (its meaning is ``statistic_name``).
    pvalue : float
        The p-value; NaN when the test is undefined (e.g. no non-zero differences).
    n : int
        Observations the test used, zeros included.
    test : str
        Name of the test, e.g. ``"Wilcoxon signed-rank"``.
    statistic_name : str
        E.g. ``"W+"`` (sum of the ranks of positive differences).
    alternative : {"two-sided", "less", "greater"}
        The alternative hypothesis.
    """

    statistic: float
    pvalue: float
    n: int
    test: str
    statistic_name: str
    alternative: Alternative

    @property
    def defined(self) -> bool:
        """Whether the p-value is a number."""
        return not math.isnan(self.pvalue)
