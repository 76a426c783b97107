"""Words for the report figures: claims, variants and rows in words, and each estimate's reference.

A figure in a paper is read without the code: its titles say what a claim means (the catalogue's
``hypothesis``), not its id, and a forest plot's reference line sits where the estimate means
"nothing happened" (0 for a difference, 1 for a ratio), not always at 0.
"""

from __future__ import annotations

import math
import re
import textwrap

from dimple_stats.results import POOLED

__all__ = ["R_QUANTITIES", "VARIANT_WORDS", "claim_words", "variant_words", "row_label",
           "reference_value", "equivalence_margin", "wrap"]

#: The shares of the perturbation ||P delta|| / ||delta|| a measurements table may hold, in words:
#: r_T, the quantity under test, first; then its controls.
R_QUANTITIES = {
    "r_T": "tangent space (r_T)",
    "r_R": "random subspace (r_R)",
    "r_Rdata": "random subspace of the data span (r_Rdata)",
    "r_PCA": "top-k principal subspace (r_PCA)",
    "r_Tother": "tangent at another image (r_Tother)",
}

#: Variant ids of the built-in claims, in words; other variants are already words or fall back
#: to :func:`variant_words`' generic rules.
VARIANT_WORDS = {
    "random_subspace": "against a random subspace of the same dimension",
    "other_image": "against the tangent space at another image of the same class",
    "beta": "against a random direction (chance: r^2 ~ Beta(k/2, (d-k)/2))",
    "pca": "against the top-k principal subspace of the training images",
    "data_random": "against a random k-dim subspace of the training images' span",
    "same_share": "local tangent space against the top-k principal subspace",
    "greater": "share in the tangent space above that in a random subspace",
    "non_inferiority": "not below a random subspace by more than the margin",
    "beyond_dimension_counting": "on/off-manifold norm ratio beyond dimension counting",
    "beyond_first_order": "on/off-manifold norm ratio beyond the gradient's first-order "
    "prediction",
    "naive": "on/off-manifold norm ratio, log scale (not tested)",
    "tost": "off-manifold against unrestricted norms (equivalence test)",
    "equal_rates": "success rates of off- against on-manifold attacks",
    "no_change": "change of r_T between the plain and the isometric autoencoder",
    "equivalence": "association of r_T with reconstruction error (equivalence test)",
}

_ATTACK_WORDS = {"on": "on-manifold", "off": "off-manifold", "plain": "unrestricted"}
_TESTS = {"sign": "sign test", "ttest": "t test", "wilcoxon": "Wilcoxon test"}


def wrap(text: str, width: int) -> str:
    """``text`` over lines of at most ``width`` characters (never cut short with '...').

    >>> print(wrap("median log(norm_on/norm_off), bootstrap CI", 20))
    median
    log(norm_on/norm_off),
    bootstrap CI
    """
    return textwrap.fill(" ".join(str(text).split()), width=width, break_long_words=False,
                         break_on_hyphens=False)


def claim_words(claim: str) -> str:
    """The claim's hypothesis in words; a claim the catalogue does not know (a plugin's) keeps
    its id.

    >>> claim_words("dmm.off_equals_unrestricted")
    'Off-manifold attacks are as efficient as unrestricted ones.'
    >>> claim_words("my.plugin_claim")
    'my.plugin_claim'
    """
    from dimple_stats.claims.catalogue import CATALOGUE

    definition = CATALOGUE.get(claim)
    return definition.hypothesis if definition is not None else claim


