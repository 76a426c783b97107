"""The claim catalogue matches ../shared/CLAIMS.md and each entry is complete."""

from __future__ import annotations

import pytest

from dimple_stats.claims import CATALOGUE, get_claim
from dimple_stats.claims.catalogue import UnknownClaimError

CLAIM_IDS = [
    "dmm.perpendicular", "zp.not_below_random", "dmm.gradient_perpendicular", "dmm.norm_asymmetry",
    "dmm.off_equals_unrestricted", "dmm.off_succeeds_more", "iso.plain_vs_isometric",
    "ae.validity", "iso.defense", "dmm.clinging_then_dimpling", "dmm.adv_training_deepens",
    "ae.local_vs_global",  # issue 14: the data-shaped control as a claim of its own
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
    for cid in ("dmm.perpendicular", "zp.not_below_random", "dmm.norm_asymmetry",
                "dmm.off_equals_unrestricted", "dmm.off_succeeds_more", "ae.validity",
                "ae.local_vs_global"):
        assert set(get_claim(cid).columns) <= MEASUREMENT_COLUMNS, cid


def test_unknown_claim_suggests() -> None:
    with pytest.raises(UnknownClaimError, match="did you mean 'zp.not_below_random'"):
        get_claim("zp.not_belowrandom")
