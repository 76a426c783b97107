"""Verdicts in words, on constructed results tables: each category, how several rows combine,
and that every number in the text is the table's."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from dimple_stats.report.pvalue_text import format_p
from dimple_stats.report.verdicts import CATEGORIES, verdicts
from dimple_stats.results import ResultRow, finalise
from dimple_stats.stats_config import StatsConfig


def _row(seed: int, *, claim: str = "dmm.perpendicular", variant: str = "random_subspace",
         ae: str = "plain", est: float = 0.5, half: float = 0.1, p: float = 0.001,
         alternative: str = "less", null_value: float = 1.0, n: int = 200, censored: int = 0,
         uninformative: str = "", test: str = "Wilcoxon signed-rank") -> ResultRow:
    # Seeds differ a little, as real ones do (identical estimates make the Hartung-Knapp
    # variance 0 and the pooled test undefined).
    est = est + 0.01 * half * (seed - 1)
    return ResultRow(claim, variant, ae, seed, n, censored, est, est - half, est + half, half / 2,
                     "median r_T / chance median, bootstrap CI (1 = chance)", 0.4, "r", 10.0,
                     "W+", p, "H0 in words", test, alternative, null_value=null_value,
                     uninformative=uninformative, note=uninformative)


def _table(*rows: ResultRow) -> pd.DataFrame:
    return finalise(rows, StatsConfig(bootstrap=200))


def _only(results: pd.DataFrame):
    (v,) = verdicts(results)
    return v


def test_supported_when_the_pooled_row_rejects() -> None:
    res = _table(*(_row(s, est=0.6, p=1e-6) for s in range(3)))
    v = _only(res)
    assert v.category == "supported"
    assert v.text.startswith("Supported for plain (these 3 models; generalising over training "
                             "runs needs 5 or more seeds).")
    pooled = res[res["seed"] == "pooled"].iloc[0]
    assert pooled["decision"] == "reject H0"
    assert "3/3 seeds reject" in v.text
    assert v.hypothesis.startswith("Adversarial perturbations are more perpendicular")


def test_not_supported_when_retained_and_the_ci_covers_the_null() -> None:
    res = _table(*(_row(s, est=1.0 + 0.01 * s, half=0.2, p=0.4) for s in range(3)))
    v = _only(res)
    pooled = res[res["seed"] == "pooled"].iloc[0]
    assert pooled["ci_low"] < 1 < pooled["ci_high"]
    assert v.category == "not supported"
    assert "opposite side" not in v.text


@pytest.mark.parametrize("alternative,est,side", [("less", 3.5, "above"),
                                                  ("greater", -3.5, "below")])
def test_contradicted_when_the_ci_lies_on_the_other_side(alternative: str, est: float,
                                                         side: str) -> None:
    null = 1.0 if alternative == "less" else 0.0
    res = _table(*(_row(s, est=est, p=0.999, alternative=alternative, null_value=null)
                   for s in range(3)))
    v = _only(res)
    assert v.category == "contradicted"
    assert f"the CI lies entirely {side} {null:g}" in v.text


def test_two_sided_and_equivalence_rows_never_contradict() -> None:
    two = _table(*(_row(s, claim="ae.local_vs_global", variant="same_share", est=0.3, half=2, p=0.2,
                        alternative="two-sided", null_value=0.0) for s in range(2)))
    assert _only(two).category == "not supported"
    tost = _table(*(_row(s, claim="dmm.off_equals_unrestricted", variant="tost", est=0.9,
                         p=0.9, alternative="equivalence", null_value=math.nan)
                    for s in range(2)))
    assert _only(tost).category == "not supported"


def test_uninformative_says_why() -> None:
    reason = "83% of pairs (on or off attack failed) censored (>= 50%): the median is not identified"
    res = _table(*(_row(s, claim="dmm.norm_asymmetry", variant="beyond_dimension_counting",
                        alternative="greater", null_value=0.0, p=0.5, censored=166,
                        uninformative=reason) for s in range(2)))
    v = _only(res)
    assert v.category == "uninformative"
    assert "it cannot answer (no informative seed: 83% of pairs (on or off attack failed) " \
           "censored per seed" in v.text
    assert "n = 400 (332 censored)" in v.text
    assert "seeds reject" not in v.text  # no test was run


def test_a_row_without_p_value_is_uninformative() -> None:
    # No null value: the pool combines the seeds' p-values (Stouffer), and there are none.
    res = _table(*(_row(s, p=math.nan, null_value=math.nan) for s in range(2)))
    assert res["decision"].iloc[-1] == "undefined"
    assert _only(res).category == "uninformative"


def test_several_deciding_rows_combine() -> None:
    rows = [_row(s, claim="iso.defense", variant=f"vs {base} @ eps=1", ae="isometric",
                 est=est, p=p, alternative="greater", null_value=0.0)
            for s in range(2) for base, p, est in (("none", 1e-8, 0.1), ("plain", 0.6, 0.0))]
    v = _only(_table(*rows))
    assert v.category == "not supported"
    assert "1 of 2 comparisons support the claim." in v.text
    assert "Against equal robust accuracy with none at eps 1: supported" in v.text
    assert "Against equal robust accuracy with plain at eps 1: not supported" in v.text
    # Every comparison supports: supported.
    rows = [_row(s, claim="iso.defense", variant=f"vs {base} @ eps=1", ae="isometric",
                 est=0.1, p=1e-8, alternative="greater", null_value=0.0)
            for s in range(2) for base in ("none", "plain")]
    assert _only(_table(*rows)).category == "supported"


def test_data_shaped_nulls_are_read_beside_the_deciding_null() -> None:
    rows = [_row(s, est=3.5, p=0.999) for s in range(3)]
    rows += [_row(s, variant="pca", est=-0.25, half=0.03, p=1e-9, null_value=0.0)
             for s in range(3)]
    rows += [_row(s, variant="other_image", est=0.05, half=0.01, p=0.999, null_value=0.0)
             for s in range(3)]
    v = _only(_table(*rows))
    assert v.category == "contradicted"
    assert v.variants == ("random_subspace",)
    assert "Also contradicted against the tangent space of another image" in v.text
    assert re.search(r"The reading changes against the top-k principal subspace of the "
                     r"training images \(data-shaped\): supported, median r_T / chance median "
                     r"-0\.25", v.text)


def test_the_deciding_null_falls_back_in_order() -> None:
    rows = [_row(s, variant="pca", est=-0.25, p=1e-9, null_value=0.0) for s in range(2)]
    rows += [_row(s, variant="beta", est=0.99, half=0.2, p=0.5) for s in range(2)]
    v = _only(_table(*rows))
    assert v.variants == ("beta",)  # beta before the data-shaped nulls
    assert v.category == "not supported"


def test_every_number_in_the_text_is_the_tables() -> None:
    res = _table(*(_row(s, est=0.61 + 0.013 * s, half=0.05, p=1e-5) for s in range(4)))
    pooled = res[res["seed"] == "pooled"].iloc[0]
    text = _only(res).text
    for value in (pooled["estimate"], pooled["ci_low"], pooled["ci_high"]):
        assert f"{value:.3g}" in text
    assert f"n = {pooled['n']}." in text  # nothing censored: no count
    assert f"{100 * pooled['ci_level']:.4g}% CI" in text
    shown = format_p(pooled["p_adj"])
    assert (f"p_adj {shown}" if shown.startswith("<") else f"p_adj = {shown}") in text


def test_one_verdict_per_claim_and_autoencoder_descriptive_rows_ignored() -> None:
    rows = [_row(s, ae=ae, est=0.5, p=1e-6) for s in range(2) for ae in ("plain", "iso")]
    desc = ResultRow("dmm.norm_asymmetry", "naive", "plain", 0, 50, 0, 1.0, 0.9, 1.1, 0.05,
                     "m", math.nan, "", math.nan, "", math.nan, "(descriptive)", "descriptive",
                     "")
    out = verdicts(_table(*rows, desc))
    assert [(v.claim, v.autoencoder) for v in out] == [("dmm.perpendicular", "plain"),
                                                       ("dmm.perpendicular", "iso")]
    assert {v.category for v in out} <= set(CATEGORIES)


def test_a_claim_outside_the_catalogue_decides_on_all_its_tested_rows() -> None:
    rows = [_row(s, claim="plugin.toy", variant=v, est=0.5, p=p)
            for s in range(2) for v, p in (("a", 1e-6), ("b", 1e-6))]
    v = _only(_table(*rows))
    assert v.hypothesis == ""  # no words for a claim outside the catalogue
    assert v.variants == ("a", "b") and v.category == "supported"


def test_contradicted_needs_the_reverse_test_at_the_supported_standard() -> None:
    """A CI on the other side is not enough: the test turned round (1 - p) must survive
    Bonferroni over the run's confirmatory family, as "supported" must survive Holm; the
    pooled CI is drawn at that family's level, so the two agree (issue 31, row 2)."""
    # Seeds at 1.02, 1.03, 1.04 (se 0.03 each): fixed-effect mean 1.03, se 0.0173, one-sided
    # reverse p 0.042, alone in its family: contradicted, the 90% CI above 1.
    base = [_row(s, est=e, half=0.06, p=0.99) for s, e in enumerate([1.02, 1.03, 1.04])]
    res = _table(*base)
    pooled = res[res["seed"] == "pooled"].iloc[0]
    assert pooled["ci_level"] == pytest.approx(0.9) and pooled["ci_low"] > 1
    assert (1 - pooled["p"]) < 0.05
    assert _only(res).category == "contradicted"
    # 20 more pooled tests in the run: Bonferroni over 21 needs 1 - p < 0.05 / 21, and the CI
    # beside the verdict widens to 1 - 2 x 0.05 / 21, so it covers 1 again.
    noise = [_row(s, claim="ae.local_vs_global", variant="same_share", ae=f"a{i}", est=0.0,
                  half=0.5, p=0.5, alternative="two-sided", null_value=0.0)
             for i in range(20) for s in range(3)]
    res = _table(*base, *noise)
    pooled = res[(res["seed"] == "pooled") & (res["claim"] == "dmm.perpendicular")].iloc[0]
    assert pooled["ci_level"] == pytest.approx(1 - 0.1 / 21)
    assert pooled["ci_low"] < 1 < pooled["ci_high"]
    v = [x for x in verdicts(res) if x.claim == "dmm.perpendicular"][0]
    assert v.category == "not supported"
    strong = [_row(s, est=1.5, half=0.05, p=1 - 1e-9) for s in range(3)]
    v = [x for x in verdicts(_table(*strong, *noise)) if x.claim == "dmm.perpendicular"][0]
    assert v.category == "contradicted" and "Bonferroni over 21 tests" in v.text


