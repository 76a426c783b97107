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
    LocalVsGlobalOptions,
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
from dimple_stats.stats.censored import (
    UNINFORMATIVE_SHARE,
    Bounds,
    bounded_median_ci,
    censored_location_test,
    median_tost,
)
from dimple_stats.stats.chance import chance_cdf_r2, chance_median_r2
from dimple_stats.stats.changepoint import change_point_ci, fit_two_segment, kink_test
from dimple_stats.stats.correlation import spearman, spearman_ci
from dimple_stats.stats.effect_size import location_effect
from dimple_stats.stats.mcnemar import discordant_pairs, mcnemar_exact, paired_risk_difference
from dimple_stats.stats.paired import PairedTest, location_test, wilcoxon_signed_rank
from dimple_stats.stats.power import (
    suggested_n_location,
    suggested_n_mcnemar,
    suggested_n_spearman,
    suggested_n_tost,
)
from dimple_stats.stats.result import Alternative

__all__ = ["ClaimAnalysis", "ANALYSES", "get_analysis", "AnalysisError", "OPTIONAL_COLUMNS"]

#: Columns every analysis reads when the table has them, beyond those it requires: the image's
#: index in its split (pooled rows then account for images the seeds share).
OPTIONAL_COLUMNS: tuple[str, ...] = ("image_id",)

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


def _ids(g: pd.DataFrame) -> np.ndarray | None:
    """Image ids of a group's rows (None for tables written before ids were measured)."""
    return g["image_id"].to_numpy() if "image_id" in g.columns else None


def _censored_share_reason(censored: np.ndarray, what: str) -> str:
    """The ``uninformative`` reason when more than half the rows are censored, else ""."""
    share = float(censored.mean()) if censored.size else 0.0
    if share >= UNINFORMATIVE_SHARE:  # at exactly half, an even n's median is unbounded too
        return (f"{100 * share:.0f}% of {what} censored (>= {100 * UNINFORMATIVE_SHARE:.0f}%): "
                "the median is not identified")
    return ""


def _location_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, d: np.ndarray | Bounds,
    estimate_values: np.ndarray | Bounds, estimate_meaning: str, censored: np.ndarray,
    test: PairedTest, alternative: Alternative, statistic_text: str, null: str,
    stats: StatsConfig, null_value: float, ids: np.ndarray | None = None, note: str = "",
    mu: float = 0.0, uninformative: str = "",
) -> ResultRow:
    """A location test of ``d`` against ``mu`` with a bootstrap CI of median(estimate_values).

    ``d`` and ``estimate_values`` may be :class:`~dimple_stats.stats.censored.Bounds`
    (censored samples known within an interval); the test then imputes each at its least
    favourable bound and the CI covers the bounds. ``null_value`` is the estimate's value under
    H0 (the pooled test compares the random-effects mean of the estimates with it).
    """
    db = d if isinstance(d, Bounds) else Bounds.exact(d)
    eb = estimate_values if isinstance(estimate_values, Bounds) else Bounds.exact(estimate_values)
    keep = ~(np.isnan(db.lo) | np.isnan(db.hi) | np.isnan(eb.lo) | np.isnan(eb.hi))
    db, eb, censored = db.keep(keep), eb.keep(keep), censored[keep]
    ids = ids[keep] if ids is not None else None
    exact = not db.censored.any()
    res = censored_location_test(db, test, alternative=alternative, mu=mu) if db.lo.size else None
    # Censored: the estimate is the median at the bound least favourable to H1 (what the test
    # uses, and what the pooled test pools), so a pooled "greater" never rests on optimism.
    side = {"greater": "lo", "less": "hi"}.get(alternative, "observed")
    est, bound_note = bounded_median_ci(eb, side=side, confidence=stats.confidence,
                                        n_resamples=stats.bootstrap,
                                        rng=stable_rng(claim, variant, autoencoder, seed))
    if bound_note and side != "observed":
        bound_note += (f"; estimate: censored values at their {'lower' if side == 'lo' else 'upper'}"
                       " bound (least favourable to H1)")
    observed = np.where(np.isfinite(db.lo), db.lo, db.hi) - mu
    effect, effect_name = location_effect(observed, test) if observed.size else (math.nan, "")
    undefined = "" if res is not None and res.defined else "test undefined (no non-zero values)"
    name = _TEST_NAMES[test] + ("" if exact else ", censored values at their least favourable "
                                "bound")
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=int(db.lo.size),
        n_censored=int(censored.sum()), estimate=est.estimate, ci_low=est.ci_low,
        ci_high=est.ci_high, se=est.se, estimate_meaning=estimate_meaning, effect_size=effect,
        effect_name=effect_name, statistic=res.statistic if res else math.nan,
        statistic_name=res.statistic_name if res else "", p=res.pvalue if res else math.nan,
        null=null, test=_test_text(name, statistic_text + (f" - ({mu:.4g})" if mu else "")),
        alternative=alternative,
        suggested_n=suggested_n_location(observed[np.isfinite(observed)], test=test,
                                         alternative=alternative, alpha=stats.alpha,
                                         power=stats.power),
        note=_join(note, _dropped_note(int((~keep).sum())), bound_note, undefined, uninformative),
        null_value=null_value, uninformative=uninformative,
        extra={"values": {"lo": eb.lo, "hi": eb.hi}.get(side, np.where(
            np.isfinite(eb.lo), eb.lo, eb.hi)), "ids": ids, "bounded": bool(bound_note)},
    )


