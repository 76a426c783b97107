"""report.html of a small real run, rendered by headless Chromium: the verdicts, every figure and
the gallery are on the page, every image loaded, and a screenshot is taken (under tmp_path).

Whether an image loaded is read from the rendered DOM: a copy of the page gets a probe script
that, on the window's load event (which waits for every image), writes each image's
``naturalWidth`` and ``complete`` into attributes; ``chromium --dump-dom`` prints the DOM after
that event. A failed image is complete with naturalWidth 0; a test below proves the probe sees
one. A truncated PNG still shows its decoded part (Chromium reports its full size), so every
inlined PNG is also decoded in full with Pillow.

Chromium is the Debian package ``chromium`` (``.ci/run`` installs it). Without it the tests
skip, except in CI (env ``CI`` set), where they fail: a browser check must not vanish there.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from dimple_stats.protocol import load_protocol_text
from dimple_stats.report.html import render_html
from dimple_stats.report.verdicts import verdicts
from dimple_stats.results import ResultRow, finalise
from runners.pipeline import run_protocol

TINY = """\
name: html_in_browser
description: "Tiny digits run: are adversarial perturbations perpendicular to the manifold?"
dataset: {name: digits, eval_samples: 24, pixel_range: [-1, 1]}
classifier: {arch: mlp, hidden: [64], epochs: 4}
autoencoders:
  plain: {arch: mlp, latent_dim: 6, hidden: [64], epochs: 10}
  isometric:
    {arch: mlp, latent_dim: 6, hidden: [64], epochs: 10, regulariser: {kind: isometric, weight: 0.1}}
attack:
  eps: {plain: 4, on: 8, off: 8}
  step: {plain: 0.2, on: 0.4, off: 0.2}
  steps: {plain: 20, on: 30, off: 30}
  batch_size: 24
tangent: {method: dense, dtype: float64}
claims:
  - dmm.perpendicular: {null: random_subspace}
  - dmm.norm_asymmetry
  - iso.plain_vs_isometric
seeds: [0, 1]
"""

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

PROBE = """<script>
window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    img.setAttribute("data-natural-width", String(img.naturalWidth));
    img.setAttribute("data-complete", String(img.complete));
  });
  document.documentElement.setAttribute("data-probe", "done");
});
</script>
"""


def chromium() -> str:
    """Path of the headless browser; skip without it, but fail in CI."""
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        message = ("headless Chromium not found (tried " + ", ".join(BROWSERS) + "); install "
                   "the Debian package chromium, as .ci/run does")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class RenderedPage(HTMLParser):
    """Chromium's DOM dump: the images (attributes, enclosing section) and the text of the
    header and of each section."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.probe: str | None = None
        self.images: list[dict[str, str | None]] = []
        self.text: dict[str, str] = {}
        self.ids: set[str] = set()
        self._section: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "html":
            self.probe = a.get("data-probe")
        elif tag in ("header", "section"):
            self._section = a.get("id") or tag
            self.text[self._section] = ""
        elif tag == "img":
            self.images.append({**a, "section": self._section})

    def handle_endtag(self, tag: str) -> None:
        if tag in ("header", "section"):
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._section is not None:
            self.text[self._section] += f" {data}"

    def words(self, section: str) -> str:
        return " ".join(self.text.get(section, "").split())


def render_in_chromium(page: Path, work: Path, *, screenshot: Path | None = None) -> RenderedPage:
    """Load ``page`` (with the probe added to a copy) in headless Chromium; the DOM after load."""
    work.mkdir(parents=True, exist_ok=True)
    probed = work / f"{page.stem}.probed.html"
    head, _, tail = page.read_text("utf-8").rpartition("</body>")
    probed.write_text(f"{head}{PROBE}</body>{tail}", "utf-8")
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={work / 'profile'}", "--window-size=1280,3000", "--dump-dom"]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    proc = subprocess.run([*args, probed.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rendered = RenderedPage(proc.stdout)
    assert rendered.probe == "done", "the probe did not run: image load state unknown"
    return rendered


