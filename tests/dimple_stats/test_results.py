"""The results table: stable columns, pooling over seeds, multiplicity families, decisions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from dimple_stats.results import DESCRIPTIVE, RESULT_COLUMNS, ResultRow, finalise
from dimple_stats.stats import random_effects
from dimple_stats.stats.meta import hartung_knapp
from dimple_stats.stats_config import StatsConfig

# The documented column set; a change here is a breaking change for every report reader.
COLUMNS = [
    "claim", "variant", "autoencoder", "seed", "n", "n_censored", "estimate", "ci_low", "ci_high",
    "ci_level", "se", "estimate_meaning", "null_value", "effect_size", "effect_name", "statistic",
    "statistic_name", "p",
    "p_adj", "alpha", "decision", "null", "test", "alternative", "n_seeds", "n_seeds_reject",
    "scope", "suggested_n", "note",
]


def row(claim: str, seed: int, p: float, est: float = 1.0, se: float = 0.1, *,
        variant: str = "v", ae: str = "a", alternative: str = "greater", effect: float = 0.5,
        test: str = "t") -> ResultRow:
    return ResultRow(claim, variant, ae, seed, 20, 1, est, est - 2 * se, est + 2 * se, se, "m",
                     effect, "r", 3.0, "W+", p, "null", test, alternative, suggested_n=30.0 + seed)


def test_columns_are_the_documented_ones() -> None:
    assert list(RESULT_COLUMNS) == COLUMNS
    assert all(len(text) > 10 for text in RESULT_COLUMNS.values())
    assert list(finalise([row("c", 0, 0.01)]).columns) == COLUMNS


P_SEED = {("c1", 0): 0.001, ("c1", 1): 0.04, ("c1", 2): 0.03, ("c2", 0): 0.2, ("c2", 1): 0.012,
          ("c2", 2): 0.5}


def rows_of_two_claims() -> list[ResultRow]:
    out = [row(c, s, p, est=1.0 + 0.1 * s) for (c, s), p in P_SEED.items()]
    out.append(ResultRow("c2", "descr", "a", 0, 20, 0, 1.0, 0.8, 1.2, 0.1, "m", math.nan, "",
                         math.nan, "", math.nan, "(descriptive)", DESCRIPTIVE, ""))
    return out


def _families(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    tested = df[df["p"].notna()]
    pooled = tested["seed"].eq("pooled")
    return tested[pooled], tested[~pooled]


def test_holm_in_two_families_verdicts_and_replications() -> None:
    # Issue 31, row 1: the pooled rows (the run's verdicts) are the confirmatory family; the
    # per-seed rows a replication family of their own, so they no longer drown the verdicts.
    df = finalise(rows_of_two_claims(), StatsConfig(correction="holm"))
    confirmatory, replication = _families(df)
    assert (len(confirmatory), len(replication)) == (2, 6)
    for family in (confirmatory, replication):
        assert family["p_adj"].tolist() == pytest.approx(
            multipletests(family["p"], method="holm")[1].tolist(), abs=1e-15)


def test_fdr_bh_and_none() -> None:
    bh = finalise(rows_of_two_claims(), StatsConfig(correction="fdr_bh"))
    for family in _families(bh):
        assert family["p_adj"].tolist() == pytest.approx(
            multipletests(family["p"], method="fdr_bh")[1].tolist(), abs=1e-15)
    none = finalise(rows_of_two_claims(), StatsConfig(correction="none"))
    tested = none["p"].notna()
    assert (none.loc[tested, "p_adj"] == none.loc[tested, "p"]).all()


def test_decisions_and_seed_counts() -> None:
    df = finalise(rows_of_two_claims(), StatsConfig(alpha=0.05, correction="holm"))
    # Holm over the 6 per-seed rows (their own family): c1's seed 0 (p 0.001) is the only
    # per-seed rejection
    c1 = df[(df["claim"] == "c1") & (df["seed"] != "pooled")]
    assert c1["decision"].tolist() == ["reject H0", "retain H0", "retain H0"]
    assert (df["alpha"] == 0.05).all()
    pooled_c1 = df[(df["claim"] == "c1") & (df["seed"] == "pooled")].iloc[0]
    assert (pooled_c1["n_seeds"], pooled_c1["n_seeds_reject"], pooled_c1["n"]) == (3, 1, 60)
    descr = df[df["variant"] == "descr"]
    assert descr["decision"].tolist() == ["descriptive", "descriptive"]
    assert descr["p_adj"].isna().all()
    # loosening alpha flips c1's seeds 1 and 2
    loose = finalise(rows_of_two_claims(), StatsConfig(alpha=0.15, correction="holm"))
    assert loose[(loose["claim"] == "c1") & (loose["seed"] == "pooled")].iloc[0][
        "n_seeds_reject"] == 3


def test_pooled_row_tests_its_own_estimate_with_hartung_knapp() -> None:
    # Defect 5: the pooled p and the pooled estimate target one thing, the random-effects mean
    # of the seeds' estimates, tested against the estimate's null value with t(k - 1); with 5
    # seeds or more the verdict speaks for training runs.
    ests = [1.0, 1.1, 1.2, 1.05, 1.15]
    rows = [row("c", s, 0.01, est=e, se=0.1) for s, e in enumerate(ests)]
    for r in rows:
        r.null_value = 0.9
    pooled = finalise(rows).iloc[-1]
    meta = hartung_knapp(ests, [0.01] * 5, null=0.9, alternative="greater", confidence=0.9)
    assert (pooled["estimate"], pooled["se"], pooled["ci_low"], pooled["ci_high"]) == \
        pytest.approx((meta.estimate, meta.se, meta.ci_low, meta.ci_high), abs=1e-12)
    # by hand: equal weights, mean 1.1, HK variance sum (y - 1.1)^2 / (4 * 5) = 0.025 / 20
    se = math.sqrt(0.025 / 20)
    assert pooled["estimate"] == pytest.approx(1.1) and pooled["se"] == pytest.approx(se)
    assert pooled["p"] == pytest.approx(stats.t.sf(0.2 / se, 4), rel=1e-9)
    # one one-sided test in the confirmatory family: the CI is at 1 - 2 alpha
    assert pooled["ci_level"] == pytest.approx(0.9)
    assert pooled["ci_high"] == pytest.approx(1.1 + stats.t.isf(0.05, 4) * se)
    assert pooled["statistic_name"] == "t (Hartung-Knapp)" and pooled["null_value"] == 0.9
    assert "Hartung-Knapp" in pooled["test"] and pooled["scope"] == "training runs (5 seeds)"


def test_pooled_seeds_are_weighted_by_their_n_not_their_bootstrap_se() -> None:
    # Issue 31, item 3: weights from noisy bootstrap SEs made the pooled test liberal (7.1% at
    # alpha 0.05). A seed with a small SE but few images must not carry the pool: the weights
    # are the seeds' n, whatever their SEs.
    ests, ns, ses = [1.0, 1.4, 1.2, 1.1, 1.3], [100, 20, 60, 80, 40], [0.2, 0.01, 0.1, 0.3, 0.05]
    rows = [row("c", s, 0.01, est=e, se=se) for s, (e, se) in enumerate(zip(ests, ses))]
    for r, n in zip(rows, ns):
        r.n, r.null_value = n, 0.9
    pooled = finalise(rows).iloc[-1]
    assert pooled["estimate"] == pytest.approx(np.dot(ests, ns) / sum(ns), abs=1e-12)
    inverse = hartung_knapp(ests, np.square(ses), null=0.9, alternative="greater")
    assert abs(pooled["estimate"] - inverse.estimate) > 0.05  # the SE weights would differ
    assert "weights the seeds' n" in pooled["test"] or "weights the seeds' n" in pooled["note"]


def test_fewer_than_five_seeds_decide_for_these_models() -> None:
    # Issue 31, row 1: with 3 seeds a Hartung-Knapp t(2) test needs t >= 29.3 in a family of 23;
    # the pooled row decides for these 3 models (inverse-variance, normal reference) and the
    # note gives the random-effects result.
    ests = [1.0, 1.1, 1.2]
    rows = [row("c", s, 0.01, est=e, se=0.1) for s, e in enumerate(ests)]
    for r in rows:
        r.null_value = 0.9
    pooled = finalise(rows).iloc[-1]
    se = 0.1 / math.sqrt(3)  # equal variances, independent images: v / k
    assert pooled["estimate"] == pytest.approx(1.1) and pooled["se"] == pytest.approx(se)
    assert pooled["p"] == pytest.approx(stats.norm.sf(0.2 / se), rel=1e-9)
    assert pooled["ci_low"] == pytest.approx(1.1 - stats.norm.isf(0.05) * se)
    assert pooled["statistic_name"] == "z (fixed effect)"
    assert pooled["scope"] == "these 3 models"
    assert "Hartung-Knapp t(2)" in pooled["note"] and "too few" in pooled["note"]


def test_rows_without_a_null_value_combine_their_p_values() -> None:
    df = finalise(rows_of_two_claims())
    pooled = df[(df["claim"] == "c1") & (df["seed"] == "pooled")].iloc[0]
    ref = stats.combine_pvalues([0.001, 0.04, 0.03], method="stouffer")
    assert (pooled["statistic"], pooled["p"]) == pytest.approx((ref.statistic, ref.pvalue),
                                                              abs=1e-12)
    assert pooled["statistic_name"] == "Stouffer Z" and pooled["suggested_n"] == 31
    assert "Stouffer" in pooled["test"]


def test_one_strong_seed_among_null_seeds_does_not_make_the_pool_reject() -> None:
    # Defect 5: Stouffer rejected 98.5% of such pools while the estimate's CI covered the null.
    rows = [row("c", 0, 1e-12, est=0.5, se=0.05)] + [
        row("c", s, 0.5, est=0.0, se=0.05) for s in range(1, 5)]
    for r in rows:
        r.null_value = 0.0
    pooled = finalise(rows).iloc[-1]
    assert pooled["ci_low"] < 0.0 < pooled["ci_high"]
    assert pooled["decision"] == "retain H0" and pooled["p"] > 0.05


def test_tiny_seeds_and_uninformative_seeds_are_left_out_of_the_pool() -> None:
    # Defect 5: a seed of n = 2 has a bootstrap SE near 0 and took the whole weight.
    rows = [row("c", s, 0.01, est=1.0, se=0.1) for s in range(3)]
    tiny = row("c", 3, 0.5, est=50.0, se=1e-6)
    tiny.n = 2
    censored = row("c", 4, 0.5, est=-50.0, se=0.1)
    censored.uninformative = "70% censored"
    for r in (*rows, tiny, censored):
        r.null_value = 0.0
    df = finalise([*rows, tiny, censored])
    pooled = df.iloc[-1]
    assert pooled["estimate"] == pytest.approx(1.0) and pooled["n_seeds"] == 5
    assert "n < 10 left out" in pooled["note"]
    assert df.iloc[4]["decision"] == "uninformative" and math.isnan(df.iloc[4]["p_adj"])


def test_pooled_p_is_not_clipped_and_prints_as_a_floor() -> None:
    from dimple_stats.report.tables import summary_frame

    rows = [row("c", s, 1e-40) for s in range(3)]
    df = finalise(rows, StatsConfig(correction="none"))
    assert 0 < df.iloc[-1]["p"] < 1e-60  # README's 6.8e-70 came from clipping at 1e-15
    assert (summary_frame(df)["p"] == "< 1e-15").all()


def test_groups_list_seeds_in_order_then_pooled() -> None:
    rows = [row("c", s, 0.5) for s in (2, 0, 1)] + [row("c", 0, 0.5, ae="b")]
    df = finalise(rows)
    assert list(zip(df["autoencoder"], df["seed"])) == [
        ("a", 0), ("a", 1), ("a", 2), ("a", "pooled"), ("b", 0), ("b", "pooled")]


def test_two_sided_pooling_uses_each_seeds_direction() -> None:
    same = finalise([row("c", s, 0.01, alternative="two-sided", effect=0.4) for s in (0, 1)])
    split = finalise([row("c", 0, 0.01, alternative="two-sided", effect=0.4),
                      row("c", 1, 0.01, alternative="two-sided", effect=-0.4)])
    assert same.iloc[-1]["p"] < 0.01 < 0.99 < split.iloc[-1]["p"]


def test_correlations_pool_on_fisher_z_and_stay_in_range() -> None:
    rs = []
    for s, rho in enumerate((-0.96, -0.97, -0.95)):
        r = row("c", s, 1e-5, est=rho, se=(1 - rho**2) * 0.35, alternative="two-sided",
                effect=rho)
        r.extra["scale"] = "fisher_z"
        rs.append(r)
    pooled = finalise(rs).iloc[-1]
    assert -1 < pooled["ci_low"] < pooled["estimate"] < pooled["ci_high"] < -0.9
    z = np.arctanh([-0.96, -0.97, -0.95])
    meta = random_effects(z, np.full(3, 0.35**2))
    assert pooled["estimate"] == pytest.approx(math.tanh(meta.estimate), abs=1e-12)


def test_seed_without_standard_error_is_left_out_of_the_estimate() -> None:
    rows = [row("c", 0, 0.01, est=1.0), row("c", 1, 0.01, est=5.0, se=0.0)]
    pooled = finalise(rows).iloc[-1]
    assert pooled["estimate"] == 1.0 and "1 seed(s) without a finite standard error" in \
        pooled["note"]
    assert isinstance(finalise(rows), pd.DataFrame)


def test_holm_matches_statsmodels() -> None:
    """Holm is computed here (statsmodels' Holm calls gc.collect() on every call): same values."""
    from statsmodels.stats.multitest import multipletests

    from dimple_stats.stats.multiplicity import adjust_pvalues

    rng = np.random.default_rng(7)
    for size in (1, 2, 5, 40, 300):
        p = rng.uniform(size=size) ** 3
        p[: size // 3] = p[0]  # ties
        assert np.allclose(adjust_pvalues(p, "holm"), multipletests(p, method="holm")[1],
                           rtol=0, atol=1e-15)
