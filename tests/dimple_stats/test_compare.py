"""`dimple-stats compare`: one table across the committed reports, checked against each
report's own results.csv and summary.md."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dimple_stats.cli import app
from dimple_stats.report.compare import compare_markdown, compare_matrix, compare_runs

REPORTS = Path(__file__).resolve().parents[2] / "reports"
SINGLE = [REPORTS / "quickstart", REPORTS / "synthetic_known_manifold"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return compare_runs([*SINGLE, REPORTS / "multiverse_digits"])


def test_each_row_is_its_reports_pooled_row(table: pd.DataFrame) -> None:
    assert set(table["report"]) == {"quickstart", "synthetic_known_manifold"}  # sweep skipped
    for report, g in table.groupby("report"):
        csv = pd.read_csv(REPORTS / report / "results.csv", dtype={"seed": str})
        pooled = csv[(csv["seed"] == "pooled") & (csv["test"] != "descriptive")]
        assert len(g) == len(pooled)
        merged = g.merge(pooled, on=["claim", "variant", "autoencoder"], suffixes=("", "_csv"))
        assert len(merged) == len(g)
        assert (merged["estimate"] == merged["estimate_csv"]).all()
        assert ((merged["reading"] == "supported") == (merged["decision"] == "reject H0")).all()
        assert (merged["n_censored"] == merged["n_censored_csv"]).all()


def test_verdicts_are_the_summaries(table: pd.DataFrame) -> None:
    for (report, claim, ae), g in table.groupby(["report", "claim", "autoencoder"]):
        summary = (REPORTS / report / "summary.md").read_text()
        verdict = g["verdict"].iloc[0]
        # the summary names the autoencoder, then whom the verdict is about ("these 3 models")
        # (after the word, each null's reading when the claim has several nulls)
        head = re.escape(f"- **{verdict[:1].upper() + verdict[1:]}**")
        assert re.search(head + r"( \([^`]*\))?: " + re.escape(f"`{claim}` ({ae}"), summary)


def test_contradicted_needs_the_ci_on_the_other_side(table: pd.DataFrame) -> None:
    contra = table[table["reading"] == "contradicted"]
    assert len(contra)  # dmm.perpendicular against chance, on both reports
    csv = pd.concat([pd.read_csv(p / "results.csv", dtype={"seed": str}).assign(report=p.name)
                     for p in SINGLE])
    m = contra.merge(csv[csv["seed"] == "pooled"],
                     on=["report", "claim", "variant", "autoencoder"], suffixes=("", "_csv"))
    below = (m["alternative"] == "less") & (m["ci_low_csv"] > m["null_value"])
    above = (m["alternative"] == "greater") & (m["ci_high_csv"] < m["null_value"])
    assert (below | above).all()


def test_matrix_and_markdown(table: pd.DataFrame) -> None:
    matrix = compare_matrix(table)
    assert list(matrix.columns[:2]) == ["claim", "null"]
    row = matrix[(matrix["claim"] == "zp.not_below_random")].iloc[0]
    number = table[(table["report"] == "quickstart") & (table["autoencoder"] == "plain")
                   & (table["claim"] == "zp.not_below_random")
                   & (table["variant"] == "non_inferiority")]["estimate"].iloc[0]
    assert row["quickstart: plain"] == f"supported {number:.3g}"
    # a claim's nulls are adjacent rows
    claims = list(matrix["claim"])
    assert all(claims.index(c) + claims.count(c) - 1 == len(claims) - 1 - claims[::-1].index(c)
               for c in set(claims))
    text = compare_markdown(table)
    assert "## dmm.perpendicular: against a random subspace of the same dimension" in text


def test_cli_writes_both_files_and_refuses_a_non_report(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["compare", *map(str, SINGLE), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "compare.md").read_text().startswith("# Claims across reports")
    assert len(pd.read_csv(tmp_path / "compare.csv")) == len(compare_runs(SINGLE))
    res = runner.invoke(app, ["compare", str(tmp_path)])
    assert res.exit_code == 2 and "results.csv is missing" in res.output


def _copy(report: str, tmp_path: Path) -> Path:
    run = tmp_path / report
    run.mkdir()
    for name in ("results.csv", "manifest.json"):
        (run / name).write_bytes((REPORTS / report / name).read_bytes())
    return run


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.assign(p_adj=t["p_adj"].where(t.index != 3, 7.5)),
     "line 5: column p_adj must be in [0, 1], got 7.5"),
    (lambda t: t.assign(p=t["p"].astype(object).where(t.index != 0, "small")),
     "line 2: column p must be a number, got 'small'"),
    (lambda t: t.assign(n_censored=t["n_censored"].where(t.index != 1, -2)),
     "line 3: column n_censored must be a count"),
    (lambda t: t.assign(decision=t["decision"].where(t.index != 2, "accept H1")),
     "line 4: column decision must be one of"),
    (lambda t: t.drop(columns=["p_adj"]), "missing column(s) p_adj"),
    # rows a report cannot have written (issue 32 F13): compare would show them as findings
    (lambda t: t.assign(decision="reject H0", p_adj=0.9), "column decision must be 'retain H0'"),
    (lambda t: t.assign(ci_low=t["ci_high"] + 1), "line 2: column ci_low must be at most"),
    (lambda t: t.assign(ci_level=5.0), "column ci_level must be a level in (0, 1)"),
    (lambda t: t.assign(n_seeds_reject=t["n_seeds"] + 1), "must be at most n_seeds"),
    (lambda t: t.assign(n_censored=t["n"] + 1), "column n_censored must be at most n"),
    (lambda t: pd.concat([t, t.iloc[[3]]]), "a repeated row"),
    (lambda t: t.assign(seed=t["seed"].astype(str).where(t.index != 1, "x")),
     "line 3: column seed must be a seed number or 'pooled'"),
    (lambda t: t.iloc[:0], "has no rows"),
    # an estimate outside its own CI, an infinite one with nothing censored, a claim the run
    # never asked for (each was shown as a finding)
    (lambda t: t.assign(estimate=t["estimate"].where(t.index != 0, float("inf"))),
     "line 2: column estimate must be inside [ci_low, ci_high], got inf"),
    (lambda t: t.assign(estimate=float("inf"), ci_high=float("inf"), n_censored=0),
     "column estimate must be finite where no value is censored"),
    (lambda t: t.assign(claim=t["claim"].where(t.index != 2, "dmm.made_up")),
     "line 4: column claim must be a claim its manifest.json names"),
])
def test_compare_refuses_a_damaged_results_table(damage, message, tmp_path: Path) -> None:
    run = _copy("quickstart", tmp_path)
    damage(pd.read_csv(run / "results.csv")).to_csv(run / "results.csv", index=False)
    result = CliRunner().invoke(app, ["compare", str(run)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
    # and what to do: the table comes back from the run's measurements
    assert "render it again from its measurements with `dimple-stats report RUN_DIR`" in \
        " ".join(result.output.split()), result.output


@pytest.mark.parametrize("content", [b"", b"\x00\x01\xff binary"])
def test_compare_refuses_an_empty_or_binary_results_table(content: bytes, tmp_path: Path) -> None:
    run = _copy("quickstart", tmp_path)
    (run / "results.csv").write_bytes(content)
    result = CliRunner().invoke(app, ["compare", str(run)])
    assert result.exit_code == 2 and "results.csv" in result.output, result.output


@pytest.mark.parametrize("row, fields, message", [
    (5, 32, "line 6: 32 field(s) where the header has 30"),   # two fields too many
    (8, 10, "line 9: 10 field(s) where the header has 30"),   # pandas read this as NaNs
])
def test_compare_refuses_a_ragged_results_table_in_one_line(row: int, fields: int, message: str,
                                                            tmp_path: Path) -> None:
    """Issue 32 row 20 (rest): a record with more fields was a two-line parser message, one
    with fewer was read with empty values as if a report had written it."""
    import csv

    run = _copy("quickstart", tmp_path)
    with (run / "results.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    rows[row] = (rows[row] + ["x", "y"])[:fields]
    with (run / "results.csv").open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    result = CliRunner().invoke(app, ["compare", str(run)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_compare_out_at_a_file_and_a_sweep_alone_are_refused(tmp_path: Path) -> None:
    run = _copy("quickstart", tmp_path)
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(app, ["compare", str(run), "--out", str(tmp_path / "afile")])
    assert result.exit_code == 2 and "is a file" in result.output
    assert (tmp_path / "afile").read_text() == "x"
    sweep = _copy("multiverse_digits", tmp_path)
    result = CliRunner().invoke(app, ["compare", str(sweep)])
    assert result.exit_code == 2 and "nothing to compare" in result.output
    result = CliRunner().invoke(app, ["compare", str(run), str(sweep)])
    assert result.exit_code == 0 and "skipped sweep report(s)" in result.output


def test_compare_refuses_a_report_named_twice(tmp_path: Path) -> None:
    run = _copy("quickstart", tmp_path)
    result = CliRunner().invoke(app, ["compare", str(run), str(tmp_path / "." / run.name)])
    assert result.exit_code == 2 and "named twice" in result.output, result.output