def failed_images(rendered: RenderedPage) -> list[str]:
    """Images the browser could not show, and inlined PNGs that do not decode in full."""
    bad = []
    for img in rendered.images:
        name = str(img.get("data-figure") or img.get("id"))
        if img.get("data-complete") != "true" or int(img.get("data-natural-width") or 0) <= 0:
            bad.append(f"{name}: not loaded")
            continue
        src = str(img.get("src"))
        if src.startswith("data:image/png;base64,"):
            try:
                Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).load()
            except (OSError, ValueError) as exc:
                bad.append(f"{name}: {exc}")
    return bad


@pytest.mark.slow
def test_report_of_a_real_run_renders_in_chromium(tmp_path: Path) -> None:
    protocol = load_protocol_text(TINY)
    # One of the two seeds and --limit: a reduced run (half the time), with the page's banner.
    outcome = run_protocol(protocol, seeds=(0,), store_root=tmp_path / "store",
                           out_dir=tmp_path / "run", executor="local", limit=16)
    run = Path(outcome.out_dir)
    shot = tmp_path / "report.png"
    rendered = render_in_chromium(run / "report.html", tmp_path / "chromium", screenshot=shot)

    assert {"verdicts", "figures", "examples", "tables", "manifest"} <= set(rendered.text)
    expected = verdicts(outcome.results, confidence=protocol.stats.confidence)
    assert expected
    for v in expected:
        assert " ".join(v.text.split()) in rendered.words("verdicts"), v.claim
    pngs = sorted(p.name for p in (run / "figures").glob("*.png"))
    gallery = [n for n in pngs if n.startswith("gallery_")]
    assert gallery, f"the run drew no gallery: {pngs}"
    shown = {(img["section"], img["data-figure"]) for img in rendered.images}
    assert shown == {("examples" if n in gallery else "figures", n) for n in pngs}
    assert len(rendered.images) == len(pngs)
    assert failed_images(rendered) == []
    banner = rendered.words("header")
    assert "--limit 16: at most 16" in banner and "1 of the protocol's 2 seeds ran" in banner

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with Image.open(shot) as im:
        assert im.size == (1280, 3000)
        assert len(im.convert("L").getcolors(256) or []) > 16  # text and figures, not blank


def test_the_load_check_sees_a_broken_image(tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1, 2])
    good = tmp_path / "good.png"
    fig.savefig(good, format="png")
    data = good.read_bytes()
    # A valid header, then zeros where the pixel data starts: no browser can decode it.
    (tmp_path / "broken.png").write_bytes(data[:40] + bytes(200) + data[240:])
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    row = ResultRow("dmm.perpendicular", "random_subspace", "plain", 0, 40, 0, 0.9, 0.8, 1.0,
                    0.05, "median r_T / chance median", 0.3, "r", 10.0, "W+", 0.01, "null",
                    "t", "less", null_value=1.0)
    page = tmp_path / "page.html"
    page.write_text(render_html(finalise([row]), figures=[
        good, tmp_path / "broken.png", tmp_path / "truncated.png"]), "utf-8")
    rendered = render_in_chromium(page, tmp_path / "chromium")
    failed = failed_images(rendered)
    assert failed[0] == "broken.png: not loaded"
    assert len(failed) == 2 and failed[1].startswith("truncated.png: ")


@pytest.mark.slow
def test_a_committed_sweep_report_shows_its_specification_curves_in_chromium(
        tmp_path: Path) -> None:
    from dimple_stats.report.robustness import robustness

    run = Path(__file__).resolve().parents[2] / "reports" / "multiverse_digits"
    rendered = render_in_chromium(run / "report.html", tmp_path / "chromium")
    curves = sorted(p.name for p in (run / "figures").glob("spec_curve_*.png"))
    assert curves
    assert {img["data-figure"] for img in rendered.images} >= set(curves)
    assert failed_images(rendered) == []
    results = pd.read_csv(run / "results.csv")
    for r in robustness(results):
        assert f"supported in {r.supported}/{r.total} specifications" in rendered.words("verdicts")