def variant_words(variant: str) -> str:
    """A results-table variant in words.

    >>> variant_words("ratio on/plain")
    'published ratio: on-manifold / unrestricted norm'
    >>> variant_words("random_subspace (sign)")
    'against a random subspace of the same dimension, sign test'
    >>> variant_words("recon_err tercile 1/3")
    'r_T within reconstruction-error tercile 1 of 3'
    >>> variant_words("vs none @ eps=2")
    'vs none at eps = 2'
    """
    test = re.fullmatch(r"(.*) \((sign|ttest|wilcoxon)\)", variant)
    if test:
        return f"{variant_words(test.group(1))}, {_TESTS[test.group(2)]}"
    if variant in VARIANT_WORDS:
        return VARIANT_WORDS[variant]
    ratio = re.fullmatch(r"ratio (\w+)/(\w+)", variant)
    if ratio and {ratio.group(1), ratio.group(2)} <= set(_ATTACK_WORDS):
        top, bottom = (_ATTACK_WORDS[g] for g in ratio.groups())
        return f"published ratio: {top} / {bottom} norm"
    tercile = re.fullmatch(r"recon_err tercile (\d+)/(\d+)", variant)
    if tercile:
        return f"r_T within reconstruction-error tercile {tercile.group(1)} of {tercile.group(2)}"
    return re.sub(r"\s*@\s*eps=", " at eps = ", variant).replace("_", " ")


def row_label(autoencoder: str, seed: object, n_seeds: object = None) -> str:
    """A forest-plot row: ``plain, seed 0`` or ``plain, pooled (5 seeds)``.

    >>> row_label("plain", "pooled", 5), row_label("plain", "0")
    ('plain, pooled (5 seeds)', 'plain, seed 0')
    """
    if str(seed) != POOLED:
        return f"{autoencoder}, seed {seed}"
    try:
        count = int(n_seeds)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return f"{autoencoder}, pooled"
    return f"{autoencoder}, pooled ({count} seed{'s' if count != 1 else ''})"


#: "(0 = no difference)", "(1 = the median share of ...)": the meaning states its own reference.
_STATED = re.compile(r"\((-?\d+(?:\.\d+)?) = ")


def reference_value(variant: str, meaning: str, null_value: float = math.nan) -> float | None:
    """Where a forest-plot panel draws its reference line, or None for a plain level.

    In order: the row's ``null_value`` where finite; the value the estimate's meaning states as
    "(0 = ...)" or "(1 = ...)"; 0 for a difference, a log ratio or a correlation; 1 for a ratio
    (a ``ratio`` variant or an ``a/b`` statistic); None for a level such as a share or a median
    r_T, which has no "nothing happened" value.

    Parameters
    ----------
    variant : str
        The results-table variant.
    meaning : str
        Its ``estimate_meaning``: the statistic before the first comma, then the CI and notes.
    null_value : float
        The estimate's value under H0 (NaN on descriptive and equivalence rows).

    Returns
    -------
    float or None
        The x position of the reference line.

    Examples
    --------
    >>> reference_value("ratio on/off", "median norm_on/norm_off per image, bootstrap CI")
    1.0
    >>> reference_value("naive", "median log(norm_on/norm_off), bootstrap CI (not tested: ...)")
    0.0
    >>> reference_value("clean cost vs none", "clean accuracy(isometric) - clean accuracy(none)")
    0.0
    >>> reference_value("non_inferiority", "median r_T - r_R, bootstrap CI", -0.05)
    -0.05
    >>> reference_value("robust accuracy @ eps=1", "share of images still classified correctly")
    """
    if null_value is not None and math.isfinite(float(null_value)):
        return float(null_value)
    stated = _STATED.search(meaning)
    if stated:
        return float(stated.group(1))
    statistic = meaning.split(",")[0]
    if " - " in statistic or "log(" in statistic or re.search(r"\brho\b|correlation",
                                                                   statistic):
        return 0.0
    if variant.startswith("ratio") or "/" in statistic:
        return 1.0
    return None


def equivalence_margin(test: str) -> float | None:
    """The +-margin of an equivalence test (TOST), read from the results' ``test`` text.

    >>> equivalence_margin("TOST on the median (two one-sided exact sign tests) within +-0.09531")
    0.09531
    >>> equivalence_margin("Wilcoxon signed-rank on r_T - r_R") is None
    True
    """
    found = re.search(r"TOST.*within \+-(\d+(?:\.\d+)?)", test)
    return float(found.group(1)) if found else None
