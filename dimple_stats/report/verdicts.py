"""Verdicts in words: what the results table says about each claim, one paragraph per claim
and autoencoder, generated from the table alone (no hand-written numbers).

Categories
----------
``supported``
    Every deciding row rejects H0 after adjustment (every claim's H1 is what the claim says).
``contradicted``
    No deciding row supports the claim and at least one is significant the other way, at the
    standard "supported" has to meet: its reverse one-sided test (p_rev = 1 - p, the test's
    own p-value turned round) is significant after Bonferroni over the run's tested rows (at
    least as strict as the run's Holm family), and its confidence interval lies entirely on
    the other side of the estimate's value under H0 (``alternative`` ``less``: above it;
    ``greater``: below it). Only rows with a direction and a null value can contradict (a
    two-sided or an equivalence claim cannot), and never a row of a censoring-sensitive claim
    with censored values: those are set at the bound least favourable to the claim, which
    keeps a rejection conservative but pushes the estimate the other way.
``not supported``
    Anything else informative: H0 retained, or the deciding rows disagree ("2 of 6 comparisons
    support the claim").
``uninformative``
    Every deciding row (or most of them) is too censored or too small to answer, or has no
    p-value; the text gives the reason from the row's note.

Which rows decide
-----------------
Pooled rows where the run has them (else every per-seed row, each seed a comparison). The claim's
``verdict_on`` (:class:`~dimple_stats.claims.catalogue.ClaimDefinition`) names the deciding
variants; the claim's other tested variants (e.g. the data-shaped nulls of dmm.perpendicular)
are read beside them, and the text says whether they agree or change the reading.

Examples
--------
>>> from dimple_stats.results import ResultRow, finalise
>>> row = lambda seed, est, p: ResultRow(
...     "dmm.perpendicular", "random_subspace", "plain", seed, 400, 0, est, est - .1, est + .1,
...     .05, "median r_T / chance median, bootstrap CI (1 = chance)", .5, "r", 1.0, "W+", p,
...     "null", "t", "less", null_value=1.0)
>>> v, = verdicts(finalise([row(0, 3.5, 1.0), row(1, 3.6, 1.0)]), confidence=0.95)
>>> v.category
'contradicted'
>>> print(v.text)  # doctest: +NORMALIZE_WHITESPACE
Contradicted for plain (these 2 models; generalising over training runs needs 5 or more
seeds). Against a random subspace of the same dimension: median r_T / chance median 3.55 (90%
CI 3.49 to 3.61; 1 under H0), p_adj = 1, 0/2 seeds reject, n = 800; the CI lies entirely above
1, the other side from the claim's (below), and the reverse test is significant (1 - p,
Bonferroni over 1 tests: < 1e-15).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

import numpy as np
import pandas as pd

from dimple_stats.report.labels import equivalence_margin
from dimple_stats.report.pvalue_text import format_p
from dimple_stats.results import (
    CENSORING_SENSITIVE,
    DESCRIPTIVE,
    MIN_SEEDS_RANDOM,
    NO_AUTOENCODER,
    POOLED,
)
from dimple_stats.stats.censored_ratio import MODELLED

__all__ = ["Category", "Verdict", "verdicts", "CATEGORIES", "deciding_rows", "quantity",
           "short_reason"]

Category = Literal["supported", "not supported", "contradicted", "uninformative"]
#: Every category, in the order a summary lists them.
CATEGORIES: tuple[Category, ...] = ("supported", "not supported", "contradicted",
                                    "uninformative")

#: Nulls and sub-tests in words (variant names of the built-in claims; others print as named).
VARIANT_WORDS: dict[str, str] = {
    "random_subspace": "a random subspace of the same dimension",
    "beta": "the Beta law of a random direction",
    "other_image": "the tangent space of another image of the same class",
    "pca": "the top-k principal subspace of the training images (data-shaped)",
    "data_random": "a random k-dim subspace of the training images' span (data-shaped)",
    # Sentences read "against <null>": these name the null, not the claim.
    "non_inferiority": "r_T below a random subspace's share by the margin or more "
    "(non-inferiority test)",
    "greater": "r_T no larger than a random subspace's share (superiority test)",
    "beyond_dimension_counting": "the dimension-counting prediction",
    "beyond_first_order": "the classifier's first-order prediction ||P_perp g|| / ||P_T g||",
    "tost": "a difference of the margin or more (equivalence test)",
    "equal_rates": "equal success rates",
    "no_change": "no change between the autoencoders",
    "same_share": "equal shares in the local tangent and the top-k principal subspace",
    "equivalence": "an association of the margin or more (equivalence test)",
    "change point": "a smooth decay without a change point",
    "r_T below chance throughout": "r_T at or above chance at some epoch",
    "no_deepening": "no deepening (norm_plain no larger after adversarial training)",
    "turned": "r_T changing by the margin or more (equivalence test)",
    "deepens and not turned": "not both deepening and leaving r_T within the margin",
    "unchanged": "r_T unchanged by adversarial training",
    "unchanged_vs_pca": "r_T - r_PCA unchanged by adversarial training (data-shaped)",
    "unchanged_vs_data_random": "r_T - r_Rdata unchanged by adversarial training (data-shaped)",
}
#: Short names of the nulls for headlines; other variants print as named.
NULL_NAMES: dict[str, str] = {
    "random_subspace": "random subspace",
    "beta": "Beta law",
    "other_image": "another image's tangent",
    "pca": "data-shaped PCA subspace",
    "data_random": "data-shaped random subspace",
    "beyond_dimension_counting": "dimension counting",
    "beyond_first_order": "first-order prediction",
    "non_inferiority": "a random subspace less the margin",
    "greater": "a random subspace (superiority)",
    "unchanged": "isotropic null",
    "unchanged_vs_pca": "data-shaped PCA subspace",
    "unchanged_vs_data_random": "data-shaped random subspace",
}
_VS = re.compile(r"^vs (?P<base>.+) @ eps=(?P<eps>\S+)$")
_TEST_SUFFIX = re.compile(r"^(?P<base>\S+) (?P<test>\(\w+\))$")


def _null_name(variant: str) -> str:
    """A null's short name for headlines; a non-default test's suffix is kept.

    >>> _null_name("pca"), _null_name("random_subspace (wilcoxon)")
    ('data-shaped PCA subspace', 'random subspace (wilcoxon)')
    >>> _null_name("vs plain @ eps=1")  # not a null's name: kept
    'vs plain @ eps=1'
    """
    m = _TEST_SUFFIX.match(variant)
    if m and m["base"] in NULL_NAMES:
        return f"{NULL_NAMES[m['base']]} {m['test']}"
    return NULL_NAMES.get(variant, variant)

_CI_SUFFIX = re.compile(r",?\s*(paired Newcombe|bootstrap|Fisher-z|Wilson|Hartung-Knapp)?\s*CI\b.*$")


@dataclass(frozen=True)
class Verdict:
    """The verdict on one claim for one autoencoder (``'-'`` where none applies).

    ``text`` is a self-contained paragraph (category, the deciding numbers, and the other nulls
    where the claim has them); ``hypothesis`` is the claim's H1 in words; ``variants`` the
    deciding rows' variants; ``n_seeds`` the seeds behind them.
    """

    claim: str
    autoencoder: str
    category: Category
    hypothesis: str
    text: str
    variants: tuple[str, ...]
    n_seeds: int
    #: ``text`` without its first sentence ("Supported for plain."): the evidence.
    body: str = ""
    #: Whom the verdict is about: the deciding pooled rows' scope ("these 3 models", "training
    #: runs (5 seeds)"); "" where the rows are per seed or disagree.
    scope: str = ""
    #: Each null's reading, ``(null's short name, reading)``, deciding nulls first; empty when
    #: the claim was tested against one null only.
    by_null: tuple[tuple[str, str], ...] = ()

    def null_readings(self) -> list[tuple[str, str]]:
        """``(reading, "vs A, B and C")`` per distinct reading, in order of first appearance:
        the headline names what each null says, so a claim contradicted against isotropic
        nulls and supported against a data-shaped one does not read as one word."""
        groups: dict[str, list[str]] = {}
        for name, reading in self.by_null:
            groups.setdefault(reading, []).append(name)
        return [(reading, "vs " + _and(names)) for reading, names in groups.items()]

    def headline(self) -> str:
        """'contradicted vs random subspace and Beta law; supported vs PCA (data-shaped)'
        ("" with one null)."""
        return "; ".join(f"{reading} {names}" for reading, names in self.null_readings())


def _g(x: float) -> str:
    """3 significant digits, plain notation for everyday magnitudes."""
    if not math.isfinite(x):
        return "inf" if x > 0 else "-inf" if x < 0 else "n/a"
    return f"{x:.3g}"


def quantity(estimate_meaning: str) -> str:
    """The quantity an estimate is, without its CI method and null-value gloss.

    >>> quantity("median r_T - r_PCA per image, bootstrap CI (0 = as the pca control)")
    'median r_T - r_PCA per image'
    >>> quantity("rate(off) - rate(on), paired Newcombe CI (0 = no difference)")
    'rate(off) - rate(on)'
    """
    return _CI_SUFFIX.sub("", str(estimate_meaning)).strip() or "estimate"


@dataclass(frozen=True)
class _Context:
    """What a row's reading needs besides the row: the run's alpha and family size (the
    standard "contradicted" must meet), the CI level, and the per-seed rows (directions of
    two-sided rejections)."""

    alpha: float
    family: int
    confidence: float | None
    seed_rows: pd.DataFrame


def _reverse_p(r: pd.Series, ctx: _Context) -> float:
    """Bonferroni-adjusted p of the row's test turned round (1 - p of a one-sided test)."""
    p = float(r["p"])
    return min(1.0, (1.0 - p) * max(ctx.family, 1)) if math.isfinite(p) else math.nan


