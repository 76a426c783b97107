"""report.html without a browser: self-contained (no network), user text escaped, every verdict
and figure on the page, galleries under Examples, a reduced-run banner, byte-identical re-renders.
(tests/runners/test_report_html_in_browser.py renders a real run's page in Chromium.)"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from markupsafe import escape
from typer.testing import CliRunner

import dimple_stats as ds
from dimple_stats.cli import app
from dimple_stats.measurements import read_measurements, write_measurements
from dimple_stats.report.html import embed_png, render_html
from dimple_stats.report.run import protocol_json, report_run
from dimple_stats.report.summary import reduced_run_notes
from dimple_stats.report.verdicts import verdicts

HOSTILE = "<script>alert('x')</script> & \"quotes\""

PROTOCOL = f"""
name: html_page
description: {json.dumps("Are perturbations perpendicular? " + HOSTILE)}
dataset: {{name: digits}}
autoencoders:
  plain: {{arch: mlp, latent_dim: 8}}
  isometric: {{arch: mlp, latent_dim: 8, regulariser: {{kind: isometric}}}}
claims:
  - dmm.perpendicular: {{null: random_subspace}}
  - dmm.norm_asymmetry
  - iso.plain_vs_isometric
stats: {{bootstrap: 200}}
seeds: [0, 1, 2]
"""


def make_run(path: Path, synthetic: SimpleNamespace, *, limit: int | None = 10) -> Path:
    """A run directory with a manifest as ``dimple-stats run`` writes it (two of three seeds)."""
    protocol = ds.load_protocol_text(PROTOCOL)
    path.mkdir(parents=True)
    manifest = {
        "protocol": protocol_json(protocol), "protocol_hash": protocol.hash, "seeds": [0, 1],
        "limit": limit, "executor": "local", "git_commit": "0123abcd", "git_dirty": True,
        "versions": {"python": "3.11", "numpy": "2.0"},
        "machine": {"device": "cpu", "cpu_count": 2},
        "command": ["dimple-stats", "run", "p.yaml", "--set", f"x={HOSTILE}"],
        "timings": {"0": {"train_classifier": 1.5, "measure[plain]": 2.25},
                    "1": {"train_classifier": 1.25, "measure[plain]": 2.0}},
        "total_seconds": 7.0, "peak_memory_MB": {"0": {"models": 512.0}, "1": {"models": 500.0}},
        "models": [{"model": "classifier", "seed": 0, "arch": "mlp", "test_accuracy": 0.9375},
                   {"model": "plain", "seed": 0, "arch": "mlp", "latent_dim": 8,
                    "recon_mse": 0.0123, "recon_vs_mean": 0.25, "median_cond": 41.5,
                    "numerical_rank": 8.0}],
        "data": {"0": {"fingerprint": "feedbeef", "train": 100, "eval": 60},
                 "1": {"fingerprint": "deadbeef", "train": 100, "eval": 60}},
        "tables": ["measurements"],
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    write_measurements(synthetic.measurements(seeds=(0, 1), shrink={"plain": 0.6,
                                                                    "isometric": 1.0}),
                       path / "measurements.parquet")
    return path


class _Page(HTMLParser):
    """Every tag with its attributes, and the text of each <section id=...>."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: dict[str, list[tuple[str, dict[str, str | None]]]] = {}
        self._section: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self._section = a.get("id")
            self.sections[str(self._section)] = []
        elif self._section is not None:
            self.sections[self._section].append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None


def render(run: Path, out: Path, *, figures: bool = False) -> tuple[list[Path], str]:
    # Figures only where a test looks at them: drawing them (PNG and PDF) takes seconds.
    _, written = report_run(run, out, figures=figures)
    return written, (out / "report.html").read_text("utf-8")


@pytest.fixture
def run_dir(tmp_path: Path, synthetic: SimpleNamespace) -> Path:
    return make_run(tmp_path / "run", synthetic)


def test_page_needs_no_network_and_escapes_user_text(run_dir: Path) -> None:
    _, text = render(run_dir, run_dir.parent / "out")
    assert not re.search(r"(?i)https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", text)
    page = _Page(text)
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
        assert (attrs.get("src") or "data:").startswith("data:"), (tag, attrs.get("src"))
        assert (attrs.get("href") or "#").startswith("#"), (tag, attrs.get("href"))
    # One script (sorting), no matter what the description and the command line say.
    assert [t for t, _ in page.tags].count("script") == 1
    assert "<script>alert" not in text
    assert str(escape(HOSTILE)) in text


def test_page_holds_every_verdict_figure_table_and_the_manifest(run_dir: Path) -> None:
    written, text = render(run_dir, run_dir.parent / "out", figures=True)
    protocol = ds.load_protocol_text(PROTOCOL)
    results = ds.analyse(read_measurements(run_dir / "measurements.parquet"), protocol)
    page = _Page(text)
    assert {"question", "verdicts", "data-and-models", "figures", "examples", "tables",
            "manifest"} <= set(page.sections)
    found = verdicts(results, confidence=protocol.stats.confidence)
    # pooled CIs are at the level their decision used (Bonferroni over the verdicts' family)
    levels = {f"{100 * lv:.4g}% CI" for lv in results["ci_level"]}
    assert all(any(lv in v.text for lv in levels) for v in found if "CI" in v.text)
    assert found and all(str(escape(v.text)) in text for v in found)
    pngs = [p for p in written if p.suffix == ".png"]
    assert pngs, "the report drew no figure"
    shown = {a["data-figure"]: a["src"] for t, a in page.sections["figures"] if t == "img"}
    assert set(shown) == {p.name for p in pngs}
    for p in pngs:
        assert shown[p.name] == embed_png(p).uri
    assert "0123abcd (with uncommitted changes)" in text and "feedbeef" in text
    assert "0.9375" in text and "41.5" in text  # classifier accuracy, decoder conditioning
    assert "Reduced run." in text and "--limit 10" in text
    assert str(escape("2 of the protocol's 3 seeds ran (0, 1)")) in text


