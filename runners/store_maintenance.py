"""What ``dimple-stats store`` does: list, verify, remove and garbage-collect stored artifacts.

Kept apart from :mod:`runners.store` (how artifacts are written and read) because these walk the
whole store; nothing here is on a run's path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.artifacts import META_FILE, ArtifactKey, DamagedArtifactError
from runners.store import ArtifactStore

__all__ = ["Entry", "damaged", "describe", "inventory", "manifests_under", "referenced_keys",
           "unreferenced"]


@dataclass(frozen=True)
class Entry:
    """One published artifact as ``dimple-stats store ls`` shows it."""

    key: ArtifactKey
    bytes: int
    created: str
    origin: str
    files: int

    @staticmethod
    def of(store: ArtifactStore, key: ArtifactKey) -> Entry:
        try:
            meta = store.meta(key)
        except DamagedArtifactError:
            return Entry(key, store.size(key), "?", "damaged record", 0)
        origin = meta.get("origin") or {}
        made_by = (f"{origin.get('protocol')} seed {origin.get('seed')}" if origin
                   else "(not recorded)")
        return Entry(key, store.size(key), str(meta.get("created", "?")), made_by,
                     len(meta["files"]))


def inventory(store: ArtifactStore, stage: str | None = None) -> list[Entry]:
    """Every published artifact (of one stage), sorted by key.

    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp(), origin={"protocol": "demo", "seed": 3})
    >>> with store.writer(store.key("train_classifier", {"epochs": 1})) as w:
    ...     _ = w.save_json("metrics.json", {"accuracy": 0.9})
    >>> [(e.key.stage, e.origin, e.files) for e in inventory(store)]
    [('train_classifier', 'demo seed 3', 1)]
    """
    return [Entry.of(store, key) for key in store.keys(stage)]


def damaged(store: ArtifactStore) -> dict[str, list[str]]:
    """Re-hash every file of every artifact: ``{key or leftover directory: problems}`` for
    what does not match its record, and for artifact directories that have no record."""
    found = {str(key): problems for key in store.keys() if (problems := store.verify(key))}
    for directory in store.leftovers():
        found[f"{directory.parent.name}/{directory.name}"] = [
            "no _meta.json: never published or its record was deleted (readers ignore it)"]
    return found


def referenced_keys(manifests: Iterable[Path]) -> tuple[set[str], int]:
    """Keys the report manifests name (``artifacts``: every key a run loaded or published,
    models and measurements alike); and how many manifests name none (written before manifests
    listed artifacts)."""
    keep: set[str] = set()
    silent = 0
    for path in manifests:
        try:
            listed = json.loads(path.read_text(encoding="utf-8")).get("artifacts")
        except (OSError, ValueError, AttributeError):
            listed = None
        if not listed:
            silent += 1
            continue
        keep.update(str(k) for k in listed)
    return keep, silent


def unreferenced(store: ArtifactStore, keep: set[str], *, min_age_s: float = 0.0) -> list[Entry]:
    """Published artifacts not in ``keep`` and published at least ``min_age_s`` ago (a run
    still going has not written its manifest yet: its fresh artifacts are spared)."""
    now = time.time()
    return [Entry.of(store, key) for key in store.keys() if str(key) not in keep
            and now - (store.path(key) / META_FILE).stat().st_mtime >= min_age_s]


def manifests_under(folders: Iterable[Path]) -> list[Path]:
    """Every ``manifest.json`` below the given report folders."""
    return sorted({p for folder in folders for p in Path(folder).rglob("manifest.json")})


def describe(entry: Entry) -> dict[str, Any]:
    """An entry as JSON-able data (``store ls --json``)."""
    return {"key": str(entry.key), "bytes": entry.bytes, "created": entry.created,
            "origin": entry.origin, "files": entry.files}
