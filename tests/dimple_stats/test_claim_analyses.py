"""Every claim's analysis on synthetic tables whose truth is planted (see conftest.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats as scipy_stats

import dimple_stats as ds
from dimple_stats.claims import CATALOGUE
from dimple_stats.claims.analysis import AnalysisError, get_analysis
from dimple_stats.claims.catalogue import UnknownClaimError
from dimple_stats.measurements import MeasurementsError
from dimple_stats.stats import tost

FAST = {"bootstrap": 200}


def rows(res: pd.DataFrame, **where: object) -> pd.DataFrame:
    mask = np.ones(len(res), dtype=bool)
    for col, val in where.items():
        mask &= (res[col] == val).to_numpy()
    return res[mask]


def one(res: pd.DataFrame, **where: object) -> pd.Series:
    hit = rows(res, **where)
    assert len(hit) == 1, (where, hit)
    return hit.iloc[0]


def test_every_catalogue_claim_has_an_analysis() -> None:
    for cid in CATALOGUE:
        fn = get_analysis(cid).function
        assert fn.__doc__ and "ensor" in fn.__doc__, cid  # says how censoring biases it
        assert get_analysis(cid).table == CATALOGUE[cid].table


def test_unknown_claim_and_bad_options_are_clear(measurements: pd.DataFrame) -> None:
    with pytest.raises(UnknownClaimError, match="did you mean 'dmm.perpendicular'"):
        get_analysis("dmm.perpendiclar")
    with pytest.raises(UnknownClaimError, match="did you mean"):
        ds.test_claim(measurements, "zp.not_below_randm")
    with pytest.raises(ValidationError, match="null"):
        ds.test_claim(measurements, "dmm.perpendicular", null="gaussian")


# --- dmm.perpendicular ---------------------------------------------------------------------------

def test_perpendicular_rows_and_decisions(measurements: pd.DataFrame) -> None:
    res = ds.test_claim(measurements, "dmm.perpendicular", stats=FAST)
    assert len(res) == 2 * (3 + 1)
    assert rows(res, seed="pooled")["autoencoder"].tolist() == ["isometric", "plain"]
    plain = rows(res, autoencoder="plain")
    assert (plain["decision"] == "reject H0").all()
    # planted r_T = 0.6 x chance: the estimate is the median paired r_T - r_R, about -0.4 x the
    # measured random subspace's median share
    chance = measurements.loc[measurements["autoencoder"] == "plain", "r_R"].median()
    assert (plain["estimate"] / chance).between(-0.5, -0.3).all()
    # the sign test's effect (pos - neg) / n: about 9 in 10 images below their control
    assert (plain["effect_size"] < -0.7).all() and plain["alternative"].eq("less").all()
    iso = rows(res, autoencoder="isometric")
    assert (iso["decision"] == "retain H0").all()
    pooled = one(res, autoencoder="plain", seed="pooled")
    assert (pooled["n"], pooled["n_seeds"], pooled["n_seeds_reject"]) == (180, 3, 3)
    assert pooled["ci_low"] < pooled["estimate"] < pooled["ci_high"] < 0.0
    # one-sided tests in a confirmatory family of 2 pooled rows: Bonferroni 0.025 each, so the
    # two-sided CI beside the decision is at 1 - 2 x 0.025
    assert pooled["scope"] == "these 3 models" and pooled["ci_level"] == pytest.approx(0.95)
    assert rows(res, seed=0)["ci_level"].eq(0.95).all()
    assert pooled["null"] == CATALOGUE["dmm.perpendicular"].nulls["random_subspace"]
    assert "r_T - r_R" in pooled["test"]


@pytest.mark.parametrize("null", ["random_subspace", "other_image", "beta"])
def test_perpendicular_each_null_rejects_only_the_planted_autoencoder(
        measurements: pd.DataFrame, null: str) -> None:
    res = ds.test_claim(measurements, "dmm.perpendicular", null=null, stats=FAST)
    assert set(res["variant"]) == {null}
    assert one(res, autoencoder="plain", seed="pooled")["decision"] == "reject H0"
    assert one(res, autoencoder="isometric", seed="pooled")["decision"] == "retain H0"


def test_perpendicular_needs_only_the_columns_of_its_null(measurements: pd.DataFrame) -> None:
    slim = measurements.drop(columns=["r_Tother", "norm_on", "recon_err"])
    assert len(ds.test_claim(slim, "dmm.perpendicular", null="beta", stats=FAST)) == 8
    with pytest.raises(MeasurementsError, match="missing column 'r_Tother'"):
        ds.test_claim(slim, "dmm.perpendicular", null="other_image")


def test_a_non_default_test_is_part_of_the_variant(measurements: pd.DataFrame) -> None:
    res = ds.test_claim(measurements, "dmm.perpendicular", test="wilcoxon", stats=FAST)
    row = one(res, autoencoder="plain", seed=0)
    assert row["variant"] == "random_subspace (wilcoxon)"
    assert row["effect_name"] == "rank-biserial r"
    default = one(ds.test_claim(measurements, "dmm.perpendicular", stats=FAST),
                  autoencoder="plain", seed=0)
    # the default is the sign test of the median the null names (issue 31, item 4)
    assert default["variant"] == "random_subspace" and default["statistic_name"] == "n positive"
    assert default["effect_name"].startswith("sign effect")


# --- censoring: counted, never dropped -------------------------------------------------------------

def _ratio_table(medians: list[float], failed_on: list[float], samples: int = 40) -> pd.DataFrame:
    """Seeds whose per-image on/off ratios scatter around ``medians`` (x 1.2 either way), the
    largest ``failed_on`` share of each seed's on-manifold norms censored at eps."""
    frames = []
    for seed, (med, fail) in enumerate(zip(medians, failed_on)):
        ratio = med * np.exp(np.linspace(-0.2, 0.2, samples))
        off = np.ones(samples)
        on = ratio * off
        cut = np.quantile(on, 1 - fail) if fail else np.inf
        frames.append(pd.DataFrame({
            "seed": seed, "autoencoder": "a", "sample": np.arange(samples),
            "image_id": np.arange(samples) + 1000 * seed, "n": 784, "k": 16,
            "norm_plain": 0.8 * off, "success_plain": True, "norm_off": off,
            "success_off": True, "norm_on": np.minimum(on, cut), "success_on": on < cut}))
    return pd.concat(frames, ignore_index=True)


