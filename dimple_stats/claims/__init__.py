"""The claim catalogue and the analyses that test each claim.

Adding a claim takes two steps and touches no other module:

1. Write its analysis: a function ``fn(table, options, stats, *, claim) -> list[ResultRow]``
   decorated with :func:`~dimple_stats.claims.rows.needs` (the columns it reads), built from
   the row builders of :mod:`~dimple_stats.claims.rows` (``location_row``, ``tost_row``, ...),
   with a docstring that says how censoring biases it.
2. Register a :class:`~dimple_stats.claims.catalogue.ClaimDefinition` in :data:`CATALOGUE`:
   id, source, hypothesis, statistic, test, nulls in words, censoring, an options model, the
   table it reads and the analysis as a ``"module:function"`` target.

Protocols, ``dimple-stats claims``, ``dimple-stats run`` and ``report`` then know it
(``tests/runners/test_toy_extensions.py`` does exactly this, in the test; as an installed
plugin, ``tests/runners/test_plugins.py``).
"""

from dimple_stats.claims.catalogue import CATALOGUE, ClaimDefinition, get_claim, list_claims

__all__ = ["CATALOGUE", "ClaimDefinition", "get_claim", "list_claims"]