def _tost_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, d: np.ndarray | Bounds,
    margin: float, estimate_meaning: str, censored: np.ndarray, statistic_text: str,
    null: str, stats: StatsConfig, ids: np.ndarray | None = None, note: str = "",
    uninformative: str = "",
) -> ResultRow:
    """TOST of the MEDIAN of ``d`` within +-margin (two exact sign tests), with its CI.

    The median is what the estimate reports and what the null names; a Wilcoxon TOST tests the
    pseudo-median instead, which for a skewed d lies elsewhere (52% rejections at median =
    -margin per seed, 99.5% pooled). Censored samples count against equivalence on the side
    where their value is unknown.
    """
    db = d if isinstance(d, Bounds) else Bounds.exact(d)
    keep = ~(np.isnan(db.lo) | np.isnan(db.hi))
    db, censored = db.keep(keep), censored[keep]
    ids = ids[keep] if ids is not None else None
    res = median_tost(db, -margin, margin) if db.lo.size else None
    est, bound_note = bounded_median_ci(db, confidence=stats.confidence,
                                        n_resamples=stats.bootstrap,
                                        rng=stable_rng(claim, variant, autoencoder, seed))
    observed = np.where(np.isfinite(db.lo), db.lo, db.hi)
    finite = observed[np.isfinite(observed)]
    defined = res is not None and math.isfinite(res.pvalue)
    extra: dict[str, Any] = {"values": observed, "ids": ids, "equivalence": (-margin, margin),
                             "bounded": bool(bound_note)}
    if db.censored.any():
        # The pooled TOST tests each side on its own worst case (see results._pool_meta).
        rng = stable_rng(claim, variant, autoencoder, seed, "bounds")
        lo_est, _ = bounded_median_ci(db, side="lo", n_resamples=stats.bootstrap, rng=rng)
        hi_est, _ = bounded_median_ci(db, side="hi", n_resamples=stats.bootstrap, rng=rng)
        extra["bound_estimates"] = (lo_est.estimate, lo_est.se, hi_est.estimate, hi_est.se)
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=int(db.lo.size),
        n_censored=int(censored.sum()), estimate=est.estimate, ci_low=est.ci_low,
        ci_high=est.ci_high, se=est.se, estimate_meaning=estimate_meaning,
        effect_size=float(np.median(finite)) / margin if finite.size else math.nan,
        effect_name="median / margin (|.| < 1 inside the margin)",
        statistic=res.statistic if res else math.nan,
        statistic_name=res.statistic_name if res else "", p=res.pvalue if res else math.nan,
        null=null,
        test=_test_text(f"TOST on the median (two one-sided exact sign tests, p = max) within "
                        f"+-{margin:.4g}", statistic_text),
        alternative="equivalence",
        suggested_n=suggested_n_tost(finite, margin, test="sign", alpha=stats.alpha,
                                     power=stats.power) if finite.size else math.nan,
        note=_join(note, _dropped_note(int((~keep).sum())), bound_note,
                   "" if defined else "test undefined", uninformative),
        uninformative=uninformative, extra=extra,
    )


def _mcnemar_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, first: np.ndarray,
    second: np.ndarray, alternative: Alternative, names: tuple[str, str], n_censored: int,
    null: str, stats: StatsConfig, note: str = "", ids: np.ndarray | None = None,
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
        extra={"pool": "mcnemar", "pairs": (np.asarray(first, bool), np.asarray(second, bool)),
               "ids": ids},
    )