def test_ratio_rows_pool_on_the_log_scale_and_never_show_a_bound_as_a_median() -> None:
    # Issue 31, item 7: ratios pooled on the linear scale gave CIs below 0 (quickstart on/plain
    # 2.83 [-0.842, 6.49]; multiverse on/off 0 [-0.208, 0.208] with 68 of 113 pairs censored).
    table = _ratio_table([0.5, 1.0, 2.0, 4.0, 8.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.6])
    res = ds.test_claim(table, "dmm.norm_asymmetry", stats=FAST)
    censored = one(res, variant="ratio on/off", seed=5)
    assert math.isnan(censored["estimate"]) and math.isnan(censored["ci_low"])
    assert "not identified" in censored["note"] and "at least" in censored["note"]
    pooled = one(res, variant="ratio on/off", seed="pooled")
    # the five identified seeds (n 40 each, equal weights): the geometric mean of 1/2 ... 8
    assert pooled["estimate"] == pytest.approx(2.0, rel=1e-4)  # even n: mid-pair means
    assert 0 < pooled["ci_low"] < pooled["estimate"] < pooled["ci_high"]
    assert "log scale" in pooled["note"]


def test_censored_rows_are_counted_not_dropped(measurements: pd.DataFrame) -> None:
    df = measurements.copy()
    target = (df["seed"] == 0) & (df["autoencoder"] == "plain")
    failed_plain = target & (df["sample"] < 7)
    failed_on = target & df["sample"].between(5, 14)  # overlaps samples 5, 6
    df.loc[failed_plain, ["success_plain", "norm_plain"]] = [False, 100.0]
    df.loc[failed_on, ["success_on", "norm_on"]] = [False, 100.0]
    df.loc[failed_on, "eps_on"] = 100.0

    perp = one(ds.test_claim(df, "dmm.perpendicular", stats=FAST), autoencoder="plain", seed=0)
    assert (perp["n"], perp["n_censored"]) == (60, 7)
    asym = ds.test_claim(df, "dmm.norm_asymmetry", stats=FAST)
    main = one(asym, autoencoder="plain", seed=0, variant="beyond_dimension_counting")
    assert (main["n"], main["n_censored"]) == (60, 10)
    assert one(asym, autoencoder="plain", seed="pooled",
               variant="beyond_dimension_counting")["n_censored"] == 10
    # The censored norms are used (at eps): the estimate moves when they are.
    before = one(ds.test_claim(measurements, "dmm.norm_asymmetry", stats=FAST),
                 autoencoder="plain", seed=0, variant="naive")["estimate"]
    assert one(asym, autoencoder="plain", seed=0, variant="naive")["estimate"] > before
    off = one(ds.test_claim(df, "dmm.off_equals_unrestricted", stats=FAST), autoencoder="plain",
              seed=0)
    assert (off["n"], off["n_censored"]) == (60, 7)
    grad = one(ds.test_claim(df, "dmm.gradient_perpendicular", stats=FAST), autoencoder="plain",
               seed=0)
    assert (grad["n"], grad["n_censored"]) == (60, 0)  # no attack involved


