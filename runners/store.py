"""Content-addressed artifact store for stage outputs: checkpoints, metrics, measurement shards.

Every stage of a run (``train_classifier``, ``train_autoencoder``, ``measure``, ...) is keyed by a hash
of its own configuration and the keys of its inputs, so a stage that finished is found again instead of
recomputed, and an interrupted run resumes where it stopped. An artifact is a directory
``<root>/<stage>/<digest>/`` holding the stage's files plus ``_meta.json`` (provenance).

Writes are crash-safe and safe under concurrency without locks, which matters because the store may
live on a filesystem shared by the processes of a pool or the nodes of a Ray cluster:

* a writer fills a private directory ``<root>/<stage>/.tmp-<digest>-<uuid>/`` and publishes it with one
  ``os.rename`` (atomic on POSIX), so a reader sees either no artifact or a complete one;
* when two writers race for the same key, the first rename wins and the loser discards its copy: the
  key is a hash of everything that determines the content, so both copies are equivalent;
* a process killed mid-write leaves only a ``.tmp-*`` directory, which readers ignore and
  :meth:`ArtifactStore.clean_stale` deletes.

Checkpoints are read with ``torch.load(..., weights_only=True)`` only: a store on a shared filesystem
or a downloaded cache is not trusted input, and full unpickling would run whatever code a file names.

Neither torch nor pandas is imported at module level, so the store's metadata side (keys, ``has``,
JSON, bytes) works where torch is not installed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dimple_stats.atomic import cannot_write_beside, cannot_write_in, fsync_dir, fsync_tree
from dimple_stats.errors import BadInput, RunFailure
from dimple_stats.hashing import canonical_hash
from runners.artifact_writer import ArtifactWriter
from runners.artifacts import (
    DIGEST_RE,
    META_FILE,
    STAGE_RE,
    ArtifactError,
    ArtifactKey,
    ArtifactNotFoundError,
    DamagedArtifactError,
    InputKeys,
    UnsafeArtifactError,
    check_name,
    check_stage,
    list_files,
    normalise_inputs,
    plain_json,
    record_problem,
    unpickling_culprit,
    write_meta,
)

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = [
    "ArtifactError",
    "ArtifactKey",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "ArtifactWriter",
    "DamagedArtifactError",
    "StoreLocationError",
    "UnsafeArtifactError",
    "InputKeys",
    "default_store_root",
]

STORE_ENV = "DIMPLE_STATS_STORE"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
DIGEST_LENGTH = 16
DEFAULT_STALE_AGE_S = 24 * 3600.0





def default_store_root() -> Path:
    """Directory of the default store.

    ``$DIMPLE_STATS_STORE`` if set, else ``$XDG_CACHE_HOME/dimple-stats/store``, else
    ``~/.cache/dimple-stats/store``. A relative ``$XDG_CACHE_HOME`` is ignored, as the XDG base
    directory specification requires.

    Examples
    --------
    >>> import os
    >>> os.environ["DIMPLE_STATS_STORE"] = "/data/store"
    >>> str(default_store_root())
    '/data/store'
    >>> del os.environ["DIMPLE_STATS_STORE"]
    """
    explicit = os.environ.get(STORE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    cache = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "dimple-stats" / "store"


#: Write failures that say the store cannot take this artifact (not a bug): no permission, a
#: read-only filesystem, a full disk or quota, a file-size limit (``ulimit -f``), not a folder.
_WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                           errno.EFBIG, errno.ENOTDIR, errno.EEXIST})


#: How torch.save's writer words a write that did not fit.
_TORCH_WRITE_FAILURES = ("File too large", "No space left", "basic_ios::clear",
                         "PytorchStreamWriter failed writing", "inline_container.cc")


class StoreWriteError(RunFailure):
    """The store cannot take a new artifact (exit 1): what was stored before is intact."""

    def __init__(self, root: Path, exc: OSError) -> None:
        super().__init__(
            f"cannot write to the artifact store {root}: {exc.strerror or exc} "
            f"({getattr(exc, 'filename', None) or root}); nothing stored was lost; free space, "
            "fix the permissions or name another --store, then run again (finished stages load "
            "from the store)")


class StoreLocationError(BadInput):
    """``--store`` names something that cannot hold a store (exit 2, before any compute)."""

    section = "--store"


class ArtifactStore:
    """A directory of content-addressed artifacts, ``<root>/<stage>/<digest>/``.

    Parameters
    ----------
    root : str or Path, optional
        Store directory; :func:`default_store_root` when omitted. Created on the first write, so
        opening a store to look things up never creates directories.

    Examples
    --------
    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> key = store.key("train_classifier", {"arch": "mlp", "epochs": 3})
    >>> store.has(key)
    False
    >>> with store.writer(key) as w:
    ...     _ = w.save_json("metrics.json", {"accuracy": 0.97})
    >>> store.has(key), store.load_json(key, "metrics.json")
    (True, {'accuracy': 0.97})
    >>> store.key("train_classifier", {"epochs": 3, "arch": "mlp"}) == key
    True
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 origin: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_store_root()
        #: Recorded in the ``_meta.json`` of what this instance publishes (e.g. the protocol and
        #: seed of the run that made it), for ``dimple-stats store ls``.
        self.origin = dict(origin) if origin else None
        #: Keys this instance found published or published itself, in first-use order: what a
        #: run used, which its manifest lists (``dimple-stats store gc`` keeps those).
        self.used: dict[str, None] = {}

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    def check_location(self) -> ArtifactStore:
        """``self`` if the store's folder exists or can be created, else
        :class:`StoreLocationError`: checked before any compute, so that training is never lost
        to a ``--store`` that names a file, a path below a file or an unwritable folder."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise StoreLocationError(f"{root} is a file, not a folder; name a folder "
                                     "(it is created when missing)")
        existing = next((p for p in (root, *root.absolute().parents) if p.exists()), None)
        if existing is None:  # pragma: no cover - "/" always exists
            return self
        if not existing.is_dir():
            raise StoreLocationError(f"{root}: {existing} is a file, so no folder can "
                                     "be made below it; name a folder")
        # An unwritable store is no error yet: a run whose every stage is stored only reads
        # it (a read-only copy of a finished store). The first stage it lacks is refused, by
        # has(), before that stage computes.
        return self

    # ----------------------------------------------------------------------------------- keys
    def key(self, stage: str, config: Any, inputs: InputKeys = ()) -> ArtifactKey:
        """Key of the artifact that ``stage`` produces from ``config`` and the artifacts ``inputs``.

        Parameters
        ----------
        stage : str
            Stage name.
        config : pydantic model or JSON-able data
            Everything in the stage's own configuration that can change its output. Dict key order
            and tuple-vs-list do not change the key; any value does.
        inputs : sequence or mapping of ArtifactKey or str
            Keys of the artifacts the stage reads. A sequence is hashed in its order (position can
            carry a role); a mapping names the roles and its order does not matter.

        Returns
        -------
        ArtifactKey
        """
        check_stage(stage)
        hashed = {"stage": stage, "config": plain_json(config), "inputs": normalise_inputs(inputs)}
        return ArtifactKey(stage, canonical_hash(hashed, length=DIGEST_LENGTH), provenance=hashed)

    def path(self, key: ArtifactKey) -> Path:
        """Final directory of ``key`` (whether or not it exists)."""
        return self.root / key.stage / key.digest

    def has(self, key: ArtifactKey) -> bool:
        """Whether ``key`` was published. ``_meta.json`` is written last before the rename, so its
        presence marks a complete artifact even on filesystems where the rename is not atomic."""
        found = (self.path(key) / META_FILE).is_file()
        if found:
            self.used.setdefault(str(key))
        else:  # the caller computes it next: a store that cannot take it says so first
            why = cannot_write_beside(self.root / "_") if not self.root.is_dir() else \
                cannot_write_in(self.root)
            if why:
                raise StoreLocationError(
                    f"{why}, and the store {self.root} lacks {key.stage} {key.digest[:12]}; "
                    "name a store you can write to (a read-only store serves only a run whose "
                    "every stage it holds)")
        return found

    def keys(self, stage: str | None = None) -> Iterator[ArtifactKey]:
        """Published keys, of one stage or all, in sorted order; temporary and removed ones are skipped."""
        if stage is not None:
            stages = [check_stage(stage)]
        elif self.root.is_dir():
            stages = sorted(entry.name for entry in os.scandir(self.root) if _is_stage_dir(entry))
        else:
            stages = []
        for stage_name in stages:
            stage_dir = self.root / stage_name
            if not stage_dir.is_dir():
                continue
            for digest in sorted(entry.name for entry in os.scandir(stage_dir)):
                if not DIGEST_RE.match(digest):
                    continue
                key = ArtifactKey(stage_name, digest)
                if (self.path(key) / META_FILE).is_file():  # not has(): a listing computes nothing
                    self.used.setdefault(str(key))
                    yield key

    # -------------------------------------------------------------------------------- writing
    @contextlib.contextmanager
    def writer(self, key: ArtifactKey) -> Iterator[ArtifactWriter]:
        """Write the artifact ``key``; it is published atomically when the ``with`` block exits.

        An exception inside the block deletes the temporary directory and propagates. If another
        process published ``key`` first, this copy is discarded and the existing one kept
        (``writer.published`` tells which happened).

        Yields
        ------
        ArtifactWriter

        Notes
        -----
        Open the writer after the stage's computation, not before: :meth:`clean_stale` judges a
        temporary directory abandoned by the age of its newest file.
        """
        provenance = key.provenance
        if provenance is not None and canonical_hash(provenance, length=len(key.digest)) != key.digest:
            raise ArtifactError(f"the provenance carried by {key} no longer hashes to its digest (mutated?)")
        stage_dir = self.root / key.stage
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
            # os.mkdir with the default mode (not tempfile.mkdtemp's 0700) so that on a shared
            # store the published artifact gets the same umask-controlled permissions as every
            # other file.
            tmp = stage_dir / f"{TMP_PREFIX}{key.digest}-{uuid.uuid4().hex}"
            os.mkdir(tmp)
        except OSError as exc:
            raise StoreWriteError(self.root, exc) from None
        writer = ArtifactWriter(tmp)
        try:
            yield writer
            writer._close()
            writer.published = self._publish(key, tmp)
        except BaseException as exc:
            writer._close()
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
                raise StoreWriteError(self.root, exc) from None
            if isinstance(exc, RuntimeError) and any(
                    text in str(exc) for text in _TORCH_WRITE_FAILURES):
                # torch.save's C++ writer reports a full disk or ulimit -f as a RuntimeError.
                raise StoreWriteError(self.root, OSError(errno.EFBIG, "a file did not fit (a "
                                      "file-size limit or a full disk)"))\
                    from None
            raise

    def _publish(self, key: ArtifactKey, tmp: Path) -> bool:
        write_meta(tmp, key, self.origin)
        # Flush every file and directory entry to disk before the rename makes them visible: after a
        # power loss the artifact must be either absent or complete, never present with empty files.
        fsync_tree(tmp)
        final = self.path(key)
        attempts = 6
        for attempt in range(attempts):
            try:
                os.rename(tmp, final)
                break
            except OSError as exc:
                # POSIX rename refuses to replace a non-empty directory, so the first publisher
                # wins.
                if self.has(key):
                    shutil.rmtree(tmp, ignore_errors=True)
                    return False
                if attempt == attempts - 1:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise ArtifactError(f"cannot publish {key} to {final}: {exc}") from exc
                # A directory without _meta.json at the final path was never published (the
                # record goes in before the rename): a damaged leftover, e.g. its record was
                # deleted. Move it aside (unless another writer published it meanwhile) and
                # publish this complete copy in its place; writers racing over one leftover
                # back off a random few milliseconds so that one of them gets through.
                if final.is_dir():
                    self._discard(final, unpublished_only=True)
                time.sleep(random.uniform(0.0, 0.01 * (attempt + 1)))
        fsync_dir(final.parent)
        self.used.setdefault(str(key))
        return True

    # -------------------------------------------------------------------------------- reading
    def meta(self, key: ArtifactKey) -> dict[str, Any]:
        """Provenance of ``key``: stage, digest, config, inputs, creation time (UTC), versions,
        origin and every file's size and SHA-256.

        Raises
        ------
        DamagedArtifactError
            The record is not readable JSON of the expected shape.
        """
        path = self._require(key) / META_FILE
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DamagedArtifactError(key, self.root, f"{META_FILE} unreadable: "
                                       f"{type(exc).__name__}") from None
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
            raise DamagedArtifactError(key, self.root, f"{META_FILE} has no file list")
        return record

    def verify(self, key: ArtifactKey, names: list[str] | None = None) -> list[str]:
        """Re-hash the artifact's files (or only ``names``) against its record; the problems
        found, empty when it is intact.

        A record from before hashes were kept (format 1) is checked by size only.
        """
        try:
            recorded = self.meta(key)["files"]
        except DamagedArtifactError as exc:
            return [exc.problem]
        problems = []
        for name in names if names is not None else sorted(set(recorded) | set(self.files(key))):
            try:
                self.load_bytes(key, name)  # the same check every load makes
            except DamagedArtifactError as exc:
                problems.append(exc.problem)
        return problems

    def size(self, key: ArtifactKey) -> int:
        """Bytes of the artifact's files (its record included)."""
        return sum(p.stat().st_size for p in self.path(key).rglob("*") if p.is_file())

    def leftovers(self) -> list[Path]:
        """Artifact directories without a record: never published, or damaged (their record
        deleted). Readers ignore them; :meth:`remove_leftover` deletes one."""
        if not self.root.is_dir():
            return []
        return [Path(entry.path)
                for stage_entry in sorted(os.scandir(self.root), key=lambda e: e.name)
                if _is_stage_dir(stage_entry)
                for entry in sorted(os.scandir(stage_entry.path), key=lambda e: e.name)
                if DIGEST_RE.match(entry.name) and entry.is_dir()
                and not os.path.isfile(os.path.join(entry.path, META_FILE))]

    def files(self, key: ArtifactKey) -> list[str]:
        """Relative POSIX paths of the artifact's files, sorted, without ``_meta.json``."""
        return [name for name in list_files(self._require(key)) if name != META_FILE]

    def load_bytes(self, key: ArtifactKey, name: str) -> bytes:
        """Raw bytes of file ``name``, verified against the artifact's record.

        Every loader parses these bytes: the file is read once, so what was verified is what is
        loaded even if the file changes in between.

        Raises
        ------
        DamagedArtifactError
            The file was changed, truncated or deleted after publishing.
        """
        directory = self._require(key)
        recorded = self.meta(key)["files"]
        target = directory / check_name(name)
        if name not in recorded:
            if target.is_file():
                raise DamagedArtifactError(key, self.root, f"{name}: not in the record "
                                           "(added after publishing)")
            available = ", ".join(self.files(key)) or "none"
            raise ArtifactNotFoundError(f"artifact {key} has no file {name!r}; its files: {available}")
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise DamagedArtifactError(key, self.root, f"{name}: missing") from None
        problem = record_problem(name, recorded[name], data)
        if problem:
            raise DamagedArtifactError(key, self.root, problem)
        return data

    def load_json(self, key: ArtifactKey, name: str) -> Any:
        """Parsed JSON file ``name``."""
        return json.loads(self.load_bytes(key, name).decode("utf-8"))

    def load_table(self, key: ArtifactKey, name: str) -> pd.DataFrame:
        """Parquet file ``name`` as a DataFrame."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.load_bytes(key, name)), engine="pyarrow")

    def load_tensors(
        self, key: ArtifactKey, name: str, map_location: str | torch.device | None = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Tensors saved by :meth:`ArtifactWriter.save_tensors`, on ``map_location``.

        Raises
        ------
        UnsafeArtifactError
            The file pickles objects other than tensors and plain containers. It is refused rather
            than unpickled because unpickling can execute arbitrary code, and a store on a shared or
            downloaded filesystem is not trusted input.
        ArtifactError
            The file loads safely but is not a mapping of names to tensors.
        """
        import pickle

        import torch

        target = self.path(key) / name
        data = io.BytesIO(self.load_bytes(key, name))
        try:
            # weights_only=True is the whole point: it restricts unpickling to tensors, primitive
            # types and containers, so a crafted checkpoint cannot run code. Never relax it here.
            loaded = torch.load(data, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise UnsafeArtifactError(
                f"refused to load {target}: it pickles objects other than tensors, and unpickling them "
                f"could run arbitrary code. The store only loads files written by save_tensors; do not "
                f"load this one with weights_only=False unless you made it yourself. "
                f"({unpickling_culprit(exc)})"
            ) from exc
        if not isinstance(loaded, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
        ):
            raise ArtifactError(
                f"{target} does not hold a mapping of names to tensors ({type(loaded).__name__})"
            )
        return loaded  # type: ignore[return-value]

    def _require(self, key: ArtifactKey) -> Path:
        if not self.has(key):
            raise ArtifactNotFoundError(f"no artifact {key} in the store at {self.root}")
        return self.path(key)

    # ---------------------------------------------------------------------------- maintenance
    def remove(self, key: ArtifactKey) -> bool:
        """Delete artifact ``key``; return whether there was one.

        The directory is first renamed out of place, so concurrent readers see the artifact either
        whole or gone, never half-deleted.
        """
        return self._discard(self.path(key))

    def _discard(self, directory: Path, *, unpublished_only: bool = False) -> bool:
        """Move ``directory`` out of place, then delete it. With ``unpublished_only``, a
        directory that turns out to hold a record once moved (another writer published it
        between our look and our move) is put back instead; if a third writer published the
        same key meanwhile, the copies are equivalent (same key) and the moved one goes."""
        trash = directory.parent / f"{TRASH_PREFIX}{directory.name}-{uuid.uuid4().hex}"
        try:
            os.rename(directory, trash)
        except FileNotFoundError:
            return False
        if unpublished_only and (trash / META_FILE).is_file():
            with contextlib.suppress(OSError):
                os.rename(trash, directory)
                return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def remove_leftover(self, directory: Path) -> bool:
        """Delete one of :meth:`leftovers` (refuses anything else)."""
        if directory not in self.leftovers():
            raise ArtifactError(f"{directory} is not an unpublished artifact directory of {self}")
        return self._discard(directory, unpublished_only=True)

    def clean_stale(self, older_than_s: float = DEFAULT_STALE_AGE_S) -> list[Path]:
        """Delete temporary directories of killed writers (and interrupted removals).

        Parameters
        ----------
        older_than_s : float
            Only directories whose newest file is at least this old are deleted, so that writers
            still at work (possibly on other machines sharing the store) are left alone.

        Returns
        -------
        list of Path
            The directories deleted.
        """
        if older_than_s < 0:
            raise ValueError(f"older_than_s must be >= 0, got {older_than_s}")
        if not self.root.is_dir():
            return []
        now = time.time()
        removed: list[Path] = []
        for stage_entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not _is_stage_dir(stage_entry):
                continue
            for entry in sorted(os.scandir(stage_entry.path), key=lambda e: e.name):
                if not entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if now - _newest_mtime(Path(entry.path)) >= older_than_s:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(Path(entry.path))
        return removed


# -------------------------------------------------------------------------------- helpers
def _is_stage_dir(entry: os.DirEntry[str]) -> bool:
    return bool(STAGE_RE.match(entry.name)) and entry.is_dir()


def _newest_mtime(directory: Path) -> float:
    newest = 0.0
    for current, _dirs, filenames in os.walk(directory):
        for path in [current, *(os.path.join(current, f) for f in filenames)]:
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, os.lstat(path).st_mtime)
    return newest
