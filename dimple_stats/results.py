"""The results table: one row per (claim, variant, autoencoder, seed | pooled).

Column names are stable (reports, notebooks and downstream scripts key on them); their meanings
are :data:`RESULT_COLUMNS`. Claim analyses build per-seed rows (:class:`ResultRow`);
:func:`finalise` adds a pooled row per (claim, variant, autoencoder), adjusts p-values for
multiplicity and takes the decisions.

Multiplicity: one family per run
---------------------------------
Every tested row of the run (per-seed rows and pooled rows, every claim) is one family, adjusted
with the configured correction (``holm`` | ``fdr_bh`` | ``none``), as the README's Claims section
states (docs/references.md#holm-1979, #benjamini-hochberg-1995).
Holm controls the family-wise error under any dependence, so a pooled row that re-uses its seeds'
data is allowed in the same family; the price is a stricter threshold than two families would
have. Rows without a p-value (descriptive rows, undefined tests) and ``uninformative`` rows (too
censored to answer) are not part of the family.

Pooled rows
-----------
A pooled row decides on the same target its estimate reports: the random-effects mean of the
per-seed estimates, tested against the estimate's null value with the Hartung-Knapp t(k - 1)
statistic (:func:`~dimple_stats.stats.meta.hartung_knapp`), plus the covariance of images that
several seeds measured (a joint image bootstrap). McNemar rows pool with an exact stratified
McNemar test over images; rows whose estimate has no null value (a change-point epoch, an
intersection-union test) combine the per-seed p-values (Stouffer) and say so in ``test``.
Uninformative seeds and seeds with n < :data:`MIN_POOL_N` are left out of the pool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from dimple_stats.stats.bootstrap import (
    joint_median_covariance,
    joint_spearman_z_covariance,
    resample_counts,
    shares_images,
    stable_rng,
)
from dimple_stats.stats.mcnemar import clustered_mcnemar, paired_risk_difference
from dimple_stats.stats.meta import fixed_effect, hartung_knapp, stouffer
from dimple_stats.stats.multiplicity import adjust_pvalues
from dimple_stats.stats_config import StatsConfig

__all__ = [
    "RESULT_COLUMNS",
    "POOLED",
    "NO_AUTOENCODER",
    "DESCRIPTIVE",
    "ResultRow",
    "pool_seeds",
    "finalise",
    "results_frame",
    "censoring_warnings",
    "CENSORING_SENSITIVE",
]

POOLED = "pooled"
#: ``autoencoder`` value of rows about a table without autoencoders (e.g. training curves).
NO_AUTOENCODER = "-"
#: ``test`` value of rows that report an estimate without testing it.
DESCRIPTIVE = "descriptive"

RESULT_COLUMNS: dict[str, str] = {
    "claim": "claim id from the catalogue (dimple-stats claims)",
    "variant": "which null or sub-test of the claim, e.g. random_subspace, beta, greater, tost",
    "autoencoder": "autoencoder (manifold) the row is about; for comparisons 'a - b', for "
    "iso.defense the defense, '-' where no autoencoder applies",
    "seed": "replication seed (int), or 'pooled' for the combination over seeds",
    "n": "observations tested (samples or pairs; pooled rows: summed over seeds)",
    "n_censored": "of those, samples whose relevant attack failed (norm = eps); kept, not dropped",
    "estimate": "point estimate; its meaning is estimate_meaning",
    "ci_low": "lower end of the confidence interval of the estimate (StatsConfig.confidence)",
    "ci_high": "upper end of the confidence interval",
    "ci_level": "confidence level of [ci_low, ci_high]: pooled rows, the level their decision "
    "used (Bonferroni over the run's confirmatory family: 1 - 2 alpha / m for one-sided and "
    "equivalence tests, 1 - alpha / m for two-sided ones); per-seed and descriptive rows, "
    "StatsConfig.confidence",
    "se": "standard error of the estimate (bootstrap, delta method or meta-analysis)",
    "estimate_meaning": "what the estimate is, with its null value",
    "null_value": "the estimate's value under H0 (what the pooled test compares the "
    "random-effects mean with; equivalence rows: NaN, their bounds are in test)",
    "effect_size": "standardised effect size (pooled rows: median over seeds)",
    "effect_name": "which effect size, e.g. rank-biserial r",
    "statistic": "test statistic (pooled rows: the Hartung-Knapp t, the clustered McNemar S or "
    "Stouffer's Z; see test)",
    "statistic_name": "which statistic, e.g. W+ (sum of ranks of positive values)",
    "p": "p-value of the test (pooled rows: of the pooled test named in test); not clipped",
    "p_adj": "p adjusted for multiplicity in the row's family: pooled rows, the run's "
    "confirmatory family (every tested pooled row); per-seed rows, the replication family "
    "(every tested per-seed row)",
    "alpha": "significance level the decision uses",
    "decision": "'reject H0' if p_adj <= alpha, 'retain H0', 'descriptive' (not tested), "
    "'uninformative' (too censored or too few samples to answer; see note) or 'undefined' (no "
    "p-value; see note)",
    "null": "the null hypothesis tested, in words",
    "test": "the test and the per-sample statistic it was applied to",
    "alternative": "two-sided, less or greater (direction of H1 for the statistic)",
    "n_seeds": "seeds combined (1 on per-seed rows)",
    "n_seeds_reject": "seeds whose own row rejects H0 after adjustment (in the replication "
    "family)",
    "scope": "whom a pooled verdict is about: 'training runs (S seeds)' (random effects, "
    "Hartung-Knapp t(S-1); S >= 5) or 'these S models' (images the unit, the trained models "
    "fixed; fewer than 5 seeds, or pooled over images); per-seed rows: 'this model'",
    "suggested_n": "samples per seed for StatsConfig.power at the observed effect (statsmodels "
    "power; see dimple_stats.stats.power); NaN where no n would reach it",
    "note": "anything a reader needs: dropped non-finite values, unpaired samples, fallbacks",
}


@dataclass
class ResultRow:
    """One per-seed result, as a claim analysis produces it (see :data:`RESULT_COLUMNS`)."""

    claim: str
    variant: str
    autoencoder: str
    seed: int | str
    n: int
    n_censored: int
    estimate: float
    ci_low: float
    ci_high: float
    se: float
    estimate_meaning: str
    effect_size: float
    effect_name: str
    statistic: float
    statistic_name: str
    p: float
    null: str
    test: str
    alternative: str
    suggested_n: float = math.nan
    note: str = ""
    n_seeds: int = 1
    #: The estimate's value under H0 (what the pooled Hartung-Knapp test compares with); NaN
    #: where the estimate has none (then the pooled p combines the per-seed p-values).
    null_value: float = math.nan
    #: Why the row cannot answer its question (e.g. more than half of it censored); such a row
    #: gets decision ``uninformative``, stays out of the multiplicity family and out of pools.
    uninformative: str = ""
    #: Whom the row's verdict is about (see RESULT_COLUMNS["scope"]).
    scope: str = "this model"
    #: Confidence level of the CI; NaN until :func:`finalise` sets it.
    ci_level: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(float(x))


#: Seeds with fewer observations than this are left out of a pooled estimate: a bootstrap SE of
#: a median of 2 values is near 0, and inverse-variance weights would make that seed the pool.
MIN_POOL_N = 10

POOLED_META = ("pooled: random-effects mean of the per-seed estimates (weights the seeds' n; "
               "Paule-Mandel tau2 reported), Hartung-Knapp t(k-1) test and CI")
POOLED_FIXED = ("pooled for these models: inverse-variance mean of the per-seed estimates "
                "(images the unit, models fixed), normal test and CI")

#: Seeds a pooled row needs before its verdict speaks for training runs in general (random
#: effects, Hartung-Knapp t(S - 1)). With fewer, t(S - 1) needs t >= 29.3 at 3 seeds for a
#: Holm-adjusted 0.05 in a family of 23, so the row decides for THESE S models (images as the
#: unit) and its note gives the random-effects result beside it.
MIN_SEEDS_RANDOM = 5


def scope_words(k: int, across: bool) -> str:
    """The ``scope`` of a pooled row: whom its verdict is about.

    >>> scope_words(5, True), scope_words(3, False), scope_words(1, False)
    ('training runs (5 seeds)', 'these 3 models', 'this model')
    """
    if across:
        return f"training runs ({k} seeds)"
    return "this model" if k == 1 else f"these {k} models"


def _identity(x: float) -> float:
    return x


#: ``extra["scale"]`` of a row -> the map from its pooling scale back to the estimate's:
#: correlations are pooled on Fisher's z, ratios on the log scale (a ratio's CI stays positive
#: and is symmetric in the ratio's inverse), everything else as is.
_BACK = {"fisher_z": math.tanh, "log": math.exp}


def _symmetric_ci(estimate: float, se: float, df: int, back=_identity):
    """CI at any level around an estimate with a t(df) (df 0: normal) reference, mapped back
    from the pooling scale by ``back``."""
    from scipy import stats as _st

    def at(level: float) -> tuple[float, float]:
        tail = (1 - level) / 2
        crit = float(_st.t.isf(tail, df) if df > 0 else _st.norm.isf(tail))
        return back(estimate - crit * se), back(estimate + crit * se)
    return at


def _pool_meta(rows: Sequence[ResultRow], confidence: float, n_resamples: int,
               notes: list[str]) -> tuple[dict[str, float], str]:
    """Hartung-Knapp pooling of the per-seed estimates (the estimate and p share one target)."""
    first = rows[0]
    est = np.array([r.estimate for r in rows], dtype=float)
    se = np.array([r.se for r in rows], dtype=float)
    null = float(first.null_value)
    equivalence = first.extra.get("equivalence")
    fisher = first.extra.get("scale") == "fisher_z"
    log_scale = first.extra.get("scale") == "log"
    back = _BACK.get(str(first.extra.get("scale")), _identity)
    if fisher:  # correlations are pooled on Fisher's z scale, where they are near normal
        with np.errstate(divide="ignore", invalid="ignore"):
            se = se / (1 - est**2)
            est = np.arctanh(est)
        null = math.atanh(null) if math.isfinite(null) else null
        if equivalence is not None:
            equivalence = (math.atanh(equivalence[0]), math.atanh(equivalence[1]))
    if log_scale:  # ratios: the delta method's SE of log(median), se / median
        with np.errstate(divide="ignore", invalid="ignore"):
            se = se / est
            est = np.log(est)
        null = math.log(null) if math.isfinite(null) and null > 0 else math.nan
    usable = np.isfinite(est) & np.isfinite(se) & (se > 0)
    if (~usable).any():
        notes.append(f"{int((~usable).sum())} seed(s) without a finite standard error left out")
    if not usable.any():
        finite = est[np.isfinite(est)]
        notes.append("no seed has a standard error: estimate is the median over seeds, no CI"
                     if finite.size else "no seed's estimate is identified (see their rows)")
        value = float(np.median(finite)) if finite.size else math.nan
        if math.isfinite(value):
            value = back(value)
        return {"estimate": value, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan,
                "statistic": math.nan, "p": math.nan}, ""
    kept = [r for r, u in zip(rows, usable) if u]
    shared_cov = None
    how = POOLED_META
    values = [r.extra.get("values") for r in kept]
    if log_scale:  # the log of a median is the median of the logs
        values = [None if v is None else np.log(np.clip(np.asarray(v, dtype=float), 1e-300,
                                                        None)) for v in values]
    ids = [r.extra.get("ids") for r in kept]
    if len(kept) > 1 and all(v is not None for v in values) and all(i is not None for i in ids):
        if shares_images(ids):  # type: ignore[arg-type]
            # At least 2000 resamples: the shared part is clipped at 0, so its noise only adds.
            shared_cov = joint_median_covariance(
                values, ids, n_resamples=max(n_resamples, 2000),  # type: ignore[arg-type]
                rng=stable_rng("pooled", first.claim, first.variant, first.autoencoder))
            how += (" + the covariance of the images the seeds share (joint image bootstrap of "
                    "the per-seed medians)")
    elif len(kept) > 1 and fisher and all(r.extra.get("pairs_xy") is not None and
                                          r.extra.get("ids") is not None for r in kept):
        pair_ids = [r.extra["ids"] for r in kept]
        if shares_images(pair_ids):
            xs, ys = zip(*(r.extra["pairs_xy"] for r in kept))
            shared_cov = joint_spearman_z_covariance(
                xs, ys, pair_ids, n_resamples=max(n_resamples, 2000),
                rng=stable_rng("pooled", first.claim, first.variant, first.autoencoder))
            how += (" + the covariance of the images the seeds share (joint image bootstrap of "
                    "the per-seed Fisher z)")
    elif len(kept) > 1 and first.test != DESCRIPTIVE:
        notes.append("image ids unknown: images shared across seeds not accounted for")
    tested = first.test != DESCRIPTIVE and (math.isfinite(null) or equivalence is not None)
    alternative = first.alternative if first.alternative in ("less", "greater", "two-sided") \
        else "two-sided"
    args = dict(shared_cov=shared_cov, null=null if tested else math.nan,
                alternative=alternative, equivalence=equivalence if tested else None,
                confidence=confidence)
    across = len(kept) >= MIN_SEEDS_RANDOM
    # Stable weights (the seeds' n), not 1 / (bootstrap variance + tau2): see hartung_knapp.
    sizes = np.array([max(int(r.n), 1) for r in kept], dtype=float)
    random = hartung_knapp(est[usable], se[usable] ** 2, sizes=sizes,
                           **args)  # type: ignore[arg-type]
    meta = random if across else fixed_effect(est[usable], se[usable] ** 2,
                                              **args)  # type: ignore[arg-type]
    if not across:
        how = how.replace(POOLED_META, POOLED_FIXED)
        if len(kept) > 1 and tested:
            r_est, r_lo, r_hi = random.estimate, random.ci_low, random.ci_high
            r_est, r_lo, r_hi = back(r_est), back(r_lo), back(r_hi)
            notes.append(
                f"across training runs (random effects, Hartung-Knapp t({random.df})): "
                f"{r_est:.4g} [{r_lo:.4g}, {r_hi:.4g}] at {100 * confidence:g}%, p = "
                f"{random.pvalue:.3g}; {len(kept)} seeds are too few to generalise over "
                f"training runs ({MIN_SEEDS_RANDOM} or more)")
    ci_at = _symmetric_ci(meta.estimate, meta.se, meta.df, back)
    estimate, lo, hi, pooled_se = meta.estimate, meta.ci_low, meta.ci_high, meta.se
    p_value = meta.pvalue
    bounds = [r.extra.get("bound_estimates") for r in kept]
    if tested and equivalence is not None and any(b is not None for b in bounds):
        # Censored TOST: each one-sided half pools its own worst case (the lower bounds for
        # "above low", the upper bounds for "below high"); p = the larger.
        halves = []
        for which, (bound, alt) in enumerate(((equivalence[0], "greater"),
                                              (equivalence[1], "less"))):
            e = np.array([b[2 * which] if b is not None else r.estimate
                          for b, r in zip(bounds, kept)], dtype=float)
            v = np.array([b[2 * which + 1] if b is not None else r.se
                          for b, r in zip(bounds, kept)], dtype=float) ** 2
            ok = np.isfinite(e) & np.isfinite(v) & (v > 0)
            if not ok.any():
                halves.append(math.nan)
                continue
            half = (hartung_knapp(e[ok], v[ok], sizes=sizes[ok], null=bound, alternative=alt,
                                  confidence=confidence) if across else
                    fixed_effect(e[ok], v[ok], null=bound, alternative=alt, confidence=confidence))
            halves.append(half.pvalue)
        p_value = max(halves) if all(math.isfinite(h) for h in halves) else math.nan
        how += "; censored seeds: each half of the TOST pools its own worst-case bound"
    if fisher:
        estimate, lo, hi = (float(v) for v in np.tanh([estimate, lo, hi]))
        pooled_se = pooled_se * (1 - estimate**2)
    if log_scale:
        estimate, lo, hi = math.exp(estimate), math.exp(lo), math.exp(hi)
        pooled_se = pooled_se * estimate
    bounded = sum(bool(r.extra.get("bounded")) for r in kept)
    if bounded:
        notes.append(f"{bounded} seed(s) censored: their medians are bounds (see their rows), so "
                     "this pooled value is too")
    on = " on Fisher z" if fisher else " on the log scale (a geometric mean)" if log_scale else ""
    notes.append(f"{meta.k} seed(s){on}, tau2 = {random.tau2:.3g}"
                 + (f", shared-image variance {meta.shared:.3g}" if shared_cov is not None
                    else ""))
    return {"estimate": estimate, "ci_low": lo, "ci_high": hi, "se": pooled_se,
            "statistic": meta.statistic if tested else math.nan,
            "p": p_value if tested else math.nan, "ci_at": ci_at,
            "scope": scope_words(meta.k, across)}, how


def _pool_mcnemar(rows: Sequence[ResultRow], confidence: float, n_resamples: int,
                  notes: list[str]) -> tuple[dict[str, float], str]:
    """Clustered exact McNemar over every pair of every seed; estimate: the pooled difference."""
    first = rows[0]
    a = [np.asarray(r.extra["pairs"][0], dtype=bool) for r in rows]  # type: ignore[index]
    b = [np.asarray(r.extra["pairs"][1], dtype=bool) for r in rows]  # type: ignore[index]
    ids = [np.asarray(r.extra["ids"]) if r.extra.get("ids") is not None
           else np.array([f"{r.seed}/{i}" for i in range(len(x))]) for r, x in zip(rows, a)]
    shared = shares_images(ids)
    res = clustered_mcnemar(a, b, ids, alternative=first.alternative)  # type: ignore[arg-type]
    x, y = np.concatenate(a), np.concatenate(b)
    diff, _, _, se = paired_risk_difference(x, y, confidence=confidence)
    how = ("pooled: exact McNemar over all pairs, stratified by seed (sign flips of per-image "
           "totals); estimate: pooled paired difference, Newcombe CI")
    boot = None
    if shared:
        # Pairs of one image in several seeds are not independent: the CI resamples images.
        _, inverse = np.unique(np.concatenate(ids), return_inverse=True)
        s = np.bincount(inverse, weights=y.astype(float) - x.astype(float))
        m = np.bincount(inverse).astype(float)
        rng = stable_rng("pooled", first.claim, first.variant, first.autoencoder)
        counts = resample_counts(s.size, n_resamples, rng)
        boot = (counts @ s) / (counts @ m)
        se = max(se, float(np.std(boot)))
        how = how.replace("Newcombe CI", "the wider of the Newcombe and the image-cluster "
                          "bootstrap CI (seeds share images)")

    def ci_at(level: float) -> tuple[float, float]:
        _, lo, hi, _ = paired_risk_difference(x, y, confidence=level)
        if boot is not None:
            # The bootstrap sees the dependence, Newcombe the edges (no discordant pair at
            # all gives a bootstrap interval [0, 0]): the CI is the union of the two.
            tail = (1 - level) / 2
            b_lo, b_hi = (float(v) for v in np.quantile(boot, [tail, 1 - tail]))
            lo, hi = min(lo, b_lo), max(hi, b_hi)
        return lo, hi

    lo, hi = ci_at(confidence)
    notes.append(f"{len(rows)} seed(s), {int(np.sum(x != y))} discordant pair(s)")
    return {"estimate": diff, "ci_low": lo, "ci_high": hi, "se": se,
            "statistic": res.statistic, "p": res.pvalue, "ci_at": ci_at,
            "scope": scope_words(len(rows), False)}, how


def _pool_stouffer(rows: Sequence[ResultRow], confidence: float, n_resamples: int,
                   notes: list[str]) -> tuple[dict[str, float], str]:
    """Rows whose estimate has no null value: the estimate is pooled, the p-values combined."""
    first = rows[0]
    out, _ = _pool_meta(rows, confidence, n_resamples, notes)
    p = np.array([r.p for r in rows], dtype=float)
    tested = np.isfinite(p)
    if tested.any():
        directions = np.array([r.effect_size if _finite(r.effect_size) else r.estimate
                               for r in rows], dtype=float)[tested]
        z, p_pooled = stouffer(p[tested], alternative=first.alternative,  # type: ignore[arg-type]
                               directions=np.nan_to_num(directions))
    else:
        z, p_pooled = math.nan, math.nan
    out.update(statistic=z, p=p_pooled, scope=scope_words(len(rows), False))
    return out, ("pooled: random-effects mean of the per-seed estimates (descriptive); p: "
                 "Stouffer's combination of the per-seed p-values (H0: no seed has an effect)")


_POOLERS = {"meta": _pool_meta, "mcnemar": _pool_mcnemar, "stouffer": _pool_stouffer}


def _pool_kind(row: ResultRow) -> str:
    if row.test == DESCRIPTIVE:
        return "meta"
    kind = row.extra.get("pool")
    if kind is not None:
        return str(kind)
    return "meta" if _finite(row.null_value) or "equivalence" in row.extra else "stouffer"


def _censoring_test(rows: Sequence[ResultRow]) -> str:
    """The test text a pooled row carries: that of a seed whose censored values sit at a bound
    if any, else of a seed whose censored values were modelled, else the first seed's.

    The seeds of one row differ in test text only by how censored values entered; the pooled
    row must say the most conservative of them, and must not hide a modelled seed behind an
    uncensored first seed (the verdict reads the text: a pooled row that said "sign test" with
    1 censored pair counted as bounded and could not contradict, while every seed did).
    """
    censored = [r for r in rows if r.n_censored]
    bounded = [r for r in censored if r.extra.get("bounded")]
    return (bounded or censored or list(rows))[0].test


def _pool_group(rows: Sequence[ResultRow], confidence: float,
                n_resamples: int = 2000) -> ResultRow:
    first = rows[0]
    # A note every seed shares (a dimension-counting prediction, say) holds for the pool too.
    notes: list[str] = [first.note] if first.note and all(r.note == first.note
                                                           for r in rows) else []
    # A count every seed's note gives in the same words (extra["counted"]: template, counts)
    # holds for the pool summed over seeds.
    counted = [c for c in (r.extra.get("counted") for r in rows) if c is not None]
    if counted and len({c[0] for c in counted}) == 1:  # seeds without one counted nothing
        totals = np.sum([c[1] for c in counted], axis=0)
        summed = counted[0][0].format(*(int(t) for t in totals))
        if not any(summed in n for n in notes):  # one seed: its shared note says it already
            notes.append(summed)
    kind = _pool_kind(first)
    informative = [r for r in rows if not r.uninformative]
    if kind != "mcnemar":
        small = [r for r in informative if r.n < MIN_POOL_N]
        if small:
            notes.append(f"{len(small)} seed(s) with n < {MIN_POOL_N} left out (a bootstrap SE "
                         "from so few values would dominate the weights)")
        informative = [r for r in informative if r.n >= MIN_POOL_N]
    dropped = len(rows) - len(informative)
    uninformative = ""
    if not informative:
        uninformative = "no informative seed (" + "; ".join(
            sorted({r.uninformative or f"n < {MIN_POOL_N}" for r in rows})) + ")"
        out = {"estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan,
               "statistic": math.nan, "p": math.nan}
        how = ""
    else:
        if dropped and len(informative) < len(rows):
            notes.append(f"{dropped} of {len(rows)} seed(s) left out of the pool "
                         "(uninformative or too small)")
        out, how = _POOLERS[kind](informative, confidence, n_resamples, notes)
    effects = np.array([r.effect_size for r in informative], dtype=float)
    effects = effects[np.isfinite(effects)]
    sugg = np.array([r.suggested_n for r in informative], dtype=float)
    sugg = sugg[np.isfinite(sugg)]
    base = _censoring_test(rows)
    test = base if base == DESCRIPTIVE or not how else f"{base}; {how}"
    scope = str(out.get("scope", scope_words(len(informative), False)))
    statistic_name = ({"meta": "t (Hartung-Knapp)" if scope.startswith("training")
                       else "z (fixed effect)", "mcnemar": "S (clustered McNemar)",
                       "stouffer": "Stouffer Z"}[kind] if _finite(out["p"]) else "")
    return ResultRow(
        claim=first.claim, variant=first.variant, autoencoder=first.autoencoder, seed=POOLED,
        n=int(sum(r.n for r in rows)), n_censored=int(sum(r.n_censored for r in rows)),
        estimate=float(out["estimate"]), ci_low=float(out["ci_low"]),
        ci_high=float(out["ci_high"]), se=float(out["se"]),
        estimate_meaning=first.estimate_meaning,
        effect_size=float(np.median(effects)) if effects.size else math.nan,
        effect_name=f"median over seeds of {first.effect_name}" if first.effect_name else "",
        statistic=float(out["statistic"]), statistic_name=statistic_name,
        p=float(out["p"]), null=first.null, test=test, alternative=first.alternative,
        suggested_n=float(math.ceil(np.median(sugg))) if sugg.size else math.nan,
        note="; ".join([*notes, *( [uninformative] if uninformative else [])]),
        n_seeds=len(rows), null_value=first.null_value, uninformative=uninformative,
        scope=scope, extra={"ci_at": out["ci_at"]} if "ci_at" in out else {},
    )


def _group_key(r: ResultRow) -> tuple[str, str, str]:
    return (r.claim, r.variant, r.autoencoder)


def pool_seeds(rows: Iterable[ResultRow], *, confidence: float = 0.95,
               n_resamples: int = 2000) -> list[ResultRow]:
    """One pooled row per (claim, variant, autoencoder) of per-seed rows, in first-seen order."""
    groups: dict[tuple[str, str, str], list[ResultRow]] = {}
    for r in rows:
        if r.seed == POOLED:
            raise ValueError("pool_seeds takes per-seed rows only")
        groups.setdefault(_group_key(r), []).append(r)
    pooled: dict[tuple[str, str, str], ResultRow] = {
        key: _pool_group(g, confidence, n_resamples) for key, g in groups.items()
        if g[0].extra.get("pool") != "iut"}
    for key, g in groups.items():
        if g[0].extra.get("pool") == "iut":
            pooled[key] = _pool_intersection(g, pooled)
    return [pooled[key] for key in groups]


def _pool_intersection(rows: Sequence[ResultRow],
                       pooled: dict[tuple[str, str, str], ResultRow]) -> ResultRow:
    """The pooled row of an intersection-union test: the max of its parts' pooled p-values."""
    first = rows[0]
    parts = [pooled[(first.claim, v, first.autoencoder)]
             for v in first.extra["parts"]]  # type: ignore[union-attr]
    lead = parts[0]
    reasons = [p.uninformative for p in parts if p.uninformative]
    pvals = [p.p for p in parts]
    return ResultRow(
        claim=first.claim, variant=first.variant, autoencoder=first.autoencoder, seed=POOLED,
        n=lead.n, n_censored=lead.n_censored, estimate=lead.estimate, ci_low=lead.ci_low,
        ci_high=lead.ci_high, se=lead.se, estimate_meaning=first.estimate_meaning,
        effect_size=math.nan, effect_name="", statistic=float(len(parts)),
        statistic_name="parts",
        p=max(pvals) if all(math.isfinite(v) for v in pvals) else math.nan, null=first.null,
        test=f"{first.test}; pooled: the same over the parts' pooled rows",
        alternative=first.alternative, note="; ".join(reasons), n_seeds=len(rows),
        uninformative="; ".join(reasons), scope=lead.scope,
        extra={"ci_at": lead.extra["ci_at"]} if "ci_at" in lead.extra else {})


