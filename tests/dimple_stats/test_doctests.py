"""The Examples sections of the torch-free modules run as doctests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "dimple_stats.suggest",
    "dimple_stats.hashing",
    "dimple_stats.claims.catalogue",
    "dimple_stats.protocol.loader",
    "dimple_stats.measurements",
    "dimple_stats.atomic",
    "dimple_stats.results",
    "dimple_stats.api",
    "dimple_stats.claims.analysis",
    "dimple_stats.report.tables",
    "dimple_stats.report.run",
    "dimple_stats.stats.paired",
    "dimple_stats.stats.effect_size",
    "dimple_stats.stats.equivalence",
    "dimple_stats.stats.mcnemar",
    "dimple_stats.stats.correlation",
    "dimple_stats.stats.bootstrap",
    "dimple_stats.stats.multiplicity",
    "dimple_stats.stats.meta",
    "dimple_stats.stats.power",
    "dimple_stats.stats.chance",
    "dimple_stats.stats.changepoint",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
