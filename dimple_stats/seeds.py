"""Seed lists from the command line: ``0-4``, ``0,2,5`` or a mix (``0-2,7``)."""

from __future__ import annotations

__all__ = ["parse_seeds"]


def parse_seeds(spec: str) -> tuple[int, ...]:
    """Parse a seed specification into a tuple of distinct non-negative seeds, in order given.

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
    """
    seeds: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            lo = int(low)
            hi = int(high) if sep else lo
        except ValueError:
            raise ValueError(f"bad seed {part!r}: use integers, ranges like 0-4, commas") from None
        if lo < 0 or hi < 0:
            raise ValueError(f"seeds must be non-negative, got {part!r}")
        if hi < lo:
            raise ValueError(f"seed range {part!r} is empty (write low-high)")
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise ValueError(f"no seeds in {spec!r}")
    dupes = sorted({s for s in seeds if seeds.count(s) > 1})
    if dupes:
        raise ValueError(f"seeds repeated in {spec!r}: {dupes}")
    return tuple(seeds)
