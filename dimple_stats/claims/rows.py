"""The result rows every claim analysis builds, and the conventions they share.

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
* Every location test uses the options' ``test`` (the exact sign test of the median by default,
  :data:`~dimple_stats.claims.catalogue.DEFAULT_TEST`) with the alternative the claim's direction
  demands; the effect size follows the test ((pos - neg) / n for the sign test).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from dimple_stats.claims.catalogue import (
    CATALOGUE,
    DEFAULT_TEST,
)
from dimple_stats.errors import BadInput
from dimple_stats.results import DESCRIPTIVE, NO_AUTOENCODER, ResultRow
from dimple_stats.stats.bootstrap import BootstrapEstimate, median_ci, stable_rng
from dimple_stats.stats.censored import (
    UNINFORMATIVE_SHARE,
    Bounds,
    bounded_median_ci,
    censored_location_test,
    median_tost,
)
from dimple_stats.stats.censored_ratio import (
    MODEL_BOTTOM_AT_MOST,
    MODELLED,
    CensoredLogRatio,
    bottom_side,
    fit_bivariate_normal,
    model_median,
    model_sign_test,
)
from dimple_stats.stats.correlation import (
    FIELLER_VARIANCE,
    fisher_z_se,
    spearman,
    spearman_ci,
)
from dimple_stats.stats.effect_size import location_effect
from dimple_stats.stats.mcnemar import discordant_pairs, mcnemar_exact, paired_risk_difference
from dimple_stats.stats.paired import PairedTest
from dimple_stats.stats.power import (
    suggested_n_location,
    suggested_n_mcnemar,
    suggested_n_spearman,
    suggested_n_tost,
)
from dimple_stats.stats.result import Alternative
from dimple_stats.stats_config import StatsConfig

__all__ = [
    "AnalysisError", "Rows", "needs",
    "TEST_NAMES",
    "bootstrap_median",
    "censored_mask",
    "censored_share_reason",
    "column_values",
    "descriptive_row",
    "dropped_note",
    "groups_of",
    "image_ids",
    "intersection_union_row",
    "join_notes",
    "location_row",
    "mcnemar_row",
    "null_text",
    "ratio_bounds",
    "spearman_row",
    "spearman_tost_row",
    "test_text",
    "tost_row",
    "variant_name",
    "with_autoencoder_column",
]

Rows = list[ResultRow]


class AnalysisError(BadInput):
    """The data cannot answer the claim as configured (e.g. a named autoencoder is absent)."""


F = TypeVar("F", bound=Callable[..., Rows])


def needs(columns: tuple[str, ...] | Callable[[Any], tuple[str, ...]]) -> Callable[[F], F]:
    """Declare the columns an analysis reads (a tuple, or a function of the claim's options).

    :meth:`~dimple_stats.claims.catalogue.ClaimDefinition.required_columns` reads them: the one
    source of what ``dimple-stats claims --json`` prints and what a table is validated against.

    >>> @needs(("seed", "r_T"))
    ... def toy(df, opts, stats, *, claim):
    ...     return []
    >>> toy.columns(None)
    ('seed', 'r_T')
    """
    wanted = columns if callable(columns) else (lambda _opts, c=tuple(columns): c)

    def attach(fn: F) -> F:
        fn.columns = wanted  # type: ignore[attr-defined]
        return fn

    return attach


def groups_of(df: pd.DataFrame,
            keys: Sequence[str]) -> Iterator[tuple[tuple[Any, ...], pd.DataFrame]]:
    for key, g in df.groupby(list(keys), sort=True):
        yield (key if isinstance(key, tuple) else (key,)), g


def with_autoencoder_column(df: pd.DataFrame) -> pd.DataFrame:
    # Tables other than `measurements` may carry an autoencoder column; without one the rows
    # are about the classifier alone.
    return df if "autoencoder" in df.columns else df.assign(autoencoder=NO_AUTOENCODER)


def censored_mask(g: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    mask = np.zeros(len(g), dtype=bool)
    for c in columns:
        mask |= ~g[c].to_numpy(dtype=bool)
    return mask


def dropped_note(n_dropped: int) -> str:
    return f"{n_dropped} non-finite value(s) left out" if n_dropped else ""


def join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def bootstrap_median(values: np.ndarray, stats: StatsConfig, *key: object) -> BootstrapEstimate:
    return median_ci(values, confidence=stats.confidence, n_resamples=stats.bootstrap,
                     rng=stable_rng(*key))


def null_text(claim_id: str, name: str) -> str:
    return CATALOGUE[claim_id].nulls[name]


def test_text(test_name: str, statistic: str) -> str:
    return f"{test_name} on {statistic}"


TEST_NAMES = {"wilcoxon": "Wilcoxon signed-rank", "sign": "sign test", "ttest": "paired t-test"}


def image_ids(g: pd.DataFrame) -> np.ndarray | None:
    """Image ids of a group's rows (None for tables written before ids were measured)."""
    return g["image_id"].to_numpy() if "image_id" in g.columns else None


def censored_share_reason(censored: np.ndarray, what: str) -> str:
    """The ``uninformative`` reason when more than half the rows are censored, else ""."""
    share = float(censored.mean()) if censored.size else 0.0
    if share >= UNINFORMATIVE_SHARE:  # at exactly half, an even n's median is unbounded too
        return (f"{100 * share:.0f}% of {what} censored (>= {100 * UNINFORMATIVE_SHARE:.0f}%): "
                "the median is not identified")
    return ""


def location_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, d: np.ndarray | Bounds,
    estimate_values: np.ndarray | Bounds, estimate_meaning: str, censored: np.ndarray,
    test: PairedTest, alternative: Alternative, statistic_text: str, null: str,
    stats: StatsConfig, null_value: float, ids: np.ndarray | None = None, note: str = "",
    mu: float = 0.0, uninformative: str = "", ratio: CensoredLogRatio | None = None,
) -> ResultRow:
    """A location test of ``d`` against ``mu`` with a bootstrap CI of median(estimate_values).

    ``d`` and ``estimate_values`` may be :class:`~dimple_stats.stats.censored.Bounds`
    (censored samples known within an interval); the test then imputes each at its least
    favourable bound and the CI covers the bounds. ``null_value`` is the estimate's value under
    H0 (the pooled test compares the random-effects mean of the estimates with it).

    ``ratio``: the two norms behind ``d`` when ``d``'s sign is that of ``ratio.observed``
    and ``estimate_values`` are ``ratio.observed``. With the sign test and censored norms, the
    undecided signs and the median then come from a bivariate log-normal model of the norms
    fit with their censoring (:mod:`dimple_stats.stats.censored_ratio`), not from the worst
    case, which at 20% censoring of the largest norms never rejected a true null and kept 23%
    of a 5% excess's power.
    """
    db = d if isinstance(d, Bounds) else Bounds.exact(d)
    eb = estimate_values if isinstance(estimate_values, Bounds) else Bounds.exact(estimate_values)
    keep = ~(np.isnan(db.lo) | np.isnan(db.hi) | np.isnan(eb.lo) | np.isnan(eb.hi))
    db, eb, censored = db.keep(keep), eb.keep(keep), censored[keep]
    ids = ids[keep] if ids is not None else None
    exact = not db.censored.any()
    if ratio is not None and test == "sign" and not exact:
        modelled = _modelled_location_row(
            ratio.keep(keep), claim=claim, variant=variant, autoencoder=autoencoder, seed=seed,
            estimate_meaning=estimate_meaning, censored=censored, alternative=alternative,
            statistic_text=statistic_text, null=null, stats=stats, null_value=null_value,
            ids=ids, note=join_notes(note, dropped_note(int((~keep).sum()))), mu=mu,
            uninformative=uninformative)
        if modelled is not None:
            return modelled
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
    name = TEST_NAMES[test] + ("" if exact else ", censored values at their least favourable "
                                "bound")
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed), n=int(db.lo.size),
        n_censored=int(censored.sum()), estimate=est.estimate, ci_low=est.ci_low,
        ci_high=est.ci_high, se=est.se, estimate_meaning=estimate_meaning, effect_size=effect,
        effect_name=effect_name, statistic=res.statistic if res else math.nan,
        statistic_name=res.statistic_name if res else "", p=res.pvalue if res else math.nan,
        null=null, test=test_text(name, statistic_text + (f" - ({mu:.4g})" if mu else "")),
        alternative=alternative,
        suggested_n=suggested_n_location(observed[np.isfinite(observed)], test=test,
                                         alternative=alternative, alpha=stats.alpha,
                                         power=stats.power),
        note=join_notes(note, dropped_note(int((~keep).sum())), bound_note, undefined, uninformative),
        null_value=null_value, uninformative=uninformative,
        extra={"values": {"lo": eb.lo, "hi": eb.hi}.get(side, np.where(
            np.isfinite(eb.lo), eb.lo, eb.hi)), "ids": ids, "bounded": bool(bound_note)},
    )


