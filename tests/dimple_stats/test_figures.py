"""Report figures: words instead of ids, the right reference lines, censored images counted,
readable fonts, PNG and PDF byte-identical across renders, and every committed report's figures
drawn from its run directory."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.text import Text
from scipy import stats

from dimple_stats.claims.catalogue import get_claim
from dimple_stats.report import FIGURE_FORMATS, figure_names, write_report
from dimple_stats.report import figures as fg
from dimple_stats.report.forest import MAX_FULL_ROWS
from dimple_stats.report.labels import variant_words
from dimple_stats.report.run import report_run

REPORTS = Path(__file__).resolve().parents[2] / "reports"
RUN_DIRS = sorted(p.parent for p in REPORTS.glob("*/manifest.json"))


def committed_results(name: str) -> pd.DataFrame:
    return pd.read_csv(REPORTS / name / "results.csv", dtype={"seed": str})


def texts(fig: Figure) -> list[Text]:
    fig.canvas.draw()  # tick labels exist once drawn
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def panels(fig: Figure) -> dict[str, object]:
    """Forest-plot panels by their title (the variant in words, unwrapped)."""
    return {" ".join(ax.get_title(loc="left").split()): ax for ax in fig.axes if ax.get_visible()}


def references(ax: object) -> list[float]:
    return [float(line.get_xdata()[0]) for line in ax.get_lines()  # type: ignore[attr-defined]
            if line.get_gid() == "reference"]


# --- forest plots -------------------------------------------------------------------------------

def test_reference_line_is_1_for_ratios_and_0_for_differences() -> None:
    res = committed_results("mnist_offmanifold")
    by_title = panels(fg.forest_plot(res, "dmm.norm_asymmetry"))
    for variant in ("ratio on/off", "ratio on/plain", "ratio off/plain"):
        assert references(by_title[variant_words(variant)]) == [1.0]  # descriptive, NaN null
    assert references(by_title[variant_words("naive")]) == [0.0]  # a log ratio
    # (a record run with the Wilcoxon option names it in its variants)
    test = " (wilcoxon)" if (res["variant"] == "naive (wilcoxon)").any() or \
        (res["variant"] == "random_subspace (wilcoxon)").any() else ""
    assert references(by_title[variant_words(f"beyond_dimension_counting{test}")]) == [0.0]
    perp = panels(fg.forest_plot(res, "dmm.perpendicular"))
    assert references(perp[variant_words(f"random_subspace{test}")]) == [0.0]  # null 0
    assert references(perp[variant_words(f"pca{test}")]) == [0.0]
    zp = panels(fg.forest_plot(res, "zp.not_below_random"))
    assert references(zp[variant_words("non_inferiority")]) == [-0.05]  # the margin, H0's edge


def test_a_plain_level_has_no_reference_line() -> None:
    fig = fg.forest_plot(committed_results("isometric_defense"), "iso.defense")
    by_title = panels(fig)
    assert references(by_title["robust accuracy at eps = 1"]) == []
    assert references(by_title["vs plain at eps = 1"]) == [0.0]


@pytest.mark.parametrize("name", ["mnist_offmanifold", "isometric_defense",
                                  "synthetic_known_manifold"])
def test_forest_text_is_words_whole_and_readable(name: str) -> None:
    res = committed_results(name)
    for claim in dict.fromkeys(res["claim"]):
        fig = fg.forest_plot(res, claim)
        shown = texts(fig)
        assert not [t.get_text() for t in shown if t.get_text().rstrip().endswith(("...", "…"))]
        assert min(t.get_fontsize() for t in shown) >= 8
        assert " ".join(fig.get_suptitle().split()) == get_claim(claim).hypothesis
        titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_visible()]
        assert claim not in " ".join(titles)
        ids = {v for v in res.loc[res["claim"] == claim, "variant"] if "_" in v}
        assert not ids & {" ".join(t.split()) for t in titles}  # "random_subspace" is in words
        for ax in fig.axes:  # the x label is the whole meaning, wrapped
            if ax.get_visible():
                meanings = res.loc[res["claim"] == claim, "estimate_meaning"]
                label = " ".join(ax.get_xlabel().split())
                assert any(m in label for m in meanings) or "(this row)" in label


def test_forest_rows_say_seed_or_pooled_with_the_seed_count() -> None:
    fig = fg.forest_plot(committed_results("mnist_offmanifold"), "dmm.perpendicular")
    labels = {t.get_text() for ax in fig.axes for t in ax.get_yticklabels()}
    assert {"plain, seed 0", "plain, seed 4", "plain, pooled (5 seeds)"} <= labels


def test_a_claim_the_catalogue_does_not_know_keeps_its_id() -> None:
    res = committed_results("mnist_offmanifold")
    res = res[res["claim"] == "dmm.perpendicular"].assign(claim="my.plugin_claim")
    assert fg.forest_plot(res, "my.plugin_claim").get_suptitle() == "my.plugin_claim"


def test_markers_are_filled_for_rejected_and_hollow_for_retained() -> None:
    res = committed_results("quickstart")
    res = res[(res["claim"] == "ae.validity") & (res["variant"] == "equivalence")]
    assert {"reject H0", "retain H0"} <= set(res["decision"])
    fig = fg.forest_plot(res, "ae.validity")
    ax = fig.axes[0]
    # rows are drawn top to bottom, grouped by autoencoder; each errorbar's data line holds
    # its marker
    markers = [line for line in ax.get_lines() if line.get_marker() in ("o", "D")]
    decisions = pd.concat([g for _, g in res.groupby("autoencoder", sort=False)])["decision"]
    assert len(markers) == len(decisions)
    for line, decision in zip(markers, decisions):
        filled = to_rgba(line.get_markerfacecolor()) != (1.0, 1.0, 1.0, 1.0)
        assert filled == (decision == "reject H0"), decision
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "filled: supported (H0 rejected)" in legend
    assert "hollow: not supported (H0 retained)" in legend


def test_many_rows_collapse_to_one_pooled_row_per_autoencoder() -> None:
    res = committed_results("isometric_defense")
    rows = res[res["claim"] == "iso.defense"]
    assert len(rows) > MAX_FULL_ROWS
    fig = fg.forest_plot(res, "iso.defense")
    labels = [t.get_text() for ax in fig.axes if ax.get_visible() for t in ax.get_yticklabels()]
    assert len(labels) == len(rows.groupby(["variant", "autoencoder"]))
    assert all(", pooled (5 seeds)" in label for label in labels)
    assert fig.get_figheight() < 20  # two columns of panels, not one 70-inch strip
    assert "single seeds (CIs in results.csv)" in [t.get_text() for t in fig.legends[0].texts]


# --- distributions ------------------------------------------------------------------------------

def test_chance_cdf_of_log_on_off_matches_simulated_dimension_counting() -> None:
    # Reference: simulate on/off = sqrt((1-B)/B), B ~ Beta(k/2, (n-k)/2), not the formula.
    n, k = 784, 16
    b = np.random.default_rng(0).beta(k / 2, (n - k) / 2, 200_000)
    sample = 0.5 * np.log((1 - b) / b)
    at = np.quantile(sample, [0.05, 0.25, 0.5, 0.75, 0.95])
    cdf = fg.chance_cdf_log_on_off(at, [n], [k])
    assert cdf == pytest.approx([0.05, 0.25, 0.5, 0.75, 0.95], abs=0.004)


def test_norm_ratio_ecdf_marks_and_counts_censored_images(synthetic: SimpleNamespace) -> None:
    m = synthetic.measurements(seeds=(0, 1), censor_on=0.1)
    off_failed = (m["autoencoder"] == "plain") & (m["sample"] < 3) & m["success_on"]
    m.loc[off_failed, "success_off"] = False
    fig = fg.norm_ratio_ecdf(m)
    for sub, (name, g) in zip(fig.subfigs, m.groupby("autoencoder", sort=True)):
        lower = int((~g["success_on"] & g["success_off"]).sum())
        upper = int((g["success_on"] & ~g["success_off"]).sum())
        legend = [t.get_text() for t in sub.legends[0].get_texts()]
        assert f"on-manifold attack failed: lower bound ({lower} of {len(g)})" in legend
        assert f"off-manifold attack failed: upper bound ({upper} of {len(g)})" in legend
        ax = sub.axes[0]
        rugs = {line.get_label(): len(line.get_xdata()) for line in ax.get_lines()}
        assert rugs[f"on-manifold attack failed: lower bound ({lower} of {len(g)})"] == lower
        assert lower > 0 and (upper > 0) == (name == "plain")
        chance = next(line for line in ax.get_lines() if line.get_gid() == "chance median")
        m_b = stats.beta.median(4, 28)
        assert chance.get_xdata()[0] == pytest.approx(0.5 * math.log((1 - m_b) / m_b))


def test_norm_ratio_ecdf_draws_censored_ratios_as_bounds_not_values(
        synthetic: SimpleNamespace) -> None:
    # Issue 31, item 7: a censored ratio is only a bound. The figure draws the band between the
    # ECDF with every censored ratio as small as its interval allows and as large, never one
    # curve through the bounds.
    m = synthetic.measurements(seeds=(0, 1), censor_on=0.2)
    g = m[m["autoencoder"] == sorted(m["autoencoder"].unique())[0]]
    fig = fg.norm_ratio_ecdf(m)
    ax = fig.subfigs[0].axes[0]
    gids = {line.get_gid() for line in ax.get_lines()}
    assert "observed" not in gids and {"observed high", "observed low"} <= gids
    low = next(line for line in ax.get_lines() if line.get_gid() == "observed low")
    high = next(line for line in ax.get_lines() if line.get_gid() == "observed high")
    failed_on = int((~g["success_on"]).sum())
    assert failed_on > 0
    # the low curve never counts a lower-bounded ratio (its true value may be beyond any x)
    assert low.get_ydata()[-1] == pytest.approx(1 - failed_on / len(g))
    assert high.get_ydata()[-1] == pytest.approx(1.0)
    assert np.all(low.get_ydata() <= high.get_ydata())
    legend = " ".join(t.get_text() for t in fig.subfigs[0].legends[0].get_texts())
    assert "the ECDF lies in the band" in legend and "median" in legend


def test_r_nulls_ecdf_draws_the_controls_present_and_the_chance_median(
        synthetic: SimpleNamespace) -> None:
    m = synthetic.measurements(seeds=(0,)).drop(columns=["r_PCA"])
    fig = fg.r_nulls_ecdf(m)
    ax = fig.subfigs[0].axes[0]
    drawn = {line.get_gid() for line in ax.get_lines()}
    assert drawn == {"r_T", "r_R", "r_Rdata", "r_Tother", "chance"}
    chance = next(line for line in ax.get_lines() if line.get_gid() == "chance")
    assert chance.get_xdata()[0] == pytest.approx(math.sqrt(stats.beta.median(4, 28)))
    assert min(t.get_fontsize() for t in texts(fig)) >= 8


def test_training_curves_label_in_words(synthetic: SimpleNamespace) -> None:
    fig = fg.training_curves(synthetic.training())
    words = " ".join(t.get_text() for t in texts(fig))
    assert "training epoch" in words and "distance to the decision boundary" in words
    assert "norm_plain" not in words and "r_R" not in words
    assert min(t.get_fontsize() for t in texts(fig)) >= 8


# --- files --------------------------------------------------------------------------------------

def test_figure_names_list_every_format_png_first(synthetic: SimpleNamespace) -> None:
    m = synthetic.measurements(seeds=(0,))
    names = figure_names(pd.DataFrame({"claim": [], "estimate": []}), m)
    stems = ["r_T_vs_r_R", "r_T_vs_nulls", "norm_on_off_vs_dimension_counting"]
    assert names == [f"{s}.{fmt}" for s in stems for fmt in FIGURE_FORMATS]
    assert FIGURE_FORMATS[0] == "png" and "pdf" in FIGURE_FORMATS
    no_controls = m.drop(columns=["r_R", "r_Rdata", "r_PCA", "r_Tother"])
    assert not [n for n in figure_names(pd.DataFrame({"claim": [], "estimate": []}),
                                        no_controls) if n.startswith("r_T_vs")]


def test_png_and_pdf_are_byte_identical_across_renders(tmp_path: Path,
                                                       synthetic: SimpleNamespace) -> None:
    m = synthetic.measurements(seeds=(0, 1))
    res = committed_results("quickstart")
    res = res[res["claim"].isin(["dmm.norm_asymmetry", "ae.validity"])]

    def render(out: Path) -> dict[str, str]:
        paths = write_report(res, m, out, formats=["csv"], html=False)
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths
                if p.parent.name == "figures"}

    first, second = render(tmp_path / "a"), render(tmp_path / "b")
    assert first == second
    assert {Path(n).suffix for n in first} == {".png", ".pdf"}
    assert len(first) == 2 * 5  # 3 distribution figures and 2 forest plots, PNG + PDF
    pdf = (tmp_path / "a" / "figures" / "forest_ae_validity.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf
    assert b"/Subtype /Type3" not in pdf  # TrueType fonts: journals reject Type 3


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=lambda p: p.name)
def test_committed_report_figures_regenerate(run_dir: Path, tmp_path: Path) -> None:
    results, written = report_run(run_dir, tmp_path, formats=["csv"], html=False)
    from dimple_stats.report.run import read_run

    run = read_run(run_dir)
    tables = run.tables if run.gallery is None else {**run.tables, "gallery": run.gallery}
    expected = figure_names(results, run.measurements, tables)
    assert expected and {p.name for p in written if p.parent.name == "figures"} == set(expected)
    for name in expected:
        assert (tmp_path / "figures" / name).stat().st_size > 1000