def _spearman_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, x: np.ndarray, y: np.ndarray,
    n_censored: int, statistic_text: str, null: str, stats: StatsConfig, note: str = "",
    alternative: Alternative = "two-sided", descriptive: bool = False,
) -> ResultRow:
    """Spearman's rho with its Fisher-z CI, tested against 0 unless ``descriptive``."""
    keep = np.isfinite(x) & np.isfinite(y)
    res = spearman(x[keep], y[keep], alternative=alternative)
    lo, hi, se = spearman_ci(res.statistic, res.n, confidence=stats.confidence)
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=res.n,
        n_censored=int(n_censored), estimate=res.statistic, ci_low=lo, ci_high=hi, se=se,
        estimate_meaning="Spearman rho, Fisher-z CI (0 = no association)",
        effect_size=res.statistic, effect_name="Spearman rho", statistic=res.statistic,
        statistic_name="rho", p=math.nan if descriptive else res.pvalue, null=null,
        test=DESCRIPTIVE if descriptive else _test_text("Spearman rank correlation",
                                                        statistic_text),
        alternative="" if descriptive else alternative,
        suggested_n=math.nan if descriptive else suggested_n_spearman(
            res.statistic, alternative=alternative, alpha=stats.alpha, power=stats.power),
        note=_join(note, _dropped_note(int((~keep).sum())),
                   "" if res.defined else "test undefined (constant values or n < 3)"),
        extra={"scale": "fisher_z"},
    )


def _spearman_tost_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, x: np.ndarray, y: np.ndarray,
    margin: float, n_censored: int, statistic_text: str, null: str, stats: StatsConfig,
) -> ResultRow:
    """Equivalence of Spearman's rho within +-margin: two one-sided z tests on Fisher's z."""
    keep = np.isfinite(x) & np.isfinite(y)
    res = spearman(x[keep], y[keep], alternative="two-sided")
    lo, hi, se = spearman_ci(res.statistic, res.n, confidence=stats.confidence)
    p = z_stat = math.nan
    if res.defined and res.n > 3 and abs(res.statistic) < 1:
        se_z = math.sqrt(1.06 / (res.n - 3))
        z = math.atanh(res.statistic)
        z_low, z_high = (z - math.atanh(-margin)) / se_z, (math.atanh(margin) - z) / se_z
        z_stat = min(z_low, z_high)
        p = float(scipy_stats.norm.sf(z_stat))
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=res.n,
        n_censored=int(n_censored), estimate=res.statistic, ci_low=lo, ci_high=hi, se=se,
        estimate_meaning=f"Spearman rho, Fisher-z CI (equivalence: |rho| < {margin:g})",
        effect_size=res.statistic, effect_name="Spearman rho", statistic=z_stat,
        statistic_name="z (binding side of the two one-sided tests)", p=p, null=null,
        test=_test_text(f"TOST on Spearman's rho within +-{margin:g} (two one-sided z tests on "
                        "Fisher z, variance 1.06/(n-3))", statistic_text),
        alternative="equivalence",
        note=_join(_dropped_note(int((~keep).sum())),
                   "" if math.isfinite(p) else "test undefined (constant values or n < 4)"),
        extra={"scale": "fisher_z", "equivalence": (-margin, margin)},
    )


def _intersection_union_row(*, claim: str, variant: str, parts: Sequence[ResultRow],
                            null: str) -> ResultRow:
    """A joint claim "A and B": rejects only if every part rejects; p = the largest part p.

    The estimate is the first part's (what the joint claim is mostly about); its pooled row is
    built from the parts' pooled rows (see :func:`dimple_stats.results.pool_seeds`).
    """
    first = parts[0]
    reasons = [p.uninformative for p in parts if p.uninformative]
    pvals = [p.p for p in parts]
    p = max(pvals) if all(math.isfinite(v) for v in pvals) else math.nan
    return ResultRow(
        claim=claim, variant=variant, autoencoder=first.autoencoder, seed=first.seed,
        n=first.n, n_censored=first.n_censored, estimate=first.estimate, ci_low=first.ci_low,
        ci_high=first.ci_high, se=first.se, estimate_meaning=first.estimate_meaning,
        effect_size=math.nan, effect_name="", statistic=float(len(parts)),
        statistic_name="parts", p=p, null=null,
        test="intersection-union test: p = max over " + ", ".join(
            f"{q.variant} ({q.alternative})" for q in parts),
        alternative="all parts", note=_join(*reasons), uninformative="; ".join(reasons),
        extra={"pool": "iut", "parts": tuple(q.variant for q in parts)},
    )


