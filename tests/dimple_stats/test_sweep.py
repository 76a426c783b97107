"""Sweeps without torch: the `sweep:` section's validation, cells, grid-wide multiplicity and the
robustness counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from dimple_stats.cli import app
from dimple_stats.protocol import ProtocolError, load_protocol_text
from dimple_stats.protocol.sweep import SweepConfig
from dimple_stats.report.robustness import robustness
from dimple_stats.results import ResultRow, finalise
from dimple_stats.stats_config import StatsConfig
from dimple_stats.sweep import (
    CELL,
    SPECIFICATION,
    SweepError,
    adjust_across_grid,
    check_sweep_claims,
    classifier_pairs,
)

BASE = """\
name: s
dataset: {name: digits, eval_samples: 20}
autoencoders:
  plain: {arch: mlp, latent_dim: 4}
  iso: {arch: mlp, latent_dim: 4, regulariser: {kind: isometric}}
claims: [dmm.perpendicular]
"""


def _load(sweep: str, claims: str = ", dmm.off_succeeds_more") -> object:
    text = BASE.replace("claims: [dmm.perpendicular]", f"claims: [dmm.perpendicular{claims}]")
    return load_protocol_text(text + sweep, file="p.yaml")


def test_cells_cross_the_grid_and_zip_varies_together() -> None:
    p = _load("sweep:\n  grid:\n    attack.norm: [l2, linf]\n  zip:\n"
              "    autoencoders.plain.latent_dim: [2, 8]\n    autoencoders.iso.latent_dim: [2, 8]\n")
    cells = p.cell_protocols()
    assert len(cells) == 4
    got = [(c.attack.norm, c.autoencoders["plain"].latent_dim, c.autoencoders["iso"].latent_dim)
           for _, c in cells]
    assert got == [("l2", 2, 2), ("l2", 8, 8), ("linf", 2, 2), ("linf", 8, 8)]
    assert all(c.sweep is None for _, c in cells)
    # a field left at its default can be swept, including inside a null section
    p = _load("sweep:\n  grid:\n    classifier.adversarial: [null, {eps: 0.5}]\n")
    assert [c.classifier.adversarial is None for _, c in p.cell_protocols()] == [True, False]


PAIRS = ("sweep:\n  grid:\n    attack.base: [manifold, image]\n"
         "    attack.on_manifold: [latent, tangent]\n")


def test_exclude_leaves_out_the_pairs_that_do_not_go_together() -> None:
    # attacks at the image need the tangent attack: the grid's (image, latent) cell is refused...
    with pytest.raises(ProtocolError, match="attack.base='image'"):
        _load(PAIRS)
    # ...and runs the other three when excluded, in the grid's order
    p = _load(PAIRS + "  exclude:\n    - {attack.base: image, attack.on_manifold: latent}\n")
    got = [(c.attack.base, c.attack.on_manifold) for _, c in p.cell_protocols()]
    assert got == [("manifold", "latent"), ("manifold", "tangent"), ("image", "tangent")]
    assert p.sweep.n_cells == 3
    # the exclusions are part of what was run: they change the protocol hash
    assert p.hash != _load(PAIRS + "  exclude:\n    - {attack.base: image}\n").hash


def test_cells_are_numbered_alike_from_yaml_and_from_a_manifest() -> None:
    # A run directory keeps its protocol as JSON with sorted keys; a grid written in another
    # order in YAML numbered its cells differently there, so `dimple-stats report` labelled
    # the multiverse_digits record's cells with other cells' choices.
    import json

    from dimple_stats.report.run import protocol_from_json, protocol_json

    p = _load("sweep:\n  grid:\n    classifier.adversarial: [null, {eps: 1.0}]\n"
              "    attack.base: [manifold, image]\n    attack.on_manifold: [latent, tangent]\n"
              "  exclude:\n    - {attack.base: image, attack.on_manifold: latent}\n", "")
    back = protocol_from_json(json.loads(json.dumps(protocol_json(p), sort_keys=True)))
    assert back.sweep.cells() == p.sweep.cells()
    assert back.sweep.paths == p.sweep.paths == sorted(p.sweep.paths)
    assert p.sweep.cells()[0] == {"attack.base": "manifold", "attack.on_manifold": "latent",
                                  "classifier.adversarial": None}


@pytest.mark.parametrize(("exclude", "needle"), [
    ("    - {attack.norm: l2}\n", "attack.norm: not a swept path"),
    ("    - {attack.base: img}\n", "'img' is not among its swept values"),
    ("    - {}\n", "names no path"),
    ("    - {attack.base: manifold}\n    - {attack.base: image}\n", "leaves out every cell"),
])
def test_bad_exclusions_are_refused(exclude: str, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        _load(PAIRS + "  exclude:\n" + exclude)


@pytest.mark.parametrize(("sweep", "needles"), [
    ("sweep:\n  grid:\n    autoencoders.plain.latnt_dim: [2, 4]\n",
     ("p.yaml:9", "latnt_dim", "did you mean 'latent_dim'")),
    ("sweep:\n  grid:\n    autoencoders.plane.latent_dim: [2, 4]\n",
     ("p.yaml:9", "'plane'", "did you mean 'plain'")),
    ("sweep:\n  grid:\n    atack.method: [pgd]\n", ("p.yaml:9", "did you mean 'attack'")),
    ("sweep:\n  grid:\n    attack.norm.x: [1]\n", ("p.yaml:9", "is a value, not a mapping")),
    ("sweep:\n  grid:\n    autoencoders.plain.latent_dim: [0, 4]\n",
     ("p.yaml:9", "latent_dim=0", "greater than or equal to 1")),
    ("sweep:\n  grid:\n    attack.norm: [l2, l3]\n", ("p.yaml:9", "attack.norm='l3'", "l2")),
    ("sweep:\n  zip:\n    attack.norm: [l2, linf]\n    attack.loss: [margin]\n", ("same length",)),
    ("sweep:\n  grid:\n    attack.norm: [l2, l2]\n", ("repeat",)),
    ("sweep:\n  grid: {}\n", ("at least one path",)),
    ("sweep:\n  grid:\n    attack.norm: [l2]\n  famly: claim\n", ("famly", "did you mean")),
    # a path inside another: one cell would set both, the later silently winning
    ("sweep:\n  grid:\n    classifier.adversarial: [null, {eps: 1.0}]\n"
     "    classifier.adversarial.eps: [0.5, 2.0]\n", ("lies inside classifier.adversarial",)),
    # fields whose cells would all be the same run
    ("sweep:\n  grid:\n    stats.alpha: [0.05, 0.01]\n", ("cannot be swept", "statistics")),
    ("sweep:\n  grid:\n    seeds: [[0], [1]]\n", ("cannot be swept", "replications")),
    # the checks across sections run on every cell, not only on the base protocol
    ("sweep:\n  grid:\n    attack.eps.on: [10.0, 12.0]\n",
     ("attack.eps.on=12.0", "must be equal")),
])
def test_bad_sweeps_name_file_line_and_path(sweep: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(ProtocolError) as err:
        _load(sweep)
    text = str(err.value)
    for needle in needles:
        assert needle in text, (needle, text)


def test_bad_sweep_exits_2_from_the_cli(tmp_path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(BASE + "sweep:\n  grid:\n    autoencoders.plain.latnt_dim: [2, 4]\n")
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "did you mean 'latent_dim'" in result.output


def test_pair_claims_need_a_sweep_over_adversarial_training() -> None:
    p = _load("sweep:\n  grid:\n    attack.norm: [l2, linf]\n", claims=", dmm.dimpled_or_robust")
    with pytest.raises(SweepError, match="classifier.adversarial"):
        check_sweep_claims(p)
    p = _load("sweep:\n  grid:\n    classifier.adversarial: [{eps: 1}, {eps: 2}]\n",
              claims=", dmm.dimpled_or_robust")
    with pytest.raises(SweepError, match="must include null"):
        check_sweep_claims(p)
    p = _load("sweep:\n  grid:\n    attack.norm: [l2, linf]\n"
              "    classifier.adversarial: [null, {eps: 1}, {eps: 2}]\n",
              claims=", dmm.dimpled_or_robust")
    check_sweep_claims(p)
    # each setting pairs with the standard cell that agrees on every other choice
    assert classifier_pairs([c for c, _ in p.cell_protocols()]) == [(0, 1), (0, 2), (3, 4),
                                                                      (3, 5)]


def test_a_classifier_pair_claim_needs_cells_that_pair() -> None:
    p = _load("sweep:\n  zip:\n    attack.norm: [l2, linf]\n"
              "    classifier.adversarial: [null, {eps: 1}]\n", claims=", dmm.dimpled_or_robust")
    with pytest.raises(SweepError, match="no two cells differ only"):
        check_sweep_claims(p)


def test_cells_do_not_share_or_change_the_sweeps_values() -> None:
    p = _load("sweep:\n  grid:\n    classifier.adversarial: [null, {eps: 1.0}]\n")
    before = p.sweep.model_dump()
    cells = p.cell_protocols()
    assert p.sweep.model_dump() == before
    assert cells[1][1].classifier.adversarial.eps == 1.0


def test_a_pair_claim_makes_every_cell_measure() -> None:
    p = _load("sweep:\n  grid:\n    classifier.adversarial: [null, {eps: 1.0}]\n",
              claims=", dmm.dimpled_or_robust")
    only_pairs = p.model_copy(update={"claims": tuple(
        e for e in p.claims if e.id == "dmm.dimpled_or_robust")})
    assert "measurements" in only_pairs.tables


def test_seeds_rejecting_are_counted_per_specification_not_per_cell_index() -> None:
    """Two classifier pairs' rows (different specifications) never add up their seeds."""
    table = _table(np.random.default_rng(5), cells=1)
    other = table.copy()
    other[SPECIFICATION] = "k=0, adversarial=none vs eps=2"
    both = pd.concat([table, other], ignore_index=True)
    out = adjust_across_grid(both, StatsConfig(), "claim")
    pooled = out[out["seed"].astype(str) == "pooled"]
    assert (pooled["n_seeds_reject"] <= pooled["n_seeds"]).all()