def test_page_is_byte_identical_when_rendered_twice(run_dir: Path) -> None:
    _, first = render(run_dir, run_dir.parent / "a")
    _, second = render(run_dir, run_dir.parent / "b")
    assert first.encode("utf-8") == second.encode("utf-8")


def test_gallery_images_go_to_examples(tmp_path: Path, synthetic: SimpleNamespace) -> None:
    from dimple_stats.report import figures as fg

    results = ds.test_claim(synthetic.measurements(seeds=(0, 1)), "dmm.perpendicular",
                            stats={"bootstrap": 200})
    fig = fg.r_histograms(synthetic.measurements(seeds=(0,)))
    paths = [tmp_path / "r_T_vs_r_R.png", tmp_path / "gallery_plain.png"]
    for p in paths:
        fig.savefig(p, format="png", dpi=40)
    (tmp_path / "gallery_plain.pdf").write_bytes(b"%PDF-1.4")  # a PDF copy is not inlined
    page = _Page(render_html(results, figures=[*paths, tmp_path / "gallery_plain.pdf"]))
    imgs = {s: [a["data-figure"] for t, a in tags if t == "img"]
            for s, tags in page.sections.items()}
    assert imgs["figures"] == ["r_T_vs_r_R.png"] and imgs["examples"] == ["gallery_plain.png"]


def test_a_full_run_has_no_banner_and_no_manifest_gives_a_plain_page(
        tmp_path: Path, synthetic: SimpleNamespace) -> None:
    protocol = ds.load_protocol_text(PROTOCOL)
    assert reduced_run_notes({"limit": None, "seeds": [0, 1, 2]}, protocol) == []
    big = protocol.model_copy(update={"dataset": protocol.dataset.model_copy(update={"eval_samples": 50})})
    assert reduced_run_notes({"limit": 50, "seeds": [0, 1, 2]}, big) == []  # limit selects all
    results = ds.test_claim(synthetic.measurements(seeds=(0, 1)), "dmm.perpendicular",
                            stats={"bootstrap": 200})
    text = render_html(results)
    assert "Reduced run" not in text and "No figures were drawn" in text
    assert "No manifest" in text


def test_report_command_writes_the_page_unless_told_not_to(
        tmp_path: Path, synthetic: SimpleNamespace) -> None:
    run = make_run(tmp_path / "run", synthetic, limit=None)
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(run), "--no-figures", "--no-html"])
    assert result.exit_code == 0, result.output
    assert not (run / "report.html").exists()
    result = runner.invoke(app, ["report", str(run), "--no-figures"])
    assert result.exit_code == 0, result.output
    text = (run / "report.html").read_text("utf-8")
    assert "Reduced run." in text and "evaluation images per seed" not in text  # seeds only


def test_a_sweeps_timings_name_cell_and_seed(tmp_path) -> None:
    """A sweep's manifest keys runs as "cell/seed": the page says "cell 3, seed 1" (not
    "seed 3/1") and lists its 180 runs (60 cells x 3 seeds) as rows, not as 180 columns."""
    import json
    from pathlib import Path

    import pandas as pd

    from dimple_stats.report.html import render_html

    # The committed table, not a re-analysis (100 s here): the timings come from the manifest.
    run_dir = Path(__file__).resolve().parents[2] / "reports" / "multiverse_digits"
    results = pd.read_csv(run_dir / "results.csv", keep_default_na=False, na_values=[""])
    page = render_html(results, manifest=json.loads((run_dir / "manifest.json").read_text()),
                       verdicts=[])  # nor the verdicts (23 s): other tests read those
    timings = page.split("Timings (seconds per stage)")[1].split("</table>")[0]
    assert "cell 3, seed 1" in timings and "seed 3/1" not in timings
    assert timings.count("<tr") == 181 and timings.split("</tr>")[0].count("<th") < 20


def test_a_sweep_page_speaks_only_the_four_verdict_words() -> None:
    """Issue 31, item 7: a claim whose specifications disagree read "mixed", a fifth word.
    Its badge now counts the specifications per verdict word, and the header counts only
    claims that read the same everywhere."""
    import pandas as pd

    from dimple_stats.report.sweep_text import robustness_verdicts
    from dimple_stats.report.verdicts import CATEGORIES

    results = pd.read_csv(Path(__file__).parents[2] / "reports" / "multiverse_digits"
                          / "results.csv", keep_default_na=False, na_values=[""])
    found = robustness_verdicts(results)
    norm = next(v for v in found if v.claim == "dmm.norm_asymmetry")
    assert norm.label.startswith("not supported in ") and "/120" in norm.label
    page = render_html(results.head(0), verdicts=found)
    badges = re.findall(r'<span class="badge[^"]*">([^<]*)</span>', page)
    words = set(CATEGORIES)
    for badge in badges:
        text = re.sub(r"^\d+ ", "", badge)
        assert all(part.split(" in ")[0] in words for part in text.split(", ")), badge
    assert "mixed" not in page and "varies</span>" not in page
    assert "read differently across specifications" in page