def _descriptive_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, values: np.ndarray | Bounds,
    estimate_meaning: str, n_censored: int, null: str, stats: StatsConfig, note: str = "",
    ids: np.ndarray | None = None,
) -> ResultRow:
    """A median with its bootstrap CI, reported but not tested (not in any multiplicity family).

    ``values`` may be :class:`~dimple_stats.stats.censored.Bounds`: the CI then covers them.
    """
    vb = values if isinstance(values, Bounds) else Bounds.exact(values)
    keep = ~(np.isnan(vb.lo) | np.isnan(vb.hi))
    vb = vb.keep(keep)
    est, bound_note = bounded_median_ci(vb, confidence=stats.confidence,
                                        n_resamples=stats.bootstrap,
                                        rng=stable_rng(claim, variant, autoencoder, seed))
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed),
        n=int(keep.sum()), n_censored=int(n_censored), estimate=est.estimate, ci_low=est.ci_low,
        ci_high=est.ci_high, se=est.se, estimate_meaning=estimate_meaning, effect_size=math.nan,
        effect_name="", statistic=math.nan, statistic_name="", p=math.nan, null=null,
        test=DESCRIPTIVE, alternative="",
        note=_join(note, _dropped_note(int((~keep).sum())), bound_note),
        extra={"values": np.where(np.isfinite(vb.lo), vb.lo, vb.hi),
               "ids": ids[keep] if ids is not None else None, "bounded": bool(bound_note)},
    )


def _ratio_bounds(top: np.ndarray, bottom: np.ndarray, top_ok: np.ndarray,
                  bottom_ok: np.ndarray, f: Callable[[np.ndarray], np.ndarray] = np.log,
                  low: float = -math.inf, high: float = math.inf) -> Bounds:
    """Bounds of f(top / bottom) (f increasing) when a failed attack's norm is only >= eps.

    A censored numerator leaves the ratio anywhere above what was observed (up to ``high`` =
    f(inf)), a censored denominator anywhere below (down to ``low`` = f(0)).
    """
    observed = f(top / bottom)
    lo = np.where(bottom_ok, observed, low)
    hi = np.where(top_ok, observed, high)
    lo = np.where(~top_ok & ~bottom_ok, low, lo)
    return Bounds(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))


def _variant(name: str, test: PairedTest) -> str:
    # A non-default test is part of the variant, so two entries of one claim never pool together.
    return name if test == "wilcoxon" else f"{name} ({test})"


def _f(g: pd.DataFrame, col: str) -> np.ndarray:
    return g[col].to_numpy(dtype=float)


# ---------------------------------------------------------------------------------------------
# dmm.perpendicular, dmm.gradient_perpendicular


_NULL_COLUMN: dict[str, str | None] = {
    "random_subspace": "r_R", "other_image": "r_Tother", "beta": None,
    "pca": "r_PCA", "data_random": "r_Rdata"}
# The other image's tangent as a control of the GRADIENT's share: like is compared with like
# (r_Tother is the attack perturbation's share there, a different vector's measurement).
# The data-shaped subspaces are measured for the attack perturbation only.
_GRADIENT_NULL_COLUMN = {**_NULL_COLUMN, "other_image": "r_T_grad_other", "pca": None,
                         "data_random": None}