def test_censored_bounds_never_contradict() -> None:
    rows = [_row(s, claim="dmm.norm_asymmetry", variant="beyond_dimension_counting",
                 est=-1.0, half=0.1, p=1 - 1e-9, alternative="greater", null_value=0.0,
                 censored=40) for s in range(3)]
    v = _only(_table(*rows))
    assert v.category == "not supported"
    assert "set at the bound least favourable to the claim" in v.text


def test_without_pooled_rows_every_seed_is_a_comparison() -> None:
    rows = [_row(0, est=0.5, p=1e-6), _row(1, est=1.0, half=0.3, p=0.5),
            _row(2, est=1.0, half=0.3, p=0.5)]
    res = _table(*rows)
    res = res[res["seed"] != "pooled"]
    v = _only(res)
    assert v.category == "not supported"
    assert "1 of 3 comparisons support the claim" in v.text
    assert all(f"seed {s}" in v.text for s in range(3))


def test_two_sided_rejections_say_which_way() -> None:
    rows = [_row(s, claim="ae.local_vs_global", variant="same_share", est=e, half=0.02,
                 p=1e-6, alternative="two-sided", null_value=0.0)
            for s, e in enumerate([-0.3, -0.3, 0.3])]
    v = _only(_table(*rows))
    assert "3/3 seeds reject (2 below 0, 1 above)" in v.text