def _bounded(r: pd.Series) -> bool:
    """Censored values of a censoring-sensitive claim sit at the bound least favourable to the
    claim: the row may not contradict it. (Rows whose censored pairs enter through the fitted
    norm model, :mod:`dimple_stats.stats.censored_ratio`, are estimates, not bounds.)"""
    test, note = str(r["test"]), str(r.get("note", ""))
    return (str(r["claim"]) in CENSORING_SENSITIVE and int(r["n_censored"]) > 0
            and (MODELLED not in test or "least favourable" in test
                 or "their medians are bounds" in note))


def _other_side(r: pd.Series) -> bool:
    null = float(r["null_value"])
    lo, hi = float(r["ci_low"]), float(r["ci_high"])
    return math.isfinite(null) and ((r["alternative"] == "less" and lo > null)
                                    or (r["alternative"] == "greater" and hi < null))


def _row_reading(r: pd.Series, ctx: _Context) -> Category:
    """One row's category (see the module docstring)."""
    if r["decision"] in ("uninformative", "undefined"):
        return "uninformative"
    if r["decision"] == "reject H0":
        return "supported"
    if _other_side(r) and not _bounded(r) and _reverse_p(r, ctx) <= ctx.alpha:
        return "contradicted"
    return "not supported"


def _p_text(p: float) -> str:
    text = format_p(p)
    return f"p_adj {text}" if text.startswith("<") else f"p_adj = {text}" if text else "no p"


