"""`dimple-stats bench --quick --only feasible`: strict vs clip, on the same attacks.

As in ``test_bench.py`` nothing asserts a time; what must hold is that the strict perturbations
are where they must be (in T for on-manifold, in T-perp for off-manifold, inside the pixel box),
that the ratios the entry exists for were measured, and that the report states them.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from dimple_stats.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def feasible_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench_feasible")
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "feasible", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "benchmarks.json").read_text())
    return data, (out / "benchmarks.md").read_text()


def test_quick_feasible_agrees_and_strict_stays_in_its_set(feasible_report):
    data, _ = feasible_report
    assert set(data["benchmarks"]) == {"feasible"} and data["all_agree"] is True
    b = data["benchmarks"]["feasible"]
    assert b["error"] is None, b["notes"]
    assert b["agree"] is True, b["agreement"]
    checks = b["agreement"]
    assert all(a["ok"] for a in checks.values())
    on = [a for name, a in checks.items() if name.startswith("strict on-manifold")]
    off = [a for name, a in checks.items() if name.startswith("strict off-manifold")]
    assert on and off
    assert all(a["value"] >= 0.999 for a in on) and all(a["value"] <= 1e-3 for a in off)
    assert any("pixel box" in name for name in checks)
    # Strict and clip contenders were both timed, for both modes, with their diagnostics.
    for mode in ("on", "off"):
        strict = b["timings"][f"{mode}-manifold, box strict [plain AE]"]
        clip = b["timings"][f"{mode}-manifold, box clip [plain AE]"]
        assert strict["median_s"] > 0 and clip["median_s"] > 0
        assert strict["projection_iters_per_step"] >= 1 and "projection_iters_per_step" not in clip


def test_quick_feasible_ratios_are_finite_and_reported(feasible_report):
    data, md = feasible_report
    b = data["benchmarks"]["feasible"]
    for mode in ("on", "off"):
        for kind in ("time strict / clip", "time per gradient step strict / clip"):
            ratio = b["ratios"][f"{kind}, {mode}-manifold [plain AE]"]
            assert math.isfinite(ratio) and ratio > 0
    targets = {t["name"]: t for t in data["targets"]}
    for mode in ("on", "off"):
        t = targets[f"time ratio strict / clip, {mode}-manifold"]
        assert t["target"] == "recorded" and t["met"] is True and math.isfinite(t["value"])
        assert t["benchmark"] == "feasible"
    for t in data["targets"]:
        assert f"| feasible | {t['name']} | {t['target']} | {t['display']} | " \
               f"{'MET' if t['met'] else 'NOT MET'} |" in md
    assert "Strict feasible set" in md