def test_the_contradiction_test_divides_by_the_sweeps_family() -> None:
    from dimple_stats.sweep import FAMILY, family_size

    # A verdict reads pooled rows: Bonferroni divides by the pooled rows of the family.
    table = _table(np.random.default_rng(3), cells=3)
    pooled = table["seed"].astype(str) == "pooled"
    table[FAMILY] = "claim"
    assert family_size(table, "a.one", 0) == int((pooled & (table["claim"] == "a.one")).sum())
    table[FAMILY] = "grid"
    assert family_size(table, "a.one", 0) == int(pooled.sum()) == 12
    table[FAMILY] = "cell"
    assert family_size(table, "a.one", 0) == int((pooled & (table[CELL] == 0)).sum())


def test_a_sweep_is_part_of_the_protocol_hash() -> None:
    a = _load("sweep:\n  grid:\n    attack.norm: [l2, linf]\n")
    b = _load("sweep:\n  grid:\n    attack.norm: [l2]\n")
    assert a.hash != b.hash


def _table(rng: np.random.Generator, cells: int) -> pd.DataFrame:
    frames = []
    for cell in range(cells):
        rows = [ResultRow(claim, "v", ae, seed, 50, 0, 0.0, -1.0, 1.0, 0.1, "m", 0.1, "r", 1.0,
                          "W+", float(rng.uniform() ** 3), "null", "t", "less")
                for claim in ("a.one", "b.two") for ae in ("plain", "iso") for seed in (0, 1)]
        res = finalise(rows, StatsConfig())
        res.insert(0, "x.k", str(cell))
        res.insert(0, SPECIFICATION, f"k={cell}")
        res.insert(0, CELL, cell)
        frames.append(res)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("family", ["claim", "grid", "cell"])
