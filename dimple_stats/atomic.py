"""Atomic file writes: a reader never sees a half-written report or table."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["cannot_write_beside", "cannot_write_in", "fsync_dir", "fsync_tree", "write_atomic",
           "write_bytes_atomic", "write_text_atomic"]


def _default_mode() -> int:
    # mkstemp creates 0600 files; give the final file the mode open() would have (0666 & ~umask).
    # Reading the umask means setting it, so it is restored at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then ``os.replace`` it.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> write_text_atomic(p, "hello\\n").read_text()
    'hello\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # fsync before the rename: otherwise a crash can publish the name with empty content.
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return path


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Persist a directory's entries: a rename is only durable once its directory is synced.

    Windows cannot open directories (and NTFS journals its renames), so there it is a no-op.
    """
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: str | os.PathLike[str]) -> None:
    """fsync every file under ``directory`` and every directory's entries."""
    for current, _dirs, filenames in os.walk(directory):
        for filename in filenames:
            fd = os.open(os.path.join(current, filename), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(current)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Replace ``path`` by ``data`` atomically: readers see the old content or the new, never a mix.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> write_bytes_atomic(p, b"a,b\\n").read_bytes()
    b'a,b\\n'
    """
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return write_atomic(path, write)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text with ``\\n`` line ends atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)

    return write_atomic(path, write)


def cannot_write_beside(path: str | os.PathLike[str]) -> str | None:
    """Why nothing can be created next to ``path`` (in its nearest existing parent), or None.

    A real try (a folder made and removed), not ``os.access``: that passes for root on a
    read-only mount's permission bits and for an immutable folder (``chattr +i``), where the
    write after a long run would fail.

    >>> import tempfile
    >>> cannot_write_beside(Path(tempfile.mkdtemp()) / "new" / "report") is None
    True
    """
    parent = next((p for p in Path(os.path.abspath(path)).parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        return None  # the caller's own checks name a file in the way
    return cannot_write_in(parent)


def cannot_write_in(folder: str | os.PathLike[str]) -> str | None:
    """Why nothing can be created inside the existing ``folder`` (or renamed: an immutable
    folder refuses both), or None; tried as :func:`cannot_write_beside` does.

    >>> import tempfile
    >>> cannot_write_in(tempfile.mkdtemp()) is None
    True
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dimple-stats-probe-", dir=folder))
    except OSError as exc:
        return f"{folder} is not writable ({exc.strerror or exc})"
    return None
