"""The code's shape, checked by the tools configured in pyproject.toml: ruff (pycodestyle,
pyflakes, import sorting, bugbear, pyupgrade) and import-linter's layer contracts (the CLI on
top, then ``runners``, then the torch-free core; no import cycle between sibling modules)."""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


#: The modules of dimple_stats above the torch-free core.
NOT_CORE = frozenset({"cli", "__main__"})


def _run(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    if not exe.exists():  # the test extra installs both; a bare environment must not pass
        pytest.fail(f"{tool} is not installed next to {sys.executable}: pip install -e '.[test]'")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_ruff_finds_nothing() -> None:
    out = _run("ruff", "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_layers_and_no_cycles() -> None:
    out = _run("lint-imports", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout, out.stdout


def _unlisted_core_modules(root: Path) -> set[str]:
    """Modules of ``root``'s dimple_stats package that belong to the core but that the core's
    forbidden contract in ``root``'s pyproject.toml does not list."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the CI's)
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]
    (core,) = [c for c in config["contracts"] if "torch" in c.get("forbidden_modules", ())]
    found = {f"dimple_stats.{m.name}" for m in pkgutil.iter_modules([str(root / "dimple_stats")])
             if m.name not in NOT_CORE}
    return found - set(core["source_modules"])


def test_the_core_contract_lists_every_core_module() -> None:
    assert _unlisted_core_modules(ROOT) == set()


@pytest.mark.slow
def test_a_new_core_module_that_imports_torch_is_caught(tmp_path: Path) -> None:
    """A fixture module in a copy of the tree: unlisted, the completeness check names it;
    listed, lint-imports breaks the contract."""
    for name in ("dimple_stats", "runners"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "dimple_stats" / "stray.py").write_text("import torch\n\nX = torch.zeros(1)\n")
    pyproject = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject)
    assert _unlisted_core_modules(tmp_path) == {"dimple_stats.stray"}
    (tmp_path / "pyproject.toml").write_text(pyproject.replace(
        '"dimple_stats.api",', '"dimple_stats.api", "dimple_stats.stray",', 1))
    assert _unlisted_core_modules(tmp_path) == set()
    # the copy first on the path, so import-linter reads its packages, not the installed ones
    out = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0, out.stdout
    assert "dimple_stats.stray -> torch" in out.stdout, out.stdout


def test_every_file_a_docstring_or_comment_names_exists() -> None:
    """A path named in the code's prose (a test file, a page under docs) is a promise to a
    reader; one named a test file that did not exist (issue 33)."""
    import re

    pattern = re.compile(r"\b((?:tests|dimple_stats|runners|docs|protocols|reports|\.ci)/"
                         r"[A-Za-z0-9_./-]+\.(?:py|md|yaml|toml|csv|json|j2))\b")
    missing = []
    for package in ("dimple_stats", "runners", "tests"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for named in pattern.findall(line):
                    if not (ROOT / named).exists():
                        missing.append(f"{path.relative_to(ROOT)}:{number}: {named}")
    assert missing == [], missing
