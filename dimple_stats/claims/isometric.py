"""Does the autoencoder change the picture? Plain vs isometric, the autoencoder's validity as a
measuring device, and the projection defense.

Claims ``iso.plain_vs_isometric``, ``ae.validity`` and ``iso.defense``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import proportion_confint

from dimple_stats.claims.catalogue import (
    DefenseOptions,
    PlainVsIsometricOptions,
    ValidityOptions,
)
from dimple_stats.claims.rows import (
    AnalysisError,
    Rows,
    censored_mask,
    column_values,
    descriptive_row,
    groups_of,
    image_ids,
    location_row,
    mcnemar_row,
    needs,
    null_text,
    spearman_tost_row,
    variant_name,
)
from dimple_stats.results import DESCRIPTIVE, ResultRow
from dimple_stats.stats.mcnemar import paired_risk_difference
from dimple_stats.stats_config import StatsConfig


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


@needs(("seed", "autoencoder", "sample", "r_T", "success_plain"))
def plain_vs_isometric(df: pd.DataFrame, opts: PlainVsIsometricOptions,
                       stats: StatsConfig, *,
                       claim: str) -> Rows:
    """iso.plain_vs_isometric: two-sided test of r_T(plain) - r_T(isometric) on the same samples.

    Samples are paired on (seed, sample); samples present under one autoencoder only are left
    out and counted in the note. Autoencoders are named by the options; when a name is None the
    autoencoder called "plain" (resp. "isometric") is used, else an :class:`AnalysisError`
    names what the table holds. Per-autoencoder perpendicularity is dmm.perpendicular's job
    (it runs per autoencoder).

    Censoring: the same attack is projected on both manifolds, so censoring affects both sides
    equally. ``n_censored`` counts pairs with success_plain False on either side.
    """
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
    for (seed,), g in groups_of(both, ["seed"]):
        paired = g[g["_merge"] == "both"]
        unpaired = len(g) - len(paired)
        d = column_values(paired, "r_T_a") - column_values(paired, "r_T_b")
        cens = ~paired["success_plain_a"].to_numpy(bool) | \
            ~paired["success_plain_b"].to_numpy(bool)
        rows.append(location_row(
            claim=claim, variant=variant_name("no_change", opts.test), autoencoder=f"{plain} - {iso}",
            seed=seed, d=d,
            estimate_values=d,
            estimate_meaning=f"median r_T({plain}) - r_T({iso}), bootstrap CI (0 = no change)",
            censored=cens, test=opts.test, alternative="two-sided",
            statistic_text=f"r_T({plain}) - r_T({iso}), paired by sample",
            null=null_text(claim, "no_change"), stats=stats, null_value=0.0, ids=image_ids(paired),
            note=f"{unpaired} unpaired sample(s) left out" if unpaired else ""))
    return rows


@needs(("seed", "autoencoder", "sample", "recon_err", "norm_plain", "r_T", "success_plain"))
def validity(df: pd.DataFrame, opts: ValidityOptions, stats: StatsConfig, *,
             claim: str) -> Rows:
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
    for (ae, seed), g in groups_of(df, ["autoencoder", "seed"]):
        cens = censored_mask(g, ("success_plain",))
        rel = column_values(g, "recon_err") / column_values(g, "norm_plain")
        r_t = column_values(g, "r_T")
        rows.append(spearman_tost_row(
            claim=claim, variant="equivalence", autoencoder=str(ae), seed=seed, x=rel, y=r_t,
            margin=opts.margin, n_censored=int(cens.sum()),
            statistic_text="(recon_err / norm_plain, r_T)",
            null=null_text(claim, "associated").replace("the margin", f"{opts.margin:g}"),
            stats=stats, ids=image_ids(g)))
        recon = column_values(g, "recon_err")
        try:
            tercile = pd.qcut(recon, 3, labels=False, duplicates="drop")
        except ValueError:  # all equal or too few: one stratum
            tercile = np.zeros(len(g))
        tercile = np.asarray(tercile, dtype=float)
        for t in range(3):
            inside = tercile == t
            if not inside.any():
                continue
            rows.append(descriptive_row(
                claim=claim, variant=f"recon_err tercile {t + 1}/3", autoencoder=str(ae),
                seed=seed, values=r_t[inside],
                estimate_meaning="median r_T within the recon_err tercile, bootstrap CI",
                n_censored=int(cens[inside].sum()),
                null="(descriptive) r_T by reconstruction-error tercile", stats=stats,
                ids=image_ids(g)[inside] if image_ids(g) is not None else None,
                note=f"recon_err in [{recon[inside].min():.4g}, {recon[inside].max():.4g}]"))
    return rows


def defense_hypothesis(defense: str) -> str:
    """iso.defense's H1 for one defended model of the defense table, named by its projection:
    ``<autoencoder>`` is x -> D(E(x)), ``<autoencoder>:tangent`` the tangent-plane projection.

    >>> defense_hypothesis("isometric")
    'Projecting inputs through the isometric autoencoder, x -> D(E(x)), raises robust ...'
    """
    autoencoder, _, projection = defense.partition(":")
    how = (f"onto the {autoencoder} autoencoder's tangent plane at D(E(x))"
           if projection == "tangent" else
           f"through the {autoencoder} autoencoder, x -> D(E(x)),")
    return f"Projecting inputs {how} raises robust accuracy under white-box PGD through the " \
        "projection."


@needs(("seed", "defense", "eps", "sample", "robust_correct", "clean_correct"))
def defense(df: pd.DataFrame, opts: DefenseOptions, stats: StatsConfig, *,
            claim: str) -> Rows:
    """iso.defense: exact McNemar (greater) on robust-correct indicators, per eps and seed.

    Every defense other than the baselines is compared, on the same samples, with ``none`` (no
    projection) and with ``plain`` (the plain autoencoder's projection), where present; variant
    ``vs <baseline> @ eps=<eps>``. The clean-accuracy cost (clean accuracy of the defense minus
    the baseline's, paired Newcombe CI) is a descriptive row ``clean cost vs <baseline>`` per seed.
    With ``eps`` in the options only those budgets are analysed (each must be in the table).

    Censoring: a failed attack leaves the sample robust-correct: that is the outcome
    itself. ``n_censored`` counts pairs in which the attack failed on either side.
    """
    eps_all = np.sort(df["eps"].unique())
    if opts.eps is not None:
        missing = [e for e in opts.eps if not np.isclose(eps_all, e).any()]
        if missing:
            raise AnalysisError(f"{claim}: eps {missing} not in the defense table (has "
                                f"{eps_all.tolist()})")
        df = df[np.isclose(df["eps"].to_numpy()[:, None], np.asarray(opts.eps)).any(axis=1)]
    defenses = sorted(df["defense"].unique().tolist())
    baselines = [b for b in ("none", "plain") if b in defenses]
    if not baselines:
        raise AnalysisError(f"{claim}: the defense table needs a baseline defense 'none' or "
                            f"'plain'; it has {', '.join(defenses)}")
    rows: Rows = []
    for (seed,), g in groups_of(df, ["seed"]):
        for name in defenses:
            rows += _robust_accuracy_rows(claim, g, name, int(seed), stats)
            for base in baselines:
                if name not in (base, "none"):  # plain itself is compared with none
                    rows += _defense_rows(claim, g, name, base, int(seed), stats)
    return rows


def _robust_accuracy_rows(claim: str, g: pd.DataFrame, name: str, seed: int,
                          stats: StatsConfig) -> Rows:
    """Robust accuracy of one defense per eps, Wilson CI: the levels the tests compare."""
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
            estimate_meaning="share of images still classified correctly after white-box PGD "
            "through the projection, Wilson CI", effect_size=math.nan, effect_name="", statistic=math.nan,
            statistic_name="", p=math.nan,
            null="(descriptive) robust accuracy under white-box PGD through the projection (an "
            "upper bound: a stronger attack can only lower it)",
            test=DESCRIPTIVE, alternative="", note=_attack_audit(e)))
    return rows


def _attack_audit(e: pd.DataFrame) -> str:
    """Which attacks broke the images of one defense at one eps, where several ran per image
    (``defense.gradient: every``): 'robust only if every attack fails (autograd, bpda); 101
    images broken by autograd only, 0 by bpda only, 117 by both'.

    Empty for a table with one attack per image (no ``broken_by`` column, or one attack).
    """
    if "broken_by" not in e.columns or "gradient" not in e.columns:
        return ""
    attacks = sorted({a for g in e["gradient"].astype(str) for a in g.split("+") if a})
    if len(attacks) < 2:
        return ""
    broken = e["broken_by"].fillna("").astype(str)
    counts = [f"{int((broken == a).sum())} by {a} only" for a in attacks]
    every = int((broken.ne("") & broken.str.split("+").str.len().eq(len(attacks))).sum())
    return (f"robust only if every attack fails ({', '.join(attacks)}); images broken: "
            + ", ".join(counts) + f", {every} by {'both' if len(attacks) == 2 else 'all'}")


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
        rows.append(mcnemar_row(
            claim=claim, variant=f"vs {base} @ eps={eps:g}", autoencoder=name, seed=seed,
            first=base_rc, second=def_rc, alternative="greater", names=(base, name),
            n_censored=int((base_rc | def_rc).sum()), null=null_text(claim, "no_gain"), stats=stats,
            ids=image_ids(e)))
    clean = both.drop_duplicates("sample")
    base_cc = clean["clean_correct_base"].to_numpy(bool)
    def_cc = clean["clean_correct_def"].to_numpy(bool)
    diff, lo, hi, se = paired_risk_difference(base_cc, def_cc, confidence=stats.confidence)
    rows.append(ResultRow(
        claim=claim, variant=f"clean cost vs {base}", autoencoder=name, seed=seed,
        n=int(len(clean)), n_censored=0, estimate=diff, ci_low=lo, ci_high=hi, se=se,
        estimate_meaning=f"clean accuracy({name}) - clean accuracy({base}), paired Newcombe CI "
        "(negative = a cost)", effect_size=math.nan, effect_name="", statistic=math.nan,
        statistic_name="", p=math.nan, null="(descriptive) clean-accuracy cost of the defense",
        test=DESCRIPTIVE, alternative=""))
    return rows