def _seed_reject_text(r: pd.Series, ctx: _Context) -> str:
    """'3/4 seeds reject', with the directions of a two-sided test's rejections."""
    text = f"{int(r['n_seeds_reject'])}/{int(r['n_seeds'])} seeds reject"
    null = float(r["null_value"])
    if r["alternative"] != "two-sided" or not int(r["n_seeds_reject"]) or not math.isfinite(null):
        return text
    seeds = ctx.seed_rows[(ctx.seed_rows["variant"] == r["variant"])
                          & (ctx.seed_rows["decision"] == "reject H0")]
    est = seeds["estimate"].astype(float)
    below, above = int((est < null).sum()), int((est > null).sum())
    return text + f" ({below} below {_g(null)}, {above} above)" if below and above else text


def _numbers(r: pd.Series, ctx: _Context) -> str:
    """'median ... 3.55 (95% CI 3.46 to 3.64; 1 under H0), p_adj = 1, 0/2 seeds reject, n = 800';
    pieces the row does not have (no estimate, no p) are left out."""
    row_level = float(r["ci_level"]) if "ci_level" in r.index else math.nan
    level = (f"{100 * row_level:.4g}% CI" if math.isfinite(row_level) else
             f"{100 * ctx.confidence:g}% CI" if ctx.confidence else "CI")
    est, lo, hi, null = (float(r[c]) for c in ("estimate", "ci_low", "ci_high", "null_value"))
    pieces = []
    if math.isfinite(est):
        margin = equivalence_margin(str(r["test"]))
        inner = "; ".join(x for x in (
            f"{level} {_g(lo)} to {_g(hi)}" if math.isfinite(lo) or math.isfinite(hi) else "",
            f"{_g(null)} under H0" if math.isfinite(null) else "",
            f"equivalence margin +-{_g(margin)}" if margin is not None else "") if x)
        pieces.append(f"{quantity(r['estimate_meaning'])} {_g(est)}"
                      + (f" ({inner})" if inner else ""))
    if math.isfinite(float(r["p_adj"])):
        pieces.append(_p_text(float(r["p_adj"])))
        if str(r["seed"]) == POOLED:
            pieces.append(_seed_reject_text(r, ctx))
    if str(r["seed"]) != POOLED:
        pieces.append(f"seed {r['seed']}")
    cens = int(r["n_censored"])
    pieces.append(f"n = {int(r['n'])}" + (f" ({cens} censored)" if cens else ""))
    return ", ".join(pieces)