def test_nonfinite_values_are_left_out_and_noted(measurements: pd.DataFrame) -> None:
    df = measurements.copy()
    df.loc[(df["seed"] == 1) & (df["autoencoder"] == "plain") & (df["sample"] < 3), "r_R"] = np.nan
    row = one(ds.test_claim(df, "dmm.perpendicular", stats=FAST), autoencoder="plain", seed=1)
    assert row["n"] == 57 and "3 non-finite value(s) left out" in row["note"]


# --- zp.not_below_random -------------------------------------------------------------------------

def test_not_below_random_two_variants(measurements: pd.DataFrame) -> None:
    res = ds.test_claim(measurements, "zp.not_below_random", margin=0.05, stats=FAST)
    assert set(res["variant"]) == {"greater", "non_inferiority"}
    iso = one(res, autoencoder="isometric", seed="pooled", variant="non_inferiority")
    assert iso["decision"] == "reject H0" and iso["alternative"] == "greater"
    assert "sign test" in iso["test"] and "- (-0.05)" in iso["test"]
    assert "<= -0.05" in iso["null"]
    # plain's r_T is far below r_R: neither "greater" nor "not below" holds
    assert (rows(res, autoencoder="plain")["decision"] == "retain H0").all()


def test_not_below_random_supports_a_share_far_above_random(measurements: pd.DataFrame) -> None:
    # Defect 4: the committed data had r_T - r_R at +0.36, where a TOST (equivalence) never
    # rejects (0/500) and so read "retain H0" for a strongly supported claim.
    df = measurements.assign(r_T=measurements["r_Tother"] + 0.36)
    res = ds.test_claim(df, "zp.not_below_random", margin=0.05, stats=FAST)
    rows_ni = rows(res, variant="non_inferiority")
    assert (rows_ni["decision"] == "reject H0").all()
    assert (tost(df["r_T"] - df["r_R"], 0.05).pvalue > 0.05)  # what the old row tested


# --- norm claims -----------------------------------------------------------------------------------

def test_norm_asymmetry_tests_the_excess_over_dimension_counting(
        synthetic: SimpleNamespace) -> None:
    df = synthetic.measurements()
    df.loc[df["autoencoder"] == "plain", "norm_on"] *= 1.5  # planted excess log(1.5)
    res = ds.test_claim(df, "dmm.norm_asymmetry", stats=FAST)
    excess = one(res, autoencoder="plain", seed="pooled", variant="beyond_dimension_counting")
    assert excess["decision"] == "reject H0"
    assert excess["estimate"] == pytest.approx(math.log(1.5), abs=0.06)
    assert one(res, autoencoder="isometric", seed="pooled",
               variant="beyond_dimension_counting")["decision"] == "retain H0"
    naive = one(res, autoencoder="isometric", seed=0, variant="naive")
    assert naive["decision"] == "descriptive" and math.isnan(naive["p"])
    assert naive["estimate"] == pytest.approx(0.5 * math.log(56 / 8), abs=0.08)
    # Dimension counting's chance median of log(on/off) for n = 64, k = 8: 1/2 log((1-m)/m),
    # m the median of Beta(4, 28) (1.01; the mean-based 1/2 log(56/8) = 0.973 is not a median).
    m = float(scipy_stats.beta.median(4, 28))
    assert f"dimension counting predicts {0.5 * math.log((1 - m) / m):.4g} (chance median)" \
        in naive["note"]
    # The reproduction's statistics against the fixture's generating values (off = plain x
    # noise, on = off x sqrt((n-k)/k) x noise), and the chance-median predictions in the notes.
    for variant, truth, predicted in (("ratio on/plain", math.sqrt(7), 1 / math.sqrt(m)),
                                      ("ratio off/plain", 1.0, 1 / math.sqrt(1 - m)),
                                      ("ratio on/off", math.sqrt(7), math.sqrt((1 - m) / m))):
        row = one(res, autoencoder="isometric", seed="pooled", variant=variant)
        assert row["estimate"] == pytest.approx(truth, rel=0.05), variant
        assert row["ci_low"] < row["estimate"] < row["ci_high"]
        for seed in (0, "pooled"):  # the pooled row keeps a note every seed shares
            assert f"dimension counting predicts {predicted:.4g} (chance median)" in \
                one(res, autoencoder="isometric", seed=seed, variant=variant)["note"]


