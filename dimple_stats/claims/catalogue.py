"""Definitions of the claims (``dimple-stats claims``): what each says, its statistic, nulls and test.

A definition is data: the claim's words, its options model, the table it reads and its analysis
as a lazy ``"module:function"`` target. :data:`CATALOGUE` registers them; unknown ids get a "did
you mean" error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dimple_stats.errors import UnknownNameError
from dimple_stats.registry import Registry, resolve
from dimple_stats.strict_model import StrictScalars

__all__ = ["ClaimDefinition", "CATALOGUE", "get_claim", "list_claims", "UnknownClaimError"]


class _Options(StrictScalars):
    # Booleans as written (no `margin: true` read as 1.0); no `.nan` or `.inf` options: NaN
    # passes range checks like `gt=0` (it compares false).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


PairedTest = Literal["wilcoxon", "sign", "ttest"]

#: The location test of every claim whose null names a median: the exact sign test, which
#: tests the median at any shape. The Wilcoxon signed-rank test (an option) tests the
#: pseudo-median (the median of Walsh averages; symmetry under H0): at a skewed null whose
#: median is exactly at chance it rejected 22-95% per seed (exponential, log-normal and
#: chi-squared(1) differences, n = 30-200, alpha 0.05; the sign test 3.7-5.3%). The sign test also
#: uses a censored value exactly when its bound already lies on one side of the null, where
#: Wilcoxon needs its rank.
DEFAULT_TEST: PairedTest = "sign"
_TEST_HELP = ("Location test: 'sign' (default; the median the null names), 'wilcoxon' (the "
              "pseudo-median; valid for the median only under symmetry) or 'ttest' (the mean).")


class PerpendicularOptions(_Options):
    null: Literal["random_subspace", "other_image", "beta", "pca", "data_random"] = Field(
        "random_subspace", description="What 'chance' means for r_T: a random subspace, "
        "another image's tangent, the Beta law of a random direction, or the data-shaped "
        "controls (the top-k principal subspace of the training images; a random k-dim "
        "subspace of their span)."
    )
    test: PairedTest = Field(DEFAULT_TEST, description=_TEST_HELP)


class NotBelowRandomOptions(_Options):
    margin: float = Field(
        0.05, gt=0, description="Non-inferiority margin on the median of r_T - r_R."
    )
    test: PairedTest = Field(DEFAULT_TEST, description=_TEST_HELP)


class NormAsymmetryOptions(_Options):
    test: PairedTest = Field(DEFAULT_TEST, description=_TEST_HELP)


class OffEqualsUnrestrictedOptions(_Options):
    margin: float = Field(
        math.log(1.1), gt=0, description="TOST margin on log(norm_off / norm_plain)."
    )


class OffSucceedsMoreOptions(_Options):
    pass


class PlainVsIsometricOptions(_Options):
    plain: str | None = Field(
        None, description="Autoencoder name of the plain model (default: the one with kind none)."
    )
    isometric: str | None = Field(
        None, description="Autoencoder name of the regularised model (default: kind isometric)."
    )
    test: PairedTest = Field(DEFAULT_TEST, description=_TEST_HELP)


class ValidityOptions(_Options):
    margin: float = Field(
        0.2, gt=0, lt=1, description="Equivalence margin on Spearman's rho: |rho| < margin is "
        "'at most a small association' (0.2: with 500 samples per seed a TOST has ~90% power "
        "at rho = 0)."
    )


class LocalVsGlobalOptions(_Options):
    test: PairedTest = Field(DEFAULT_TEST, description=_TEST_HELP)


class DefenseOptions(_Options):
    eps: tuple[float, ...] | None = Field(
        None, description="Attack budgets for robust accuracy (default: the attack's plain eps)."
    )


class ClingingOptions(_Options):
    every: int = Field(1, ge=1, description="Measure every this many epochs.")


class AdvTrainingOptions(_Options):
    margin: float = Field(0.05, gt=0, description="TOST margin on the median change of r_T.")


class DimpledOrRobustOptions(_Options):
    test: PairedTest = Field(DEFAULT_TEST, description=_TEST_HELP)


@dataclass(frozen=True)
class ClaimDefinition:
    """One claim of the catalogue.

    Attributes
    ----------
    id : str
        Stable identifier used in protocols and result tables.
    source : str
        Who made the claim.
    hypothesis : str
        H1 in words: what the claim says.
    statistic : str
        The per-sample statistic the test is applied to.
    test : str
        The default test.
    nulls : dict
        Null name -> the null hypothesis in plain language.
    censoring : str
        How failed attacks (censored at eps) bias the test.
    options : type
        Pydantic model of the options a protocol may pass.
    analysis : str or callable
        The analysis function, as a lazy ``"module:function"`` target resolved on first use (so
        this module imports no analysis), or the function itself. It is called as
        ``fn(table, options, stats, claim=id)`` and returns per-seed
        :class:`~dimple_stats.results.ResultRow` objects; its columns are declared with
        :func:`dimple_stats.claims.rows.needs`.
    table : str
        The table the analysis reads: ``measurements``, ``defense``, ``training`` or
        ``adv_training`` (see :mod:`dimple_stats.measurements`).
    measured_by : dict
        For claims on attack norms: each way of measuring them (the protocol's
        ``attack.base`` / ``attack.on_manifold`` / ``attack.box``), what it measures and how
        it fails (printed by ``dimple-stats claims ID``).
    verdict_on : tuple of tuples of str
        Which variants decide the claim's verdict in words
        (:mod:`dimple_stats.report.verdicts`): alternatives in order of preference, each a tuple
        of ``fnmatch`` patterns; the first alternative that matches a tested row of the results
        makes every row it matches decide, and the claim's other tested variants are read
        beside them ("the other nulls agree" or "change the reading"). Empty: every tested
        variant decides.
    variant_words : dict
        Variant name -> the null it tests in words, for the verdict's "Against <words>". A
        claim added outside this module names its own; a variant it does not name prints as
        named (never in another claim's words: the built-in claims share
        :data:`dimple_stats.report.verdicts.VARIANT_WORDS`).
    """

    id: str
    source: str
    hypothesis: str
    statistic: str
    test: str
    nulls: dict[str, str]
    censoring: str
    options: type[BaseModel] = field(repr=False)
    analysis: str | Callable[..., Any] = field(repr=False, default="")
    table: str = "measurements"
    verdict_on: tuple[tuple[str, ...], ...] = ()
    measured_by: dict[str, str] = field(default_factory=dict)
    hypothesis_for: str | Callable[[str], str] | None = field(repr=False, default=None)
    variant_words: dict[str, str] = field(default_factory=dict)

    def words_for(self, autoencoder: str) -> str:
        """H1 in words for one autoencoder (or defended model) of the results: the claim's own
        words unless ``hypothesis_for`` words each one (iso.defense names the projection its
        row tested, so a plain autoencoder's row is not read as a verdict on the isometric).

        >>> get_claim("iso.defense").words_for("plain:tangent")[:60]
        "Projecting inputs onto the plain autoencoder's tangent plane"
        """
        if self.hypothesis_for is None:
            return self.hypothesis
        words = (resolve(self.hypothesis_for) if isinstance(self.hypothesis_for, str)
                 else self.hypothesis_for)
        return str(words(autoencoder))

    def analysis_function(self) -> Callable[..., Any]:
        """The analysis, imported from its target on first call.

        >>> get_claim("dmm.norm_asymmetry").analysis_function().__name__
        'norm_asymmetry'
        """
        fn = resolve(self.analysis) if isinstance(self.analysis, str) else self.analysis
        if not callable(getattr(fn, "columns", None)):
            raise TypeError(f"claim {self.id}: analysis {self.analysis} does not declare its "
                            "columns (decorate it with dimple_stats.claims.rows.needs)")
        return fn

    def required_columns(self, options: BaseModel | None = None) -> tuple[str, ...]:
        """Columns of its table the claim's analysis needs with ``options`` (default: the
        options model's defaults). One source: the analysis declares them (a test checks that
        they are all it reads, besides ``image_id`` when present).

        >>> get_claim("ae.local_vs_global").required_columns()
        ('seed', 'autoencoder', 'sample', 'r_T', 'r_PCA', 'success_plain')
        """
        needs = self.analysis_function().columns
        return tuple(needs(options if options is not None else self.options()))


_PERP_NULLS = {
    "random_subspace": "r_T is no smaller than r_R for a random subspace of the same dimension "
    "(median of r_T - r_R >= 0).",
    "other_image": "r_T is no smaller than for the tangent space of another image of the same "
    "class (median of r_T - r_Tother >= 0).",
    "beta": "r_T^2 is no smaller than for a random direction, whose r^2 ~ Beta(k/2, (d-k)/2) "
    "(mean k/d); tested on the chance CDF: median of F_Beta(r_T^2) - 1/2 >= 0.",
    "pca": "r_T is no smaller than the perturbation's share in the top-k principal subspace of "
    "the training images (median of r_T - r_PCA >= 0).",
    "data_random": "r_T is no smaller than the perturbation's share in a random k-dim subspace "
    "of the span of the training images (median of r_T - r_Rdata >= 0).",
}

class UnknownClaimError(UnknownNameError):
    """Raised for a claim id not in the catalogue; the message suggests the nearest id."""


#: Every claim, in the order ``dimple-stats claims`` lists them. A new claim is one more
#: ``CATALOGUE.register(definition.id, definition)``.
CATALOGUE: Registry[ClaimDefinition] = Registry("claim", error=UnknownClaimError)

#: How the norm claims' on-manifold (and off-manifold) norms can be measured: what each
#: measures and how it fails. Measured on the committed data sets (README, Results): under
#: ``base image`` + strict tangent the on-manifold attack failed for 70-99.9% of MNIST images,
#: most of them because the box leaves no room along T at all.
NORM_MEASUREMENTS: dict[str, str] = {
    "base manifold, on latent (default)": "every attack starts at x_m = D(z*), the nearest "
    "point of the decoder's image; on-manifold = the minimal chord ||D(z* + delta) - x_m|| "
    "along the decoder's image (Stutz et al. 2019), off-manifold = minimal norm in x_m + "
    "T-perp inside the pixel box. Always feasible (decoded images are images). Fails when "
    "x_m is misclassified (the image is excluded, counted) or when the images lie far from "
    "the manifold (base_err large: the norms are then about the manifold, not the image).",
    "base image, on tangent, box strict": "the reproduction's geometry kept exact: steps in "
    "x + T (or T-perp) inside the pixel box. Where (x + T) ∩ box is {x} (MNIST: most pixels "
    "sit at a bound) the on-manifold norm does not exist: measurable_on False, left out "
    "and counted, never imputed at eps.",
    "box none": "pure geometry, no pixel bounds: the reading of dimension counting itself "
    "(perturbations may leave the image range).",
    "box clip": "the reproduction's attack (projected step, then clipped): its on-manifold "
    "perturbations leave T wherever pixels sit at a bound (in_T_on < 1); for comparison "
    "only.",
}


for _definition in (
    ClaimDefinition(
        id="dmm.perpendicular",
        source="Shamir et al. 2021 (DMM)",
        hypothesis="Adversarial perturbations are more perpendicular to the manifold than chance.",
        statistic="r_T - r_R (random_subspace) | r_T - r_Tother (other_image) | "
        "F_Beta(r_T^2) - 1/2 (beta: r_T^2 against chance k/d on the Beta(k/2, (d-k)/2) "
        "probability scale, symmetric under the null) | r_T - r_PCA (pca) | r_T - r_Rdata "
        "(data_random)",
        test="one-sided exact sign test of the median (less); estimate: median r_T / chance "
        "median of r (beta: sqrt of the median of Beta(k/2, (d-k)/2); 1 = chance) or the "
        "median paired difference from the measured control (random_subspace, other_image, "
        "pca, data_random; 0 = as the control), bootstrap CI; effect: (pos - neg) / n",
        nulls=_PERP_NULLS,
        censoring="r_T is measured on the perturbation reached at eps; a failed attack's "
        "direction is still a gradient direction, so keeping it biases toward the gradient's "
        "own r_T (toward r_T_grad), not toward rejection.",
        options=PerpendicularOptions,
        analysis="dimple_stats.claims.perpendicularity:perpendicular",
        verdict_on=(("random_subspace*",), ("beta*",), ("other_image*",), ("pca*",),
                    ("data_random*",)),
    ),
    ClaimDefinition(
        id="zp.not_below_random",
        source="Zhao & Pushpita 2021",
        hypothesis="Perturbations are NOT more perpendicular than a random subspace of the "
        "same dimension.",
        statistic="r_T - r_R",
        test="non-inferiority: one-sided exact sign test of the median of r_T - r_R against "
        "-margin (greater); and one-sided exact sign test (greater) against 0",
        nulls={
            "below_random": "r_T is below r_R for a random subspace by at least the margin "
            "(median of r_T - r_R <= -margin).",
        },
        censoring="as dmm.perpendicular: censored directions pull r_T toward r_T_grad.",
        options=NotBelowRandomOptions,
        analysis="dimple_stats.claims.perpendicularity:not_below_random",
        verdict_on=(("non_inferiority*",),),
    ),
    ClaimDefinition(
        id="dmm.gradient_perpendicular",
        source="Shamir et al. 2021 (DMM)",
        hypothesis="The input gradient of the margin is more perpendicular to the manifold "
        "than chance.",
        statistic="r_T_grad vs the same nulls as dmm.perpendicular (other_image: the "
        "gradient's own share in the other image's tangent, r_T_grad_other)",
        test="one-sided exact sign test of the median (less)",
        nulls={k: v.replace("r_T ", "r_T_grad ").replace("r_T^2", "r_T_grad^2")
               .replace("r_Tother", "r_T_grad_other") for k, v in _PERP_NULLS.items()
               if k not in ("pca", "data_random")},
        censoring="no attack is involved; nothing is censored.",
        options=PerpendicularOptions,
        analysis="dimple_stats.claims.perpendicularity:gradient_perpendicular",
        verdict_on=(("random_subspace*",), ("beta*",), ("other_image*",), ("pca*",),
                    ("data_random*",)),
    ),
    ClaimDefinition(
        id="dmm.norm_asymmetry",
        source="Shamir et al. 2021 (DMM)",
        hypothesis="On-manifold attacks need larger norms than off-manifold ones beyond what "
        "dimension counting predicts.",
        statistic="1/2 - F(1 / (1 + (norm_on/norm_off)^2)), F the CDF of Beta(k/2, "
        "(d-k)/2): the on/off ratio on the probability scale of its dimension-counting "
        "distribution sqrt((1-B)/B), B ~ Beta (estimate: median log(on/off) minus its chance "
        "median); the naive log(norm_on / norm_off) is reported beside it",
        test="one-sided exact sign test of the median (greater); a censored pair counts on "
        "the side its bound is known to lie, else against the claim",
        nulls={
            "dimension_counting": "norm_on / norm_off is no larger than for a locally linear "
            "classifier whose gradient is unrelated to T: sqrt((1-B)/B) with B ~ Beta(k/2, "
            "(d-k)/2) (median 1/2 - F_Beta(1/(1 + (on/off)^2)) <= 0).",
            "first_order": "norm_on / norm_off is no larger than the classifier's own gradient "
            "predicts for a locally linear boundary, ||P_perp g|| / ||P_T g|| per image "
            "(median log(on/off) - log(that) <= 0).",
        },
        censoring="a failed attack's norm is only known to be >= eps: a failed on attack "
        "makes on/off a lower bound (would bias against the claim), a failed off attack an "
        "upper bound (would bias FOR it: 100% false rejections at 50% failed off attacks "
        "when treated as observed). With the default sign test, a censored pair whose bound "
        "leaves its sign open counts as its probability under a bivariate log-normal model "
        "of (norm_on, norm_off) fit by maximum likelihood with each failed attack's budget as "
        "a censoring point (the ratio's censoring point eps / norm_off depends on the other "
        "norm, so a Kaplan-Meier median of the ratio is biased); the median and its CI "
        "invert that test. Wilcoxon and t options impute the bound least favourable to the "
        "claim (rejections stand whatever the censored norms are, but at 20% censoring of "
        "the largest norms that kept 23% of a 5% excess's power). Half or more censored "
        "pairs: uninformative.",
        options=NormAsymmetryOptions,
        analysis="dimple_stats.claims.norms:norm_asymmetry",
        verdict_on=(("beyond_dimension_counting*",), ("beyond_first_order*",)),
        measured_by=NORM_MEASUREMENTS,
    ),
    ClaimDefinition(
        id="dmm.off_equals_unrestricted",
        source="Shamir et al. 2021 (DMM)",
        hypothesis="Off-manifold attacks are as efficient as unrestricted ones.",
        statistic="log(norm_off / norm_plain)",
        test="TOST equivalence within +-log(1.1)",
        nulls={
            "not_equivalent": "|median log(norm_off / norm_plain)| >= margin: off-manifold "
            "norms differ from unrestricted ones by at least the margin.",
        },
        censoring="a failed off attack makes log(off/plain) a lower bound, a failed plain "
        "attack an upper bound; treated as observed, both pull the ratio toward 0, i.e. "
        "TOWARD equivalence (97% false equivalence at 63% failures). Censored values count "
        "against equivalence on the side where they are unknown; more than 50% censored "
        "pairs: uninformative.",
        options=OffEqualsUnrestrictedOptions,
        analysis="dimple_stats.claims.norms:off_equals_unrestricted",
        measured_by=NORM_MEASUREMENTS,
    ),
    ClaimDefinition(
        id="dmm.off_succeeds_more",
        source="Shamir et al. 2021 vs Xiao et al. 2022",
        hypothesis="At a matched budget, off-manifold attacks succeed more often than "
        "on-manifold ones.",
        statistic="paired (success_on, success_off)",
        test="exact McNemar (binomial on discordant pairs)",
        nulls={
            "equal_rates": "on- and off-manifold attacks succeed equally often "
            "(discordant pairs split 50:50).",
        },
        censoring="censoring is the outcome itself; every sample counts.",
        options=OffSucceedsMoreOptions,
        analysis="dimple_stats.claims.norms:off_succeeds_more",
        measured_by=NORM_MEASUREMENTS,
    ),
    ClaimDefinition(
        id="iso.plain_vs_isometric",
        source="isometric autoencoders (Gropp et al. 2020; Lee et al. 2022)",
        hypothesis="The isometric autoencoder's manifold changes r_T relative to the plain one.",
        statistic="r_T(plain) - r_T(isometric), same samples",
        test="two-sided exact sign test of the median; dmm.perpendicular per autoencoder",
        nulls={
            "no_change": "r_T is the same under both autoencoders (median paired "
            "difference = 0).",
        },
        censoring="the same attack is projected on both manifolds; censoring affects both "
        "sides equally.",
        options=PlainVsIsometricOptions,
        analysis="dimple_stats.claims.isometric:plain_vs_isometric",
    ),
    ClaimDefinition(
        id="ae.validity",
        source="control",
        hypothesis="Conclusions do not hinge on reconstruction error.",
        statistic="Spearman(recon_err / norm_plain, r_T)",
        test="equivalence of Spearman's rho within +-margin (TOST on Fisher z); r_T by "
        "recon_err tercile (descriptive)",
        nulls={
            "associated": "r_T is associated with the relative reconstruction error by at "
            "least the margin (|Spearman rho| >= margin).",
        },
        censoring="censored norms (= eps) understate recon_err / norm_plain's denominator; "
        "they are kept and counted.",
        options=ValidityOptions,
        analysis="dimple_stats.claims.isometric:validity",
    ),
    ClaimDefinition(
        id="iso.defense",
        source="isometric autoencoders (Gropp et al. 2020; Lee et al. 2022)",
        hypothesis="Projecting inputs through an isometric autoencoder raises robust accuracy "
        "under white-box PGD through the projection.",
        statistic="paired robust-correct indicators (fixed-budget white-box PGD through the "
        "projection: autograd through E and D, or BPDA with defense.gradient)",
        test="exact McNemar vs the plain autoencoder and vs no projection; clean-accuracy cost",
        nulls={
            "no_gain": "robust accuracy is the same with and without the projection "
            "(discordant pairs split 50:50).",
        },
        censoring="a failed attack counts as robust-correct: the outcome itself.",
        options=DefenseOptions,
        analysis="dimple_stats.claims.isometric:defense",
        hypothesis_for="dimple_stats.claims.isometric:defense_hypothesis",
        verdict_on=(("vs *",),),
        table="defense",
    ),
    ClaimDefinition(
        id="dmm.clinging_then_dimpling",
        source="Shamir et al. 2021 (DMM)",
        hypothesis="During training the boundary distance falls fast early, then slowly, while "
        "r_T stays below chance throughout.",
        statistic="per epoch: median norm_plain and median r_T",
        test="kink test: smooth decay vs smooth decay + hinge (F, sample bootstrap); "
        "Spearman trend per phase (descriptive); r_T below chance at every epoch "
        "(intersection-union)",
        nulls={
            "no_change_point": "median norm_plain follows a smooth decay across epochs "
            "(a + b exp(-epoch/s), or a line), with no change of slope.",
        },
        censoring="early-epoch attacks fail less (the boundary is near); censoring at eps "
        "flattens late epochs, biasing toward a change point: reported with n_censored per epoch.",
        options=ClingingOptions,
        analysis="dimple_stats.claims.training:clinging_then_dimpling",
        verdict_on=(("change point", "r_T below chance throughout"),),
        table="training",
    ),
    ClaimDefinition(
        id="dmm.adv_training_deepens",
        source="Shamir et al. 2021 (DMM)",
        hypothesis="Adversarial training deepens the dimples (larger norms) but does not turn "
        "the boundary (r_T unchanged).",
        statistic="r_T and norm_plain, standard vs adversarially trained classifier, same samples",
        test="TOST on the median change of r_T, one-sided exact sign test (greater) of the "
        "median change of norm_plain, and their intersection-union test for the joint claim",
        nulls={
            "no_deepening": "norm_plain is no larger after adversarial training (median "
            "change <= 0).",
            "turned": "r_T changes by at least the margin after adversarial training "
            "(|median change| >= margin).",
            "not_both": "adversarial training does not both deepen (larger norm_plain) and "
            "leave r_T within the margin.",
        },
        censoring="robust models fail more attacks at a fixed eps; censoring at eps shrinks "
        "their norms and biases against deepening (conservative).",
        options=AdvTrainingOptions,
        analysis="dimple_stats.claims.training:adv_training_deepens",
        verdict_on=(("deepens and not turned",),),
        table="adv_training",
    ),
    ClaimDefinition(
        id="ae.local_vs_global",
        source="control (data-shaped nulls)",
        hypothesis="The autoencoder's local tangent space captures a different share of the "
        "perturbation than the data's global top-k principal subspace.",
        statistic="r_T - r_PCA, paired per image",
        test="two-sided exact sign test of the median; estimate: median r_T - r_PCA",
        nulls={
            "same_share": "the local tangent and the top-k principal subspace capture the "
            "same share of the perturbation (median of r_T - r_PCA = 0).",
        },
        censoring="both shares are measured on the same perturbation; censoring affects "
        "both sides equally.",
        options=LocalVsGlobalOptions,
        analysis="dimple_stats.claims.perpendicularity:local_vs_global",
    ),
    ClaimDefinition(
        id="dmm.dimpled_or_robust",
        source="Kim et al. 2019 vs Shamir et al. 2021 (DMM), over a sweep",
        hypothesis="Adversarial training changes how much of the minimal perturbation lies in "
        "the manifold's tangent space: up if robust classifiers' perturbations align with the "
        "data manifold (Kim et al. 2019), down if their dimples only deepen (DMM).",
        statistic="r_T(adversarial) - r_T(standard), and the same beyond the data-shaped "
        "nulls ((r_T - r_PCA) and (r_T - r_Rdata) changes), paired per image; the two "
        "classifiers are the cells of a sweep over classifier.adversarial that agree on every "
        "other choice",
        test="two-sided exact sign test of the median per (cell pair, autoencoder, seed); "
        "estimate: "
        "median change (> 0: more aligned with the manifold after adversarial training)",
        nulls={
            "unchanged": "adversarial training leaves r_T unchanged (median of r_T(adv) - "
            "r_T(std) = 0).",
            "unchanged_vs_pca": "adversarial training leaves r_T - r_PCA unchanged (no change "
            "beyond the top-k principal subspace's share).",
            "unchanged_vs_data_random": "adversarial training leaves r_T - r_Rdata unchanged "
            "(no change beyond a random k-subspace of the data's span).",
        },
        censoring="robust classifiers fail more attacks at a fixed eps; r of a failed attack "
        "is that of its last iterate. Pairs with a failed attack on either side are counted; "
        "half or more censored: uninformative.",
        options=DimpledOrRobustOptions,
        analysis="dimple_stats.claims.robustness:dimpled_or_robust",
        verdict_on=(("unchanged", "unchanged (*)"),),
        table="classifier_pairs",
    ),
):
    CATALOGUE.register(_definition.id, _definition)

#: The claims defined above, whose variants share the words of
#: :data:`dimple_stats.report.verdicts.VARIANT_WORDS`; a claim registered later does not.
BUILT_IN_CLAIMS = frozenset(CATALOGUE.names())


def get_claim(claim_id: str) -> ClaimDefinition:
    """Look up a claim by id.

    Examples
    --------
    >>> get_claim("dmm.perpendicular").test.split(";")[0]
    'one-sided exact sign test of the median (less)'
    >>> get_claim("dmm.perpendiculr")
    Traceback (most recent call last):
    ...
    dimple_stats.claims.catalogue.UnknownClaimError: unknown claim 'dmm.perpendiculr' (did you mean ...
    """
    return CATALOGUE[claim_id]


def list_claims() -> list[ClaimDefinition]:
    """All claims in catalogue order."""
    return list(CATALOGUE.values())
