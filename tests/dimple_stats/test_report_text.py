"""The report's text: results.md (summary first, pooled, per seed, notes once), summary.md with
the reduced-run banner, the compact LaTeX tables (compiled; no overfull line on a page with
1 in margins) and the console summary within 80 columns."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from dimple_stats.cli.display import print_summary
from dimple_stats.protocol.loader import load_protocol
from dimple_stats.report.summary import reduced_run, to_summary
from dimple_stats.report.tables import to_latex, to_markdown
from dimple_stats.report.verdicts import verdicts

ROOT = Path(__file__).resolve().parents[2]
#: Real results tables: committed reports, re-read as dimple-stats report reads them.
COMMITTED = ["mnist_offmanifold", "isometric_defense", "plain_vs_isometric", "quickstart"]


def _committed(name: str) -> pd.DataFrame:
    df = pd.read_csv(ROOT / "reports" / name / "results.csv", keep_default_na=False,
                     na_values=[""])
    df["seed"] = df["seed"].map(lambda s: s if s == "pooled" else int(s))
    for col in ("note", "alternative", "effect_name"):
        df[col] = df[col].fillna("").astype(str)
    return df


@pytest.mark.parametrize("name", COMMITTED)
def test_markdown_puts_the_summary_first_and_lists_each_note_once(name: str) -> None:
    results = _committed(name)
    md = to_markdown(results, title="T")
    heads = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert heads[0].startswith("## Summary (")
    assert heads[1:4] == ["## Pooled over seeds", "## Per seed", "## Nulls and tests"]
    for v in verdicts(results):
        head = f"**{v.category.capitalize()}**" + (f" ({v.headline()})" if v.headline() else "")
        assert f"{head}: `{v.claim}`" in md
    pooled_part = md.split("## Pooled over seeds")[1].split("## Per seed")[0]
    n_pooled = int((results["seed"] == "pooled").sum())
    assert len([ln for ln in pooled_part.splitlines() if ln.startswith("| ")]) == n_pooled + 1
    notes = md.split("## Notes")[1].splitlines() if "## Notes" in md else []
    distinct = results.loc[results["note"].astype(str) != "", "note"].unique()
    assert len([ln for ln in notes if ln.startswith("- ")]) == len(distinct)
    for note in distinct:  # each once, at the start of its item
        assert sum(ln.startswith(f"- {note}: ") for ln in notes) == 1


def test_reduced_runs_are_marked() -> None:
    protocol = load_protocol(ROOT / "protocols" / "quickstart.yaml")
    asked = protocol.dataset.eval_samples
    assert "--limit 20" in reduced_run({"limit": 20, "seeds": list(protocol.seeds)}, protocol)
    # A limit that selects every image the protocol asks for is no reduction.
    assert reduced_run({"limit": asked, "seeds": list(protocol.seeds)}, protocol) == ""
    fewer = reduced_run({"limit": None, "seeds": [protocol.seeds[0]]}, protocol)
    assert fewer.startswith(f"Reduced run: 1 of the protocol's {len(protocol.seeds)} seeds")
    assert reduced_run({"limit": None, "seeds": list(protocol.seeds)}, protocol) == ""
    results = _committed("quickstart")
    summary = to_summary(results, manifest={"limit": 20, "seeds": [0]}, protocol=protocol)
    assert "> **Reduced run: --limit 20" in summary and "1 of the protocol's" in summary
    assert "> **Reduced run" in to_markdown(results, manifest={"limit": 7, "seeds": [0]})
    assert "Reduced run" not in to_summary(results, manifest={"limit": None,
                                                              "seeds": list(protocol.seeds)},
                                           protocol=protocol)


def test_latex_has_a_pooled_and_a_per_seed_table_escaped() -> None:
    results = _committed("isometric_defense")
    tex = to_latex(results, caption="50% of runs_x")
    assert tex.count(r"\begin{longtable}") == 2
    assert r"50\% of runs\_x: pooled over seeds" in tex and "per seed" in tex
    pooled = tex.split(r"\end{longtable}")[0]
    body = [ln for ln in pooled.splitlines() if ln.endswith(r"\\") and " & " in ln
            and not ln.startswith("variant")]
    assert len(body) == int((results["seed"] == "pooled").sum())
    assert r"isometric:\allowbreak{}tangent" in tex


#: Autoencoder names with every LaTeX special character (the tables must escape them).
AWKWARD = {"plain": "plain_v2% & <b>", "isometric": "iso|#~^\\{x}$"}


@pytest.mark.parametrize("name", ["mnist_offmanifold", "isometric_defense", "awkward names",
                                  "multiverse_mnist"])
def test_latex_tables_compile_and_fit_the_page(name: str, tmp_path: Path) -> None:
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: apt-get install texlive-latex-base "
                    "texlive-latex-recommended (booktabs is in texlive-latex-recommended)")
    if name == "awkward names":
        results = _committed("quickstart")
        results["autoencoder"] = results["autoencoder"].replace(AWKWARD)
    else:
        results = _committed(name)
    if "cell" in results.columns:  # a sweep's tables: one per claim, a row per specification
        from dimple_stats.report.sweep_text import sweep_latex

        (tmp_path / "results.tex").write_text(sweep_latex(results, caption=name))
    else:
        (tmp_path / "results.tex").write_text(to_latex(results, caption=name))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage[margin=1in]{geometry}\n"
        "\\usepackage{booktabs,longtable,array}\n\\begin{document}\n"
        "\\input{results.tex}\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert not re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log), log[-3000:]


@pytest.mark.parametrize("name", COMMITTED)
def test_console_summary_fits_80_columns_without_cutting_names(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    results = _committed(name)
    print_summary(results, confidence=0.95, width=80)
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert max(len(ln) for ln in out.err.splitlines() or [""]) <= 80
    assert not any(ln.endswith(" ") for ln in lines)
    tested = results[(results["seed"] == "pooled") & (results["test"] != "descriptive")]
    for r in tested.itertuples(index=False):
        assert f"{r.claim} / {r.variant} / {r.autoencoder}" in lines
    assert all(f"{v.category.upper()}" in out.out for v in verdicts(results))
    assert "cens.)" in out.out
