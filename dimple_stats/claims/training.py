"""Claims about training: the dynamics of r_T over epochs and adversarial training.

Claims ``dmm.clinging_then_dimpling`` and ``dmm.adv_training_deepens``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dimple_stats.claims.catalogue import (
    DEFAULT_TEST,
    AdvTrainingOptions,
    ClingingOptions,
)
from dimple_stats.claims.rows import (
    AnalysisError,
    Rows,
    bootstrap_median,
    censored_mask,
    censored_share_reason,
    column_values,
    groups_of,
    intersection_union_row,
    join_notes,
    location_row,
    needs,
    null_text,
    spearman_row,
    tost_row,
    with_autoencoder_column,
)
from dimple_stats.results import ResultRow
from dimple_stats.stats.bootstrap import stable_rng
from dimple_stats.stats.censored import (
    Bounds,
)
from dimple_stats.stats.changepoint import change_point_ci, fit_two_segment, kink_test
from dimple_stats.stats.paired import sign_test
from dimple_stats.stats_config import StatsConfig


@needs(("seed", "epoch", "sample", "norm_plain", "success_plain", "r_T", "r_R"))
def clinging_then_dimpling(df: pd.DataFrame, opts: ClingingOptions, stats: StatsConfig, *,
                           claim: str) -> Rows:
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
    * ``r_T below chance throughout``: one-sided exact sign test (less) of the median of
      r_T - r_R at every epoch;
      intersection-union test, p = the largest per-epoch p (rejects only if every epoch does);
      estimate = the largest per-epoch median of r_T - r_R.

    Every epoch present is analysed (``every`` is how often the runner measures).
    Censoring: early-epoch attacks fail less (the boundary is near); censoring at eps flattens
    late epochs, biasing toward a change point. ``n_censored`` counts success_plain False over
    all epochs; the note gives the count per epoch.
    """
    df = with_autoencoder_column(df)
    rows: Rows = []
    for (ae, seed), g in groups_of(df, ["autoencoder", "seed"]):
        rows += _clinging_rows(claim, str(ae), int(seed), g, stats)
    return rows


