"""`dimple-stats bench --quick`: it runs, writes both files, and every comparison AGREES.

Nothing here asserts a time: on a shared CI machine timings say nothing; agreement of results
(the same Jacobians, the same projections, the same attack iterates) and complete, honest
report files are what must hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dimple_stats.cli import app
from runners.bench.projection import NearIsometricDecoder
from runners.bench.tangent import functional_jacobian, per_pixel_jacobian
from runners.geometry.jacobian import decoder_jacobian

EXPECTED = {"tangent", "projection", "attacks", "end_to_end", "regulariser", "threads", "feasible",
            "store", "multiverse", "strict_tangent"}


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    # One quick bench (~150 s) for the whole session: under xdist each worker would run a
    # module fixture of its own, so the first worker runs it under a file lock in the temp
    # folder all workers share and the others read its files.
    import fcntl
    import os

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the run's folder above the workers' own
        shared = shared.parent
    out = shared / "quick_bench"
    with open(shared / "quick_bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "benchmarks.md").exists():
            result = CliRunner().invoke(app, ["bench", "--quick", "--out", str(out)])
            assert result.exit_code == 0, result.output
    data = json.loads((out / "benchmarks.json").read_text())
    return out, data, (out / "benchmarks.md").read_text()


def test_quick_bench_writes_both_files_and_all_results_agree(quick_report):
    _, data, md = quick_report
    assert data["quick"] is True
    assert set(data["benchmarks"]) == EXPECTED
    assert data["all_agree"] is True
    for name, b in data["benchmarks"].items():
        assert b["error"] is None, (name, b["notes"])
        assert b["agree"] is True, (name, b["agreement"])
        assert all(a["ok"] for a in b["agreement"].values())


def test_every_target_is_stated_with_a_value_and_a_verdict(quick_report):
    _, data, md = quick_report
    by_bench = {}
    for t in data["targets"]:
        by_bench.setdefault(t["benchmark"], []).append(t)
        assert isinstance(t["met"], bool) and t["display"] and t["target"]
        # The verdict and its row appear verbatim in the Markdown.
        assert f"| {t['benchmark']} | {t['name']} | {t['target']} | {t['display']} | " \
               f"{'MET' if t['met'] else 'NOT MET'} |" in md
    assert {"tangent", "projection", "attacks", "end_to_end"} <= set(by_bench)
    goals = {t["target"] for t in data["targets"]}
    assert {">= 100x", "<= 1.5x", "<= 2 GiB", "<= 1.1", "<= 180 s"} <= goals
    # A target can only be met when its benchmark agreed.
    for t in data["targets"]:
        if t["met"]:
            assert data["benchmarks"][t["benchmark"]]["agree"]


def test_report_records_machine_ratios_and_stage_split(quick_report):
    _, data, md = quick_report
    m = data["machine"]
    assert m["cpu_count"] >= 1 and m["torch_threads"] >= 1 and m["platform"]
    assert "torch" in m["versions"] and "torchattacks" in m["versions"]
    for name in ("tangent", "projection", "attacks", "regulariser", "threads"):
        assert data["benchmarks"][name]["ratios"], name
    e2e = data["benchmarks"]["end_to_end"]["extra"]
    assert any(s.startswith("measure[") for s in e2e["stage_split_s"])
    assert e2e["profile"]["top_by_self_time"]
    proj = data["benchmarks"]["projection"]["extra"]
    assert proj["plain"]["peak_rss_bytes"] > 0 and proj["isometric"]["converged"] == [True]
    att = data["benchmarks"]["attacks"]["extra"]["early_stop_refine"]
    assert att["grad_evals_per_sample_ours_mean"] <= att["grad_evals_per_sample_torchattacks"]
    for heading in ("## Machine", "## Targets", "Tangent basis", "torchattacks", "Profile"):
        assert heading in md


def test_baseline_jacobians_match_forward_mode_on_a_known_map():
    # The baselines are re-implementations: check them against a map with a known Jacobian.
    w = torch.randn(6, 3, dtype=torch.float64)

    def decode(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ w.T)

    z = torch.randn(2, 3, dtype=torch.float64)
    exact = (1 - torch.tanh(z @ w.T) ** 2).unsqueeze(-1) * w
    for jac in (per_pixel_jacobian(decode, z), functional_jacobian(decode, z),
                decoder_jacobian(decode, z)):
        torch.testing.assert_close(jac, exact)


def test_near_isometric_decoder_singular_values_in_band():
    dec = NearIsometricDecoder(channels=8, out_channels=1, factor=4, slope=0.1).double()
    z = torch.randn(2, 8 * 4, dtype=torch.float64)  # 8 x 2 x 2 latent -> 1 x 8 x 8 image
    s = torch.linalg.svdvals(decoder_jacobian(dec, z))
    assert float(s.min()) >= 1 - 1e-9 and float(s.max()) <= 1.1 + 1e-9


def test_only_updates_its_benchmarks_in_an_existing_report(quick_report, tmp_path: Path) -> None:
    import shutil

    out, data, _ = quick_report
    shutil.copytree(out, tmp_path / "b")
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "threads", "--out",
                                      str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    merged = json.loads((tmp_path / "b" / "benchmarks.json").read_text())
    assert set(merged["benchmarks"]) == set(data["benchmarks"])  # the others are kept
    for name in set(data["benchmarks"]) - {"threads"}:
        assert merged["benchmarks"][name] == data["benchmarks"][name]
    assert merged["benchmarks"]["threads"] != data["benchmarks"]["threads"]
    assert "separate `dimple-stats bench --only threads` run" in \
        " ".join(merged["benchmarks"]["threads"]["notes"])
    assert [t["benchmark"] for t in merged["targets"]] == [t["benchmark"] for t in data["targets"]]
    assert "## " in (tmp_path / "b" / "benchmarks.md").read_text()
