"""The results table: one row per (claim, variant, autoencoder, seed | pooled).

Column names are stable (reports, notebooks and downstream scripts key on them); their meanings
are :data:`RESULT_COLUMNS`. Claim analyses build per-seed rows (:class:`ResultRow`);
:func:`finalise` adds a pooled row per (claim, variant, autoencoder), adjusts p-values for
multiplicity and takes the decisions.

Multiplicity families
---------------------
Per-seed rows and pooled rows are two separate families, each adjusted with the configured
correction (``holm`` | ``fdr_bh`` | ``none``) across every claim of the run. The pooled rows
re-use the per-seed data, so putting both in one family would count the same evidence twice and
punish a run for reporting its replications; kept apart, each family controls its own error
rate: "which per-seed tests reject" and "which pooled claims reject". Rows without a p-value
(descriptive rows, undefined tests) are not part of any family.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from dimple_stats.protocol.schema import StatsConfig
from dimple_stats.stats.meta import random_effects, stouffer
from dimple_stats.stats.multiplicity import adjust_pvalues

__all__ = [
    "RESULT_COLUMNS",
    "POOLED",
    "NO_AUTOENCODER",
    "DESCRIPTIVE",
    "ResultRow",
    "pool_seeds",
    "finalise",
    "results_frame",
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
    "iso.defense the defence, '-' where no autoencoder applies",
    "seed": "replication seed (int), or 'pooled' for the combination over seeds",
    "n": "observations tested (samples or pairs; pooled rows: summed over seeds)",
    "n_censored": "of those, samples whose relevant attack failed (norm = eps); kept, not dropped",
    "estimate": "point estimate; its meaning is estimate_meaning",
    "ci_low": "lower end of the confidence interval of the estimate (StatsConfig.confidence)",
    "ci_high": "upper end of the confidence interval",
    "se": "standard error of the estimate (bootstrap, delta method or meta-analysis)",
    "estimate_meaning": "what the estimate is, with its null value",
    "effect_size": "standardised effect size (pooled rows: median over seeds)",
    "effect_name": "which effect size, e.g. rank-biserial r",
    "statistic": "test statistic (pooled rows: Stouffer's Z)",
    "statistic_name": "which statistic, e.g. W+ (sum of ranks of positive values)",
    "p": "p-value of the test (pooled rows: Stouffer's combined p over seeds)",
    "p_adj": "p adjusted for multiplicity within its family (per-seed rows, or pooled rows)",
    "alpha": "significance level the decision uses",
    "decision": "'reject H0' if p_adj <= alpha, 'retain H0', 'descriptive' (not tested) or "
    "'undefined' (no p-value; see note)",
    "null": "the null hypothesis tested, in words",
    "test": "the test and the per-sample statistic it was applied to",
    "alternative": "two-sided, less or greater (direction of H1 for the statistic)",
    "n_seeds": "seeds combined (1 on per-seed rows)",
    "n_seeds_reject": "seeds whose own row rejects H0 after adjustment",
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
    extra: dict[str, object] = field(default_factory=dict, repr=False)


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(float(x))


def _pool_group(rows: Sequence[ResultRow], confidence: float) -> ResultRow:
    first = rows[0]
    # A note every seed shares (a dimension-counting prediction, say) holds for the pool too.
    notes: list[str] = [first.note] if first.note and all(r.note == first.note
                                                           for r in rows) else []
    est = np.array([r.estimate for r in rows], dtype=float)
    se = np.array([r.se for r in rows], dtype=float)
    fisher = first.extra.get("scale") == "fisher_z"
    if fisher:  # correlations are pooled on Fisher's z scale, where they are near normal
        with np.errstate(divide="ignore", invalid="ignore"):
            se = se / (1 - est**2)
            est = np.arctanh(est)
    usable = np.isfinite(est) & np.isfinite(se) & (se > 0)
    if usable.any():
        meta = random_effects(est[usable], se[usable] ** 2, confidence=confidence)
        estimate, lo, hi, pooled_se = meta.estimate, meta.ci_low, meta.ci_high, meta.se
        if fisher:
            estimate, lo, hi = np.tanh([estimate, lo, hi])
            pooled_se = pooled_se * (1 - estimate**2)
        notes.append(f"random effects over {meta.k} seed(s){' on Fisher z' if fisher else ''}, "
                     f"tau2 = {meta.tau2:.3g}")
        if (~usable).any():
            notes.append(f"{int((~usable).sum())} seed(s) without a standard error left out of "
                         "the estimate")
    else:
        est = np.array([r.estimate for r in rows], dtype=float)
        finite = est[np.isfinite(est)]
        estimate = float(np.median(finite)) if finite.size else math.nan
        lo = hi = pooled_se = math.nan
        notes.append("no seed has a standard error: estimate is the median over seeds, no CI")
    p = np.array([r.p for r in rows], dtype=float)
    tested = np.isfinite(p)
    if tested.any():
        directions = np.array([r.effect_size if _finite(r.effect_size) else r.estimate
                               for r in rows], dtype=float)[tested]
        z, p_pooled = stouffer(p[tested], alternative=first.alternative,  # type: ignore[arg-type]
                               directions=np.nan_to_num(directions))
    else:
        z, p_pooled = math.nan, math.nan
    effects = np.array([r.effect_size for r in rows], dtype=float)
    effects = effects[np.isfinite(effects)]
    sugg = np.array([r.suggested_n for r in rows], dtype=float)
    sugg = sugg[np.isfinite(sugg)]
    test = first.test if first.test == DESCRIPTIVE else (
        f"{first.test}; pooled: random-effects meta-analysis (Paule-Mandel) of the per-seed "
        "estimates, Stouffer's combined p")
    return ResultRow(
        claim=first.claim, variant=first.variant, autoencoder=first.autoencoder, seed=POOLED,
        n=int(sum(r.n for r in rows)), n_censored=int(sum(r.n_censored for r in rows)),
        estimate=float(estimate), ci_low=float(lo), ci_high=float(hi), se=float(pooled_se),
        estimate_meaning=first.estimate_meaning,
        effect_size=float(np.median(effects)) if effects.size else math.nan,
        effect_name=f"median over seeds of {first.effect_name}" if first.effect_name else "",
        statistic=float(z), statistic_name="Stouffer Z" if tested.any() else "",
        p=float(p_pooled), null=first.null, test=test, alternative=first.alternative,
        suggested_n=float(math.ceil(np.median(sugg))) if sugg.size else math.nan,
        note="; ".join(notes), n_seeds=len(rows),
    )


def _group_key(r: ResultRow) -> tuple[str, str, str]:
    return (r.claim, r.variant, r.autoencoder)


def pool_seeds(rows: Iterable[ResultRow], *, confidence: float = 0.95) -> list[ResultRow]:
    """One pooled row per (claim, variant, autoencoder) of per-seed rows, in first-seen order."""
    groups: dict[tuple[str, str, str], list[ResultRow]] = {}
    for r in rows:
        if r.seed == POOLED:
            raise ValueError("pool_seeds takes per-seed rows only")
        groups.setdefault(_group_key(r), []).append(r)
    return [_pool_group(g, confidence) for g in groups.values()]


def _decide(p_adj: float, alpha: float, test: str) -> str:
    if test == DESCRIPTIVE:
        return "descriptive"
    if not math.isfinite(p_adj):
        return "undefined"
    return "reject H0" if p_adj <= alpha else "retain H0"


def results_frame(rows: Iterable[ResultRow]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the columns of :data:`RESULT_COLUMNS`, in that order."""
    records = []
    for r in rows:
        d = asdict(r)
        d.pop("extra")
        records.append(d)
    df = pd.DataFrame.from_records(records, columns=[c for c in RESULT_COLUMNS
                                                     if c not in ("p_adj", "alpha", "decision",
                                                                  "n_seeds_reject")])
    for col in RESULT_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=float)
    df = df[list(RESULT_COLUMNS)]
    df["seed"] = df["seed"].astype(object)
    return df


