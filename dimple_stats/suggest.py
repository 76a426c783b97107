""""Did you mean" suggestions for misspelt names (protocol keys, claim ids, datasets, archs)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(name: str, choices: Iterable[str]) -> str | None:
    """Return the choice nearest to ``name``, or None when nothing is reasonably close.

    Examples
    --------
    >>> closest("latnet_dim", ["latent_dim", "epochs"])
    'latent_dim'
    >>> closest("zzz", ["latent_dim"]) is None
    True
    """
    options = [str(c) for c in choices]
    hits = difflib.get_close_matches(str(name), options, n=1, cutoff=0.6)
    if not hits:
        # Case or separator slips ("LatentDim", "latent-dim") fall below difflib's ratio.
        folded = {o.lower().replace("-", "_"): o for o in options}
        hits = [folded[k] for k in difflib.get_close_matches(
            str(name).lower().replace("-", "_"), list(folded), n=1, cutoff=0.6)]
    return hits[0] if hits else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` or an empty string.

    >>> did_you_mean("digts", ["digits", "mnist"])
    " (did you mean 'digits'?)"
    """
    hit = closest(name, choices)
    return f" (did you mean {hit!r}?)" if hit else ""