def test_grid_families_match_statsmodels_holm(family: str) -> None:
    table = _table(np.random.default_rng(3), cells=5)
    out = adjust_across_grid(table, StatsConfig(), family)
    tested = out["decision"].isin(["reject H0", "retain H0"])
    assert tested.sum() == len(out)  # every row here has a p-value
    if family == "cell":
        pd.testing.assert_series_equal(out["p_adj"], table["p_adj"])
        return
    # pooled rows (the verdicts) and per-seed rows (replications) are separate families
    groups = (out["claim"] if family == "claim" else pd.Series("all", index=out.index)) \
        + np.where(out["seed"].astype(str) == "pooled", "/pooled", "/seeds")
    assert groups.nunique() == 2 * (out["claim"].nunique() if family == "claim" else 1)
    for _, g in out.groupby(groups):
        expected = multipletests(g["p"].to_numpy(float), method="holm")[1]
        np.testing.assert_allclose(g["p_adj"].to_numpy(float), expected, rtol=1e-12)
    assert ((out["p_adj"] <= 0.05) == (out["decision"] == "reject H0")).all()
    # pooled rows count the seeds of their own cell that reject in the new family
    pooled = out[out["seed"].astype(str) == "pooled"]
    for _, r in pooled.iterrows():
        seeds = out[(out[CELL] == r[CELL]) & (out["claim"] == r["claim"])
                    & (out["autoencoder"] == r["autoencoder"])
                    & (out["seed"].astype(str) != "pooled")]
        assert r["n_seeds_reject"] == int((seeds["decision"] == "reject H0").sum())