def test_off_equals_unrestricted_tost(synthetic: SimpleNamespace) -> None:
    df = synthetic.measurements()
    res = ds.test_claim(df, "dmm.off_equals_unrestricted", stats=FAST)
    assert (res["decision"] == "reject H0").all()  # norm_off = norm_plain x exp(N(0, 0.05))
    df.loc[df["autoencoder"] == "plain", "norm_off"] *= 1.3
    res = ds.test_claim(df, "dmm.off_equals_unrestricted", stats=FAST)
    assert (rows(res, autoencoder="plain")["decision"] == "retain H0").all()


def test_off_succeeds_more_mcnemar(synthetic: SimpleNamespace) -> None:
    res = ds.test_claim(synthetic.measurements(censor_on=0.3), "dmm.off_succeeds_more", stats=FAST)
    row = one(res, autoencoder="plain", seed=0)
    assert row["estimate"] == pytest.approx(0.3) and row["n_censored"] == 18
    assert row["statistic"] == 18 and row["decision"] == "reject H0"
    assert row["p"] == pytest.approx(0.5**18)  # 18 discordant pairs, all one way
    same = ds.test_claim(synthetic.measurements(), "dmm.off_succeeds_more", stats=FAST)
    assert (same["p"] == 1.0).all() and (same["decision"] == "retain H0").all()
    # Every attack succeeded: no discordant pair, yet every row (pooled too) has a real CI
    # around 0, +-z^2 / (n + z^2) per seed (Newcombe), not the Wald interval's [0, 0] or NaN.
    assert (same["estimate"] == 0).all()
    assert (same["ci_low"] < 0).all() and (same["ci_high"] > 0).all()
    seed0 = one(same, autoencoder="plain", seed=0)
    z2 = 1.959963984540054**2
    assert seed0["ci_high"] == pytest.approx(z2 / (seed0["n"] + z2))
    pooled = one(same, autoencoder="plain", seed="pooled")
    assert 0 < pooled["ci_high"] < seed0["ci_high"]
    # Success rates at different budgets measure the budgets: refused, naming the rows.
    unequal = synthetic.measurements(censor_on=0.3).assign(eps_off=1e6)
    with pytest.raises(AnalysisError, match="eps_on != eps_off"):
        ds.test_claim(unequal, "dmm.off_succeeds_more", stats=FAST)


# --- iso.plain_vs_isometric ------------------------------------------------------------------------

def test_plain_vs_isometric_pairs_the_same_samples(measurements: pd.DataFrame) -> None:
    shuffled = measurements.sample(frac=1.0, random_state=3)
    res = ds.test_claim(shuffled, "iso.plain_vs_isometric", stats=FAST)
    direct = ds.test_claim(measurements, "iso.plain_vs_isometric", stats=FAST)
    pd.testing.assert_frame_equal(res, direct)
    row = one(res, seed="pooled")
    assert row["autoencoder"] == "plain - isometric" and row["alternative"] == "two-sided"
    assert row["decision"] == "reject H0" and row["estimate"] < 0
    # by hand for seed 0: the median of the paired differences
    a = measurements[(measurements.seed == 0) & (measurements.autoencoder == "plain")]
    b = measurements[(measurements.seed == 0) & (measurements.autoencoder == "isometric")]
    d = a.set_index("sample")["r_T"] - b.set_index("sample")["r_T"]
    assert one(res, seed=0)["estimate"] == pytest.approx(float(d.median()))


