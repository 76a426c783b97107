"""Dimpled or robust: does adversarial training turn perturbations towards the data manifold?

Claim ``dmm.dimpled_or_robust``, a claim over a sweep. Kim et al. (2019) found that the input
gradients of adversarially trained classifiers align with the data manifold; the dimpled
manifold model (Shamir et al. 2021) says adversarial training only deepens the dimples and leaves
the boundary perpendicular. The two readings predict opposite changes of r_T (the share of the
minimal perturbation in the autoencoder's tangent space) for the SAME image under the two
classifiers. The table (``classifier_pairs``) is built by :mod:`dimple_stats.sweep` from two
cells of a sweep over ``classifier.adversarial`` that agree on every other choice: their
measurement rows stacked, with a ``classifier`` column (``standard`` / ``adversarial``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dimple_stats.claims.catalogue import DimpledOrRobustOptions
from dimple_stats.claims.rows import (
    AnalysisError,
    Rows,
    censored_share_reason,
    column_values,
    groups_of,
    location_row,
    needs,
    null_text,
    variant_name,
)
from dimple_stats.stats_config import StatsConfig

__all__ = ["dimpled_or_robust"]

#: (variant, data-shaped control column or None, what the per-image change is of)
_VARIANTS = (("unchanged", None, "r_T"),
             ("unchanged_vs_pca", "r_PCA", "r_T - r_PCA"),
             ("unchanged_vs_data_random", "r_Rdata", "r_T - r_Rdata"))


def _share(paired: pd.DataFrame, side: str, control: str | None) -> np.ndarray:
    """r_T of one side of the pairs, minus the control's share of the same perturbation."""
    r = column_values(paired, f"r_T_{side}")
    return r - column_values(paired, f"{control}_{side}") if control else r


@needs(("seed", "autoencoder", "classifier", "sample", "r_T", "r_PCA", "r_Rdata",
        "success_plain"))
def dimpled_or_robust(df: pd.DataFrame, opts: DimpledOrRobustOptions, stats: StatsConfig, *,
                      claim: str) -> Rows:
    """Per (autoencoder, seed): the change of r_T from the standard to the adversarially trained
    classifier, paired per image (``sample``), two-sided.

    * variant ``unchanged``: median of r_T(adv) - r_T(std) = 0;
    * ``unchanged_vs_pca`` / ``unchanged_vs_data_random``: the same for r_T minus the
      data-shaped control's share of the same perturbation (``r_PCA``, ``r_Rdata``), so a
      change that any k-subspace of the data would show does not count as a turn towards the
      manifold.

    Only images correctly classified by both classifiers are paired (each cell attacks the
    images its own classifier gets right); the rest are counted in the note.
    Censoring: a failed attack's r is that of its last iterate; ``n_censored`` counts pairs
    with ``success_plain`` False on either side; half or more: uninformative.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> std = pd.DataFrame({"seed": 0, "autoencoder": "a", "classifier": "standard",
    ...                     "sample": range(60), "r_T": rng.uniform(0.1, 0.3, 60),
    ...                     "r_PCA": 0.2, "r_Rdata": 0.2, "success_plain": True})
    >>> adv = std.assign(classifier="adversarial", r_T=std["r_T"] + 0.1)
    >>> rows = dimpled_or_robust(pd.concat([std, adv]), DimpledOrRobustOptions(),
    ...                          StatsConfig(), claim="dmm.dimpled_or_robust")
    >>> [(r.variant, round(r.estimate, 3), r.p < 1e-6) for r in rows][0]
    ('unchanged', 0.1, True)
    """
    unknown = sorted(set(df["classifier"]) - {"standard", "adversarial"})
    if unknown:
        raise AnalysisError(f"{claim}: classifier must be 'standard' or 'adversarial', got "
                            f"{unknown}")
    rows: Rows = []
    controls = _VARIANTS
    cols = ["sample", "r_T", "success_plain", "r_PCA", "r_Rdata",
            *(["image_id"] if "image_id" in df.columns else [])]
    for (ae, seed), g in groups_of(df, ["autoencoder", "seed"]):
        both = g.loc[g["classifier"] == "standard", cols].merge(
            g.loc[g["classifier"] == "adversarial", cols], on="sample",
            suffixes=("_std", "_adv"), how="outer", indicator=True)
        paired = both[both["_merge"] == "both"]
        unpaired = len(both) - len(paired)
        note = (f"{unpaired} image(s) correctly classified by only one classifier left out"
                if unpaired else "")
        censored = (~paired["success_plain_std"].to_numpy(bool)
                    | ~paired["success_plain_adv"].to_numpy(bool))
        reason = censored_share_reason(censored, "pairs (an attack failed)")
        # Same seed, same image: pooling over seeds accounts for images several seeds drew.
        ids = paired["image_id_std"].to_numpy() if "image_id_std" in paired.columns else None
        for name, control, what in controls:
            d = _share(paired, "adv", control) - _share(paired, "std", control)
            rows.append(location_row(
                claim=claim, variant=variant_name(name, opts.test), autoencoder=str(ae),
                seed=seed, d=d, estimate_values=d,
                estimate_meaning=f"median change of {what} per image, adversarial minus standard "
                "classifier, bootstrap CI (0 = unchanged; > 0 = more aligned with the manifold)",
                censored=censored, test=opts.test, alternative="two-sided",
                statistic_text=f"{what} (adversarial) - {what} (standard), paired by image",
                null=null_text(claim, name), stats=stats, null_value=0.0, ids=ids, note=note,
                uninformative=reason))
    return rows
