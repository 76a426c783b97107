"""The claim catalogue holds the claims of the DMM debate and each entry is complete."""

from __future__ import annotations

import pandas as pd
import pytest

from dimple_stats.claims import CATALOGUE, get_claim
from dimple_stats.claims.catalogue import UnknownClaimError

CLAIM_IDS = [
    "dmm.perpendicular", "zp.not_below_random", "dmm.gradient_perpendicular", "dmm.norm_asymmetry",
    "dmm.off_equals_unrestricted", "dmm.off_succeeds_more", "iso.plain_vs_isometric",
    "ae.validity", "iso.defense", "dmm.clinging_then_dimpling", "dmm.adv_training_deepens",
    "ae.local_vs_global",  # the data-shaped control as a claim of its own
    "dmm.dimpled_or_robust",  # a claim over a sweep (issue 18)
]
MEASUREMENT_COLUMNS = {
    "n", "k", "recon_err", "norm_plain", "success_plain", "norm_on", "success_on", "norm_off",
    "success_off", "r_T", "r_R", "r_Tother", "r_T_grad", "iso_cond", "r_PCA", "r_Rdata",
    "r_T_grad_other",
}


def test_catalogue_has_every_claim_of_the_design_in_order() -> None:
    assert list(CATALOGUE) == CLAIM_IDS


@pytest.mark.parametrize("claim_id", CLAIM_IDS)
def test_definition_is_complete(claim_id: str) -> None:
    c = get_claim(claim_id)
    for text in (c.source, c.hypothesis, c.statistic, c.test, c.censoring):
        assert len(text) >= 5
    assert c.nulls and all(len(v) > 20 for v in c.nulls.values())
    assert c.options.model_config["extra"] == "forbid"


def test_perpendicular_nulls_are_the_design_three_and_the_data_shaped_two() -> None:
    assert set(get_claim("dmm.perpendicular").nulls) == {"random_subspace", "other_image", "beta",
                                                          "pca", "data_random"}
    # the data-shaped subspaces are measured for the perturbation, not for the gradient
    assert set(get_claim("dmm.gradient_perpendicular").nulls) == {
        "random_subspace", "other_image", "beta"}
    assert get_claim("dmm.perpendicular").options().null == "random_subspace"


def test_claims_reading_only_measurement_columns_name_real_columns() -> None:
    keys = {"seed", "autoencoder", "sample"}
    for cid in ("dmm.perpendicular", "zp.not_below_random", "dmm.norm_asymmetry",
                "dmm.off_equals_unrestricted", "dmm.off_succeeds_more", "ae.validity",
                "ae.local_vs_global"):
        assert set(get_claim(cid).required_columns()) <= MEASUREMENT_COLUMNS | keys, cid


#: Each claim with the options whose columns differ (every null of the perpendicularity claims).
VARIANTS = [(cid, {}) for cid in CLAIM_IDS if cid not in (
    "dmm.perpendicular", "dmm.gradient_perpendicular")]
VARIANTS += [("dmm.perpendicular", {"null": n}) for n in sorted(
    get_claim("dmm.perpendicular").nulls)]
VARIANTS += [("dmm.gradient_perpendicular", {"null": n}) for n in sorted(
    get_claim("dmm.gradient_perpendicular").nulls)]


@pytest.mark.parametrize("claim_id, options", VARIANTS,
                         ids=[f"{c}-{o.get('null', 'default')}" for c, o in VARIANTS])
def test_required_columns_are_all_the_analysis_reads(claim_id: str, options: dict,
                                                     synthetic) -> None:
    # `dimple-stats claims --json` prints required_columns(); the analysis must need nothing
    # else: on the table cut down to those columns (plus the optional ones) every row is the
    # same as on the full table, and without image_id it still runs.
    import dimple_stats as ds
    from dimple_stats.claims.analysis import OPTIONAL_COLUMNS, get_analysis

    kind = get_analysis(claim_id).table
    table = getattr(synthetic, kind)()
    spec = get_claim(claim_id)
    need = list(spec.required_columns(spec.options.model_validate(options)))
    assert set(need) <= set(table.columns), set(need) - set(table.columns)
    stats = {"bootstrap": 100}
    full = ds.test_claim(table, claim_id, stats=stats, **options)
    cut = table[need + [c for c in OPTIONAL_COLUMNS if c in table.columns and c not in need]]
    pd.testing.assert_frame_equal(ds.test_claim(cut, claim_id, stats=stats, **options), full)
    # Without the optional columns it still runs; only the variant that needs them goes (the
    # first-order null of dmm.norm_asymmetry needs r_T_grad and base_ok).
    bare = ds.test_claim(table[need], claim_id, stats=stats, **options)
    optional_only = full["variant"].str.startswith("beyond_first_order")
    assert len(bare) == int((~optional_only).sum())
    assert set(bare["variant"]) == set(full.loc[~optional_only, "variant"])
    # and every required column is needed: without it the table is refused
    with pytest.raises(Exception, match=need[-1]):
        ds.test_claim(table.drop(columns=need[-1]), claim_id, stats=stats, **options)


def test_claims_json_prints_the_required_columns() -> None:
    import json

    from typer.testing import CliRunner

    from dimple_stats.cli import app

    out = CliRunner().invoke(app, ["claims", "--json"])
    assert out.exit_code == 0, out.output
    for entry in json.loads(out.output):
        assert entry["columns"] == list(get_claim(entry["id"]).required_columns()), entry["id"]
        assert entry["optional_columns"] == ["image_id", "base_ok", "measurable_on", "r_T_grad",
                                             "reach_on", "eps_on"]
    norm = next(e for e in json.loads(out.output) if e["id"] == "dmm.norm_asymmetry")
    assert {"norm_plain", "success_plain"} <= set(norm["columns"])  # the catalogue missed these


def test_unknown_claim_suggests() -> None:
    with pytest.raises(UnknownClaimError, match="did you mean 'zp.not_below_random'"):
        get_claim("zp.not_belowrandom")
