"""What the artifact store is made of: keys (stage + digest), its errors, and the provenance
record (``_meta.json``) written beside every artifact's files."""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from dimple_stats.errors import RunFailure
from dimple_stats.hashing import canonical_json

__all__ = ["DIGEST_RE", "META_FILE", "STAGE_RE", "ArtifactError", "ArtifactKey",
           "ArtifactNotFoundError", "DamagedArtifactError", "InputKeys", "UnsafeArtifactError",
           "as_key", "check_name", "check_stage", "file_sha256", "json_default", "list_files",
           "normalise_inputs", "plain_json", "record_problem", "unpickling_culprit", "write_meta"]

META_FILE = "_meta.json"

# Stage names become directory names on every OS and never start with "." so they cannot collide
# with the store's own ".tmp-*" / ".trash-*" entries.
STAGE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")
DIGEST_RE = re.compile(r"[0-9a-f]{8,64}\Z")


class ArtifactError(RunFailure):
    """An artifact could not be written or read (a run failure: exit 1 with its message)."""


class ArtifactNotFoundError(ArtifactError, LookupError):
    """The store has no such artifact, or the artifact has no such file."""


class UnsafeArtifactError(ArtifactError):
    """A tensor file holds pickled objects other than tensors, so loading it was refused."""


class DamagedArtifactError(ArtifactError):
    """A published artifact's files no longer match the hashes recorded when it was published
    (or its record is unreadable); nothing is loaded from it. The message names the artifact and
    the one command that removes it so the next run recomputes it."""

    def __init__(self, key: ArtifactKey, root: Path, problem: str) -> None:
        self.key, self.root, self.problem = key, root, problem
        super().__init__(
            f"stored artifact {key} is damaged ({problem}); nothing was loaded from it. Remove it "
            f"with `dimple-stats store rm {key} --store {root}` (or `dimple-stats store rm "
            f"--damaged --store {root}`) and run again to recompute it")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across process-pool and Ray workers
        return (type(self), (self.key, self.root, self.problem))


@dataclass(frozen=True)
class ArtifactKey:
    """Address of one artifact: the stage that produced it and the digest of what determined it.

    Parameters
    ----------
    stage : str
        Stage name, also the artifact's parent directory (letters, digits, ``_ . -``).
    digest : str
        Hex digest of the stage, its configuration and its inputs' keys.
    provenance : mapping, optional
        The exact object that was hashed (``stage``, ``config``, ``inputs``), carried along so the
        writer can record it in ``_meta.json``. Not part of equality or hashing; keys built by
        :meth:`parse` or found by :meth:`ArtifactStore.keys` have none.

    Examples
    --------
    >>> key = ArtifactKey("train_classifier", "3fa9c2d1e0b4a786")
    >>> str(key)
    'train_classifier/3fa9c2d1e0b4a786'
    >>> ArtifactKey.parse(str(key)) == key
    True
    """

    stage: str
    digest: str
    provenance: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_stage(self.stage)
        if not isinstance(self.digest, str) or not DIGEST_RE.match(self.digest):
            raise ValueError(f"artifact digest must be 8-64 lowercase hex characters, got {self.digest!r}")

    def __str__(self) -> str:
        return f"{self.stage}/{self.digest}"

    @classmethod
    def parse(cls, text: str) -> ArtifactKey:
        """Read a key from its ``"<stage>/<digest>"`` form (as written in manifests and ``_meta.json``)."""
        stage, sep, digest = text.partition("/")
        if not sep:
            raise ValueError(f"artifact key must look like '<stage>/<digest>', got {text!r}")
        return cls(stage, digest)




def check_stage(stage: str) -> str:
    if not isinstance(stage, str) or not STAGE_RE.match(stage):
        raise ValueError(
            f"stage name must be letters, digits, '_', '.', '-' and not start with '.' or '-', got {stage!r}"
        )
    return stage


#: Version of the ``_meta.json`` record: 2 records each file's size and SHA-256 (1: sizes only).
META_FORMAT = 2


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (hashlib's, OpenSSL-accelerated)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def record_problem(name: str, expected: Any, data: bytes) -> str | None:
    """How ``data`` (file ``name``'s bytes) differs from its record, or None.

    A record from before hashes were kept (an int: format 1) is checked by size only.
    """
    size = expected if isinstance(expected, int) else expected.get("bytes")
    digest = None if isinstance(expected, int) else expected.get("sha256")
    if len(data) != size:
        return f"{name}: {len(data)} bytes, {size} when published"
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        return f"{name}: content changed since publishing (SHA-256 differs)"
    return None


def write_meta(directory: Path, key: ArtifactKey, origin: Mapping[str, Any] | None = None) -> None:
    """Write the artifact's provenance record: what made it (``origin``: the protocol and seed,
    when a run made it), its key's config and inputs, versions, and every file's size and
    SHA-256, which loading verifies."""
    provenance = key.provenance or {}
    record = {
        "format": META_FORMAT,
        "origin": dict(origin) if origin else None,
        "stage": key.stage,
        "digest": key.digest,
        "key": str(key),
        "config": provenance.get("config"),
        "inputs": provenance.get("inputs"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "dimple-stats": _package_version("dimple-stats"),
            "torch": _package_version("torch"),
            "python": platform.python_version(),
        },
        "files": {name: {"bytes": (directory / name).stat().st_size,
                         "sha256": file_sha256(directory / name)}
                  for name in list_files(directory)},
    }
    try:
        with open(directory / META_FILE, "x", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.write("\n")
    except FileExistsError as exc:
        raise ArtifactError(f"a tool wrote {META_FILE!r} into the artifact; that name is reserved") from exc


def _package_version(distribution: str) -> str | None:
    # importlib.metadata reads the installed version without importing the package (torch is slow).
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def list_files(directory: Path) -> list[str]:
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file())


#: Inputs of a stage: a sequence of keys (hashed in the given order, since position can carry a role)
#: or a mapping from role name to key (hashed with sorted roles, so the mapping's order is irrelevant).
InputKeys = Sequence[ArtifactKey | str] | Mapping[str, ArtifactKey | str]


def check_name(name: str) -> str:
    """Reject file names that would escape the artifact directory or clobber its metadata."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"artifact file name must be a non-empty str, got {name!r}")
    parts = name.split("/")
    if "\\" in name or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"artifact file name must be a relative POSIX path without '.', '..', got {name!r}")
    if name == META_FILE:
        raise ValueError(f"{META_FILE!r} is reserved for the store's provenance record")
    return name


def plain_json(obj: Any) -> Any:
    """The JSON value that is hashed (pydantic models dumped, tuples as lists), so meta records it exactly."""
    return json.loads(canonical_json(obj))


def normalise_inputs(inputs: InputKeys) -> list[str] | dict[str, str]:
    if isinstance(inputs, (str, bytes)):
        raise TypeError("inputs must be a sequence or mapping of artifact keys, not a single string")
    if isinstance(inputs, Mapping):
        return {str(role): str(as_key(value)) for role, value in inputs.items()}
    return [str(as_key(value)) for value in inputs]


def as_key(value: ArtifactKey | str) -> ArtifactKey:
    # Parsing strings catches a typo'd input key now rather than as a silently different digest.
    return value if isinstance(value, ArtifactKey) else ArtifactKey.parse(value)


def unpickling_culprit(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    # torch's message explains weights_only first and names the offending global further down.
    culprit = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), None)
    return (culprit or (lines[0] if lines else type(exc).__name__)).strip()


def json_default(obj: Any) -> Any:
    # numpy and torch scalars/arrays expose tolist(); metrics computed with either are common.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