_SHARE = re.compile(r"(\d+)% of ([^;()]+(?:\([^)]*\))?[^;()]*?) censored")


def short_reason(note: str) -> str:
    """A row's "why uninformative" note, with the per-seed repeats of a pooled row folded.

    >>> short_reason("no informative seed (72% of pairs censored (>= 50%): the median is not "
    ...              "identified; 88% of pairs censored (>= 50%): the median is not identified)")
    'no informative seed: 72% to 88% of pairs censored per seed (>= 50%: the median is not identified)'
    """
    # A pooled row's note may start with notes its seeds shared; the reason comes last.
    start = note.find("no informative seed (")
    if start < 0:
        return note
    note = note[start:]
    shares = [int(m.group(1)) for m in _SHARE.finditer(note)]
    whats = {m.group(2).strip() for m in _SHARE.finditer(note)}
    if shares and len(whats) == 1:
        span = f"{min(shares)}%" if min(shares) == max(shares) else \
            f"{min(shares)}% to {max(shares)}%"
        return (f"no informative seed: {span} of {whats.pop()} censored per seed (>= 50%: the "
                "median is not identified)")
    return note


def _box_clause(note: object) -> str:
    """The clause on failed strict on-manifold attacks the pixel box may have stopped
    (:data:`dimple_stats.claims.norms.BOX_NOTE`), or ""."""
    from dimple_stats.claims.norms import BOX_NOTE

    pattern = re.escape(BOX_NOTE)
    for i in range(3):
        pattern = pattern.replace(re.escape("{" + str(i) + "}"), r"(\d+)")
    found = re.search(pattern, note) if isinstance(note, str) else None
    if not found or int(found.group(3)) == 0:
        return ""
    failed, room, boxed = (int(g) for g in found.groups())
    return (f"; of the {failed} failed on-manifold attacks {boxed} had no feasible set "
            f"certified to reach eps inside the pixel box ({room} had one), so the box, not the "
            "boundary, may be what stopped them")


def _why(r: pd.Series, reading: Category, ctx: _Context) -> str:
    """The clause after the numbers: why a row is uninformative, why it contradicts, or why a
    CI on the other side does not count as contradicting."""
    box = _box_clause(r.get("note"))
    if box and reading != "uninformative":
        return box + _why_side(r, reading, ctx)
    return _why_side(r, reading, ctx)