#: Nulls whose control is a chance draw: the estimate is r / its chance median (null value 1).
#: The others are paired comparisons with a measured control (estimate: median difference).
_CHANCE_NULLS = ("random_subspace", "beta")


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
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        r, n, k = _f(g, column), _f(g, "n"), _f(g, "k")
        other = _null_column(column, opts.null)
        if opts.null == "beta":
            # r^2 - k/n is NOT symmetric about 0 at chance (Beta(k/2, (n-k)/2) is right-skewed:
            # its median is below its mean k/n), so a signed-rank test of it rejects "less" far
            # above alpha under the null. Its probability integral transform is uniform at
            # chance, hence symmetric about 1/2: that is what is tested.
            d = chance_cdf_r2(r**2, n, k) - 0.5
            text = f"F_Beta(k/2,(n-k)/2)({column}^2) - 1/2 (chance: r^2 ~ Beta, mean k/n)"
        else:
            d = r - _f(g, str(other))
            text = f"{column} - {other}"
        if opts.null in _CHANCE_NULLS:
            estimate, null_value = r / np.sqrt(chance_median_r2(n, k)), 1.0
            meaning = (f"median {column} / chance median, bootstrap CI (1 = the median share of "
                       "a random direction, sqrt(median Beta(k/2, (n-k)/2)); < 1 more "
                       "perpendicular)")
        else:
            estimate, null_value = d, 0.0
            meaning = (f"median {column} - {other} per image, bootstrap CI (0 = as the "
                       f"{opts.null.replace('_', ' ')} control; < 0 more perpendicular)")
        rows.append(_location_row(
            claim=claim, variant=_variant(opts.null, opts.test), autoencoder=str(ae), seed=seed,
            d=d, estimate_values=estimate, estimate_meaning=meaning,
            censored=_censored(g, censor), test=opts.test, alternative="less",
            statistic_text=text, null=_null(claim, opts.null), stats=stats,
            null_value=null_value, ids=_ids(g)))
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

    * variant ``non_inferiority``: the claim itself. H0 median(d) <= -margin (r_T IS below a
      random subspace by at least the margin) against H1 median(d) > -margin, an exact sign
      test of the median (one-sided; rejecting supports "not below random"). The TOST this
      replaced tested equivalence, so it also needed r_T not to be ABOVE random: at the committed
      data's +0.36 it never rejected.
    * variant ``greater``: one-sided test, H0 median(d) <= 0 against H1 median(d) > 0 (rejecting
      says r_T is *larger* than for a random subspace); ``test`` from the options (the signed-rank
      test is valid here because d is symmetric under "r_T distributed as r_R").

    Censoring: as dmm.perpendicular, failed attacks' directions pull r_T toward r_T_grad.
    """
    rows: Rows = []
    claim = "zp.not_below_random"
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        d = _f(g, "r_T") - _f(g, "r_R")
        cens = _censored(g, ("success_plain",))
        meaning = "median r_T - r_R, bootstrap CI (0 = as a random subspace)"
        rows.append(_location_row(
            claim=claim, variant="non_inferiority", autoencoder=str(ae), seed=seed, d=d,
            estimate_values=d, estimate_meaning=meaning, censored=cens, test="sign",
            alternative="greater", statistic_text="r_T - r_R", mu=-opts.margin,
            null=_null(claim, "below_random").replace("the margin", f"{opts.margin:g}")
            .replace("-margin", f"-{opts.margin:g}"),
            stats=stats, null_value=-opts.margin, ids=_ids(g)))
        rows.append(_location_row(
            claim=claim, variant=_variant("greater", opts.test), autoencoder=str(ae), seed=seed,
            d=d,
            estimate_values=d, estimate_meaning=meaning, censored=cens, test=opts.test,
            alternative="greater", statistic_text="r_T - r_R",
            null="r_T is no larger than r_R for a random subspace of the same dimension "
            "(median of r_T - r_R <= 0).", stats=stats, null_value=0.0, ids=_ids(g)))
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

    Censoring: a failed attack's norm is only known to be >= eps. A failed on attack makes
    on/off a lower bound (treated as observed it biases AGAINST the claim: a planted effect's
    estimate flipped sign at 50% failures), a failed off attack an upper bound (biases FOR it:
    100% false rejections at 50% failed off attacks). Each censored ratio is imputed at its
    bound least favourable to H1 (:mod:`dimple_stats.stats.censored`), so a rejection stands
    whatever the censored norms are; estimates' CIs cover the bounds. A row with more than 50%
    of its pairs censored is ``uninformative`` (its median is not identified).
    ``n_censored`` counts samples with success_on or success_off False (for a ratio: either of
    its two attacks).
    """
    rows: Rows = []
    claim = "dmm.norm_asymmetry"
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        n, k = _f(g, "n"), _f(g, "k")
        on_ok, off_ok = g["success_on"].to_numpy(bool), g["success_off"].to_numpy(bool)
        m = chance_median_r2(n, k)
        predicted = 0.5 * np.log((1 - m) / m)  # the chance median of log(on/off)
        cens = ~on_ok | ~off_ok
        uninformative = _censored_share_reason(cens, "pairs (on or off attack failed)")
        d = _ratio_bounds(_f(g, "norm_on"), _f(g, "norm_off"), on_ok, off_ok,
                          f=lambda r: 0.5 - chance_cdf_r2(1.0 / (1.0 + r**2), n, k),
                          low=-0.5, high=0.5)
        naive = _ratio_bounds(_f(g, "norm_on"), _f(g, "norm_off"), on_ok, off_ok)
        ids = _ids(g)
        rows.append(_location_row(
            claim=claim, variant=_variant("beyond_dimension_counting", opts.test),
            autoencoder=str(ae), seed=seed, d=d,
            estimate_values=Bounds(naive.lo - predicted, naive.hi - predicted),
            estimate_meaning="median log(norm_on/norm_off) - log(its chance median "
            "sqrt((1-m)/m)), bootstrap CI (0 = dimension counting)", censored=cens,
            test=opts.test, alternative="greater",
            statistic_text="1/2 - F_Beta(k/2,(n-k)/2)(1/(1 + (norm_on/norm_off)^2))",
            null=_null(claim, "dimension_counting"), stats=stats, null_value=0.0, ids=ids,
            uninformative=uninformative))
        rows.append(_descriptive_row(
            claim=claim, variant="naive", autoencoder=str(ae), seed=seed, values=naive,
            estimate_meaning="median log(norm_on/norm_off), bootstrap CI (not tested: dimension "
            "counting alone predicts 0.5 log((n-k)/k))", n_censored=int(cens.sum()),
            null="(descriptive) the naive reading, without the dimension-counting baseline",
            stats=stats, ids=ids,
            note=f"dimension counting predicts {float(np.median(predicted)):.4g} (chance "
            "median)"))
        for top, bottom, prediction in (("on", "plain", 1 / m), ("off", "plain", 1 / (1 - m)),
                                        ("on", "off", (1 - m) / m)):
            ok_top = g[f"success_{top}"].to_numpy(bool)
            ok_bottom = g[f"success_{bottom}"].to_numpy(bool)
            ratio = _ratio_bounds(_f(g, f"norm_{top}"), _f(g, f"norm_{bottom}"), ok_top,
                                  ok_bottom, f=lambda r: r, low=0.0)
            rows.append(_descriptive_row(
                claim=claim, variant=f"ratio {top}/{bottom}", autoencoder=str(ae), seed=seed,
                values=ratio, estimate_meaning=f"median norm_{top}/norm_{bottom} per image, "
                "bootstrap CI (the statistic the reproduction published)",
                n_censored=int((~ok_top | ~ok_bottom).sum()),
                null="(descriptive) beside the reproduction's median and dimension counting",
                stats=stats, ids=ids, note=f"dimension counting predicts "
                f"{float(np.median(np.sqrt(prediction))):.4g} (chance median)"))
    return rows


