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
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