#: How a modelled row's test says some pairs sit at a worst-case bound (it may not contradict).
WORST_OFF = ", failed bottom attacks at their least favourable bound"


def _modelled_location_row(
    ratio: CensoredLogRatio, *, claim: str, variant: str, autoencoder: str, seed: int,
    estimate_meaning: str, censored: np.ndarray, alternative: Alternative, statistic_text: str,
    null: str, stats: StatsConfig, null_value: float, ids: np.ndarray | None, note: str,
    mu: float, uninformative: str,
) -> ResultRow | None:
    """:func:`location_row`'s sign test with censored signs from the fitted norm model.

    None when the model cannot be fit (fewer than 3 images with both norms): the caller falls
    back to the worst case.
    """
    try:
        model = fit_bivariate_normal(ratio)
    except ValueError:
        return None
    res = model_sign_test(ratio, model, alternative=alternative, mu=mu)
    side = bottom_side(ratio, alternative)
    est = model_median(ratio, model, confidence=stats.confidence, side=side)
    observed = ratio.observed - mu
    decided = ~ratio.censored
    effect, effect_name = location_effect(observed[decided], "sign")
    n_cens = int(ratio.censored.sum())
    n_bottom = int((~np.asarray(ratio.bottom_ok, bool)).sum())
    failed_bottom = n_bottom if side is not None else 0  # those left at a bound
    modelled_bottom = n_bottom - failed_bottom
    model_note = (f"{n_cens - n_bottom} pair(s) with a failed top attack"
                  + (f" and {modelled_bottom} with a failed bottom attack" if modelled_bottom
                     else "")
                  + f" enter through a model, not a bound: {model.describe()}, fit by maximum "
                  "likelihood with "
                  "each failed attack's budget as a censoring point; an undecided sign counts "
                  "as its model probability, the CI inverts that sign test"
                  + (f"; {failed_bottom} with a failed bottom attack (more than "
                     f"{MODEL_BOTTOM_AT_MOST:.0%} of the pairs, beyond what the model covers) "
                     "sit at their bound least favourable to H1" if failed_bottom else ""))
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed),
        n=int(ratio.top.size), n_censored=int(censored.sum()), estimate=est.estimate,
        ci_low=est.ci_low, ci_high=est.ci_high, se=est.se,
        estimate_meaning=estimate_meaning.replace("bootstrap CI", "CI")
        + " (censored pairs modelled)",
        effect_size=effect, effect_name=effect_name + " (uncensored pairs)",
        statistic=res.statistic, statistic_name=res.statistic_name, p=res.pvalue, null=null,
        test=test_text(f"sign test, censored signs from {MODELLED}"
                       + (f"{WORST_OFF}" if failed_bottom else ""),
                       statistic_text + (f" - ({mu:.4g})" if mu else "")),
        alternative=alternative,
        suggested_n=suggested_n_location(observed[decided], test="sign",
                                         alternative=alternative, alpha=stats.alpha,
                                         power=stats.power),
        note=join_notes(note, model_note, uninformative),
        null_value=null_value, uninformative=uninformative,
        extra={"values": est.values, "ids": ids, "bounded": bool(failed_bottom)},
    )