@_register("dmm.off_equals_unrestricted", "measurements",
           ("seed", "autoencoder", "sample", "norm_off", "norm_plain", "success_off",
            "success_plain"))
def off_equals_unrestricted(df: pd.DataFrame, opts: OffEqualsUnrestrictedOptions,
                            stats: StatsConfig) -> Rows:
    """dmm.off_equals_unrestricted: TOST of the median log(norm_off / norm_plain) within ±margin.

    Two one-sided exact sign tests of the median (the location the estimate reports).
    Censoring: a failed off attack makes log(off/plain) a lower bound, a failed plain attack an
    upper bound; both pull an observed ratio toward 0, i.e. TOWARD equivalence (treated as
    observed: 97% false equivalence at 63% failures). Each censored value counts against
    equivalence on the side where it is unknown; more than 50% censored pairs: uninformative.
    ``n_censored`` counts samples with success_off or success_plain False.
    """
    rows: Rows = []
    claim = "dmm.off_equals_unrestricted"
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        off_ok, plain_ok = g["success_off"].to_numpy(bool), g["success_plain"].to_numpy(bool)
        d = _ratio_bounds(_f(g, "norm_off"), _f(g, "norm_plain"), off_ok, plain_ok)
        cens = ~off_ok | ~plain_ok
        rows.append(_tost_row(
            claim=claim, variant="tost", autoencoder=str(ae), seed=seed, d=d, margin=opts.margin,
            estimate_meaning="median log(norm_off/norm_plain), bootstrap CI (0 = equal norms)",
            censored=cens, statistic_text="log(norm_off/norm_plain)",
            null=_null(claim, "not_equivalent"), stats=stats, ids=_ids(g),
            uninformative=_censored_share_reason(cens, "pairs (off or plain attack failed)")))
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
            n_censored=int((~on | ~off).sum()), null=_null(claim, "equal_rates"), stats=stats,
            ids=_ids(g)))
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
    cols = ["seed", "sample", "r_T", "success_plain",
            *(["image_id"] if "image_id" in df.columns else [])]
    a = df.loc[df["autoencoder"] == plain, cols]
    b = df.loc[df["autoencoder"] == iso, cols]
    both = a.merge(b.drop(columns=["image_id"], errors="ignore"), on=["seed", "sample"],
                   suffixes=("_a", "_b"), how="outer", indicator=True)
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
            null=_null(claim, "no_change"), stats=stats, null_value=0.0, ids=_ids(paired),
            note=f"{unpaired} unpaired sample(s) left out" if unpaired else ""))
    return rows


