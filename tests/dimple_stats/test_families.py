"""The run's verdicts are its pooled rows, adjusted in a family of their own (issue 31, #1-#2).

Before, per-seed and pooled rows shared one Holm family: quickstart's 91 tested rows made a
pooled Hartung-Knapp row on 3 seeds need t >= 29.3 on t(2), so a claim that every seed
supported at p < 1e-5 was "not supported" in 99% of simulated runs. Now the pooled rows are the
confirmatory family, the per-seed rows a replication family, and with fewer than 5 seeds a
pooled row decides for THESE models (images the unit) and says so.

The simulations are at the level of the per-seed rows a claim analysis returns (an estimate,
its standard error, a one-sided p), as :func:`dimple_stats.results.finalise` receives them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dimple_stats.results import POOLED, ResultRow, finalise
from dimple_stats.stats_config import StatsConfig

#: Tested pooled rows of the committed quickstart report (the verdicts' family there).
QUICKSTART_POOLED = 25


def _rows(estimates: np.ndarray, se: float) -> list[ResultRow]:
    """Per-seed rows of ``estimates`` (groups x seeds), each tested one-sided (greater)."""
    rows = []
    for g, group in enumerate(estimates):
        for seed, est in enumerate(group):
            z = est / se
            rows.append(ResultRow(
                f"c{g}", "v", "a", seed, 300, 0, float(est), est - 1.96 * se, est + 1.96 * se,
                se, "median d (0 under H0)", 0.5, "r", float(z), "z",
                float(stats.norm.sf(z)), "median d <= 0", "test", "greater", null_value=0.0))
    return rows


def test_every_seed_rejecting_at_1e5_with_3_seeds_is_supported_for_these_models() -> None:
    rng = np.random.default_rng(31)
    se = 0.1
    # Each group: a centre of 0.6 and seeds spread by up to +-0.1 (a real between-model
    # spread), so every seed's z is 5 to 7 (p < 1e-5) while t(2) of the random-effects test is
    # about 10: enough for 1 test, not for Holm over 25 (p_adj 0.1 or more).
    est = 0.6 + rng.uniform(-0.1, 0.1, size=(QUICKSTART_POOLED, 3))
    rows = _rows(est, se)
    assert max(r.p for r in rows) < 1e-5
    df = finalise(rows, StatsConfig())
    pooled = df[df["seed"] == POOLED]
    assert len(pooled) == QUICKSTART_POOLED
    assert (pooled["decision"] == "reject H0").all()
    assert (pooled["scope"] == "these 3 models").all()
    assert (pooled["n_seeds_reject"] == 3).all()  # per-seed rows: Holm over 75, all reject
    # the random-effects reading is shown beside it, with why it does not decide
    assert pooled["note"].str.contains("across training runs (random effects", regex=False).all()
    assert pooled["note"].str.contains("3 seeds are too few to generalise").all()
    # CIs at the level the decision used: Bonferroni over 25 one-sided tests, 1 - 2 * 0.05/25
    assert np.allclose(pooled["ci_level"], 1 - 2 * 0.05 / QUICKSTART_POOLED)
    assert (pooled["ci_low"] > 0).all()
    re_p = pooled["note"].str.extract(r"p = ([0-9.e-]+); 3 seeds")[0].astype(float)
    assert (re_p * QUICKSTART_POOLED > 0.05).any()  # the old rule would not have supported it


def test_five_seeds_decide_across_training_runs() -> None:
    rng = np.random.default_rng(5)
    est = 0.6 + rng.uniform(-0.1, 0.1, size=(4, 5))
    df = finalise(_rows(est, 0.1), StatsConfig())
    pooled = df[df["seed"] == POOLED]
    assert (pooled["scope"] == "training runs (5 seeds)").all()
    assert pooled["statistic_name"].eq("t (Hartung-Knapp)").all()
    assert not pooled["note"].str.contains("too few").any()


@pytest.mark.slow
def test_under_the_global_null_the_verdicts_keep_the_familywise_error() -> None:
    """Every claim at its null, 3 seeds of independent images: a run (25 pooled rows, Holm)
    rejects some true null in at most 5% of runs (MC error stated)."""
    rng = np.random.default_rng(2031)
    runs, se = 1000, 0.1
    any_pooled = any_seed = 0
    for _ in range(runs):
        df = finalise(_rows(rng.normal(0.0, se, size=(QUICKSTART_POOLED, 3)), se),
                      StatsConfig(bootstrap=100))
        rejected = df["decision"] == "reject H0"
        any_pooled += bool(rejected[df["seed"] == POOLED].any())
        any_seed += bool(rejected[df["seed"] != POOLED].any())
    mc = math.sqrt(0.05 * 0.95 / runs)  # 0.0069
    rate = any_pooled / runs
    print(f"\nfamily-wise error of the verdicts: {rate:.3f} (MC SE {mc:.3f}); "
          f"of the replication rows: {any_seed / runs:.3f}")
    assert rate <= 0.05 + 2 * mc
    assert any_seed / runs <= 0.05 + 2 * mc



def _mixed_rows(rng: np.random.Generator, groups: int, seeds: int) -> list[ResultRow]:
    """Per-seed rows of ``groups`` claims whose true effects range from null to clear, each
    tested with its own alternative, so that some pooled rows reject and some do not."""
    rows = []
    se = 0.1
    for g in range(groups):
        alternative = ("greater", "less", "two-sided")[g % 3]
        centre = rng.uniform(-0.6, 0.6)
        for seed in range(seeds):
            est = centre + rng.normal(0, se)
            p = {"greater": stats.norm.sf(est / se), "less": stats.norm.cdf(est / se),
                 "two-sided": 2 * stats.norm.sf(abs(est) / se)}[alternative]
            rows.append(ResultRow(
                f"c{g}", "v", "a", seed, 300, 0, float(est), est - 1.96 * se, est + 1.96 * se,
                se, "median d (0 under H0)", 0.5, "r", float(est / se), "z", float(p),
                "d = 0", "test", alternative, null_value=0.0))
    return rows


def _disagreements(pooled) -> list[str]:
    """Pooled rows whose CI excludes the null on H1's side while the decision retains H0."""
    out = []
    for _, r in pooled.iterrows():
        below, above = r["ci_high"] < r["null_value"], r["ci_low"] > r["null_value"]
        excludes = {"less": below, "greater": above, "two-sided": below or above}[
            r["alternative"]]
        if excludes and r["decision"] != "reject H0":
            out.append(f"{r['claim']}: [{r['ci_low']:.3g}, {r['ci_high']:.3g}] "
                       f"at {r['ci_level']:.4g}, p_adj {r['p_adj']:.3g}")
    return out


