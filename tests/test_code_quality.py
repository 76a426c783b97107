"""The code's shape, checked by the tools configured in pyproject.toml: ruff (pycodestyle,
pyflakes, import sorting, bugbear, pyupgrade) and import-linter's layer contracts (the CLI on
top, then ``runners``, then the torch-free core; no import cycle between sibling modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    if not exe.exists():  # the test extra installs both; a bare environment must not pass
        pytest.fail(f"{tool} is not installed next to {sys.executable}: pip install -e '.[test]'")
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_ruff_finds_nothing() -> None:
    out = _run("ruff", "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_layers_and_no_cycles() -> None:
    out = _run("lint-imports", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout, out.stdout