def test_plain_vs_isometric_names_and_errors(measurements: pd.DataFrame) -> None:
    renamed = measurements.replace({"autoencoder": {"plain": "ae_plain", "isometric": "ae_iso"}})
    with pytest.raises(AnalysisError, match="none called 'plain'.*ae_iso, ae_plain"):
        ds.test_claim(renamed, "iso.plain_vs_isometric")
    with pytest.raises(AnalysisError, match="did you mean 'ae_iso'"):
        ds.test_claim(renamed, "iso.plain_vs_isometric", plain="ae_plain", isometric="ae_isso")
    res = ds.test_claim(renamed, "iso.plain_vs_isometric", plain="ae_plain", isometric="ae_iso",
                        stats=FAST)
    assert set(res["autoencoder"]) == {"ae_plain - ae_iso"}
    partial = measurements[~((measurements.autoencoder == "isometric") & (measurements["sample"] < 4))]
    row = one(ds.test_claim(partial, "iso.plain_vs_isometric", stats=FAST), seed=1)
    assert row["n"] == 56 and "4 unpaired sample(s) left out" in row["note"]


# --- ae.validity -----------------------------------------------------------------------------------

def test_validity_tests_the_claim_by_equivalence_and_reports_terciles(
        synthetic: SimpleNamespace) -> None:
    df = synthetic.measurements()
    rel = df["recon_err"] / df["norm_plain"]
    df.loc[df["autoencoder"] == "plain", "r_T"] = (0.2 + rel + np.random.default_rng(0).normal(
        0, 0.02, len(df)))[df["autoencoder"] == "plain"]
    res = ds.test_claim(df, "ae.validity", margin=0.5, stats=FAST)
    main = rows(res, variant="equivalence")
    # Defect 8: the claim ("conclusions do not hinge on reconstruction error") is what is tested:
    # no association is SHOWN (reject H0 of |rho| >= margin), strong association is not.
    assert one(main, autoencoder="isometric", seed="pooled")["decision"] == "reject H0"
    plain = one(main, autoencoder="plain", seed="pooled")
    assert plain["decision"] == "retain H0" and plain["estimate"] > 0.9
    assert plain["alternative"] == "equivalence" and "+-0.5" in plain["test"]
    assert -1 <= plain["ci_low"] <= plain["estimate"] <= plain["ci_high"] <= 1
    terciles = rows(res, autoencoder="plain", seed=0)
    terciles = terciles[terciles["variant"].str.startswith("recon_err tercile")]
    assert terciles["n"].tolist() == [20, 20, 20]
    assert (terciles["decision"] == "descriptive").all()


# --- iso.defense -----------------------------------------------------------------------------------