@pytest.mark.parametrize("seeds", [3, 5])
def test_a_ci_beside_a_verdict_never_excludes_the_null_while_it_retains(seeds: int) -> None:
    # Issue 31, row 2: quickstart had pooled CIs excluding the null beside "not supported"
    # (CIs at 95% while decisions were Holm-adjusted). Bonferroni-level CIs imply the decision.
    from dimple_stats.results import family_level

    rng = np.random.default_rng(seeds)
    df = finalise(_mixed_rows(rng, 30, seeds), StatsConfig())
    pooled = df[df["seed"] == POOLED]
    assert 3 <= (pooled["decision"] == "reject H0").sum() <= 27  # both outcomes occur
    assert _disagreements(pooled) == []
    for _, r in pooled.iterrows():
        assert r["ci_level"] == pytest.approx(family_level(0.05, 30, "holm", r["alternative"]))


def _as_sweep(results: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each results table as one cell of a sweep; the table and its grid-wide adjustment."""
    from dimple_stats.sweep import CELL, SPECIFICATION, adjust_across_grid

    frames = []
    for cell, res in enumerate(results):
        res = res.copy()
        res.insert(0, SPECIFICATION, f"k={cell}")
        res.insert(0, CELL, cell)
        frames.append(res)
    table = pd.concat(frames, ignore_index=True)
    return table, adjust_across_grid(table, StatsConfig(), "grid")


def test_a_sweep_widens_the_pooled_cis_to_its_family() -> None:
    from dimple_stats.results import family_level

    rng = np.random.default_rng(8)
    table, out = _as_sweep([finalise(_mixed_rows(rng, 6, 3), StatsConfig()) for _ in range(4)])
    pooled = out[out["seed"] == POOLED]
    assert _disagreements(pooled) == []
    for (_, r), (_, before) in zip(pooled.iterrows(), table[table["seed"] == POOLED].iterrows()):
        assert r["ci_level"] == pytest.approx(family_level(0.05, 24, "holm", r["alternative"]))
        assert r["ci_high"] - r["ci_low"] > before["ci_high"] - before["ci_low"]
        assert (r["ci_low"] + r["ci_high"]) / 2 == pytest.approx(r["estimate"])


def test_a_sweep_relevels_paired_proportion_cis_and_says_when_the_exact_test_cannot_follow(
) -> None:
    # Found by an independent check of the multiverse_digits record: McNemar rows kept their
    # cell-level Newcombe CI (implied family 13) while p_adj came from the claim's family of 116.
    import dimple_stats as ds

    rng = np.random.default_rng(4)
    frames = []
    for _ in range(12):
        n = 12
        on = rng.uniform(size=(3, n)) < 0.3  # on-manifold attacks mostly fail: few pairs
        rows = pd.DataFrame({
            "seed": np.repeat(np.arange(3), n), "autoencoder": "a",
            "sample": np.tile(np.arange(n), 3), "image_id": np.tile(np.arange(n), 3),
            "success_on": on.ravel(), "success_off": True, "eps_on": 8.0, "eps_off": 8.0})
        frames.append(ds.test_claim(rows, "dmm.off_succeeds_more"))
    table, out = _as_sweep(frames)
    pooled = out[out["seed"] == POOLED]
    before = table[table["seed"] == POOLED]
    assert (pooled["ci_level"] > before["ci_level"].to_numpy()).all()
    assert ((pooled["ci_high"] - pooled["ci_low"]).to_numpy()
            >= (before["ci_high"] - before["ci_low"]).to_numpy() - 1e-12).all()
    assert ((pooled["ci_low"] >= -1) & (pooled["ci_high"] <= 1)).all()
    beside = pooled[(pooled["ci_low"] > 0) & (pooled["decision"] == "retain H0")]
    assert beside["note"].str.contains("CI and test disagree").all()
