"""Where a report goes: refuse folders that are not reports, and replace a report as a whole.

A run's ``--out`` may name a new folder, an empty one, or an earlier dimple-stats report (a
folder with ``manifest.json``). Anything else (a file, someone's folder of results) is refused
before any compute. A report is written into a temporary sibling folder and renamed into place,
so a crash leaves the previous report whole and no file of an older report survives beside the
new ones.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from dimple_stats.atomic import fsync_dir
from dimple_stats.errors import BadInput

__all__ = ["ReportDestinationError", "check_destination", "staged_report"]

#: The file that marks a folder as a dimple-stats run's report (written last by a run).
MARKER = "manifest.json"
#: What ``dimple-stats report --out`` writes into a folder of its own (no manifest there).
RENDERED = frozenset({"results.csv", "results.tex", "results.md", "figures"})


class ReportDestinationError(BadInput):
    """``--out`` names a file, or a non-empty folder that is not a dimple-stats report."""

    section = "--out"


def check_destination(path: str | os.PathLike[str], *,
                      keep: str | os.PathLike[str] | None = None) -> Path:
    """``path`` as an absolute path if a report may be written there, else
    :class:`ReportDestinationError`.

    Refused: a file; a symbolic link (replacing the report would replace the link, not its
    target); a folder that holds the current directory; a non-empty folder that is not a
    report; and a folder that holds ``keep`` (the artifact store: replacing the report would
    delete it).

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> check_destination(folder / "new") == folder.absolute() / "new"
    True
    >>> (folder / "notes.txt").write_text("mine")
    4
    >>> check_destination(folder)
    Traceback (most recent call last):
    ...
    dimple_stats.report.destination.ReportDestinationError: ... is not a dimple-stats report ...
    """
    out = Path(os.path.abspath(path))  # normalised ("." and ".." resolved), links kept
    if out.is_symlink():
        raise ReportDestinationError(f"{path} is a symbolic link; name the folder itself")
    cwd = Path(os.path.abspath(os.getcwd()))
    if out == cwd or out in cwd.parents:
        raise ReportDestinationError(f"{path} holds the current directory; name a folder "
                                     "below it, e.g. reports/<name>")
    if keep is not None:
        kept = Path(os.path.abspath(keep))
        if kept == out or out in kept.parents:
            raise ReportDestinationError(f"{path} holds the artifact store {keep}; replacing the "
                                         "report would delete it")
    if out.exists() and not out.is_dir():
        raise ReportDestinationError(f"{out} is a file, not a folder; name a new folder")
    if out.is_dir() and not _is_report(out):
        raise ReportDestinationError(
            f"{out} is not a dimple-stats report (no {MARKER}) and not empty; name a new or "
            "empty folder (a report folder is replaced as a whole)")
    return out


def _is_report(folder: Path) -> bool:
    names = {entry.name for entry in folder.iterdir()}
    return (folder / MARKER).is_file() or names <= RENDERED


@contextlib.contextmanager
def staged_report(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder to write a report into; on success it replaces
    ``path`` (checked with :func:`check_destination`), on an exception it is deleted and
    ``path`` is left as it was.

    The swap is two renames (POSIX cannot replace a non-empty folder in one): the old report is
    moved aside, the new one into place, then the old one deleted. Only a crash between the two
    renames leaves no folder at ``path``; the old report is then the ``.<name>.old-*`` sibling.
    """
    out = check_destination(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{tag}"
    if out.exists():
        try:
            check_destination(out)  # it may have changed during a long run
        except ReportDestinationError as exc:
            raise ReportDestinationError(f"{exc}; the finished report was kept at {tmp}") from None
        os.rename(out, old)
    os.rename(tmp, out)
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)