def test_defense_mcnemar_per_eps_and_baseline(synthetic: SimpleNamespace) -> None:
    table = synthetic.defense()
    res = ds.test_claim(table, "iso.defense", stats=FAST)
    levels = {"robust accuracy @ eps=0.5", "robust accuracy @ eps=1"}
    variants = set(rows(res, autoencoder="isometric")["variant"])
    assert variants == {"vs none @ eps=0.5", "vs none @ eps=1", "vs plain @ eps=0.5",
                        "vs plain @ eps=1", "clean cost vs none", "clean cost vs plain"} | levels
    assert set(rows(res, autoencoder="plain")["variant"]) == {
        "vs none @ eps=0.5", "vs none @ eps=1", "clean cost vs none"} | levels
    assert set(rows(res, autoencoder="none")["variant"]) == levels  # the baseline's own level
    # The levels are the shares in the table, with Wilson intervals.
    cell = table[(table["seed"] == 0) & (table["defense"] == "none") & (table["eps"] == 1.0)]
    level = one(res, autoencoder="none", variant="robust accuracy @ eps=1", seed=0)
    hits, n = int(cell["robust_correct"].sum()), len(cell)
    assert (level["estimate"], level["n"], level["n_censored"]) == (hits / n, n, hits)
    z = 1.959963984540054
    centre = (hits + z * z / 2) / (n + z * z)
    half = z * math.sqrt(hits * (n - hits) / n + z * z / 4) / (n + z * z)
    assert (level["ci_low"], level["ci_high"]) == pytest.approx((centre - half, centre + half))
    assert level["decision"] == "descriptive"
    iso = one(res, autoencoder="isometric", variant="vs none @ eps=0.5", seed="pooled")
    assert iso["decision"] == "reject H0" and iso["estimate"] > 0.2
    cost = one(res, autoencoder="isometric", variant="clean cost vs none", seed=0)
    assert cost["decision"] == "descriptive" and cost["estimate"] == 0.0
    only = ds.test_claim(synthetic.defense(), "iso.defense", eps=[1.0], stats=FAST)
    assert not only["variant"].str.contains("0.5").any()
    with pytest.raises(AnalysisError, match=r"eps \[2.0\] not in the defense table"):
        ds.test_claim(synthetic.defense(), "iso.defense", eps=[2.0])
    with pytest.raises(AnalysisError, match="baseline"):
        ds.test_claim(synthetic.defense(robust={"isometric": 0.5, "irvae": 0.4}), "iso.defense")


# --- dmm.clinging_then_dimpling ---------------------------------------------------------------------

def test_clinging_finds_the_planted_change_point(synthetic: SimpleNamespace) -> None:
    res = ds.test_claim(synthetic.training(change=5), "dmm.clinging_then_dimpling", stats=FAST)
    cp = one(res, variant="change point", seed=0)
    assert cp["estimate"] == 5 and cp["ci_low"] <= 5 <= cp["ci_high"]
    assert cp["decision"] == "reject H0" and cp["statistic_name"] == "F(2, 10)"
    assert cp["effect_size"] < 0.2  # late slope much flatter than the early one
    assert one(res, variant="trend early", seed=0)["estimate"] == -1.0
    below = one(res, variant="r_T below chance throughout", seed="pooled")
    assert below["decision"] == "reject H0"
    assert "censored per epoch: 0:0" in cp["note"]


def test_clinging_straight_line_has_no_change_point(synthetic: SimpleNamespace) -> None:
    # change beyond the last epoch: one straight line from 4 down to 1.8
    res = ds.test_claim(synthetic.training(change=40, epochs=12, early=0.2, seeds=(0, 1, 2)),
                        "dmm.clinging_then_dimpling", stats=FAST)
    assert (rows(res, variant="change point")["decision"] == "retain H0").all()


# --- dmm.adv_training_deepens ----------------------------------------------------------------------

def test_adv_training_deepens(synthetic: SimpleNamespace) -> None:
    res = ds.test_claim(synthetic.adv_training(deepen=1.5), "dmm.adv_training_deepens", stats=FAST)
    assert (res["decision"] == "reject H0").all()
    assert one(res, variant="no_deepening", seed=0)["estimate"] > 0.3
    flat = ds.test_claim(synthetic.adv_training(deepen=1.0), "dmm.adv_training_deepens", stats=FAST)
    assert (rows(flat, variant="no_deepening")["decision"] == "retain H0").all()
    bad = synthetic.adv_training().replace({"classifier": {"adversarial": "robust"}})
    with pytest.raises(AnalysisError, match="robust"):
        ds.test_claim(bad, "dmm.adv_training_deepens")


# --- a whole protocol ------------------------------------------------------------------------------

PROTOCOL = """
name: t
dataset: {name: digits}
autoencoders: {plain: {arch: mlp, latent_dim: 8}, isometric: {arch: mlp, latent_dim: 8}}
claims:
  - dmm.perpendicular: {null: random_subspace}
  - dmm.perpendicular: {null: beta}
  - dmm.norm_asymmetry
  - iso.defense
stats: {alpha: 0.05, correction: holm, bootstrap: 200}
"""