def test_robustness_counts_specifications_and_says_where_a_claim_flips() -> None:
    def cell(index: int, p: float) -> pd.DataFrame:
        est = (0.5 if p < 0.5 else 0.97)
        rows = [ResultRow("dmm.perpendicular", "random_subspace", ae, seed, 400, 0,
                          est + 0.01 * seed, est - 0.1, est + 0.1, 0.05,
                          "median r_T / chance median (1 = chance)", 0.5, "r", 1.0,
                          "W+", p, "null", "t", "less", null_value=1.0)
                for ae in ("plain", "iso") for seed in (0, 1, 2)]
        res = finalise(rows, StatsConfig())
        res.insert(0, "attack.method", "pgd" if index < 2 else "fmn")
        res.insert(0, SPECIFICATION, f"cell {index}")
        res.insert(0, CELL, index)
        return res

    table = pd.concat([cell(0, 1e-6), cell(1, 1e-6), cell(2, 0.9), cell(3, 0.9)],
                      ignore_index=True)
    table = adjust_across_grid(table, StatsConfig(), "claim")
    rob, = robustness(table)
    assert (rob.total, rob.supported) == (8, 4)
    assert rob.by_choice[("method", "pgd")] == (4, 4)
    assert rob.by_choice[("method", "fmn")] == (0, 4)
    line = rob.line()
    assert line.startswith("**dmm.perpendicular**: supported in 4/8 specifications")
    assert "in every specification with method=pgd" in line
    assert "in none with method=fmn" in line
    assert "By null" not in line  # one null: nothing to break down


