"""`dimple-stats bench --quick --only strict_tangent`: the k-coordinate strict on-manifold
attack against pixel-space PGD + ADMM on the same images: it must succeed at least as often, its
successes must be real (misclassified, in T, in the box), and the report must say so."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dimple_stats.cli import app


def test_quick_bench_compares_the_two_strict_attacks(tmp_path) -> None:
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "strict_tangent",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    bench = next(b for b in data["benchmarks"] if b["name"] == "strict_tangent") \
        if isinstance(data["benchmarks"], list) else data["benchmarks"]["strict_tangent"]
    assert all(check["ok"] for check in bench["agreement"].values()), bench["agreement"]
    new, old = (int(v) for v in
                bench["extra"]["successes k-coordinate / PGD + ADMM [plain AE]"]
                .split(" of ")[0].split(" / "))
    assert new >= old and new > 0
    md = (tmp_path / "benchmarks.md").read_text()
    assert "k-coordinate search vs pixel-space PGD + ADMM" in md