def tost_row(
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
        test=test_text(f"TOST on the median (two one-sided exact sign tests, p = max) within "
                        f"+-{margin:.4g}", statistic_text),
        alternative="equivalence",
        suggested_n=suggested_n_tost(finite, margin, test="sign", alpha=stats.alpha,
                                     power=stats.power) if finite.size else math.nan,
        note=join_notes(note, dropped_note(int((~keep).sum())), bound_note,
                   "" if defined else "test undefined", uninformative),
        uninformative=uninformative, extra=extra,
    )


def mcnemar_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, first: np.ndarray,
    second: np.ndarray, alternative: Alternative, names: tuple[str, str], n_censored: int,
    null: str, stats: StatsConfig, note: str = "", ids: np.ndarray | None = None,
    counted: tuple[str, tuple[int, ...]] | None = None,
) -> ResultRow:
    """Exact McNemar test of ``second`` against ``first`` (H1 "greater": second succeeds more).

    ``counted``: a note ``template.format(*counts)`` whose counts the pooled row sums over
    seeds (:data:`dimple_stats.results.COUNTED`).
    """
    if counted is not None:
        note = join_notes(note, counted[0].format(*counted[1]))
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
        test=test_text("exact McNemar (binomial on discordant pairs)", f"({a}, {b}) pairs"),
        alternative=alternative,
        suggested_n=suggested_n_mcnemar(pairs.b, pairs.c, pairs.n, alternative=alternative,
                                        alpha=stats.alpha, power=stats.power),
        note=join_notes(note, f"{pairs.b + pairs.c} discordant pair(s)"),
        # The difference of rates is 0 under H0 (it orients verdicts and the forest plot's
        # reference line; the McNemar pool does not use it).
        null_value=0.0,
        extra={"pool": "mcnemar", "pairs": (np.asarray(first, bool), np.asarray(second, bool)),
               "ids": ids, **({"counted": counted} if counted is not None else {})},
    )


def spearman_row(
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
        test=DESCRIPTIVE if descriptive else test_text("Spearman rank correlation",
                                                        statistic_text),
        alternative="" if descriptive else alternative,
        suggested_n=math.nan if descriptive else suggested_n_spearman(
            res.statistic, alternative=alternative, alpha=stats.alpha, power=stats.power),
        note=join_notes(note, dropped_note(int((~keep).sum())),
                   "" if res.defined else "test undefined (constant values or n < 3)"),
        extra={"scale": "fisher_z"},
    )


