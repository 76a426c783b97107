"""Censoring, pooling and the 'uninformative' decision: each defect found in review is pinned by
a test that failed on the code before its fix (the calibration simulations are in
test_pooled_calibration.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import dimple_stats as ds
from dimple_stats.report.tables import to_markdown
from dimple_stats.stats.bootstrap import joint_median_covariance
from dimple_stats.stats.censored import Bounds, bounded_median_ci, censored_sign_test, median_tost
from dimple_stats.stats.mcnemar import clustered_mcnemar, mcnemar_exact

FAST = {"bootstrap": 200}


def one(df: pd.DataFrame, **where: object) -> pd.Series:
    mask = np.ones(len(df), bool)
    for k, v in where.items():
        mask &= (df[k] == v).to_numpy()
    (i,) = np.flatnonzero(mask)
    return df.iloc[i]


# --- censoring ---------------------------------------------------------------------------------

def test_a_fully_censored_table_is_uninformative_everywhere(synthetic: SimpleNamespace) -> None:
    df = synthetic.measurements()
    df["success_on"] = False  # every on-manifold attack failed
    res = ds.test_claim(df, "dmm.norm_asymmetry", stats=FAST)
    tested = res[res["variant"] == "beyond_dimension_counting"]
    assert (tested["decision"] == "uninformative").all() and len(tested) == 8
    assert tested["p_adj"].isna().all()
    assert tested["note"].str.contains("100% of pairs").all()
    first_order = res[res["variant"] == "beyond_first_order"]
    assert (first_order["decision"] == "uninformative").all() and len(first_order) == 8
    md = to_markdown(res)
    assert md.count("| uninformative |") == 16
    # the console summary of `dimple-stats run` says so too, and warns
    from dimple_stats.cli.display import print_summary as _print_summary

    runner = CliRunner()
    import typer

    app = typer.Typer()
    app.command()(lambda: _print_summary(res))
    out = runner.invoke(app, [])
    assert out.exit_code == 0 and "uninformative" in out.output
    assert "warning: dmm.norm_asymmetry / beyond_dimension_counting" in out.output


def test_failed_off_attacks_count_against_the_claim_not_for_it(synthetic: SimpleNamespace) -> None:
    # Defect 2: a failed off attack leaves norm_off = eps < the true norm, inflating on/off.
    # Treated as observed, 100% of null tables rejected at 50% failures; as a bound, none do.
    df = synthetic.measurements()
    rng = np.random.default_rng(7)
    fail = rng.uniform(size=len(df)) < 0.45
    df.loc[fail, "success_off"] = False
    df.loc[fail, "norm_off"] = df.loc[fail, "norm_off"] * 0.5  # stopped at eps, half-way
    res = ds.test_claim(df, "dmm.norm_asymmetry", stats=FAST)
    rows = res[res["variant"] == "beyond_dimension_counting"]
    assert (rows["decision"] != "reject H0").all()
    treated_as_observed = ds.test_claim(df.assign(success_off=True), "dmm.norm_asymmetry",
                                        stats=FAST)
    naive = treated_as_observed[treated_as_observed["variant"] == "beyond_dimension_counting"]
    assert (naive["decision"] == "reject H0").any()  # what the old code reported


def test_censored_bounds_give_a_ci_that_covers_the_truth() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(0.1, 1.0, 400)
    eps = np.quantile(truth, 0.7)  # 30% censored from above
    b = Bounds(np.minimum(truth, eps), np.where(truth > eps, np.inf, truth))
    est, note = bounded_median_ci(b, rng=np.random.default_rng(0))
    assert est.ci_low < 0.1 < est.ci_high and "median lies in" in note
    # the sign tests count unknown signs against H1: the 120 censored values (known only to
    # exceed eps) may lie above eps + 1, so only the 280 observed ones count as "below"
    assert censored_sign_test(b, alternative="less", mu=eps + 1).statistic == 280
    assert median_tost(b, -5.0, 5.0).pvalue < 0.05
    # samples known only within (-inf, inf) count against equivalence on both sides
    unknown = Bounds(np.full(3, -np.inf), np.full(3, np.inf))
    assert median_tost(unknown, -1, 1).pvalue == 1.0


def test_median_tost_tests_the_median_not_the_pseudo_median() -> None:
    # Defect 3: a right-skewed d with median exactly -margin: the Wilcoxon TOST (pseudo-median,
    # which lies above the median here) rejected 52% per seed; the sign-test TOST about alpha.
    from dimple_stats.stats import tost

    rng = np.random.default_rng(11)
    margin = 0.1
    draws = rng.lognormal(0.0, 1.0, (400, 200)) - 1.0  # median 0, long right tail
    d = -margin + 0.2 * draws
    old = np.mean([tost(x, margin).pvalue <= 0.05 for x in d])
    new = np.mean([median_tost(Bounds.exact(x), -margin, margin).pvalue <= 0.05 for x in d])
    assert old > 0.3 and new <= 0.07


# --- pooling -----------------------------------------------------------------------------------

def test_a_seed_without_discordant_pairs_does_not_sink_the_pooled_mcnemar() -> None:
    # Defect 5: Stouffer turned that seed's p = 1 into z = -7.94 and cut power from 100% to 14%.
    first = [np.zeros(30, bool)] * 4 + [np.ones(30, bool)]
    second = [np.r_[np.ones(8, bool), np.zeros(22, bool)]] * 4 + [np.ones(30, bool)]
    ids = [np.arange(30) + 100 * s for s in range(5)]
    assert [mcnemar_exact(a, b, alternative="greater").pvalue
            for a, b in zip(first, second)][-1] == 1.0
    pooled = clustered_mcnemar(first, second, ids, alternative="greater")
    assert pooled.statistic == 32 and pooled.pvalue == pytest.approx(0.5**32)


def test_shared_images_widen_the_pooled_interval(synthetic: SimpleNamespace) -> None:
    # Defect 6: seeds that measure the same images share those images' effects, which the
    # seeds' dispersion cannot show; the joint image bootstrap adds that covariance.
    rng = np.random.default_rng(5)
    image = rng.normal(size=200)
    vals = [image + 0.3 * rng.normal(size=200) for _ in range(5)]
    shared = joint_median_covariance(vals, [np.arange(200)] * 5, n_resamples=400,
                                     rng=np.random.default_rng(0))
    disjoint = joint_median_covariance(vals, [np.arange(200) + 1000 * s for s in range(5)],
                                       n_resamples=400, rng=np.random.default_rng(0))
    off = ~np.eye(5, dtype=bool)
    assert shared[off].mean() > 0.5 * np.diag(shared).mean()
    assert abs(disjoint[off].mean()) < 0.1 * np.diag(disjoint).mean()
    df = synthetic.measurements(seeds=(0, 1, 2, 3, 4))
    res = ds.test_claim(df, "dmm.perpendicular", null="other_image", stats=FAST)
    assert "shared-image variance" in one(res, autoencoder="plain", seed="pooled")["note"]
    assert "joint image bootstrap" in one(res, autoencoder="plain", seed="pooled")["test"]


# --- dynamics and adversarial training ----------------------------------------------------------

def test_phase_trends_are_descriptive(synthetic: SimpleNamespace) -> None:
    # Defect 9: the phase boundary is chosen from the same data, so the trends are not tested.
    res = ds.test_claim(synthetic.training(change=5), "dmm.clinging_then_dimpling", stats=FAST)
    trends = res[res["variant"].str.startswith("trend")]
    assert len(trends) and (trends["decision"] == "descriptive").all()
    assert trends["p_adj"].isna().all()


def test_deepens_and_not_turned_is_one_intersection_union_decision(
        synthetic: SimpleNamespace) -> None:
    # Defect 10: the joint claim had no decision of its own.
    res = ds.test_claim(synthetic.adv_training(deepen=1.5), "dmm.adv_training_deepens",
                        stats=FAST)
    for seed in (0, "pooled"):
        joint = one(res, variant="deepens and not turned", seed=seed)
        parts = [one(res, variant=v, seed=seed)["p"] for v in ("no_deepening", "turned")]
        assert joint["p"] == max(parts) and joint["decision"] == "reject H0"
    flat = ds.test_claim(synthetic.adv_training(deepen=1.0), "dmm.adv_training_deepens",
                         stats=FAST)
    assert (flat[flat["variant"] == "deepens and not turned"]["decision"] == "retain H0").all()
