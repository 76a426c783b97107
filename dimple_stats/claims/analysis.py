"""The statistical analysis of every claim, registered by claim id.

An analysis takes the table the claim reads (``measurements``, ``defense``, ``training`` or
``adv_training``; see :mod:`dimple_stats.measurements`), the claim's validated options and the
:class:`~dimple_stats.protocol.schema.StatsConfig`, and returns per-seed
:class:`~dimple_stats.results.ResultRow` objects; :func:`dimple_stats.results.finalise` adds the
pooled rows, the multiplicity adjustment and the decisions.

Conventions shared by all analyses:

* Censored samples (a failed attack: ``success_* = False``, ``norm_* = eps_*``) are kept and
  counted in ``n_censored``; each claim's docstring says which way censoring biases it.
* Non-finite per-sample statistics (e.g. a NaN ratio) cannot be ranked; they are left out and
  counted in the row's note, never silently.
* Bootstrap CIs are seeded from (claim, variant, autoencoder, seed), so a report re-renders
  byte-identically.
* Every location test uses the options' ``test`` (Wilcoxon by default) with the alternative the
  claim's direction demands; the effect size follows the test (rank-biserial r for Wilcoxon).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import proportion_confint

from dimple_stats.claims.catalogue import (
    CATALOGUE,
    AdvTrainingOptions,
    ClingingOptions,
    DefenseOptions,
    NormAsymmetryOptions,
    NotBelowRandomOptions,
    OffEqualsUnrestrictedOptions,
    OffSucceedsMoreOptions,
    PerpendicularOptions,
    PlainVsIsometricOptions,
    UnknownClaimError,
    ValidityOptions,
)
from dimple_stats.measurements import TableKind
from dimple_stats.protocol.schema import StatsConfig
from dimple_stats.results import DESCRIPTIVE, NO_AUTOENCODER, ResultRow
from dimple_stats.stats.bootstrap import BootstrapEstimate, median_ci, stable_rng
from dimple_stats.stats.chance import chance_cdf_r2, chance_median_r2
from dimple_stats.stats.changepoint import change_point_ci, fit_two_segment, sup_f_pvalue
from dimple_stats.stats.correlation import spearman, spearman_ci
from dimple_stats.stats.effect_size import location_effect
from dimple_stats.stats.equivalence import tost
from dimple_stats.stats.mcnemar import discordant_pairs, mcnemar_exact, paired_risk_difference
from dimple_stats.stats.paired import PairedTest, location_test, wilcoxon_signed_rank
from dimple_stats.stats.power import (
    suggested_n_location,
    suggested_n_mcnemar,
    suggested_n_spearman,
    suggested_n_tost,
)
from dimple_stats.stats.result import Alternative

__all__ = ["ClaimAnalysis", "ANALYSES", "get_analysis", "AnalysisError"]

Rows = list[ResultRow]
AnalysisFn = Callable[[pd.DataFrame, Any, StatsConfig], Rows]


class AnalysisError(ValueError):
    """The data cannot answer the claim as configured (e.g. a named autoencoder is absent)."""


@dataclass(frozen=True)
class ClaimAnalysis:
    """How a claim is analysed: the table it reads, the columns it needs, the function."""

    claim_id: str
    table: TableKind
    columns: Callable[[BaseModel], tuple[str, ...]]
    run: AnalysisFn


ANALYSES: dict[str, ClaimAnalysis] = {}


def _register(claim_id: str, table: TableKind,
              columns: tuple[str, ...] | Callable[[Any], tuple[str, ...]]
              ) -> Callable[[AnalysisFn], AnalysisFn]:
    if claim_id not in CATALOGUE:  # pragma: no cover - guards against a typo at import time
        raise KeyError(claim_id)
    needs = columns if callable(columns) else (lambda _opts, c=columns: c)

    def deco(fn: AnalysisFn) -> AnalysisFn:
        ANALYSES[claim_id] = ClaimAnalysis(claim_id, table, needs, fn)
        return fn

    return deco


def get_analysis(claim_id: str) -> ClaimAnalysis:
    """The registered analysis of a claim; unknown ids get a "did you mean".

    >>> get_analysis("dmm.norm_asymmetry").table
    'measurements'
    >>> get_analysis("dmm.norm_asymetry")
    Traceback (most recent call last):
    ...
    dimple_stats.claims.catalogue.UnknownClaimError: no analysis for claim 'dmm.norm_asymetry' (did you mean 'dmm.norm_asymmetry'?)
    """
    try:
        return ANALYSES[claim_id]
    except KeyError:
        from dimple_stats.suggest import did_you_mean

        raise UnknownClaimError(
            f"no analysis for claim {claim_id!r}{did_you_mean(claim_id, ANALYSES)}") from None


# ---------------------------------------------------------------------------------------------
# shared builders


def _groups(df: pd.DataFrame,
            keys: Sequence[str]) -> Iterator[tuple[tuple[Any, ...], pd.DataFrame]]:
    for key, g in df.groupby(list(keys), sort=True):
        yield (key if isinstance(key, tuple) else (key,)), g


def _autoencoder_column(df: pd.DataFrame) -> pd.DataFrame:
    # Tables other than `measurements` may carry an autoencoder column; without one the rows
    # are about the classifier alone.
    return df if "autoencoder" in df.columns else df.assign(autoencoder=NO_AUTOENCODER)


def _censored(g: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    mask = np.zeros(len(g), dtype=bool)
    for c in columns:
        mask |= ~g[c].to_numpy(dtype=bool)
    return mask


def _dropped_note(n_dropped: int) -> str:
    return f"{n_dropped} non-finite value(s) left out" if n_dropped else ""


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _bootstrap(values: np.ndarray, stats: StatsConfig, *key: object) -> BootstrapEstimate:
    return median_ci(values, confidence=stats.confidence, n_resamples=stats.bootstrap,
                     rng=stable_rng(*key))


def _null(claim_id: str, name: str) -> str:
    return CATALOGUE[claim_id].nulls[name]


def _test_text(test_name: str, statistic: str) -> str:
    return f"{test_name} on {statistic}"


_TEST_NAMES = {"wilcoxon": "Wilcoxon signed-rank", "sign": "sign test", "ttest": "paired t-test"}


def _location_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, d: np.ndarray,
    estimate_values: np.ndarray, estimate_meaning: str, censored: np.ndarray, test: PairedTest,
    alternative: Alternative, statistic_text: str, null: str, stats: StatsConfig, note: str = "",
) -> ResultRow:
    """A location test of ``d`` (against 0) with a bootstrap CI of median(estimate_values)."""
    keep = np.isfinite(d) & np.isfinite(estimate_values)
    d, est_v, censored = d[keep], estimate_values[keep], censored[keep]
    res = location_test(d, test, alternative=alternative) if d.size else None
    est = _bootstrap(est_v, stats, claim, variant, autoencoder, seed)
    effect, effect_name = location_effect(d, test) if d.size else (math.nan, "")
    undefined = "" if res is not None and res.defined else "test undefined (no non-zero values)"
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=int(d.size),
        n_censored=int(censored.sum()), estimate=est.estimate, ci_low=est.ci_low,
        ci_high=est.ci_high, se=est.se, estimate_meaning=estimate_meaning, effect_size=effect,
        effect_name=effect_name, statistic=res.statistic if res else math.nan,
        statistic_name=res.statistic_name if res else "", p=res.pvalue if res else math.nan,
        null=null, test=_test_text(_TEST_NAMES[test], statistic_text), alternative=alternative,
        suggested_n=suggested_n_location(d, test=test, alternative=alternative,
                                         alpha=stats.alpha, power=stats.power),
        note=_join(note, _dropped_note(int((~keep).sum())), undefined),
    )


def _tost_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, d: np.ndarray, margin: float,
    estimate_meaning: str, censored: np.ndarray, test: PairedTest, statistic_text: str,
    null: str, stats: StatsConfig, note: str = "",
) -> ResultRow:
    """TOST of ``d`` within ±margin, with a bootstrap CI of median(d)."""
    keep = np.isfinite(d)
    d, censored = d[keep], censored[keep]
    res = tost(d, margin, test=test) if d.size else None
    est = _bootstrap(d, stats, claim, variant, autoencoder, seed)
    effect, effect_name = location_effect(d, test) if d.size else (math.nan, "")
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=int(d.size),
        n_censored=int(censored.sum()), estimate=est.estimate, ci_low=est.ci_low,
        ci_high=est.ci_high, se=est.se, estimate_meaning=estimate_meaning, effect_size=effect,
        effect_name=effect_name, statistic=res.statistic if res else math.nan,
        statistic_name=res.statistic_name if res else "", p=res.pvalue if res else math.nan,
        null=null,
        test=_test_text(f"TOST (two one-sided {_TEST_NAMES[test]}, p = max) within "
                        f"+-{margin:.4g}", statistic_text),
        alternative="equivalence",
        suggested_n=suggested_n_tost(d, margin, test=test, alpha=stats.alpha, power=stats.power),
        note=_join(note, _dropped_note(int((~keep).sum()))),
    )


def _mcnemar_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, first: np.ndarray,
    second: np.ndarray, alternative: Alternative, names: tuple[str, str], n_censored: int,
    null: str, stats: StatsConfig, note: str = "",
) -> ResultRow:
    """Exact McNemar test of ``second`` against ``first`` (H1 "greater": second succeeds more)."""
    res = mcnemar_exact(first, second, alternative=alternative)
    pairs = discordant_pairs(first, second)
    diff, lo, hi, se = paired_risk_difference(first, second, confidence=stats.confidence)
    share = pairs.b / (pairs.b + pairs.c) if pairs.b + pairs.c else math.nan
    a, b = names
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=pairs.n,
        n_censored=int(n_censored), estimate=diff, ci_low=lo, ci_high=hi, se=se,
        estimate_meaning=f"rate({b}) - rate({a}), paired Newcombe CI (0 = no difference)",
        effect_size=share, effect_name=f"share of discordant pairs favouring {b} (0.5 = null)",
        statistic=res.statistic, statistic_name=f"b = #({a} no, {b} yes); c = {pairs.c}",
        p=res.pvalue, null=null,
        test=_test_text("exact McNemar (binomial on discordant pairs)", f"({a}, {b}) pairs"),
        alternative=alternative,
        suggested_n=suggested_n_mcnemar(pairs.b, pairs.c, pairs.n, alternative=alternative,
                                        alpha=stats.alpha, power=stats.power),
        note=_join(note, f"{pairs.b + pairs.c} discordant pair(s)"),
    )


def _spearman_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, x: np.ndarray, y: np.ndarray,
    n_censored: int, statistic_text: str, null: str, stats: StatsConfig, note: str = "",
    alternative: Alternative = "two-sided",
) -> ResultRow:
    keep = np.isfinite(x) & np.isfinite(y)
    res = spearman(x[keep], y[keep], alternative=alternative)
    lo, hi, se = spearman_ci(res.statistic, res.n, confidence=stats.confidence)
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=res.n,
        n_censored=int(n_censored), estimate=res.statistic, ci_low=lo, ci_high=hi, se=se,
        estimate_meaning="Spearman rho, Fisher-z CI (0 = no association)",
        effect_size=res.statistic, effect_name="Spearman rho", statistic=res.statistic,
        statistic_name="rho", p=res.pvalue, null=null,
        test=_test_text("Spearman rank correlation", statistic_text), alternative=alternative,
        suggested_n=suggested_n_spearman(res.statistic, alternative=alternative,
                                         alpha=stats.alpha, power=stats.power),
        note=_join(note, _dropped_note(int((~keep).sum())),
                   "" if res.defined else "test undefined (constant values or n < 3)"),
        extra={"scale": "fisher_z"},
    )


def _descriptive_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, values: np.ndarray,
    estimate_meaning: str, n_censored: int, null: str, stats: StatsConfig, note: str = "",
) -> ResultRow:
    """A median with its bootstrap CI, reported but not tested (not in any multiplicity family)."""
    keep = np.isfinite(values)
    est = _bootstrap(values[keep], stats, claim, variant, autoencoder, seed)
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed),
        n=int(keep.sum()), n_censored=int(n_censored), estimate=est.estimate, ci_low=est.ci_low,
        ci_high=est.ci_high, se=est.se, estimate_meaning=estimate_meaning, effect_size=math.nan,
        effect_name="", statistic=math.nan, statistic_name="", p=math.nan, null=null,
        test=DESCRIPTIVE, alternative="", note=_join(note, _dropped_note(int((~keep).sum()))),
    )


def _variant(name: str, test: PairedTest) -> str:
    # A non-default test is part of the variant, so two entries of one claim never pool together.
    return name if test == "wilcoxon" else f"{name} ({test})"


def _f(g: pd.DataFrame, col: str) -> np.ndarray:
    return g[col].to_numpy(dtype=float)


# ---------------------------------------------------------------------------------------------
# dmm.perpendicular, dmm.gradient_perpendicular


_NULL_COLUMN = {"random_subspace": "r_R", "other_image": "r_Tother", "beta": None}
# The other image's tangent as a control of the GRADIENT's share: like is compared with like
# (r_Tother is the attack perturbation's share there, a different vector's measurement).
_GRADIENT_NULL_COLUMN = {**_NULL_COLUMN, "other_image": "r_T_grad_other"}


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
    rows: Rows = []
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        r, n, k = _f(g, column), _f(g, "n"), _f(g, "k")
        if opts.null == "beta":
            # r^2 - k/n is NOT symmetric about 0 at chance (Beta(k/2, (n-k)/2) is right-skewed:
            # its median is below its mean k/n), so a signed-rank test of it rejects "less" far
            # above alpha under the null. Its probability integral transform is uniform at
            # chance, hence symmetric about 1/2: that is what is tested.
            d = chance_cdf_r2(r**2, n, k) - 0.5
            text = f"F_Beta(k/2,(n-k)/2)({column}^2) - 1/2 (chance: r^2 ~ Beta, mean k/n)"
        else:
            other = _null_column(column, opts.null)
            d = r - _f(g, str(other))
            text = f"{column} - {other}"
        rows.append(_location_row(
            claim=claim, variant=_variant(opts.null, opts.test), autoencoder=str(ae), seed=seed,
            d=d,
            estimate_values=r / np.sqrt(chance_median_r2(n, k)),
            estimate_meaning=f"median {column} / chance median, bootstrap CI (1 = the median "
            "share of a random direction, sqrt(median Beta(k/2, (n-k)/2)); < 1 more "
            "perpendicular)",
            censored=_censored(g, censor), test=opts.test, alternative="less",
            statistic_text=text, null=_null(claim, opts.null), stats=stats))
    return rows


@_register("dmm.perpendicular", "measurements",
           _perpendicular_columns("r_T", ("success_plain",)))
def perpendicular(df: pd.DataFrame, opts: PerpendicularOptions, stats: StatsConfig) -> Rows:
    """dmm.perpendicular: is r_T below chance? One-sided test (less) per (autoencoder, seed).

    Statistic by null: ``random_subspace`` r_T - r_R; ``other_image`` r_T - r_Tother; ``beta``
    F(r_T^2) - 1/2 with F the chance CDF Beta(k/2, (n-k)/2) of r^2 (the catalogue's r_T^2 - k/n on
    the probability scale; see the comment in the code for why). Estimate: median r_T / the
    chance median of r, with a bootstrap CI; effect size: rank-biserial r (Wilcoxon).

    Censoring: r_T of a failed attack is measured on the perturbation reached at eps; it is
    still a gradient direction, so keeping it biases r_T toward the gradient's own r_T (toward
    r_T_grad), not toward rejection. ``n_censored`` counts ``success_plain == False``.
    """
    return _perpendicular(df, opts, stats, claim="dmm.perpendicular", column="r_T",
                          censor=("success_plain",))


@_register("dmm.gradient_perpendicular", "measurements", _perpendicular_columns("r_T_grad", ()))
def gradient_perpendicular(df: pd.DataFrame, opts: PerpendicularOptions,
                           stats: StatsConfig) -> Rows:
    """dmm.gradient_perpendicular: as dmm.perpendicular, on r_T_grad (the input gradient).

    Censoring: no attack is involved; nothing is censored (``n_censored`` = 0).
    """
    return _perpendicular(df, opts, stats, claim="dmm.gradient_perpendicular",
                          column="r_T_grad", censor=())


# ---------------------------------------------------------------------------------------------
# zp.not_below_random


@_register("zp.not_below_random", "measurements",
           ("seed", "autoencoder", "sample", "r_T", "r_R", "success_plain"))
def not_below_random(df: pd.DataFrame, opts: NotBelowRandomOptions, stats: StatsConfig) -> Rows:
    """zp.not_below_random: two rows per (autoencoder, seed), both on d = r_T - r_R.

    * variant ``greater``: one-sided test, H0 median(d) <= 0 against H1 median(d) > 0 (rejecting
      says r_T is *larger* than for a random subspace).
    * variant ``tost``: equivalence, H0 |location(d)| >= margin against H1 |location(d)| < margin
      (two one-sided tests against -margin and +margin, p = the larger p).

    Two rows rather than one so that each has its own p, decision and multiplicity adjustment.
    Censoring: as dmm.perpendicular, failed attacks' directions pull r_T toward r_T_grad.
    """
    rows: Rows = []
    claim = "zp.not_below_random"
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        d = _f(g, "r_T") - _f(g, "r_R")
        cens = _censored(g, ("success_plain",))
        meaning = "median r_T - r_R, bootstrap CI (0 = as a random subspace)"
        rows.append(_location_row(
            claim=claim, variant=_variant("greater", opts.test), autoencoder=str(ae), seed=seed,
            d=d,
            estimate_values=d, estimate_meaning=meaning, censored=cens, test=opts.test,
            alternative="greater", statistic_text="r_T - r_R",
            null="r_T is no larger than r_R for a random subspace of the same dimension "
            "(median of r_T - r_R <= 0).", stats=stats))
        rows.append(_tost_row(
            claim=claim, variant=_variant("tost", opts.test), autoencoder=str(ae), seed=seed, d=d,
            margin=opts.margin, estimate_meaning=meaning, censored=cens, test=opts.test,
            statistic_text="r_T - r_R",
            null=_null(claim, "random_subspace"), stats=stats))
    return rows


# ---------------------------------------------------------------------------------------------
# dmm.norm_asymmetry, dmm.off_equals_unrestricted, dmm.off_succeeds_more


@_register("dmm.norm_asymmetry", "measurements",
           ("seed", "autoencoder", "sample", "norm_on", "norm_off", "norm_plain", "success_on",
            "success_off", "success_plain", "n", "k"))
def norm_asymmetry(df: pd.DataFrame, opts: NormAsymmetryOptions, stats: StatsConfig) -> Rows:
    """dmm.norm_asymmetry: do on-manifold attacks need larger norms beyond dimension counting?

    Variant ``beyond_dimension_counting``: one-sided test (greater) against dimension counting
    as a DISTRIBUTION. For a locally linear classifier whose gradient is unrelated to T, the
    minimal norms are margin / ||P_T g|| (on) and margin / ||P_perp g|| (off), so
    on/off = sqrt((1 - B) / B) with B = r^2 ~ Beta(k/2, (n-k)/2). The tested statistic is the
    probability transform 1/2 - F_Beta(1 / (1 + (on/off)^2)): uniform, hence symmetric about 0,
    at chance, positive when on/off is larger than chance gives. (Centring
    log(on/off) at 1/2 log((n-k)/k), the mean-based prediction, rejected 64-78% of tables drawn
    from this very model: the median of B lies below k/n.) Estimate: median of
    log(norm_on/norm_off) - log(chance median of on/off), 0 = chance.
    Variant ``naive``: median log(norm_on / norm_off) with its CI, reported beside it but NOT
    tested (it is positive under dimension counting alone, so a test of it would mistake
    geometry for evidence).

    Variants ``ratio on/plain``, ``ratio off/plain``, ``ratio on/off``: the medians of per-image
    norm ratios that the reproduction published (../shared/REFERENCES.md), descriptive, each
    with the chance median of that ratio under dimension counting, 1/sqrt(m), 1/sqrt(1-m),
    sqrt((1-m)/m) for m the median of Beta(k/2, (n-k)/2), in its note.

    Censoring: failed attacks keep norm = eps, a lower bound; on-manifold attacks fail more
    often, so censoring shrinks norm_on and biases AGAINST the claim (conservative).
    ``n_censored`` counts samples with success_on or success_off False (for a ratio: either of
    its two attacks).
    """
    rows: Rows = []
    claim = "dmm.norm_asymmetry"
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        n, k = _f(g, "n"), _f(g, "k")
        ratio_on_off = _f(g, "norm_on") / _f(g, "norm_off")
        naive = np.log(ratio_on_off)
        m = chance_median_r2(n, k)
        predicted = 0.5 * np.log((1 - m) / m)  # the chance median of log(on/off)
        cens = _censored(g, ("success_on", "success_off"))
        rows.append(_location_row(
            claim=claim, variant=_variant("beyond_dimension_counting", opts.test),
            autoencoder=str(ae), seed=seed,
            d=0.5 - chance_cdf_r2(1.0 / (1.0 + ratio_on_off**2), n, k),
            estimate_values=naive - predicted,
            estimate_meaning="median log(norm_on/norm_off) - log(its chance median "
            "sqrt((1-m)/m)), bootstrap CI (0 = dimension counting)", censored=cens,
            test=opts.test, alternative="greater",
            statistic_text="1/2 - F_Beta(k/2,(n-k)/2)(1/(1 + (norm_on/norm_off)^2))",
            null=_null(claim, "dimension_counting"), stats=stats))
        rows.append(_descriptive_row(
            claim=claim, variant="naive", autoencoder=str(ae), seed=seed, values=naive,
            estimate_meaning="median log(norm_on/norm_off), bootstrap CI (not tested: dimension "
            "counting alone predicts 0.5 log((n-k)/k))", n_censored=int(cens.sum()),
            null="(descriptive) the naive reading, without the dimension-counting baseline",
            stats=stats,
            note=f"dimension counting predicts {float(np.median(predicted)):.4g} (chance "
            "median)"))
        for top, bottom, prediction in (("on", "plain", 1 / m), ("off", "plain", 1 / (1 - m)),
                                        ("on", "off", (1 - m) / m)):
            ratio = _f(g, f"norm_{top}") / _f(g, f"norm_{bottom}")
            rows.append(_descriptive_row(
                claim=claim, variant=f"ratio {top}/{bottom}", autoencoder=str(ae), seed=seed,
                values=ratio, estimate_meaning=f"median norm_{top}/norm_{bottom} per image, "
                "bootstrap CI (the statistic the reproduction published)",
                n_censored=int(_censored(g, (f"success_{top}", f"success_{bottom}")).sum()),
                null="(descriptive) beside the reproduction's median and dimension counting",
                stats=stats, note=f"dimension counting predicts "
                f"{float(np.median(np.sqrt(prediction))):.4g} (chance median)"))
    return rows


@_register("dmm.off_equals_unrestricted", "measurements",
           ("seed", "autoencoder", "sample", "norm_off", "norm_plain", "success_off",
            "success_plain"))
def off_equals_unrestricted(df: pd.DataFrame, opts: OffEqualsUnrestrictedOptions,
                            stats: StatsConfig) -> Rows:
    """dmm.off_equals_unrestricted: TOST (Wilcoxon) of log(norm_off / norm_plain) within ±margin.

    Censoring: both norms are capped at their eps; when eps_off > eps_plain a failed plain attack
    shrinks norm_plain, which biases toward non-equivalence (conservative). ``n_censored``
    counts samples with success_off or success_plain False.
    """
    rows: Rows = []
    claim = "dmm.off_equals_unrestricted"
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        d = np.log(_f(g, "norm_off") / _f(g, "norm_plain"))
        rows.append(_tost_row(
            claim=claim, variant="tost", autoencoder=str(ae), seed=seed, d=d, margin=opts.margin,
            estimate_meaning="median log(norm_off/norm_plain), bootstrap CI (0 = equal norms)",
            censored=_censored(g, ("success_off", "success_plain")), test="wilcoxon",
            statistic_text="log(norm_off/norm_plain)", null=_null(claim, "not_equivalent"),
            stats=stats))
    return rows


@_register("dmm.off_succeeds_more", "measurements",
           ("seed", "autoencoder", "sample", "success_on", "success_off"))
def off_succeeds_more(df: pd.DataFrame, opts: OffSucceedsMoreOptions,
                      stats: StatsConfig) -> Rows:
    """dmm.off_succeeds_more: exact McNemar, one-sided (off-manifold succeeds more).

    Estimate: success rate off - on with a paired Newcombe CI. Censoring is the outcome itself;
    every sample counts (``n_censored`` = samples where either attack failed).
    """
    rows: Rows = []
    claim = "dmm.off_succeeds_more"
    if {"eps_on", "eps_off"} <= set(df.columns):
        differ = ~np.isclose(df["eps_on"].to_numpy(float), df["eps_off"].to_numpy(float))
        if differ.any():
            first = df.loc[differ].iloc[0]
            raise AnalysisError(
                f"{claim}: success rates compare only at one budget, but {int(differ.sum())} "
                f"rows have eps_on != eps_off (e.g. seed {int(first['seed'])}, autoencoder "
                f"{first['autoencoder']!r}: {first['eps_on']:g} vs {first['eps_off']:g}); "
                "set attack.eps.on and attack.eps.off equal")
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        on, off = g["success_on"].to_numpy(bool), g["success_off"].to_numpy(bool)
        rows.append(_mcnemar_row(
            claim=claim, variant="equal_rates", autoencoder=str(ae), seed=seed, first=on,
            second=off, alternative="greater", names=("on", "off"),
            n_censored=int((~on | ~off).sum()), null=_null(claim, "equal_rates"), stats=stats))
    return rows


# ---------------------------------------------------------------------------------------------
# iso.plain_vs_isometric, ae.validity


def _pick_autoencoder(names: Sequence[str], given: str | None, default: str, role: str) -> str:
    from dimple_stats.suggest import did_you_mean

    wanted = given if given is not None else default
    if wanted in names:
        return wanted
    how = f"{role}={given!r}" if given is not None else f"no {role} autoencoder named and none " \
        f"called {default!r}"
    raise AnalysisError(
        f"iso.plain_vs_isometric: {how}{did_you_mean(wanted, names)}; autoencoders in the "
        f"table: {', '.join(names) or '(none)'}; set the claim's options "
        f"{{plain: NAME, isometric: NAME}}")


@_register("iso.plain_vs_isometric", "measurements",
           ("seed", "autoencoder", "sample", "r_T", "success_plain"))
def plain_vs_isometric(df: pd.DataFrame, opts: PlainVsIsometricOptions,
                       stats: StatsConfig) -> Rows:
    """iso.plain_vs_isometric: two-sided test of r_T(plain) - r_T(isometric) on the same samples.

    Samples are paired on (seed, sample); samples present under one autoencoder only are left
    out and counted in the note. Autoencoders are named by the options; when a name is None the
    autoencoder called "plain" (resp. "isometric") is used, else an :class:`AnalysisError`
    names what the table holds. Per-autoencoder perpendicularity is dmm.perpendicular's job
    (it runs per autoencoder).

    Censoring: the same attack is projected on both manifolds, so censoring affects both sides
    equally. ``n_censored`` counts pairs with success_plain False on either side.
    """
    claim = "iso.plain_vs_isometric"
    names = sorted(df["autoencoder"].unique().tolist())
    plain = _pick_autoencoder(names, opts.plain, "plain", "plain")
    iso = _pick_autoencoder(names, opts.isometric, "isometric", "isometric")
    if plain == iso:
        raise AnalysisError(f"{claim}: plain and isometric are the same autoencoder {plain!r}")
    cols = ["seed", "sample", "r_T", "success_plain"]
    a = df.loc[df["autoencoder"] == plain, cols]
    b = df.loc[df["autoencoder"] == iso, cols]
    both = a.merge(b, on=["seed", "sample"], suffixes=("_a", "_b"), how="outer", indicator=True)
    rows: Rows = []
    for (seed,), g in _groups(both, ["seed"]):
        paired = g[g["_merge"] == "both"]
        unpaired = len(g) - len(paired)
        d = _f(paired, "r_T_a") - _f(paired, "r_T_b")
        cens = ~paired["success_plain_a"].to_numpy(bool) | \
            ~paired["success_plain_b"].to_numpy(bool)
        rows.append(_location_row(
            claim=claim, variant=_variant("no_change", opts.test), autoencoder=f"{plain} - {iso}",
            seed=seed, d=d,
            estimate_values=d,
            estimate_meaning=f"median r_T({plain}) - r_T({iso}), bootstrap CI (0 = no change)",
            censored=cens, test=opts.test, alternative="two-sided",
            statistic_text=f"r_T({plain}) - r_T({iso}), paired by sample",
            null=_null(claim, "no_change"), stats=stats,
            note=f"{unpaired} unpaired sample(s) left out" if unpaired else ""))
    return rows


@_register("ae.validity", "measurements",
           ("seed", "autoencoder", "sample", "recon_err", "norm_plain", "r_T", "success_plain"))
def validity(df: pd.DataFrame, opts: ValidityOptions, stats: StatsConfig) -> Rows:
    """ae.validity: Spearman(recon_err / norm_plain, r_T), two-sided, plus tercile strata.

    Variant ``no_association`` is the test. Variants ``recon_err tercile 1/3`` .. ``3/3`` report
    the median r_T (bootstrap CI) within each tercile of recon_err (computed per autoencoder and
    seed); they are descriptive, so a reader sees whether r_T moves with reconstruction quality.

    Censoring: censored norms (= eps) understate the true norm, so recon_err / norm_plain is
    overstated for them; they are kept and counted (``success_plain == False``).
    """
    rows: Rows = []
    claim = "ae.validity"
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        cens = _censored(g, ("success_plain",))
        rel = _f(g, "recon_err") / _f(g, "norm_plain")
        r_t = _f(g, "r_T")
        rows.append(_spearman_row(
            claim=claim, variant="no_association", autoencoder=str(ae), seed=seed, x=rel, y=r_t,
            n_censored=int(cens.sum()), statistic_text="(recon_err / norm_plain, r_T)",
            null=_null(claim, "no_association"), stats=stats))
        recon = _f(g, "recon_err")
        try:
            tercile = pd.qcut(recon, 3, labels=False, duplicates="drop")
        except ValueError:  # all equal or too few: one stratum
            tercile = np.zeros(len(g))
        tercile = np.asarray(tercile, dtype=float)
        for t in range(3):
            inside = tercile == t
            if not inside.any():
                continue
            rows.append(_descriptive_row(
                claim=claim, variant=f"recon_err tercile {t + 1}/3", autoencoder=str(ae),
                seed=seed, values=r_t[inside],
                estimate_meaning="median r_T within the recon_err tercile, bootstrap CI",
                n_censored=int(cens[inside].sum()),
                null="(descriptive) r_T by reconstruction-error tercile", stats=stats,
                note=f"recon_err in [{recon[inside].min():.4g}, {recon[inside].max():.4g}]"))
    return rows


# ---------------------------------------------------------------------------------------------
# iso.defense


@_register("iso.defense", "defense",
           ("seed", "defense", "eps", "sample", "robust_correct", "clean_correct"))
def defense(df: pd.DataFrame, opts: DefenseOptions, stats: StatsConfig) -> Rows:
    """iso.defense: exact McNemar (greater) on robust-correct indicators, per eps and seed.

    Every defence other than the baselines is compared, on the same samples, with ``none`` (no
    projection) and with ``plain`` (the plain autoencoder's projection), where present; variant
    ``vs <baseline> @ eps=<eps>``. The clean-accuracy cost (clean accuracy of the defence minus
    the baseline's, paired Newcombe CI) is a descriptive row ``clean cost vs <baseline>`` per seed.
    With ``eps`` in the options only those budgets are analysed (each must be in the table).

    Censoring: a failed adaptive attack leaves the sample robust-correct: that is the outcome
    itself. ``n_censored`` counts pairs in which the attack failed on either side.
    """
    claim = "iso.defense"
    eps_all = np.sort(df["eps"].unique())
    if opts.eps is not None:
        missing = [e for e in opts.eps if not np.isclose(eps_all, e).any()]
        if missing:
            raise AnalysisError(f"{claim}: eps {missing} not in the defense table (has "
                                f"{eps_all.tolist()})")
        df = df[np.isclose(df["eps"].to_numpy()[:, None], np.asarray(opts.eps)).any(axis=1)]
    defences = sorted(df["defense"].unique().tolist())
    baselines = [b for b in ("none", "plain") if b in defences]
    if not baselines:
        raise AnalysisError(f"{claim}: the defense table needs a baseline defense 'none' or "
                            f"'plain'; it has {', '.join(defences)}")
    rows: Rows = []
    for (seed,), g in _groups(df, ["seed"]):
        for name in defences:
            rows += _robust_accuracy_rows(claim, g, name, int(seed), stats)
            for base in baselines:
                if name not in (base, "none"):  # plain itself is compared with none
                    rows += _defense_rows(claim, g, name, base, int(seed), stats)
    return rows


def _robust_accuracy_rows(claim: str, g: pd.DataFrame, name: str, seed: int,
                          stats: StatsConfig) -> Rows:
    """Robust accuracy of one defence per eps, Wilson CI: the levels the tests compare."""
    rows: Rows = []
    z = float(scipy_stats.norm.isf((1 - stats.confidence) / 2))
    for eps, e in g[g["defense"] == name].groupby("eps", sort=True):
        correct = e["robust_correct"].to_numpy(bool)
        n, hits = int(correct.size), int(correct.sum())
        lo, hi = proportion_confint(hits, n, alpha=1 - stats.confidence, method="wilson")
        rows.append(ResultRow(
            claim=claim, variant=f"robust accuracy @ eps={eps:g}", autoencoder=name, seed=seed,
            n=n, n_censored=hits, estimate=hits / n, ci_low=float(lo), ci_high=float(hi),
            se=float(hi - lo) / (2 * z),
            estimate_meaning="share of images still classified correctly after the adaptive "
            "attack, Wilson CI", effect_size=math.nan, effect_name="", statistic=math.nan,
            statistic_name="", p=math.nan,
            null="(descriptive) robust accuracy under the adaptive attack (an upper bound)",
            test=DESCRIPTIVE, alternative=""))
    return rows


def _defense_rows(claim: str, g: pd.DataFrame, name: str, base: str, seed: int,
                  stats: StatsConfig) -> Rows:
    rows: Rows = []
    cols = ["eps", "sample", "robust_correct", "clean_correct"]
    both = g.loc[g["defense"] == base, cols].merge(
        g.loc[g["defense"] == name, cols], on=["eps", "sample"], suffixes=("_base", "_def"))
    for eps, e in both.groupby("eps", sort=True):
        base_rc = e["robust_correct_base"].to_numpy(bool)
        def_rc = e["robust_correct_def"].to_numpy(bool)
        rows.append(_mcnemar_row(
            claim=claim, variant=f"vs {base} @ eps={eps:g}", autoencoder=name, seed=seed,
            first=base_rc, second=def_rc, alternative="greater", names=(base, name),
            n_censored=int((base_rc | def_rc).sum()), null=_null(claim, "no_gain"), stats=stats))
    clean = both.drop_duplicates("sample")
    base_cc = clean["clean_correct_base"].to_numpy(bool)
    def_cc = clean["clean_correct_def"].to_numpy(bool)
    diff, lo, hi, se = paired_risk_difference(base_cc, def_cc, confidence=stats.confidence)
    rows.append(ResultRow(
        claim=claim, variant=f"clean cost vs {base}", autoencoder=name, seed=seed,
        n=int(len(clean)), n_censored=0, estimate=diff, ci_low=lo, ci_high=hi, se=se,
        estimate_meaning=f"clean accuracy({name}) - clean accuracy({base}), paired Newcombe CI "
        "(negative = a cost)", effect_size=math.nan, effect_name="", statistic=math.nan,
        statistic_name="", p=math.nan, null="(descriptive) clean-accuracy cost of the defence",
        test=DESCRIPTIVE, alternative=""))
    return rows


# ---------------------------------------------------------------------------------------------
# dmm.clinging_then_dimpling


@_register("dmm.clinging_then_dimpling", "training",
           ("seed", "epoch", "sample", "norm_plain", "success_plain", "r_T", "r_R"))
def clinging_then_dimpling(df: pd.DataFrame, opts: ClingingOptions, stats: StatsConfig) -> Rows:
    """dmm.clinging_then_dimpling: a change of slope in the boundary distance during training.

    Per seed (and autoencoder, when the training table has that column), on the per-epoch
    medians of norm_plain:

    * ``change point``: continuous two-segment (hinge) least-squares fit, change point chosen
      among the epochs; F statistic of one line against two segments (change point counted as a
      parameter, F(2, m - 4)), its p-value by a residual bootstrap of the maximised F under one
      line, because the F table is anti-conservative when the change point is searched for (see
      :mod:`dimple_stats.stats.changepoint`; the F-table p is in the note); estimate =
      change-point epoch with a paired percentile-bootstrap CI; effect size = late / early slope.
    * ``trend early`` / ``trend late``: Spearman of median norm_plain on epoch within each phase
      (epochs <= and >= the change point); two-sided.
    * ``r_T below chance throughout``: one-sided Wilcoxon (less) of r_T - r_R at every epoch;
      intersection-union test, p = the largest per-epoch p (rejects only if every epoch does);
      estimate = the largest per-epoch median of r_T - r_R.

    Every epoch present is analysed (``every`` is how often the runner measures).
    Censoring: early-epoch attacks fail less (the boundary is near); censoring at eps flattens
    late epochs, biasing toward a change point. ``n_censored`` counts success_plain False over
    all epochs; the note gives the count per epoch.
    """
    claim = "dmm.clinging_then_dimpling"
    df = _autoencoder_column(df)
    rows: Rows = []
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        rows += _clinging_rows(claim, str(ae), int(seed), g, stats)
    return rows


def _clinging_rows(claim: str, ae: str, seed: int, g: pd.DataFrame, stats: StatsConfig) -> Rows:
    norms = g.pivot(index="epoch", columns="sample", values="norm_plain").sort_index()
    epochs = norms.index.to_numpy()
    medians = np.nanmedian(norms.to_numpy(dtype=float), axis=1)
    cens = _censored(g, ("success_plain",))
    per_epoch = g.assign(_c=cens).groupby("epoch")["_c"].sum()
    cens_note = "censored per epoch: " + ", ".join(f"{e}:{int(c)}" for e, c in per_epoch.items())
    fit = fit_two_segment(epochs, medians)
    lo, hi, se = (math.nan,) * 3
    p = math.nan
    if math.isfinite(fit.change_point):
        lo, hi, se = change_point_ci(epochs, norms.to_numpy(dtype=float),
                                     confidence=stats.confidence, n_resamples=stats.bootstrap,
                                     rng=stable_rng(claim, "change point", ae, seed))
        p = sup_f_pvalue(epochs, medians, n_resamples=stats.bootstrap,
                         rng=stable_rng(claim, "sup F", ae, seed))
    ratio = fit.slope_after / fit.slope_before if fit.slope_before else math.nan
    rows: Rows = [ResultRow(
        claim=claim, variant="change point", autoencoder=ae, seed=seed, n=len(g),
        n_censored=int(cens.sum()), estimate=fit.change_point, ci_low=lo, ci_high=hi, se=se,
        estimate_meaning="epoch of the change of slope of median norm_plain, paired bootstrap "
        "percentile CI", effect_size=ratio, effect_name="late / early slope",
        statistic=fit.f_statistic, statistic_name=f"F({fit.df[0]}, {fit.df[1]})", p=p,
        null=_null(claim, "no_change_point"),
        test="F-test, one line vs continuous two-segment fit (change point by least squares) on "
        "per-epoch median norm_plain; p by residual bootstrap of sup-F under one line",
        alternative="greater",
        note=_join(cens_note, f"F-table p (anti-conservative) {fit.pvalue:.3g}"
                   if math.isfinite(fit.pvalue) else "fewer than 5 epochs"))]
    if math.isfinite(fit.change_point):
        for phase, inside in (("early", epochs <= fit.change_point),
                              ("late", epochs >= fit.change_point)):
            rows.append(_spearman_row(
                claim=claim, variant=f"trend {phase}", autoencoder=ae, seed=seed,
                x=epochs[inside].astype(float), y=medians[inside], n_censored=0,
                statistic_text=f"(epoch, median norm_plain), {phase} phase",
                null=f"median norm_plain has no monotone trend over the {phase} epochs "
                "(Spearman rho = 0).", stats=stats,
                note=f"{int(inside.sum())} epochs; phase boundary chosen from the same data"))
    rows.append(_below_chance_throughout(claim, ae, seed, g, int(cens.sum()), stats))
    return rows


def _below_chance_throughout(claim: str, ae: str, seed: int, g: pd.DataFrame, n_censored: int,
                             stats: StatsConfig) -> ResultRow:
    pvals, medians = [], []
    for _, e in g.groupby("epoch", sort=True):
        d = _f(e, "r_T") - _f(e, "r_R")
        d = d[np.isfinite(d)]
        pvals.append(wilcoxon_signed_rank(d, alternative="less").pvalue if d.size else math.nan)
        medians.append(float(np.median(d)) if d.size else math.nan)
    worst = int(np.nanargmax(medians)) if np.isfinite(medians).any() else 0
    worst_epoch = sorted(g["epoch"].unique())[worst]
    d_worst = _f(g[g["epoch"] == worst_epoch], "r_T") - _f(g[g["epoch"] == worst_epoch], "r_R")
    est = _bootstrap(d_worst[np.isfinite(d_worst)], stats, claim, "below chance", ae, seed)
    p = max(pvals) if pvals and np.isfinite(pvals).all() else math.nan
    return ResultRow(
        claim=claim, variant="r_T below chance throughout", autoencoder=ae, seed=seed, n=len(g),
        n_censored=n_censored, estimate=est.estimate, ci_low=est.ci_low, ci_high=est.ci_high,
        se=est.se, estimate_meaning=f"largest per-epoch median r_T - r_R (epoch {worst_epoch}), "
        "bootstrap CI (0 = chance)", effect_size=math.nan, effect_name="",
        statistic=float(len(pvals)), statistic_name="epochs tested", p=p,
        null="at some epoch r_T is no smaller than r_R (median of r_T - r_R >= 0).",
        test="intersection-union test: one-sided Wilcoxon signed-rank (less) on r_T - r_R at "
        "every epoch, p = max", alternative="less")


# ---------------------------------------------------------------------------------------------
# dmm.adv_training_deepens


@_register("dmm.adv_training_deepens", "adv_training",
           ("seed", "classifier", "sample", "r_T", "norm_plain", "success_plain"))
def adv_training_deepens(df: pd.DataFrame, opts: AdvTrainingOptions, stats: StatsConfig) -> Rows:
    """dmm.adv_training_deepens: same samples, standard vs adversarially trained classifier.

    * variant ``turned``: TOST (Wilcoxon) of r_T(adv) - r_T(std) within ±margin (rejecting H0
      says the boundary did NOT turn).
    * variant ``no_deepening``: one-sided Wilcoxon (greater) of norm_plain(adv) - norm_plain(std).

    Censoring: robust models fail more attacks at a fixed eps; censoring at eps shrinks their
    norms and biases against deepening (conservative). ``n_censored`` counts pairs with
    success_plain False on either side.
    """
    claim = "dmm.adv_training_deepens"
    df = _autoencoder_column(df)
    unknown = sorted(set(df["classifier"]) - {"standard", "adversarial"})
    if unknown:
        raise AnalysisError(f"{claim}: classifier must be 'standard' or 'adversarial', got "
                            f"{unknown}")
    rows: Rows = []
    cols = ["sample", "r_T", "norm_plain", "success_plain"]
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        both = g.loc[g["classifier"] == "standard", cols].merge(
            g.loc[g["classifier"] == "adversarial", cols], on="sample", suffixes=("_std", "_adv"),
            how="outer", indicator=True)
        paired = both[both["_merge"] == "both"]
        unpaired = len(both) - len(paired)
        note = f"{unpaired} unpaired sample(s) left out" if unpaired else ""
        cens = (~paired["success_plain_std"].to_numpy(bool)
                | ~paired["success_plain_adv"].to_numpy(bool))
        d_r = _f(paired, "r_T_adv") - _f(paired, "r_T_std")
        d_norm = _f(paired, "norm_plain_adv") - _f(paired, "norm_plain_std")
        rows.append(_tost_row(
            claim=claim, variant="turned", autoencoder=str(ae), seed=seed, d=d_r,
            margin=opts.margin, estimate_meaning="median r_T(adv) - r_T(std), bootstrap CI "
            "(0 = unchanged)", censored=cens, test="wilcoxon",
            statistic_text="r_T(adversarial) - r_T(standard), paired by sample",
            null=_null(claim, "turned"), stats=stats, note=note))
        rows.append(_location_row(
            claim=claim, variant="no_deepening", autoencoder=str(ae), seed=seed, d=d_norm,
            estimate_values=d_norm, estimate_meaning="median norm_plain(adv) - norm_plain(std), "
            "bootstrap CI (0 = no deepening)", censored=cens, test="wilcoxon",
            alternative="greater",
            statistic_text="norm_plain(adversarial) - norm_plain(standard), paired by sample",
            null=_null(claim, "no_deepening"), stats=stats, note=note))
    return rows


_missing = sorted(set(CATALOGUE) - set(ANALYSES))
if _missing:  # pragma: no cover - import-time guard that every claim has an analysis
    raise ImportError(f"claims without an analysis: {_missing}")