def spearman_tost_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, x: np.ndarray, y: np.ndarray,
    margin: float, n_censored: int, statistic_text: str, null: str, stats: StatsConfig,
    ids: np.ndarray | None = None,
) -> ResultRow:
    """Equivalence of Spearman's rho within +-margin: two one-sided z tests on Fisher's z.

    ``ids`` (the pairs' image ids) let the pooled row account for images the seeds share.
    """
    keep = np.isfinite(x) & np.isfinite(y)
    res = spearman(x[keep], y[keep], alternative="two-sided")
    lo, hi, se = spearman_ci(res.statistic, res.n, confidence=stats.confidence)
    p = z_stat = math.nan
    if res.defined and res.n > 3 and abs(res.statistic) < 1:
        se_z = fisher_z_se(res.n)
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
        test=test_text(f"TOST on Spearman's rho within +-{margin:g} (two one-sided z tests on "
                        f"Fisher z, variance {FIELLER_VARIANCE:g}/(n-3))", statistic_text),
        alternative="equivalence",
        note=join_notes(dropped_note(int((~keep).sum())),
                   "" if math.isfinite(p) else "test undefined (constant values or n < 4)"),
        extra={"scale": "fisher_z", "equivalence": (-margin, margin),
               **({"pairs_xy": (x[keep], y[keep]), "ids": np.asarray(ids)[keep]}
                  if ids is not None else {})},
    )


def intersection_union_row(*, claim: str, variant: str, parts: Sequence[ResultRow],
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
        alternative="all parts", note=join_notes(*reasons), uninformative="; ".join(reasons),
        extra={"pool": "iut", "parts": tuple(q.variant for q in parts)},
    )


def descriptive_row(
    *, claim: str, variant: str, autoencoder: str, seed: int, values: np.ndarray | Bounds,
    estimate_meaning: str, n_censored: int, null: str, stats: StatsConfig, note: str = "",
    ids: np.ndarray | None = None, ratio: bool = False,
) -> ResultRow:
    """A median with its bootstrap CI, reported but not tested (not in any multiplicity family).

    ``values`` may be :class:`~dimple_stats.stats.censored.Bounds`: the CI then covers them.
    With half or more of the values censored the median is not identified: no estimate and no
    CI, and the note gives the interval the median lies in ("at least x" when it is unbounded
    above), so a table never shows a bound as a value. ``ratio``: the values are ratios, pooled
    over seeds on the log scale.
    """
    vb = values if isinstance(values, Bounds) else Bounds.exact(values)
    keep = ~(np.isnan(vb.lo) | np.isnan(vb.hi))
    vb = vb.keep(keep)
    est, bound_note = bounded_median_ci(vb, confidence=stats.confidence,
                                        n_resamples=stats.bootstrap,
                                        rng=stable_rng(claim, variant, autoencoder, seed))
    unidentified = censored_share_reason(vb.censored, "values")
    if unidentified:
        low, high = float(np.median(vb.lo)), float(np.median(vb.hi))
        where = (f"at least {low:.4g}" if not math.isfinite(high) else
                 f"at most {high:.4g}" if not math.isfinite(low) else
                 f"between {low:.4g} and {high:.4g}")
        bound_note = f"{unidentified}; it is {where}"
        est = BootstrapEstimate(math.nan, math.nan, math.nan, math.nan)
    return ResultRow(
        claim=claim, variant=variant, autoencoder=autoencoder, seed=int(seed),
        n=int(keep.sum()), n_censored=int(n_censored), estimate=est.estimate, ci_low=est.ci_low,
        ci_high=est.ci_high, se=est.se, estimate_meaning=estimate_meaning, effect_size=math.nan,
        effect_name="", statistic=math.nan, statistic_name="", p=math.nan, null=null,
        test=DESCRIPTIVE, alternative="",
        note=join_notes(note, dropped_note(int((~keep).sum())), bound_note),
        extra={"values": np.where(np.isfinite(vb.lo), vb.lo, vb.hi),
               "ids": ids[keep] if ids is not None else None, "bounded": bool(bound_note),
               **({"scale": "log"} if ratio else {})},
    )


def ratio_bounds(top: np.ndarray, bottom: np.ndarray, top_ok: np.ndarray,
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


def variant_name(name: str, test: PairedTest) -> str:
    # A non-default test is part of the variant, so two entries of one claim never pool together.
    return name if test == DEFAULT_TEST else f"{name} ({test})"


def column_values(g: pd.DataFrame, col: str) -> np.ndarray:
    return g[col].to_numpy(dtype=float)