def test_robustness_counts_the_data_shaped_nulls_too() -> None:
    """A sweep's line says how each null reads across specifications (issue 31 item 7): here
    the PCA null supports the claim in every specification while the isotropic one never does."""
    def cell(index: int) -> pd.DataFrame:
        rows = [ResultRow("dmm.perpendicular", variant, ae, seed, 400, 0,
                          est + 0.01 * seed, est - 0.05, est + 0.05, 0.02,
                          "median r_T - r_X per image", 0.5, "r", 1.0,
                          "W+", p, "null", "t", "less", null_value=0.0)
                for ae in ("plain", "iso") for seed in (0, 1, 2)
                for variant, est, p in (("random_subspace", 0.02 * index, 0.6),
                                        ("pca", -0.3, 1e-8))]
        res = finalise(rows, StatsConfig())
        res.insert(0, "attack.method", "pgd")
        res.insert(0, SPECIFICATION, f"cell {index}")
        res.insert(0, CELL, index)
        return res

    table = adjust_across_grid(pd.concat([cell(i) for i in range(3)], ignore_index=True),
                               StatsConfig(), "claim")
    rob, = robustness(table)
    assert rob.total == 6 and rob.supported == 0
    assert rob.by_null["data-shaped PCA subspace"] == {"supported": 6}
    assert sum(rob.by_null["random subspace"].values()) == 6
    assert rob.by_null["random subspace"].get("supported", 0) == 0
    assert "vs data-shaped PCA subspace: supported in 6/6." in rob.line()
    # ... and the specification curve draws each null's reading (a middle panel)
    from dimple_stats.report.spec_curve import spec_curve, spec_points

    points = spec_points(table, "dmm.perpendicular")
    assert all(p["data-shaped PCA subspace"] == "supported" for p in points["by_null"])
    fig = spec_curve(table, "dmm.perpendicular")
    middle = [ax for ax in fig.axes if ax.get_title(loc="left") == "each null's reading"]
    assert len(middle) == 1
    assert [t.get_text() for t in middle[0].get_yticklabels()] == [
        "vs random subspace", "vs data-shaped PCA subspace"]


def test_sweep_config_refuses_more_cells_than_the_limit() -> None:
    with pytest.raises(ValueError, match="cells"):
        SweepConfig(grid={"a.b": tuple(range(40)), "c.d": tuple(range(40))})


def test_a_non_default_test_keeps_the_pair_claims_deciding_variant(synthetic) -> None:
    """dmm.dimpled_or_robust with the Wilcoxon test: its verdict reads 'unchanged (wilcoxon)',
    not the data-shaped variants beside it."""
    from dimple_stats.api import test_claim
    from dimple_stats.report.verdicts import deciding_rows

    results = test_claim(synthetic.classifier_pairs(turn=0.05), "dmm.dimpled_or_robust",
                         test="wilcoxon", stats={"bootstrap": 100})
    for _, g in results.groupby("autoencoder"):
        assert set(deciding_rows(g)["variant"]) == {"unchanged (wilcoxon)"}
    # a real turn of +0.05 in r_T is found, towards the manifold
    pooled = results[(results["seed"] == "pooled")
                     & (results["variant"] == "unchanged (wilcoxon)")]
    assert (pooled["decision"] == "reject H0").all() and (pooled["estimate"] > 0.03).all()


def test_attack_parity_compares_the_same_images_across_attack_cells() -> None:
    from dimple_stats.report.attack_parity import attack_parity

    rng = np.random.default_rng(0)
    base = pd.DataFrame({"seed": 0, "autoencoder": "plain", "sample": range(40),
                         "norm_plain": rng.uniform(1, 2, 40), "success_plain": True,
                         "r_T": rng.uniform(0, 1, 40)})
    cells = [{"attack.method": "pgd", "k": 2}, {"attack.method": "fmn", "k": 2},
             {"attack.method": "pgd", "k": 4}, {"attack.method": "fmn", "k": 4}]
    frames = []
    for index, cell in enumerate(cells):
        frame = base.assign(cell=index)
        if cell["attack.method"] == "fmn":  # 10% nearer on every image; one failure
            frame = frame.assign(norm_plain=frame["norm_plain"] * 0.9,
                                 r_T=frame["r_T"] + 0.01)
            frame.loc[0, "success_plain"] = False
        frames.append(frame)
    table = attack_parity(pd.concat(frames, ignore_index=True), cells)
    assert list(table["setting"]) == ["k=2", "k=4"]
    assert table["images"].tolist() == [39, 39]
    np.testing.assert_allclose(table["median_ratio"], 0.9)
    assert table["smaller_5pct"].tolist() == [1.0, 1.0]
    assert table["censored_method"].tolist() == [1 / 40, 1 / 40]
    np.testing.assert_allclose(table["median_abs_dr_T"], 0.01)
