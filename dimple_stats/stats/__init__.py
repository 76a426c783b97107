"""Statistical tests and estimators, one small module per thing computed.

Everything here wraps scipy and statsmodels; the few formulas written out by hand (rank-biserial
r, the paired risk-difference CI, the hinge-regression F) say why in their modules.
"""

from dimple_stats.stats.bootstrap import BootstrapEstimate, median_ci, stable_rng
from dimple_stats.stats.chance import (
    chance_cdf_r2,
    chance_median_r2,
    chance_params,
    chance_pdf_r,
)
from dimple_stats.stats.changepoint import TwoSegmentFit, change_point_ci, fit_two_segment
from dimple_stats.stats.correlation import spearman, spearman_ci
from dimple_stats.stats.effect_size import cohens_dz, location_effect, rank_biserial, sign_effect
from dimple_stats.stats.equivalence import TostResult, tost
from dimple_stats.stats.mcnemar import (
    DiscordantPairs,
    discordant_pairs,
    mcnemar_exact,
    paired_risk_difference,
)
from dimple_stats.stats.meta import MetaEstimate, random_effects, stouffer
from dimple_stats.stats.multiplicity import Correction, adjust_pvalues
from dimple_stats.stats.paired import (
    PairedTest,
    location_test,
    paired_ttest,
    sign_test,
    wilcoxon_signed_rank,
)
from dimple_stats.stats.power import (
    ARE,
    suggested_n_location,
    suggested_n_mcnemar,
    suggested_n_spearman,
    suggested_n_tost,
)
from dimple_stats.stats.result import Alternative, HypothesisResult

__all__ = [
    "ARE", "Alternative", "BootstrapEstimate", "Correction", "DiscordantPairs", "HypothesisResult",
    "MetaEstimate", "PairedTest", "TostResult", "TwoSegmentFit",
    "adjust_pvalues", "chance_cdf_r2", "chance_median_r2", "chance_params", "chance_pdf_r", "change_point_ci",
    "cohens_dz", "discordant_pairs", "fit_two_segment", "location_effect", "location_test",
    "mcnemar_exact", "median_ci", "paired_risk_difference", "paired_ttest", "random_effects",
    "rank_biserial", "sign_effect", "sign_test", "spearman", "spearman_ci", "stable_rng",
    "stouffer", "suggested_n_location", "suggested_n_mcnemar", "suggested_n_spearman",
    "suggested_n_tost", "tost", "wilcoxon_signed_rank",
]
