"""Every committed report under reports/ is reproducible from its own run directory: re-analysing
``manifest.json`` + the measurement tables with today's code gives byte-identical tables.

This is the guarantee the README's results rest on: a change to an analysis that alters a
committed number fails here until the report is re-rendered (``dimple-stats report reports/X``)
and the README checked against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dimple_stats.report.run import report_run

REPORTS = Path(__file__).resolve().parents[2] / "reports"
RUN_DIRS = sorted(p.parent for p in REPORTS.glob("*/manifest.json"))


def test_there_are_committed_reports() -> None:
    assert {"quickstart", "synthetic_known_manifold"} <= {p.name for p in RUN_DIRS}


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=lambda p: p.name)
def test_committed_report_rerenders_identically(run_dir: Path, tmp_path: Path) -> None:
    report_run(run_dir, tmp_path, figures=False)
    for name in ("results.csv", "results.md", "results.tex", "summary.md"):
        committed = run_dir / name
        assert committed.is_file(), f"{committed} is missing"
        assert (tmp_path / name).read_bytes() == committed.read_bytes(), (
            f"{committed} differs from a fresh `dimple-stats report {run_dir.name}`")


def test_readme_quotes_the_mnist_summary_as_generated() -> None:
    """The verdicts the README shows are the committed summary.md's, line for line."""
    readme = (REPORTS.parent / "README.md").read_text()
    start, end = "<!-- summary:mnist_offmanifold -->", "<!-- /summary:mnist_offmanifold -->"
    quoted = readme.split(start)[1].split(end)[0].strip().splitlines()
    summary = (REPORTS / "mnist_offmanifold" / "summary.md").read_text().splitlines()
    assert quoted == [ln for ln in summary if ln.startswith("- **")]


SWEEPS = [p for p in RUN_DIRS if "sweep" in json.loads((p / "manifest.json").read_text())]


def test_the_multiverse_reports_are_committed() -> None:
    assert {"multiverse_digits", "multiverse_mnist"} <= {p.name for p in SWEEPS}


@pytest.mark.parametrize("run_dir", SWEEPS, ids=lambda p: p.name)
def test_a_committed_sweep_shows_each_claims_specification_curve(run_dir: Path) -> None:
    import pandas as pd

    results = pd.read_csv(run_dir / "results.csv")
    html = (run_dir / "report.html").read_text()
    summary = (run_dir / "summary.md").read_text()
    for claim in results.loc[results["decision"].isin(["reject H0", "retain H0"]), "claim"].unique():
        assert (run_dir / "figures" / f"spec_curve_{claim.replace('.', '_')}.png").is_file()
        assert f"Specification curve of {claim}" in html
        assert f"**{claim}**: supported in " in summary
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cells = manifest["sweep"]["cells"]
    assert sorted(results["cell"].unique()) == [c["cell"] for c in cells]


def test_a_rerendered_sweep_names_the_correction_it_was_adjusted_with(tmp_path: Path) -> None:
    """`dimple-stats report --correction fdr_bh --alpha 0.1` re-adjusts the p-values, and the
    prose that explains them says so (it once kept naming the protocol file's Holm)."""
    import pandas as pd

    run_dir = REPORTS / "multiverse_digits"
    committed = (run_dir / "summary.md").read_text()
    assert "(correction: holm)" in committed and "alpha = 0.05" in committed
    results, _ = report_run(run_dir, tmp_path, correction="fdr_bh", alpha=0.1, figures=False,
                            html=False)
    for name in ("summary.md", "results.md"):
        text = (tmp_path / name).read_text()
        assert "(correction: fdr_bh)" in text and "alpha = 0.1" in text
        assert "(correction: holm)" not in text
    holm = pd.read_csv(run_dir / "results.csv")
    tested = holm["p_adj"].notna().to_numpy()
    assert (results["p_adj"].notna().to_numpy() == tested).all()
    bh, hm = results["p_adj"].to_numpy()[tested], holm["p_adj"].to_numpy()[tested]
    # BH never adjusts above Holm (m p_(i) / i <= (m - i + 1) p_(i)); here it is below somewhere
    assert (bh <= hm + 1e-12).all() and (bh < hm - 1e-9).any()