def test_most_deciding_rows_uninformative_is_uninformative() -> None:
    rows = [_row(s, claim="iso.defense", variant=f"vs none @ eps={e}", ae="iso", est=0.1,
                 p=1e-8, alternative="greater", null_value=0.0,
                 uninformative="" if e == 1 else "too few samples") for s in range(2)
            for e in (1, 2, 3)]
    v = _only(_table(*rows))
    assert v.category == "uninformative" and "(2 cannot answer)" in v.text


def test_variant_names_keep_their_case_and_name_the_null() -> None:
    rows = [_row(s, claim="dmm.clinging_then_dimpling", variant=v, ae="-", est=0.5, p=1e-6,
                 null_value=1.0)
            for s in range(2) for v in ("change point", "r_T below chance throughout")]
    v = _only(_table(*rows))
    assert v.text.startswith("Supported (these 2 models;") and "r_T at or above chance" in v.text
    rows = [_row(s, claim="zp.not_below_random", variant="non_inferiority", est=0.3, p=1e-6,
                 alternative="greater", null_value=-0.05) for s in range(2)]
    assert "Against r_T below a random subspace's share by the margin or more" in \
        _only(_table(*rows)).text


def test_the_headline_names_each_nulls_reading() -> None:
    """A claim contradicted against the isotropic nulls and supported against a data-shaped
    one must not head its paragraph with one word (issue 31 item 7): summary.md, report.html
    and the console name each null's reading."""
    from dimple_stats.report.html import render_html
    from dimple_stats.report.summary import verdict_lines

    rows = [_row(s, est=3.5, p=0.999) for s in range(3)]
    rows += [_row(s, variant="beta", est=3.4, p=0.999) for s in range(3)]
    rows += [_row(s, variant="pca", est=-0.25, half=0.03, p=1e-9, null_value=0.0)
             for s in range(3)]
    res = _table(*rows)
    v = _only(res)
    assert v.category == "contradicted"
    assert v.headline() == ("contradicted vs random subspace and Beta law; "
                            "supported vs data-shaped PCA subspace")
    (line,) = verdict_lines([v])
    assert line.startswith("- **Contradicted** (contradicted vs random subspace and Beta law; "
                           "supported vs data-shaped PCA subspace): `dmm.perpendicular`")
    page = render_html(res)
    assert '<span class="badge v-supported">supported vs data-shaped PCA subspace</span>' in page
    assert ('<span class="badge v-contradicted">contradicted vs random subspace and Beta '
            'law</span>') in page
    # one null: no headline list
    single = _only(_table(*(_row(s, est=3.5, p=0.999) for s in range(3))))
    assert single.headline() == "" and verdict_lines([single])[0].startswith(
        "- **Contradicted**: `dmm.perpendicular`")