def _why_side(r: pd.Series, reading: Category, ctx: _Context) -> str:
    if reading == "uninformative":
        note = str(r["note"]) if isinstance(r["note"], str) and r["note"] else "no p-value"
        return f"; it cannot answer ({short_reason(note)})"
    if not _other_side(r):
        return ""
    null = _g(float(r["null_value"]))
    side, claim_side = (("above", "below") if r["alternative"] == "less"
                        else ("below", "above"))
    where = f"the CI lies entirely {side} {null}, the other side from the claim's ({claim_side})"
    if reading == "contradicted":
        return (f"; {where}, and the reverse test is significant (1 - p, Bonferroni over "
                f"{ctx.family} tests: {format_p(_reverse_p(r, ctx))})")
    if _bounded(r):
        return (f"; {where}, but censored values were set at the bound least favourable to "
                "the claim, so this is no evidence against it")
    return (f"; {where}, but the reverse test is not significant after adjustment (1 - p, "
            f"Bonferroni over {ctx.family} tests: {format_p(_reverse_p(r, ctx))})")


def _cap(text: str) -> str:
    """First letter upper-cased, the rest kept (``str.capitalize`` would turn r_T into r_t)."""
    return text[:1].upper() + text[1:]


def _variant_words(variant: str, claim: str) -> str:
    """The null a variant of ``claim`` tests, in words ("vs none @ eps=1" -> equal robust
    accuracy ...): the claim's own :attr:`~dimple_stats.claims.ClaimDefinition.variant_words`,
    then, for a built-in claim, :data:`VARIANT_WORDS`; else the variant as named (a plugin's
    variant named like a built-in one once printed that claim's words)."""
    from dimple_stats.claims.catalogue import BUILT_IN_CLAIMS, CATALOGUE

    vs = _VS.match(variant)
    if vs:
        return f"equal robust accuracy with {vs['base']} at eps {vs['eps']}"
    base = variant.split(" (")[0]
    words = {**(VARIANT_WORDS if claim in BUILT_IN_CLAIMS else {}),
             **(CATALOGUE[claim].variant_words if claim in CATALOGUE else {})}
    return words.get(base, variant) + (variant[len(base):] if base != variant else "")


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _deciding(claim_rows: pd.DataFrame, verdict_on: Sequence[Sequence[str]]) -> pd.Series:
    """Mask of the rows whose variants decide the verdict (see ``ClaimDefinition.verdict_on``)."""
    variants = claim_rows["variant"].astype(str)
    for alternative in verdict_on:
        mask = pd.Series([any(fnmatchcase(v, p) for p in alternative) for v in variants],
                         index=claim_rows.index)
        if mask.any():
            return mask
    return pd.Series(True, index=claim_rows.index)


