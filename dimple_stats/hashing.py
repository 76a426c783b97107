"""Canonical hashes of configurations: the keys of the artifact store and the protocol's identity."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "canonical_hash"]


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically: sorted keys, no whitespace, tuples as lists.

    >>> canonical_json({"b": (1, 2), "a": 0.5})
    '{"a":0.5,"b":[1,2]}'
    """
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json", by_alias=True)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_hash(obj: Any, length: int = 16) -> str:
    """Hex SHA-256 of :func:`canonical_json`, truncated to ``length`` characters.

    Key order and the spelling of defaults do not change it; any value that does change it.

    >>> canonical_hash({"a": 1, "b": 2}) == canonical_hash({"b": 2, "a": 1})
    True
    >>> len(canonical_hash({"a": 1}))
    16
    """
    digest = hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()
    return digest[:length]