#: Claims whose tested quantity is a norm: a failed attack leaves it only bounded.
CENSORING_SENSITIVE = ("dmm.norm_asymmetry", "dmm.off_equals_unrestricted",
                       "dmm.adv_training_deepens")


def censoring_warnings(results: pd.DataFrame, *, share: float = 0.2) -> list[str]:
    """One line per tested norm-claim row (pooled where there is one) more than ``share``
    censored: its test is conservative and its estimate a bound (above 50%: uninformative).

    >>> row = ResultRow("dmm.norm_asymmetry", "v", "a", 0, 10, 3, 0.1, 0.0, 0.2, 0.05, "m",
    ...                 0.1, "r", 1.0, "W+", 0.2, "null", "t", "greater")
    >>> censoring_warnings(finalise([row]))
    ['dmm.norm_asymmetry / v / a: 30% of 10 censored (> 20%): the test is conservative and ...']
    """
    tested = results[results["claim"].isin(CENSORING_SENSITIVE)
                     & (results["test"] != DESCRIPTIVE)]
    pooled = tested[tested["seed"] == POOLED]
    rows = pooled if len(pooled) else tested
    out = []
    for r in rows.itertuples(index=False):
        if r.n and r.n_censored / r.n > share:
            what = ("uninformative" if r.decision == "uninformative" else
                    "its censored pairs rest on the fitted norm model (see its note)"
                    if "log-normal model" in str(r.test) else
                    "the test is conservative and the estimate a bound")
            out.append(f"{r.claim} / {r.variant} / {r.autoencoder}: "
                       f"{100 * r.n_censored / r.n:.0f}% of {r.n} censored (> "
                       f"{100 * share:.0f}%): {what}")
    return out