@_register("ae.validity", "measurements",
           ("seed", "autoencoder", "sample", "recon_err", "norm_plain", "r_T", "success_plain"))
def validity(df: pd.DataFrame, opts: ValidityOptions, stats: StatsConfig) -> Rows:
    """ae.validity: is Spearman(recon_err / norm_plain, r_T) within +-margin? Plus tercile strata.

    Variant ``equivalence`` is the test of the claim ("conclusions do not hinge on
    reconstruction error"): H0 |rho| >= margin against H1 |rho| < margin, two one-sided z tests
    on Fisher's z with the Fieller-Hartley-Pearson variance 1.06 / (n - 3); p = the larger.
    (Testing rho = 0 instead, as before, made "retain" mere absence of evidence and "reject" a
    contradiction: nothing tested the claim.) Variants ``recon_err tercile 1/3`` .. ``3/3`` report
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
        rows.append(_spearman_tost_row(
            claim=claim, variant="equivalence", autoencoder=str(ae), seed=seed, x=rel, y=r_t,
            margin=opts.margin, n_censored=int(cens.sum()),
            statistic_text="(recon_err / norm_plain, r_T)",
            null=_null(claim, "associated").replace("the margin", f"{opts.margin:g}"),
            stats=stats))
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
                ids=_ids(g)[inside] if _ids(g) is not None else None,
                note=f"recon_err in [{recon[inside].min():.4g}, {recon[inside].max():.4g}]"))
    return rows


@_register("ae.local_vs_global", "measurements",
           ("seed", "autoencoder", "sample", "r_T", "r_PCA", "success_plain"))
def local_vs_global(df: pd.DataFrame, opts: LocalVsGlobalOptions, stats: StatsConfig) -> Rows:
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
    claim = "ae.local_vs_global"
    for (ae, seed), g in _groups(df, ["autoencoder", "seed"]):
        d = _f(g, "r_T") - _f(g, "r_PCA")
        rows.append(_location_row(
            claim=claim, variant=_variant("same_share", opts.test), autoencoder=str(ae),
            seed=seed, d=d, estimate_values=d,
            estimate_meaning="median r_T - r_PCA per image, bootstrap CI (0 = the local tangent "
            "and the top-k principal subspace capture the same share)",
            censored=_censored(g, ("success_plain",)), test=opts.test, alternative="two-sided",
            statistic_text="r_T - r_PCA, paired by image", null=_null(claim, "same_share"),
            stats=stats, null_value=0.0, ids=_ids(g)))
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
    id_col = ["image_id"] if "image_id" in g.columns else []
    both = g.loc[g["defense"] == base, cols + id_col].merge(
        g.loc[g["defense"] == name, cols], on=["eps", "sample"], suffixes=("_base", "_def"))
    for eps, e in both.groupby("eps", sort=True):
        base_rc = e["robust_correct_base"].to_numpy(bool)
        def_rc = e["robust_correct_def"].to_numpy(bool)
        rows.append(_mcnemar_row(
            claim=claim, variant=f"vs {base} @ eps={eps:g}", autoencoder=name, seed=seed,
            first=base_rc, second=def_rc, alternative="greater", names=(base, name),
            n_censored=int((base_rc | def_rc).sum()), null=_null(claim, "no_gain"), stats=stats,
            ids=_ids(e)))
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

    * ``change point``: is there a kink beyond a smooth decay? F statistic of a smooth
      exponential decay a + b exp(-e/s) (s profiled; a straight line is its long-scale limit)
      against the same plus a hinge c (e - tau)_+ (tau profiled), its p-value by resampling
      samples (whole trajectories, so the dependence across epochs is kept) around the smooth
      fit (:func:`~dimple_stats.stats.changepoint.kink_test`). A straight-line null was rejected
      by every smooth convex decay, which "falls fast, then slowly" without any change point.
      Estimate = the change-point epoch of the two-segment fit with a paired percentile-bootstrap
      CI; effect size = late / early slope.
    * ``trend early`` / ``trend late``: Spearman of median norm_plain on epoch within each phase
      (epochs <= and >= the change point), descriptive: the phases are chosen from the same
      data, so a p-value would be post-selection (it is not in the multiplicity family).
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
    kink = kink_test(epochs, norms.to_numpy(dtype=float), n_resamples=stats.bootstrap,
                     rng=stable_rng(claim, "kink", ae, seed))
    if math.isfinite(fit.change_point):
        lo, hi, se = change_point_ci(epochs, norms.to_numpy(dtype=float),
                                     confidence=stats.confidence, n_resamples=stats.bootstrap,
                                     rng=stable_rng(claim, "change point", ae, seed))
    ratio = fit.slope_after / fit.slope_before if fit.slope_before else math.nan
    rows: Rows = [ResultRow(
        claim=claim, variant="change point", autoencoder=ae, seed=seed, n=len(g),
        n_censored=int(cens.sum()), estimate=fit.change_point, ci_low=lo, ci_high=hi, se=se,
        estimate_meaning="epoch of the change of slope of median norm_plain (two-segment fit), "
        "paired bootstrap percentile CI", effect_size=ratio, effect_name="late / early slope",
        statistic=kink.f_statistic, statistic_name=f"F({kink.df[0]}, {kink.df[1]})",
        p=kink.pvalue, null=_null(claim, "no_change_point"),
        test="F-test, smooth decay a + b exp(-e/s) (s profiled; a line as s -> inf) vs the same "
        "plus a hinge c (e - tau)_+ (tau profiled), on per-epoch median norm_plain; p by "
        "resampling samples (whole trajectories) around the smooth fit",
        alternative="greater",
        note=_join(cens_note, "" if math.isfinite(kink.pvalue) else "fewer than 6 epochs"))]
    if math.isfinite(fit.change_point):
        for phase, inside in (("early", epochs <= fit.change_point),
                              ("late", epochs >= fit.change_point)):
            rows.append(_spearman_row(
                claim=claim, variant=f"trend {phase}", autoencoder=ae, seed=seed,
                x=epochs[inside].astype(float), y=medians[inside], n_censored=0,
                statistic_text=f"(epoch, median norm_plain), {phase} phase",
                null=f"(descriptive) monotone trend of median norm_plain over the {phase} "
                "epochs", stats=stats, descriptive=True,
                note=f"{int(inside.sum())} epochs; not tested: the phase boundary was chosen "
                "from the same data"))
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
    * variant ``deepens and not turned``: the claim as a whole, an intersection-union test
      (Berger 1982): p = the larger of the two p-values above, so it rejects only when both
      parts do, at level alpha without adjustment.

    The TOST is on the median (exact sign tests), like its estimate.
    Censoring: a failed attack's norm is only >= eps, so the norm difference is bounded on one
    side (imputed at the bound least favourable to deepening; robust models fail more, so this
    is where censoring bites); more than 50% censored pairs: uninformative. ``n_censored``
    counts pairs with success_plain False on either side.
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
        std_ok = paired["success_plain_std"].to_numpy(bool)
        adv_ok = paired["success_plain_adv"].to_numpy(bool)
        observed = _f(paired, "norm_plain_adv") - _f(paired, "norm_plain_std")
        # A failed attack's norm is >= eps: the difference is unbounded on that side.
        d_norm = Bounds(np.where(std_ok, observed, -np.inf), np.where(adv_ok, observed, np.inf))
        turned = _tost_row(
            claim=claim, variant="turned", autoencoder=str(ae), seed=seed, d=d_r,
            margin=opts.margin, estimate_meaning="median r_T(adv) - r_T(std), bootstrap CI "
            "(0 = unchanged)", censored=cens,
            statistic_text="r_T(adversarial) - r_T(standard), paired by sample",
            null=_null(claim, "turned"), stats=stats, note=note)
        deepening = _location_row(
            claim=claim, variant="no_deepening", autoencoder=str(ae), seed=seed, d=d_norm,
            estimate_values=d_norm, estimate_meaning="median norm_plain(adv) - norm_plain(std), "
            "bootstrap CI (0 = no deepening)", censored=cens, test="wilcoxon",
            alternative="greater",
            statistic_text="norm_plain(adversarial) - norm_plain(standard), paired by sample",
            null=_null(claim, "no_deepening"), stats=stats, null_value=0.0, note=note,
            uninformative=_censored_share_reason(cens, "pairs (an attack failed)"))
        rows += [turned, deepening, _intersection_union_row(
            claim=claim, variant="deepens and not turned", parts=(deepening, turned),
            null=_null(claim, "not_both"))]
    return rows


_missing = sorted(set(CATALOGUE) - set(ANALYSES))
if _missing:  # pragma: no cover - import-time guard that every claim has an analysis
    raise ImportError(f"claims without an analysis: {_missing}")
