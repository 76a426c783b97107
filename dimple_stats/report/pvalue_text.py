"""p-values as the report prints them (shared by the tables, the verdicts and the console)."""

from __future__ import annotations

import math

__all__ = ["P_FLOOR", "format_p"]

#: p-values below this print as "< 1e-15": double precision cannot resolve smaller tail
#: probabilities reliably, and a reader should not take 1e-69 at face value.
P_FLOOR = 1e-15


def format_p(x: object) -> str:
    """A p-value for people: 3 significant digits, "< 1e-15" below that, "" for NaN.

    >>> format_p(0.012345), format_p(3e-70), format_p(float("nan"))
    ('0.0123', '< 1e-15', '')
    """
    v = float(x)  # type: ignore[arg-type]
    if math.isnan(v):
        return ""
    return f"< {P_FLOOR:g}" if v < P_FLOOR else f"{v:.3g}"