def _clinging_rows(claim: str, ae: str, seed: int, g: pd.DataFrame, stats: StatsConfig) -> Rows:
    norms = g.pivot(index="epoch", columns="sample", values="norm_plain").sort_index()
    epochs = norms.index.to_numpy()
    medians = np.nanmedian(norms.to_numpy(dtype=float), axis=1)
    cens = censored_mask(g, ("success_plain",))
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
        p=kink.pvalue, null=null_text(claim, "no_change_point"),
        test="F-test, smooth decay a + b exp(-e/s) (s profiled; a line as s -> inf) vs the same "
        "plus a hinge c (e - tau)_+ (tau profiled), on per-epoch median norm_plain; p by "
        "resampling samples (whole trajectories) around the smooth fit",
        alternative="greater",
        note=join_notes(cens_note, "" if math.isfinite(kink.pvalue) else "fewer than 6 epochs"))]
    if math.isfinite(fit.change_point):
        for phase, inside in (("early", epochs <= fit.change_point),
                              ("late", epochs >= fit.change_point)):
            rows.append(spearman_row(
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
        d = column_values(e, "r_T") - column_values(e, "r_R")
        d = d[np.isfinite(d)]
        pvals.append(sign_test(d, alternative="less").pvalue if d.size else math.nan)
        medians.append(float(np.median(d)) if d.size else math.nan)
    worst = int(np.nanargmax(medians)) if np.isfinite(medians).any() else 0
    worst_epoch = sorted(g["epoch"].unique())[worst]
    at_worst = g[g["epoch"] == worst_epoch]
    d_worst = column_values(at_worst, "r_T") - column_values(at_worst, "r_R")
    est = bootstrap_median(d_worst[np.isfinite(d_worst)], stats, claim, "below chance", ae, seed)
    p = max(pvals) if pvals and np.isfinite(pvals).all() else math.nan
    return ResultRow(
        claim=claim, variant="r_T below chance throughout", autoencoder=ae, seed=seed, n=len(g),
        n_censored=n_censored, estimate=est.estimate, ci_low=est.ci_low, ci_high=est.ci_high,
        se=est.se, estimate_meaning=f"largest per-epoch median r_T - r_R (epoch {worst_epoch}), "
        "bootstrap CI (0 = chance)", effect_size=math.nan, effect_name="",
        statistic=float(len(pvals)), statistic_name="epochs tested", p=p,
        null="at some epoch r_T is no smaller than r_R (median of r_T - r_R >= 0).",
        test="intersection-union test: one-sided exact sign test (less) of the median of "
        "r_T - r_R at "
        "every epoch, p = max", alternative="less")


@needs(("seed", "classifier", "sample", "r_T", "norm_plain", "success_plain"))
def adv_training_deepens(df: pd.DataFrame, opts: AdvTrainingOptions, stats: StatsConfig, *,
                         claim: str) -> Rows:
    """dmm.adv_training_deepens: same samples, standard vs adversarially trained classifier.

    * variant ``turned``: TOST (exact sign tests) of r_T(adv) - r_T(std) within ±margin (rejecting H0
      says the boundary did NOT turn).
    * variant ``no_deepening``: one-sided exact sign test (greater) of the median of
      norm_plain(adv) - norm_plain(std).
    * variant ``deepens and not turned``: the claim as a whole, an intersection-union test
      (Berger 1982): p = the larger of the two p-values above, so it rejects only when both
      parts do, at level alpha without adjustment.

    The TOST is on the median (exact sign tests), like its estimate.
    Censoring: a failed attack's norm is only >= eps, so the norm difference is bounded on one
    side (imputed at the bound least favourable to deepening; robust models fail more, so this
    is where censoring bites); more than 50% censored pairs: uninformative. ``n_censored``
    counts pairs with success_plain False on either side.
    """
    df = with_autoencoder_column(df)
    unknown = sorted(set(df["classifier"]) - {"standard", "adversarial"})
    if unknown:
        raise AnalysisError(f"{claim}: classifier must be 'standard' or 'adversarial', got "
                            f"{unknown}")
    rows: Rows = []
    cols = ["sample", "r_T", "norm_plain", "success_plain"]
    for (ae, seed), g in groups_of(df, ["autoencoder", "seed"]):
        both = g.loc[g["classifier"] == "standard", cols].merge(
            g.loc[g["classifier"] == "adversarial", cols], on="sample", suffixes=("_std", "_adv"),
            how="outer", indicator=True)
        paired = both[both["_merge"] == "both"]
        unpaired = len(both) - len(paired)
        note = f"{unpaired} unpaired sample(s) left out" if unpaired else ""
        cens = (~paired["success_plain_std"].to_numpy(bool)
                | ~paired["success_plain_adv"].to_numpy(bool))
        d_r = column_values(paired, "r_T_adv") - column_values(paired, "r_T_std")
        std_ok = paired["success_plain_std"].to_numpy(bool)
        adv_ok = paired["success_plain_adv"].to_numpy(bool)
        observed = column_values(paired, "norm_plain_adv") - column_values(paired, "norm_plain_std")
        # A failed attack's norm is >= eps: the difference is unbounded on that side.
        d_norm = Bounds(np.where(std_ok, observed, -np.inf), np.where(adv_ok, observed, np.inf))
        turned = tost_row(
            claim=claim, variant="turned", autoencoder=str(ae), seed=seed, d=d_r,
            margin=opts.margin, estimate_meaning="median r_T(adv) - r_T(std), bootstrap CI "
            "(0 = unchanged)", censored=cens,
            statistic_text="r_T(adversarial) - r_T(standard), paired by sample",
            null=null_text(claim, "turned"), stats=stats, note=note)
        deepening = location_row(
            claim=claim, variant="no_deepening", autoencoder=str(ae), seed=seed, d=d_norm,
            estimate_values=d_norm, estimate_meaning="median norm_plain(adv) - norm_plain(std), "
            "bootstrap CI (0 = no deepening)", censored=cens, test=DEFAULT_TEST,
            alternative="greater",
            statistic_text="norm_plain(adversarial) - norm_plain(standard), paired by sample",
            null=null_text(claim, "no_deepening"), stats=stats, null_value=0.0, note=note,
            uninformative=censored_share_reason(cens, "pairs (an attack failed)"))
        rows += [turned, deepening, intersection_union_row(
            claim=claim, variant="deepens and not turned", parts=(deepening, turned),
            null=null_text(claim, "not_both"))]
    return rows
