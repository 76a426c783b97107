"""Seeds: the one derivation of every random stream, and seed lists from the command line.

:func:`derive_seed` turns a key (the run's seed and what the stream is for) into a 64-bit seed;
every stream of the tool is seeded through it: model initialisation and batch order, dataset
selection, the attacks' random starts and controls per shard, and the bootstrap. Streams with
different keys are independent, so adding a draw in one place never shifts another, and the
same key gives the same draws in any process (Python's ``hash`` of a str is salted per process).
:func:`parse_seeds` reads ``0-4``, ``0,2,5`` or a mix (``0-2,7``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MAX_SEEDS", "derive_seed", "numpy_rng", "parse_seeds", "repeated"]


def derive_seed(*key: object) -> int:
    """A 64-bit seed from ``key`` (SHA-256 of its ``repr``): one stream per distinct key.

    >>> derive_seed(0, "validation") == derive_seed(0, "validation")
    True
    >>> derive_seed(0, "validation") != derive_seed(1, "validation")
    True
    >>> derive_seed("a", 1)
    5635535206041787705
    """
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def numpy_rng(*key: object) -> np.random.Generator:
    """A NumPy generator seeded by :func:`derive_seed` of ``key``."""
    import numpy as np

    return np.random.default_rng(derive_seed(*key))


#: Most seeds one run may name. Every seed trains and attacks every model, so real runs use a
#: handful; the bound turns a slip like ``0-99999999`` into an error instead of a hang.
MAX_SEEDS = 10_000


def _short(text: str, limit: int = 40) -> str:
    """``repr`` of ``text``, cut to ``limit`` characters: messages quote input, not megabytes."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def repeated(values: Iterable[int]) -> list[int]:
    """The values that occur more than once, sorted (linear time: a set, not ``list.count``).

    >>> repeated([3, 1, 3, 2, 1])
    [1, 3]
    """
    seen: set[int] = set()
    dupes: set[int] = set()
    for value in values:
        (dupes if value in seen else seen).add(value)
    return sorted(dupes)


def _listed(values: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return f"[{shown}]" if len(values) <= limit else f"[{shown}, ...] ({len(values):,} in all)"


def parse_seeds(spec: str) -> tuple[int, ...]:
    """Parse a seed specification into a tuple of distinct non-negative seeds, in order given.

    At most :data:`MAX_SEEDS` seeds; a range is checked against the bound before it is expanded.

    Raises
    ------
    ValueError
        For an empty specification or part (``""``, ``0,,1``), a bad number or range, a
        repeated seed or more than :data:`MAX_SEEDS` seeds.

    Examples
    --------
    >>> parse_seeds("0-4")
    (0, 1, 2, 3, 4)
    >>> parse_seeds("3, 1-2,7")
    (3, 1, 2, 7)
    >>> parse_seeds("2-1")
    Traceback (most recent call last):
    ...
    ValueError: seed range '2-1' is empty (write low-high)
    >>> parse_seeds("0,,1")
    Traceback (most recent call last):
    ...
    ValueError: empty seed between commas in '0,,1'
    >>> parse_seeds("0-99999999")
    Traceback (most recent call last):
    ...
    ValueError: too many seeds: '0-99999999' names 100,000,000; at most 10,000
    """
    if not spec.strip():
        raise ValueError("no seeds given: write e.g. 0-4, 0,2,5 or 0-2,7")
    seeds: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            raise ValueError(f"empty seed between commas in {_short(spec)}")
        low, sep, high = part.partition("-")
        try:
            lo = int(low)
            hi = int(high) if sep else lo
        except ValueError:
            raise ValueError(f"bad seed {_short(part)}: use integers, ranges like 0-4, commas") from None
        if lo < 0 or hi < 0:
            raise ValueError(f"seeds must be non-negative, got {_short(part)}")
        if hi < lo:
            raise ValueError(f"seed range {_short(part)} is empty (write low-high)")
        if len(seeds) + (hi - lo + 1) > MAX_SEEDS:  # before expanding: 0-10**12 must not allocate
            named = f"names {len(seeds) + hi - lo + 1:,}"
            raise ValueError(f"too many seeds: {_short(spec)} {named}; at most {MAX_SEEDS:,}")
        seeds.extend(range(lo, hi + 1))
    dupes = repeated(seeds)
    if dupes:
        raise ValueError(f"seeds repeated in {_short(spec)}: {_listed(dupes)}")
    return tuple(seeds)