def finalise(rows: Iterable[ResultRow], stats: StatsConfig | None = None) -> pd.DataFrame:
    """Pool seeds, adjust p-values per family, decide; returns the results table.

    Each (claim, variant, autoencoder) group lists its seeds in ascending order, then its pooled
    row.

    Examples
    --------
    >>> mk = lambda seed, p, est: ResultRow("c", "v", "a", seed, 10, 0, est, est - .2, est + .2,
    ...     .1, "m", .5, "r", 1.0, "W+", p, "null", "t", "greater")
    >>> df = finalise([mk(0, 0.01, 1.0), mk(1, 0.04, 1.2)])
    >>> df[["seed", "decision", "n_seeds", "n_seeds_reject"]].values.tolist()
    [[0, 'reject H0', 1, 1], [1, 'reject H0', 1, 1], ['pooled', 'reject H0', 2, 2]]
    >>> df["p_adj"].round(5).tolist()  # Holm over the two seeds; the pooled row is its own family
    [0.02, 0.04, 0.00197]
    """
    stats = stats or StatsConfig()
    per_seed = list(rows)
    pooled = pool_seeds(per_seed, confidence=stats.confidence)
    ordered: list[ResultRow] = []
    by_group: dict[tuple[str, str, str], list[ResultRow]] = {}
    for r in per_seed:
        by_group.setdefault(_group_key(r), []).append(r)
    for pooled_row in pooled:
        group = by_group[_group_key(pooled_row)]
        ordered += sorted(group, key=lambda r: int(r.seed)) + [pooled_row]
    df = results_frame(ordered)
    is_pooled = df["seed"].eq(POOLED).to_numpy()
    p = df["p"].to_numpy(dtype=float)
    p_adj = np.full(len(df), np.nan)
    for family in (~is_pooled, is_pooled):
        p_adj[family] = adjust_pvalues(p[family], stats.correction)
    df["p_adj"] = p_adj
    df["alpha"] = stats.alpha
    df["decision"] = [_decide(pa, stats.alpha, t) for pa, t in zip(p_adj, df["test"])]
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