def deciding_rows(claim_rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of one claim that decide its verdict: pooled rows where present, of the
    variants its ``verdict_on`` names (the first alternative present)."""
    rows = claim_rows
    pooled = rows["seed"].astype(str) == POOLED
    if pooled.any():
        rows = rows[pooled]
    claim = str(rows["claim"].iloc[0]) if len(rows) else ""
    return rows[_deciding(rows, _verdict_on(claim))] if len(rows) else rows


def _combine(readings: Sequence[Category]) -> Category:
    informative = [c for c in readings if c != "uninformative"]
    # A verdict resting on fewer than half of its deciding rows is no verdict.
    if not informative or len(informative) * 2 < len(readings):
        return "uninformative"
    if all(c == "supported" for c in informative):
        return "supported"
    if "contradicted" in informative and "supported" not in informative:
        return "contradicted"
    return "not supported"


def _hypothesis(claim: str, autoencoder: str = "") -> str:
    from dimple_stats.claims.catalogue import CATALOGUE

    return CATALOGUE[claim].words_for(autoencoder) if claim in CATALOGUE else ""


def _verdict_on(claim: str) -> tuple[tuple[str, ...], ...]:
    from dimple_stats.claims.catalogue import CATALOGUE

    return CATALOGUE[claim].verdict_on if claim in CATALOGUE else ()


def _scope(rows: pd.DataFrame) -> str:
    """The deciding pooled rows' common scope ("" for per-seed rows or several scopes)."""
    if "scope" not in rows.columns or not len(rows) or \
            not (rows["seed"].astype(str) == POOLED).all():
        return ""
    scopes = sorted(set(rows["scope"].astype(str)) - {"", "nan"})
    return scopes[0] if len(scopes) == 1 else ""


def _scope_text(rows: pd.DataFrame) -> str:
    """' (these 3 models; ...)': whom a pooled verdict is about, from the rows' scope."""
    scope = _scope(rows)
    if not scope:
        return ""
    if scope.startswith("training runs"):
        return f" (across {scope})"
    return (f" ({scope}; generalising over training runs needs {MIN_SEEDS_RANDOM} or more "
            "seeds)")


def _one(claim: str, autoencoder: str, rows: pd.DataFrame, ctx: _Context) -> Verdict:
    deciding = _deciding(rows, _verdict_on(claim))
    main, beside = rows[deciding], rows[~deciding]
    readings = [_row_reading(r, ctx) for _, r in main.iterrows()]
    category = _combine(readings)
    who = f" for {autoencoder}" if autoencoder != NO_AUTOENCODER else ""
    lead = f"{_cap(category)}{who}{_scope_text(main)}."
    parts = []
    if len(main) > 1:
        n_unf = readings.count("uninformative")
        parts.append(f"{readings.count('supported')} of {len(main)} comparisons support the "
                     "claim" + (f" ({n_unf} cannot answer)" if n_unf else "") + ".")
    for (_, r), reading in zip(main.iterrows(), readings):
        if len(main) > 1:  # several comparisons decide: name each with its own reading
            parts.append(f"Against {_variant_words(str(r['variant']), claim)}: {reading}, "
                         f"{_numbers(r, ctx)}{_why(r, reading, ctx)}.")
        else:
            parts.append(f"Against {_variant_words(str(r['variant']), claim)}: "
                         f"{_numbers(r, ctx)}{_why(r, reading, ctx)}.")
    if len(beside):
        other = [(r, _row_reading(r, ctx)) for _, r in beside.iterrows()]
        same = [r for r, c in other if c == category]
        differ = [(r, c) for r, c in other if c != category]
        if same:
            parts.append(f"Also {category} against "
                         + _and([_variant_words(str(r["variant"]), claim) for r in same]) + ".")
        if differ:
            parts.append("The reading changes against " + "; ".join(
                f"{_variant_words(str(r['variant']), claim)}: {c}, {_numbers(r, ctx)}"
                f"{_why(r, c, ctx)}" for r, c in differ) + ".")
    body = " ".join(parts)
    ordered = [*main.iterrows(), *beside.iterrows()]
    # Only named nulls: iso.defense's comparisons ("vs plain @ eps=1") are one claim's sub-tests,
    # already named one by one in the text.
    by_null = tuple((_null_name(str(r["variant"])), _row_reading(r, ctx)) for _, r in ordered
                    if _null_name(str(r["variant"])) != str(r["variant"]))
    if len({name for name, _ in by_null}) < 2:
        by_null = ()
    return Verdict(claim=claim, autoencoder=autoencoder, category=category,
                   hypothesis=_hypothesis(claim, autoencoder), text=f"{lead} {body}", body=body,
                   scope=_scope(main), by_null=by_null,
                   variants=tuple(main["variant"].astype(str)),
                   n_seeds=int(main["n_seeds"].max()) if len(main) else 0)


def row_verdicts(results: pd.DataFrame) -> list[str]:
    """Each row's reading in the four verdict words, "descriptive" where untested: pooled rows
    read in the run's confirmatory family, per-seed rows in the replication family (the
    reverse test's Bonferroni divisor is the size of the row's own family).

    >>> from dimple_stats.results import ResultRow, finalise
    >>> row = ResultRow("dmm.perpendicular", "beta", "a", 0, 30, 0, -0.2, -0.3, -0.1, 0.05, "m",
    ...                 -0.5, "r", 3.0, "S", 0.99999, "null", "sign test", "greater",
    ...                 null_value=0.0)
    >>> row_verdicts(finalise([row]))  # the seed's row and its pooled row
    ['contradicted', 'contradicted']
    """
    if not len(results):
        return []
    alpha = float(results["alpha"].iloc[0])
    is_pooled = (results["seed"].astype(str) == POOLED).to_numpy()
    p_adj = results["p_adj"].to_numpy(dtype=float)
    family = {True: int(np.isfinite(p_adj[is_pooled]).sum()),
              False: int(np.isfinite(p_adj[~is_pooled]).sum())}
    none = results.iloc[0:0]
    out: list[str] = []
    for pooled, (_, r) in zip(is_pooled, results.iterrows()):
        if str(r["test"]) == DESCRIPTIVE:
            out.append("descriptive")
        else:
            out.append(_row_reading(r, _Context(alpha, family[bool(pooled)], None, none)))
    return out


def sweep_row_verdicts(results: pd.DataFrame) -> list[str]:
    """:func:`row_verdicts` for a sweep's table: each row read in its own family, the pooled
    or per-seed rows of its claim (``sweep_family: claim``), of its cell (``cell``) or of the
    whole grid, as the sweep adjusted them (:func:`dimple_stats.sweep.family_size`)."""
    from dimple_stats.sweep import CELL, FAMILY

    if not len(results):
        return []
    alpha = float(results["alpha"].iloc[0])
    family = str(results[FAMILY].iloc[0]) if FAMILY in results.columns else "claim"
    scope_key = {"claim": ["claim"], "cell": [CELL]}.get(family, [])
    is_pooled = results["seed"].astype(str) == POOLED
    finite = pd.Series(np.isfinite(results["p_adj"].to_numpy(dtype=float)), index=results.index)
    keys = [results[k] for k in scope_key] + [is_pooled]
    sizes = finite.groupby(keys).transform("sum")
    none = results.iloc[0:0]
    return ["descriptive" if str(r["test"]) == DESCRIPTIVE else
            _row_reading(r, _Context(alpha, int(sizes[i]), None, none))
            for i, r in results.iterrows()]


def with_verdicts(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with a ``verdict`` column after ``decision`` (see :func:`row_verdicts`; a
    sweep's rows by :func:`sweep_row_verdicts`)."""
    from dimple_stats.sweep import is_sweep

    out = results.drop(columns=["verdict"], errors="ignore")
    readings = sweep_row_verdicts(out) if is_sweep(out) else row_verdicts(out)
    out.insert(list(out.columns).index("decision") + 1, "verdict", readings)
    return out


def verdicts(results: pd.DataFrame, *, confidence: float | None = None,
             family: int | None = None) -> list[Verdict]:
    """One :class:`Verdict` per (claim, autoencoder) with a tested row, in table order.

    ``confidence`` is the CI level the table was built with (``StatsConfig.confidence``); the
    text names it ("95% CI"; ``None``: just "CI"). ``family`` is the number of tests the
    p-values were adjusted over (the reverse test's Bonferroni divisor); by default the rows of
    ``results`` with an adjusted p (a sweep passes its family's size for a cell's rows).
    """
    tested = results[results["test"].astype(str) != DESCRIPTIVE]
    if family is None:
        # The deciding rows' family: the pooled rows where the run has them.
        pooled_rows = results[results["seed"].astype(str) == POOLED] if len(results) else results
        scope = pooled_rows if len(pooled_rows) else results
        family = int(np.isfinite(scope["p_adj"].to_numpy(dtype=float)).sum()) \
            if len(scope) else 0
    alpha = float(results["alpha"].iloc[0]) if len(results) else 0.05
    seeds = tested[tested["seed"].astype(str) != POOLED]
    out = []
    for (claim, autoencoder), g in tested.groupby(["claim", "autoencoder"], sort=False):
        pooled = g[g["seed"].astype(str) == POOLED]
        # Without pooled rows every seed's row is a comparison of its own.
        rows = pooled if len(pooled) else g
        ctx = _Context(alpha, family, confidence,
                       seeds[(seeds["claim"] == claim) & (seeds["autoencoder"] == autoencoder)])
        out.append(_one(str(claim), str(autoencoder), rows, ctx))
    return out
