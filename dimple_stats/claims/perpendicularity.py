"""Is the adversarial perturbation (or the gradient) perpendicular to the manifold?

Claims ``dmm.perpendicular``, ``dmm.gradient_perpendicular``, ``zp.not_below_random`` and
``ae.local_vs_global``: location tests on the share ``r`` of a direction in a k-dim subspace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from dimple_stats.claims.catalogue import (
    LocalVsGlobalOptions,
    NotBelowRandomOptions,
    PerpendicularOptions,
)
from dimple_stats.claims.rows import (
    AnalysisError,
    Rows,
    censored_mask,
    column_values,
    groups_of,
    image_ids,
    location_row,
    needs,
    null_text,
    variant_name,
)
from dimple_stats.stats.chance import chance_cdf_r2, chance_median_r2
from dimple_stats.stats_config import StatsConfig

_NULL_COLUMN: dict[str, str | None] = {
    "random_subspace": "r_R", "other_image": "r_Tother", "beta": None,
    "pca": "r_PCA", "data_random": "r_Rdata"}


# The other image's tangent as a control of the GRADIENT's share: like is compared with like
# (r_Tother is the attack perturbation's share there, a different vector's measurement).
# The data-shaped subspaces are measured for the attack perturbation only.
_GRADIENT_NULL_COLUMN = {**_NULL_COLUMN, "other_image": "r_T_grad_other", "pca": None,
                         "data_random": None}


#: Nulls whose control is a chance law: the estimate is r / its chance median (null value 1).
#: The others are paired comparisons with a measured control (estimate: median difference), so
#: the pooled row of ``random_subspace`` tests the measured r_R, not the Beta law again.
_CHANCE_NULLS = ("beta",)


def _null_column(column: str, null: str) -> str | None:
    return (_GRADIENT_NULL_COLUMN if column == "r_T_grad" else _NULL_COLUMN)[null]


def _perpendicular_columns(column: str,
                           censor: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    def needs(opts: PerpendicularOptions) -> tuple[str, ...]:
        other = _null_column(column, opts.null)
        return ("seed", "autoencoder", "sample", column, "n", "k", *censor,
                *((other,) if other else ()))
    return needs


def _perpendicular(df: pd.DataFrame, opts: PerpendicularOptions, stats: StatsConfig, *,
                   claim: str, column: str, censor: tuple[str, ...]) -> Rows:
    if column == "r_T_grad" and opts.null in ("pca", "data_random"):
        raise AnalysisError(f"{claim}: null {opts.null!r} is measured for the attack "
                            "perturbation only (r_PCA, r_Rdata); use dmm.perpendicular, or "
                            "null random_subspace | other_image | beta for the gradient")
    rows: Rows = []
    for (ae, seed), g in groups_of(df, ["autoencoder", "seed"]):
        r, n, k = column_values(g, column), column_values(g, "n"), column_values(g, "k")
        other = _null_column(column, opts.null)
        if opts.null == "beta":
            # r^2 - k/d is NOT symmetric about 0 at chance (Beta(k/2, (d-k)/2) is right-skewed:
            # its median is below its mean k/d), so a signed-rank test of it rejects "less" far
            # above alpha under the null. Its probability integral transform is uniform at
            # chance, hence symmetric about 1/2: that is what is tested.
            d = chance_cdf_r2(r**2, n, k) - 0.5
            text = f"F_Beta(k/2,(d-k)/2)({column}^2) - 1/2 (chance: r^2 ~ Beta, mean k/d)"
        else:
            d = r - column_values(g, str(other))
            text = f"{column} - {other}"
        if opts.null in _CHANCE_NULLS:
            estimate, null_value = r / np.sqrt(chance_median_r2(n, k)), 1.0
            meaning = (f"median {column} / chance median, bootstrap CI (1 = the median share of "
                       "a random direction, sqrt(median Beta(k/2, (d-k)/2)); < 1 more "
                       "perpendicular)")
        else:
            estimate, null_value = d, 0.0
            meaning = (f"median {column} - {other} per image, bootstrap CI (0 = as the "
                       f"{opts.null.replace('_', ' ')} control; < 0 more perpendicular)")
        rows.append(location_row(
            claim=claim, variant=variant_name(opts.null, opts.test), autoencoder=str(ae), seed=seed,
            d=d, estimate_values=estimate, estimate_meaning=meaning,
            censored=censored_mask(g, censor), test=opts.test, alternative="less",
            statistic_text=text, null=null_text(claim, opts.null), stats=stats,
            null_value=null_value, ids=image_ids(g)))
    return rows


@needs(_perpendicular_columns("r_T", ("success_plain",)))
def perpendicular(df: pd.DataFrame, opts: PerpendicularOptions, stats: StatsConfig, *,
                  claim: str) -> Rows:
    """dmm.perpendicular: is r_T below chance? One-sided test (less) per (autoencoder, seed).

    Statistic by null: ``random_subspace`` r_T - r_R; ``other_image`` r_T - r_Tother; ``beta``
    F(r_T^2) - 1/2 with F the chance CDF Beta(k/2, (d-k)/2) of r^2 (the catalogue's r_T^2 - k/d on
    the probability scale; see the comment in the code for why). Estimate: median r_T / the
    chance median of r, with a bootstrap CI; effect size: the sign test's (pos - neg) / n.

    Censoring: r_T of a failed attack is measured on the perturbation reached at eps; it is
    still a gradient direction, so keeping it biases r_T toward the gradient's own r_T (toward
    r_T_grad), not toward rejection. ``n_censored`` counts ``success_plain == False``.
    """
    return _perpendicular(df, opts, stats, claim=claim, column="r_T",
                          censor=("success_plain",))


@needs(_perpendicular_columns("r_T_grad", ()))
def gradient_perpendicular(df: pd.DataFrame, opts: PerpendicularOptions,
                           stats: StatsConfig, *,
                           claim: str) -> Rows:
    """dmm.gradient_perpendicular: as dmm.perpendicular, on r_T_grad (the input gradient).

    Censoring: no attack is involved; nothing is censored (``n_censored`` = 0).
    """
    return _perpendicular(df, opts, stats, claim=claim,
                          column="r_T_grad", censor=())


@needs(("seed", "autoencoder", "sample", "r_T", "r_R", "success_plain"))
def not_below_random(df: pd.DataFrame, opts: NotBelowRandomOptions, stats: StatsConfig, *,
                     claim: str) -> Rows:
    """zp.not_below_random: two rows per (autoencoder, seed), both on d = r_T - r_R.

    * variant ``non_inferiority``: the claim itself. H0 median(d) <= -margin (r_T IS below a
      random subspace by at least the margin) against H1 median(d) > -margin, an exact sign
      test of the median (one-sided; rejecting supports "not below random"). The TOST this
      replaced tested equivalence, so it also needed r_T not to be ABOVE random: at the committed
      data's +0.36 it never rejected.
    * variant ``greater``: one-sided test, H0 median(d) <= 0 against H1 median(d) > 0 (rejecting
      says r_T is *larger* than for a random subspace); ``test`` from the options.

    Censoring: as dmm.perpendicular, failed attacks' directions pull r_T toward r_T_grad.
    """
    rows: Rows = []
    for (ae, seed), g in groups_of(df, ["autoencoder", "seed"]):
        d = column_values(g, "r_T") - column_values(g, "r_R")
        cens = censored_mask(g, ("success_plain",))
        meaning = "median r_T - r_R, bootstrap CI (0 = as a random subspace)"
        rows.append(location_row(
            claim=claim, variant="non_inferiority", autoencoder=str(ae), seed=seed, d=d,
            estimate_values=d, estimate_meaning=meaning, censored=cens, test="sign",
            alternative="greater", statistic_text="r_T - r_R", mu=-opts.margin,
            null=null_text(claim, "below_random").replace("the margin", f"{opts.margin:g}")
            .replace("-margin", f"-{opts.margin:g}"),
            stats=stats, null_value=-opts.margin, ids=image_ids(g)))
        rows.append(location_row(
            claim=claim, variant=variant_name("greater", opts.test), autoencoder=str(ae), seed=seed,
            d=d,
            estimate_values=d, estimate_meaning=meaning, censored=cens, test=opts.test,
            alternative="greater", statistic_text="r_T - r_R",
            null="r_T is no larger than r_R for a random subspace of the same dimension "
            "(median of r_T - r_R <= 0).", stats=stats, null_value=0.0, ids=image_ids(g)))
    return rows


@needs(("seed", "autoencoder", "sample", "r_T", "r_PCA", "success_plain"))
def local_vs_global(df: pd.DataFrame, opts: LocalVsGlobalOptions, stats: StatsConfig, *,
                    claim: str) -> Rows:
    """ae.local_vs_global: r_T - r_PCA per image, two-sided, per (autoencoder, seed).

    Does the autoencoder's local k-dim tangent space at x capture a different share of the
    perturbation than the global top-k principal subspace of the training images? If it does
    not, a claim about "the manifold" is a claim about the data's principal directions, which
    need no autoencoder. Estimate: median r_T - r_PCA (0 = the same share; > 0 the local tangent
    captures more).

    Censoring: both shares are of the same perturbation; a failed attack's direction counts on
    both sides. ``n_censored`` counts ``success_plain == False``.
    """
    rows: Rows = []
    for (ae, seed), g in groups_of(df, ["autoencoder", "seed"]):
        d = column_values(g, "r_T") - column_values(g, "r_PCA")
        rows.append(location_row(
            claim=claim, variant=variant_name("same_share", opts.test), autoencoder=str(ae),
            seed=seed, d=d, estimate_values=d,
            estimate_meaning="median r_T - r_PCA per image, bootstrap CI (0 = the local tangent "
            "and the top-k principal subspace capture the same share)",
            censored=censored_mask(g, ("success_plain",)), test=opts.test, alternative="two-sided",
            statistic_text="r_T - r_PCA, paired by image", null=null_text(claim, "same_share"),
            stats=stats, null_value=0.0, ids=image_ids(g)))
    return rows
