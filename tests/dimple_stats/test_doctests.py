"""Every Examples section of both packages runs: pytest collects them (``--doctest-modules``
over ``testpaths``), so no test keeps a hand list of modules that a new module can miss."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_with_examples_is_collected_as_a_doctest() -> None:
    text = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; this project runs on 3.10)
    addopts = re.search(r'^addopts = "(.*)"$', text, re.M)
    testpaths = re.search(r"^testpaths = \[(.*)\]$", text, re.M)
    assert addopts and "--doctest-modules" in addopts.group(1).split()
    assert testpaths
    paths = [ROOT / p.strip().strip('"') for p in testpaths.group(1).split(",")]
    with_examples = [f for pkg in ("dimple_stats", "runners") for f in (ROOT / pkg).rglob("*.py")
                     if ">>> " in f.read_text()]
    assert len(with_examples) >= 40  # what there is today; a drop means collection broke
    for f in with_examples:
        assert any(p in f.parents for p in paths), f"{f} is outside testpaths"