def _decide(p_adj: float, alpha: float, test: str, uninformative: str = "") -> str:
    if test == DESCRIPTIVE:
        return "descriptive"
    if uninformative:
        return "uninformative"
    if not math.isfinite(p_adj):
        return "undefined"
    return "reject H0" if p_adj <= alpha else "retain H0"


def results_frame(rows: Iterable[ResultRow]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the columns of :data:`RESULT_COLUMNS`, in that order."""
    records = []
    names = [f.name for f in fields(ResultRow) if f.name != "extra"]
    for r in rows:  # not asdict: it deep-copies ``extra`` (every per-image value) to drop it
        records.append({name: getattr(r, name) for name in names})
    df = pd.DataFrame.from_records(records, columns=[c for c in RESULT_COLUMNS
                                                     if c not in ("p_adj", "alpha", "decision",
                                                                  "n_seeds_reject")])
    for col in RESULT_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=float)
    df = df[list(RESULT_COLUMNS)]
    df["seed"] = df["seed"].astype(object)
    return df


def family_level(alpha: float, m: int, correction: str, alternative: str,
                 n_rejected: int = 0) -> float:
    """Confidence level of a CI that agrees with a decision in a family of ``m`` tests.

    Holm (and Bonferroni): the Bonferroni level alpha / m. A CI at that level that excludes the
    null value on H1's side implies a Bonferroni rejection, hence a Holm one. Benjamini-Hochberg:
    the false-coverage-rate level alpha R / m with R the rejections (Benjamini & Yekutieli
    2005). ``none``: alpha. One-sided and equivalence tests decide with a one-sided bound
    (equivalence: two), so their two-sided interval is at 1 - 2a; two-sided tests at 1 - a.

    >>> family_level(0.05, 10, "holm", "less"), family_level(0.05, 10, "holm", "two-sided")
    (0.99, 0.995)
    >>> family_level(0.05, 1, "none", "equivalence")
    0.9
    """
    m = max(int(m), 1)
    if correction == "none":
        a = alpha
    elif correction == "fdr_bh":
        a = alpha * max(int(n_rejected), 1) / m
    else:
        a = alpha / m
    return 1 - (a if alternative == "two-sided" else 2 * a)


def ci_disagreement_note(row: Any) -> str:
    """Why a pooled row's CI lies on the claim's side of the null while its test retains H0.

    The CI and the test agree by construction where the CI inverts the test (normal and t
    rows at the family's Bonferroni level). A paired-proportion row's CI is Newcombe's while
    its test is the exact McNemar sign-flip test, whose smallest p with D discordant pairs is
    2^-D: few discordant pairs can give a CI beside the null and a test that cannot reach the
    family's level. "" where the two agree.
    """
    try:
        lo, hi, null = (float(row[c]) for c in ("ci_low", "ci_high", "null_value"))
    except (TypeError, ValueError, KeyError):
        return ""
    alternative, decision = str(row["alternative"]), str(row["decision"])
    if decision != "retain H0" or not math.isfinite(null):
        return ""
    beyond = {"less": hi < null, "greater": lo > null,
              "two-sided": hi < null or lo > null}.get(alternative, False)
    if not beyond:
        return ""
    if "McNemar" in str(row["statistic_name"]):
        return ("CI and test disagree: the Newcombe CI lies beside the null, but the exact "
                "McNemar test on these few discordant pairs cannot reach the family's level")
    return ("CI and test disagree: the CI (re-levelled to the family, an approximation for this "
            "interval) lies beside the null while the test retains")


def finalise(rows: Iterable[ResultRow], stats: StatsConfig | None = None) -> pd.DataFrame:
    """Pool seeds, adjust p-values in two families, decide; returns the results table.

    Each (claim, variant, autoencoder) group lists its seeds in ascending order, then its pooled
    row. The pooled rows (the run's verdicts) are the confirmatory family; the per-seed rows,
    replication diagnostics reported as "k/S seeds", are adjusted in a family of their own, so
    the per-seed rows no longer dilute the verdicts. A pooled row's CI is at the level its
    decision used (:func:`family_level`).

    Examples
    --------
    >>> mk = lambda seed, p, est: ResultRow("c", "v", "a", seed, 10, 0, est, est - .2, est + .2,
    ...     .1, "m", .5, "r", 1.0, "W+", p, "null", "t", "greater")
    >>> df = finalise([mk(0, 0.01, 1.0), mk(1, 0.04, 1.2)])
    >>> df[["seed", "decision", "n_seeds", "n_seeds_reject"]].values.tolist()
    [[0, 'reject H0', 1, 1], [1, 'reject H0', 1, 1], ['pooled', 'reject H0', 2, 2]]
    >>> df["scope"].tolist()
    ['this model', 'this model', 'these 2 models']
    >>> df["p_adj"].round(5).tolist()  # Holm over the 2 seeds; the pooled row alone
    [0.02, 0.04, 0.00197]
    >>> df["ci_level"].tolist()  # one pooled test: 1 - 2 alpha for a one-sided one
    [0.95, 0.95, 0.9]
    """
    stats = stats or StatsConfig()
    per_seed = list(rows)
    pooled = pool_seeds(per_seed, confidence=stats.confidence, n_resamples=stats.bootstrap)
    ordered: list[ResultRow] = []
    by_group: dict[tuple[str, str, str], list[ResultRow]] = {}
    for r in per_seed:
        by_group.setdefault(_group_key(r), []).append(r)
    for pooled_row in pooled:
        group = by_group[_group_key(pooled_row)]
        ordered += sorted(group, key=lambda r: int(r.seed)) + [pooled_row]
    df = results_frame(ordered)
    is_pooled = df["seed"].eq(POOLED).to_numpy()
    reasons = [r.uninformative for r in ordered]
    p = df["p"].to_numpy(dtype=float)
    tested = np.array([not reason for reason in reasons]) & np.isfinite(p)
    p_adj = np.full(len(df), np.nan)
    for family in (tested & is_pooled, tested & ~is_pooled):
        p_adj[family] = adjust_pvalues(p[family], stats.correction)
    df["p_adj"] = p_adj
    df["alpha"] = stats.alpha
    df["decision"] = [_decide(pa, stats.alpha, t, u)
                      for pa, t, u in zip(p_adj, df["test"], reasons)]
    confirmatory = tested & is_pooled
    n_rejected = int((df["decision"][confirmatory] == "reject H0").sum())
    levels = np.full(len(df), stats.confidence)
    ci_low = df["ci_low"].to_numpy(dtype=float, copy=True)
    ci_high = df["ci_high"].to_numpy(dtype=float, copy=True)
    for i, r in enumerate(ordered):
        if confirmatory[i] and "ci_at" in r.extra:
            levels[i] = family_level(stats.alpha, int(confirmatory.sum()), stats.correction,
                                     r.alternative, n_rejected)
            ci_low[i], ci_high[i] = r.extra["ci_at"](float(levels[i]))
    df["ci_low"], df["ci_high"], df["ci_level"] = ci_low, ci_high, levels
    for i in np.flatnonzero(confirmatory):
        why = ci_disagreement_note(df.iloc[i])
        if why:
            df.iloc[i, df.columns.get_loc("note")] = "; ".join(
                x for x in (str(df["note"].iloc[i]), why) if x)
    seed_rows = df[~is_pooled]
    rejects = seed_rows.groupby(["claim", "variant", "autoencoder"], sort=False)["decision"] \
        .agg(lambda s: int((s == "reject H0").sum()))
    df["n_seeds_reject"] = [
        rejects.get((c, v, a), 0) if pool else int(d == "reject H0")
        for c, v, a, pool, d in zip(df["claim"], df["variant"], df["autoencoder"], is_pooled,
                                    df["decision"])
    ]
    df["n_seeds_reject"] = df["n_seeds_reject"].astype("int64")
    for col in ("n", "n_censored", "n_seeds"):
        df[col] = df[col].astype("int64")
    return df.reset_index(drop=True)