@pytest.mark.parametrize("defense, words", [
    ("plain", "through the plain autoencoder, x -> D(E(x)),"),
    ("plain:tangent", "onto the plain autoencoder's tangent plane at D(E(x))"),
    ("isometric", "through the isometric autoencoder"),
])
def test_defense_verdicts_name_the_projection_their_rows_tested(defense: str,
                                                                words: str) -> None:
    """A plain autoencoder's defense row is not a verdict on the isometric hypothesis, and
    the attack is named for what ran (no "adaptive" for fixed-budget PGD)."""
    rows = [_row(s, claim="iso.defense", variant="vs none @ eps=1", ae=defense, est=-0.1,
                 p=0.999, alternative="greater", null_value=0.0) for s in range(2)]
    v = _only(_table(*rows))
    assert words in v.hypothesis
    assert "isometric" not in v.hypothesis or defense.startswith("isometric")
    assert "adaptive" not in v.hypothesis and "white-box PGD through the projection" in \
        v.hypothesis


def test_a_claim_added_later_speaks_its_own_variant_words_never_another_claims() -> None:
    """Issue 33: a contributor's claim with a variant named "same_share" printed
    ae.local_vs_global's words ("equal shares in the local tangent and the top-k principal
    subspace"). Its own words now, or the variant as named."""
    import dataclasses

    from dimple_stats.claims import CATALOGUE

    base = CATALOGUE["dmm.perpendicular"]
    mine = dataclasses.replace(base, id="toy.follows_gradient",
                               variant_words={"same_share": "the share of a random direction"})
    bare = dataclasses.replace(base, id="toy.bare", variant_words={})
    for definition, words in ((mine, "Against the share of a random direction:"),
                              (bare, "Against same_share:")):
        with CATALOGUE.registered(definition.id, definition):
            rows = [_row(s, claim=definition.id, variant="same_share", est=0.6, p=1e-6)
                    for s in range(3)]
            text = _only(_table(*rows)).text
        assert words in text, text
        assert "top-k principal subspace" not in text, text
    # a built-in claim keeps the shared words
    rows = [_row(s, claim="ae.local_vs_global", variant="same_share", est=0.6, p=1e-6)
            for s in range(3)]
    assert "Against equal shares in the local tangent and the top-k principal subspace" in \
        _only(_table(*rows)).text