def test_analyse_a_protocol_adjusts_across_all_claims(measurements: pd.DataFrame,
                                                     synthetic: SimpleNamespace) -> None:
    from statsmodels.stats.multitest import multipletests

    protocol = ds.load_protocol_text(PROTOCOL)
    res = ds.analyse(measurements, protocol, tables={"defense": synthetic.defense()})
    assert list(dict.fromkeys(res["claim"])) == ["dmm.perpendicular", "dmm.norm_asymmetry",
                                                 "iso.defense"]
    # each entry analysed once (a repeated entry is refused by the protocol: test_protocol.py)
    assert len(rows(res, claim="dmm.perpendicular", variant="random_subspace")) == 8
    # One Holm family over every claim's pooled rows (the verdicts), one over every claim's
    # per-seed rows (replications): claims are adjusted together, seeds apart from verdicts.
    tested = res[res["p"].notna() & (res["decision"] != "uninformative")]
    pooled = tested["seed"] == "pooled"
    assert tested.loc[pooled, "claim"].nunique() == 3
    for family in (tested[pooled], tested[~pooled]):
        assert family["p_adj"].to_numpy() == pytest.approx(
            multipletests(family["p"], method="holm")[1], rel=1e-12)
    with pytest.raises(MeasurementsError, match=r"defense table \(defense.parquet\)"):
        ds.analyse(measurements, protocol)


def test_off_succeeds_more_says_how_many_on_failures_had_room_inside_the_box() -> None:
    # Issue 31, item 7: "supported" by on-manifold attacks the pixel box stops is not a finding
    # about the boundary. Each failed strict on-manifold attack's certified reach of
    # (x + T) ∩ box says which had room to reach eps; the pool sums the seeds' counts.
    frames = []
    for seed, (room, boxed) in enumerate([(3, 5), (1, 7)]):
        n = 20
        success_on = np.r_[np.zeros(room + boxed, bool), np.ones(n - room - boxed, bool)]
        reach = np.r_[np.full(room, 12.0), np.full(boxed, 2.5), np.full(n - room - boxed, 9.0)]
        frames.append(pd.DataFrame({
            "seed": seed, "autoencoder": "a", "sample": np.arange(n), "success_on": success_on,
            "success_off": True, "reach_on": reach, "eps_on": 10.0, "eps_off": 10.0,
            "measurable_on": True}))
    res = ds.test_claim(pd.concat(frames, ignore_index=True), "dmm.off_succeeds_more",
                        stats=FAST)
    assert "of 8 failed on-manifold attacks, 3 had a feasible set certified to reach eps" in \
        one(res, seed=0)["note"]
    pooled = one(res, seed="pooled")["note"]
    assert "of 16 failed on-manifold attacks, 4 had a feasible set certified" in pooled
    assert "and 12 did not (the box may be what stopped them)" in pooled
    # ... and the verdict says it in words
    from dimple_stats.report.verdicts import verdicts
    text = verdicts(res)[0].text
    assert "of the 16 failed on-manifold attacks 12 had no feasible set certified to reach eps" \
        in text and "the box, not the boundary, may be what stopped them" in text


def test_a_claim_listed_twice_with_different_options_counts_each_row_once(
        synthetic: SimpleNamespace) -> None:
    """Issue 32 row 24 (a re-probe's variant): ``iso.defense`` at eps [0.5] and again at [1]
    gave its per-seed clean-cost rows twice, and the pooled row counted one seed twice (n 24,
    "2 seed(s)" from one seed, a narrower interval). Each row now enters once; the budgets'
    own rows are all there."""
    protocol = ds.load_protocol_text(PROTOCOL.replace(
        "  - iso.defense\n", "  - iso.defense: {eps: [0.5]}\n  - iso.defense: {eps: [1.0]}\n"))
    only = protocol.model_copy(update={"claims": tuple(
        c for c in protocol.claims if c.id == "iso.defense")})
    res = ds.analyse(None, only, tables={"defense": synthetic.defense()})
    keys = res[["claim", "variant", "autoencoder", "seed"]].astype(str)
    assert not keys.duplicated().any()
    alone = ds.test_claim(synthetic.defense(), "iso.defense", stats=FAST)
    cost = one(res, autoencoder="isometric", variant="clean cost vs none", seed="pooled")
    assert cost["n_seeds"] == one(alone, autoencoder="isometric", variant="clean cost vs none",
                                  seed="pooled")["n_seeds"]
    assert {"vs none @ eps=0.5", "vs none @ eps=1"} <= set(res["variant"])
