"""Where a report goes: refuse folders that are not reports, and replace a report as a whole.

A run's ``--out`` may name a new folder, an empty one, or an earlier dimple-stats report: a
folder whose ``manifest.json`` is a dimple-stats run's (it names the dimple-stats version) or
that ``dimple-stats report --out`` marked with ``rendered.json``, and that holds nothing a report
does not write. Anything else (a file, someone's folder with a ``manifest.json`` of its own or a
``results.csv`` of their own, a folder that holds the artifact store, also through a symbolic
link) is refused before any compute. A report is written into a temporary sibling folder and
renamed into place, so a crash leaves the previous report whole and no file of an older report
survives beside the new ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from dimple_stats.atomic import fsync_dir
from dimple_stats.errors import BadInput

__all__ = ["ReportDestinationError", "check_destination", "mark_rendered", "report_names",
           "staged_report"]

#: The file that marks a folder as a dimple-stats run's report (written last by a run).
MARKER = "manifest.json"
#: The file that marks a folder written by ``dimple-stats report --out`` (no manifest there).
RENDERED_MARKER = "rendered.json"


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
        # Resolved: a store reached through a symbolic link into the report is still inside it.
        kept, real = Path(os.path.realpath(keep)), Path(os.path.realpath(out))
        if kept == real or real in kept.parents:
            raise ReportDestinationError(f"{path} holds the artifact store {keep}; replacing the "
                                         "report would delete it")
    if out.exists() and not out.is_dir():
        raise ReportDestinationError(f"{out} is a file, not a folder; name a new folder")
    if out.is_dir():
        why = _not_a_report(out)
        if why:
            raise ReportDestinationError(
                f"{out} is not a dimple-stats report ({why}) and not empty; name a new or empty "
                "folder (a report folder is replaced as a whole)")
    return out


def report_names() -> frozenset[str]:
    """Every file or folder name a report holds at its top level (a run's report, or what
    ``dimple-stats report --out`` writes)."""
    from dimple_stats.gallery import GALLERY_FILE
    from dimple_stats.measurements import TABLE_FILES
    from dimple_stats.report import FORMATS
    from dimple_stats.report.attack_parity import ATTACKS_FILE
    from dimple_stats.report.summary import SUMMARY_FILE

    return frozenset({MARKER, RENDERED_MARKER, GALLERY_FILE, SUMMARY_FILE, ATTACKS_FILE,
                      "report.html", "figures", *TABLE_FILES.values(),
                      *(FORMATS[name].filename for name in FORMATS)})


def _signed(path: Path) -> bool:
    """Whether ``path`` is a JSON object naming the dimple-stats version that wrote it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    versions = data.get("versions") if isinstance(data, dict) else None
    return isinstance(versions, dict) and "dimple-stats" in versions


def _not_a_report(folder: Path) -> str:
    """Why ``folder`` is not an empty folder or a dimple-stats report ("" if it is one)."""
    names = {entry.name for entry in folder.iterdir()}
    if not names:
        return ""
    foreign = sorted(names - report_names())
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                          else "")
        return f"it holds {shown}, which no report writes"
    for marker in (MARKER, RENDERED_MARKER):
        if (folder / marker).is_file():
            return "" if _signed(folder / marker) else (
                f"its {marker} was not written by dimple-stats")
    return f"no {MARKER} or {RENDERED_MARKER}"


def mark_rendered(folder: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> Path:
    """Write :data:`RENDERED_MARKER` into a folder ``dimple-stats report --out`` wrote, so that
    a later ``--out`` may replace it (and nobody's own ``results.csv`` is taken for one)."""
    from dimple_stats import __version__
    from dimple_stats.atomic import write_text_atomic

    body = {"versions": {"dimple-stats": __version__}, "rendered_from": str(run_dir)}
    return write_text_atomic(Path(folder) / RENDERED_MARKER,
                             json.dumps(body, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def staged_report(path: str | os.PathLike[str], *,
                  keep: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder to write a report into; on success it replaces
    ``path`` (checked with :func:`check_destination`), on an exception it is deleted and
    ``path`` is left as it was.

    The swap is two renames (POSIX cannot replace a non-empty folder in one): the old report is
    moved aside, the new one into place, then the old one deleted. Only a crash between the two
    renames leaves no folder at ``path``; the old report is then the ``.<name>.old-*`` sibling.
    """
    out = check_destination(path, keep=keep)
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
            check_destination(out, keep=keep)  # it may have changed during a long run
        except ReportDestinationError as exc:
            raise ReportDestinationError(f"{exc}; the finished report was kept at {tmp}") from None
        os.rename(out, old)
    os.rename(tmp, out)
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)
