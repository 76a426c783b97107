"""Reports: CSV, LaTeX (compiled with pdflatex), Markdown, figures, and ``dimple-stats report``
on a stored run directory, with torch unimportable and byte-identical re-renders."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

import dimple_stats as ds
from dimple_stats.cli import app
from dimple_stats.measurements import write_measurements
from dimple_stats.report import FIGURE_FORMATS, write_report
from dimple_stats.report.run import RunDirError, protocol_json, read_run
from dimple_stats.report.tables import SUMMARY_COLUMNS, to_latex, to_markdown
from dimple_stats.results import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

PROTOCOL = """
name: stored_run
dataset: {name: digits}
autoencoders:
  plain: {arch: mlp, latent_dim: 8}
  isometric: {arch: mlp, latent_dim: 8, regulariser: {kind: isometric}}
claims:
  - dmm.perpendicular: {null: random_subspace}
  - dmm.perpendicular: {null: beta}
  - zp.not_below_random
  - dmm.norm_asymmetry
  - dmm.off_succeeds_more
  - iso.plain_vs_isometric
  - ae.validity
  - iso.defense
stats: {alpha: 0.05, correction: holm, bootstrap: 200}
seeds: [0, 1]
report: {formats: [csv, latex, markdown], figures: true}
"""

def make_run_dir(path: Path, synthetic: SimpleNamespace, protocol_text: str = PROTOCOL) -> Path:
    """A run directory in the real formats: manifest.json (protocol as JSON) + parquet tables."""
    protocol = ds.load_protocol_text(protocol_text)
    path.mkdir(parents=True, exist_ok=True)
    manifest = {"protocol": protocol_json(protocol), "protocol_hash": protocol.hash}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    df = synthetic.measurements(seeds=(0, 1), shrink={"plain": 0.6, "isometric": 1.0},
                                censor_on=0.1)
    write_measurements(df, path / "measurements.parquet")
    write_measurements(synthetic.defense(), path / "defense.parquet", "defense")
    return path


@pytest.fixture
def run_dir(tmp_path: Path, synthetic: SimpleNamespace) -> Path:
    return make_run_dir(tmp_path / "run", synthetic)


@pytest.fixture
def results(synthetic: SimpleNamespace) -> pd.DataFrame:
    df = synthetic.measurements(seeds=(0, 1))
    # awkward names for the renderers: underscores, percent, ampersand, angle brackets
    df["autoencoder"] = df["autoencoder"].map({"plain": "plain_v2%", "isometric": "iso&<b>"})
    return ds.test_claim(df, "dmm.perpendicular", stats={"bootstrap": 200})


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".parquet"
            and p.name != "manifest.json"}


# --- renderers ----------------------------------------------------------------------------------

def test_markdown_table(results: pd.DataFrame) -> None:
    md = to_markdown(results, title="T")
    lines = md.splitlines()
    assert lines[0] == "# T" and lines[2].startswith("## Summary (")
    per_seed = md.split("## Per seed")[1]
    header = "| " + " | ".join(SUMMARY_COLUMNS) + " |"
    assert header in per_seed.splitlines()
    body = [ln for ln in md.splitlines() if ln.startswith("| dmm.perpendicular")]
    assert len(body) == len(results) == 6  # 4 per-seed rows + 2 pooled rows
    assert all(ln.count(" | ") == len(SUMMARY_COLUMNS) - 1 for ln in per_seed.splitlines()
               if ln.startswith("| dmm."))
    assert "## Nulls and tests" in md and results["null"].iloc[0] in md


def test_latex_escapes_specials(results: pd.DataFrame) -> None:
    tex = to_latex(results, caption="50% of runs_x")
    assert r"plain\_\allowbreak{}v2\%" in tex and r"iso\&\textless{}b\textgreater{}" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"50\% of runs\_x" in tex
    assert r"\textbf{dmm.perpendicular}" in tex


def test_write_report_files_are_complete_and_deterministic(
        results: pd.DataFrame, tmp_path: Path, synthetic: SimpleNamespace) -> None:
    m = synthetic.measurements(seeds=(0, 1))
    written = write_report(results, m, tmp_path / "a")
    names = sorted(str(p.relative_to(tmp_path / "a")) for p in written)
    figures = [f"figures/{stem}.{fmt}" for fmt in FIGURE_FORMATS for stem in (
        "forest_dmm_perpendicular", "norm_on_off_vs_dimension_counting", "r_T_vs_nulls",
        "r_T_vs_r_R")]
    assert [n for n in names if n.startswith("figures/")] == sorted(figures)
    assert {"report.html", "results.csv", "results.md", "results.tex", "summary.md"} <= set(names)
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = pd.read_csv(tmp_path / "a" / "results.csv")
    columns = list(RESULT_COLUMNS)
    columns.insert(columns.index("decision") + 1, "verdict")  # the report adds each verdict
    assert list(back.columns) == columns and len(back) == len(results)
    assert back["p"].tolist() == pytest.approx(results["p"].tolist(), rel=1e-15)
    write_report(results, m, tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    only = write_report(results, None, tmp_path / "c", formats=["markdown"], figures=False,
                        html=False)
    assert [p.name for p in only] == ["results.md", "summary.md"]
    with pytest.raises(ValueError, match="did you mean 'latex'"):
        write_report(results, None, tmp_path / "d", formats=["latx"])


def test_a_registered_report_format_is_valid_in_protocols_and_written(
        results: pd.DataFrame, tmp_path: Path) -> None:
    from dimple_stats.protocol import load_protocol_text
    from dimple_stats.protocol.vocabulary import REPORT_FORMATS, ReportFormat

    def tsv(frame: pd.DataFrame, *, title: str) -> str:
        return f"# {title}\n" + frame[["claim", "p"]].to_csv(sep="\t", index=False)

    text = PROTOCOL.replace("formats: [csv, latex, markdown]", "formats: [tsv, markdown]")
    with REPORT_FORMATS.registered("tsv", ReportFormat("results.tsv", tsv, "title")):
        protocol = load_protocol_text(text, file="p.yaml")
        written = write_report(results, None, tmp_path, formats=protocol.report.formats,
                               figures=False, title="T")
    assert [p.name for p in written if p.name.startswith("results.")] == ["results.tsv",
                                                                           "results.md"]
    assert "report.html" in [p.name for p in written]  # the page, whatever the table formats
    lines = (tmp_path / "results.tsv").read_text().splitlines()
    assert lines[:2] == ["# T", "claim\tp"] and len(lines) == 2 + len(results)
    with pytest.raises(ds.ProtocolError, match="unknown report format 'tsv'"):
        load_protocol_text(text, file="p.yaml")  # gone with its registration


# --- run directories and the command ------------------------------------------------------------

def test_protocol_round_trips_through_the_manifest(run_dir: Path) -> None:
    run = read_run(run_dir)
    assert run.protocol == ds.load_protocol_text(PROTOCOL)
    assert set(run.tables) == {"defense"}
    # a full pydantic dump (every claim id, all but one None) is read as well
    full = ds.load_protocol_text(PROTOCOL).model_dump(mode="json", by_alias=True)
    (run_dir / "manifest.json").write_text(json.dumps({"protocol": full}))
    assert read_run(run_dir).protocol.hash == ds.load_protocol_text(PROTOCOL).hash


def test_report_command_writes_the_report(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    # (3 distribution figures + 7 forest plots) x (PNG, PDF); every file written is counted
    assert len(list((out / "figures").iterdir())) == 10 * len(FIGURE_FORMATS)
    assert f"wrote {sum(p.is_file() for p in out.rglob('*'))} file(s)" in result.output
    res = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(res["claim"]) == {"dmm.perpendicular", "zp.not_below_random", "dmm.norm_asymmetry",
                                 "dmm.off_succeeds_more", "iso.plain_vs_isometric", "ae.validity",
                                 "iso.defense"}
    perp = res[(res["claim"] == "dmm.perpendicular") & (res["autoencoder"] == "plain")]
    per_seed = perp[perp["seed"] != "pooled"]
    assert (per_seed["decision"] == "reject H0").all()
    # Two seeds give the pooled Hartung-Knapp test 1 degree of freedom: its CI lies below the
    # null value, but whether it survives the run's one Holm family is not this test's business.
    pooled = perp[perp["seed"] == "pooled"]
    assert (pooled["ci_high"] < pooled["null_value"]).all()
    assert (tmp_path / "out" / "figures" / "forest_iso_defense.png").is_file()


def test_report_options_override_the_protocol(run_dir: Path) -> None:
    result = runner.invoke(app, ["report", str(run_dir), "--format", "csv", "--correction",
                                 "none", "--alpha", "0.01", "--no-figures", "--no-html"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "defense.parquet", "manifest.json", "measurements.parquet", "results.csv", "summary.md"]
    res = pd.read_csv(run_dir / "results.csv")
    tested = res["p"].notna()
    assert (res.loc[tested, "p_adj"] == res.loc[tested, "p"]).all()
    assert (res["alpha"] == 0.01).all()


@pytest.mark.parametrize("argv, message", [
    (["--format", "csv,pdf"], "unknown report format 'pdf'"),
    (["--correction", "bonferroni"], "unknown correction 'bonferroni'"),
    (["--correction", "fdr-bh"], "did you mean 'fdr_bh'"),
    (["--alpha", "1.5"], "--alpha must be between 0 and 1"),
])
def test_report_bad_options_exit_2(run_dir: Path, argv: list[str], message: str) -> None:
    result = runner.invoke(app, ["report", str(run_dir), *argv])
    assert result.exit_code == 2 and message in result.output


def _break(run_dir: Path, how: str) -> None:
    if how == "no manifest":
        (run_dir / "manifest.json").unlink()
    elif how == "bad json":
        (run_dir / "manifest.json").write_text("{not json")
    elif how == "no protocol key":
        (run_dir / "manifest.json").write_text('{"seeds": [0]}')
    elif how == "invalid protocol":
        data = json.loads((run_dir / "manifest.json").read_text())
        data["protocol"]["stats"]["alpha"] = 3
        (run_dir / "manifest.json").write_text(json.dumps(data))
    elif how == "no measurements":
        (run_dir / "measurements.parquet").unlink()
    elif how == "bad measurements":
        pd.DataFrame({"seed": [0], "autoencoder": ["plain"], "sample": [0]}).to_parquet(
            run_dir / "measurements.parquet")
    elif how == "no defense table":
        (run_dir / "defense.parquet").unlink()


@pytest.mark.parametrize("how, message", [
    ("no manifest", "manifest.json is missing"),
    ("bad json", "not valid JSON"),
    ("no protocol key", "no protocol object under the key 'protocol'"),
    ("invalid protocol", "stats.alpha"),
    ("no measurements", "measurements.parquet is missing"),
    ("bad measurements", "measurements.parquet: measurements table: missing column 'r_T'"),
    ("no defense table", "needs the defense table (defense.parquet)"),
])
def test_report_bad_run_dir_exits_2(run_dir: Path, how: str, message: str) -> None:
    _break(run_dir, how)
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text
    assert "errors.pydantic.dev" not in result.output  # pydantic's multi-line text, condensed
    if how != "no defense table":  # (an analysis error, not the folder's) what to do:
        assert "name the folder it wrote, or run the protocol again" in text, text


def test_report_missing_dir_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a run directory (no such directory)" in result.output
    with pytest.raises(RunDirError):
        read_run(tmp_path / "nowhere")


def test_report_without_torch_rerenders_identically(tmp_path: Path, synthetic: SimpleNamespace,
                                                    run_without_torch) -> None:
    # Fewer claims than PROTOCOL (fewer figures to draw): this test starts two processes.
    small = PROTOCOL.split("claims:")[0] + (
        "claims: [dmm.perpendicular, dmm.norm_asymmetry, iso.defense]\n"
        "stats: {bootstrap: 200}\nseeds: [0, 1]\n")
    run_dir = make_run_dir(tmp_path / "run", synthetic, small)

    def render() -> subprocess.CompletedProcess[str]:
        return run_without_torch(
            f"sys.argv = ['dimple-stats', 'report', {str(run_dir)!r}]\n"
            "from dimple_stats.cli import app\n"
            "try:\n    app(prog_name='dimple-stats')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'runners')]\n"
            "print('torch-free')\n", cwd=ROOT)

    first = render()
    assert first.returncode == 0, first.stderr
    assert "torch-free" in first.stdout
    once = digest(run_dir)
    assert "results.tex" in once and "figures/r_T_vs_r_R.png" in once
    second = render()
    assert second.returncode == 0, second.stderr
    assert digest(run_dir) == once
