"""Where a command's output goes: refuse folders it did not write, and replace its own whole.

A run's ``--out`` (and ``report --out``) may name a new folder, an empty one, or an earlier
dimple-stats report: a folder whose ``manifest.json`` is a dimple-stats run's (it names the
dimple-stats version) or that ``dimple-stats report --out`` marked with ``rendered.json``, and
that holds nothing a report does not write, each entry of its kind (files as files, a
``figures/`` folder of figure files). ``compare --out`` and ``bench --out`` follow the same rule
with their own files (:class:`OutputFolder`). Anything else (a file, someone's folder with a
``manifest.json`` or a ``results.csv`` of their own, a folder named ``summary.md``, a checkpoint
in ``figures/``, a folder that holds the current directory or the artifact store, also through
a symbolic link) is refused before any compute. A report is written into a temporary sibling
folder and renamed into place, so a crash or a stop signal leaves the previous report whole and
no file of an older report survives beside the new ones; an in-place re-render
(:func:`staged_render`) swaps only the report's outputs and keeps the run's inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dimple_stats import interrupts
from dimple_stats.atomic import cannot_write_beside, cannot_write_in, fsync_dir
from dimple_stats.errors import BadInput

__all__ = ["BENCHMARKS", "COMPARISON", "OutputFolder", "REPORT", "ReportDestinationError",
           "check_destination", "check_output_file", "mark_rendered", "report_inputs",
           "report_names", "same_folder", "staged_render", "staged_report"]

#: The file that marks a folder as a dimple-stats run's report (written last by a run).
MARKER = "manifest.json"
#: The file that marks a folder written by ``dimple-stats report --out`` or ``compare --out``.
RENDERED_MARKER = "rendered.json"
#: What a report's ``figures/`` holds: figure files, nothing else (no folder, no link).
FIGURE_SUFFIXES = frozenset({".png", ".pdf"})
#: A temporary file :func:`dimple_stats.atomic.write_atomic` leaves when killed mid-write.
_LEFTOVER = re.compile(r"^\..+\.tmp$")


class ReportDestinationError(BadInput):
    """``--out`` names a file, or a non-empty folder that is not a dimple-stats report."""

    section = "--out"


def _signed(path: Path) -> bool:
    """Whether ``path`` is a JSON object naming the dimple-stats version that wrote it (at the
    top, or in its ``machine`` record as a benchmark report has it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    machine = data.get("machine")
    for versions in (data.get("versions"),
                     machine.get("versions") if isinstance(machine, dict) else None):
        if isinstance(versions, dict) and "dimple-stats" in versions:
            return True
    return False


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


@dataclass(frozen=True)
class OutputFolder:
    """What one command writes into its ``--out`` folder, so that a folder it wrote (and only
    such a folder) may be replaced as a whole.

    ``names`` lists every top-level entry; those in ``folders`` are folders of figure files
    (:data:`FIGURE_SUFFIXES`), every other one a plain file. A folder holding only such
    entries is the command's own when one of ``markers`` is a JSON file naming the
    dimple-stats version that wrote it.
    """

    what: str
    names: Callable[[], frozenset[str]]
    markers: tuple[str, ...]
    folders: frozenset[str] = frozenset()


#: A run's report (``run --out``, ``report --out``).
REPORT = OutputFolder("dimple-stats report", report_names, (MARKER, RENDERED_MARKER),
                      frozenset({"figures"}))
#: ``compare --out``.
COMPARISON = OutputFolder("dimple-stats comparison",
                          lambda: frozenset({"compare.md", "compare.csv", RENDERED_MARKER}),
                          (RENDERED_MARKER,))
#: ``bench --out`` (its ``benchmarks.json`` names the versions in its machine record).
BENCHMARKS = OutputFolder("dimple-stats benchmark report",
                          lambda: frozenset({"benchmarks.md", "benchmarks.json"}),
                          ("benchmarks.json",))


def check_destination(path: str | os.PathLike[str], *,
                      keep: str | os.PathLike[str] | None = None,
                      output: OutputFolder = REPORT, protocol: str | None = None,
                      replace: bool = False) -> Path:
    """``path`` as an absolute path if ``output`` may be written there, else
    :class:`ReportDestinationError`.

    Refused: a file; a symbolic link (replacing the report would replace the link, not its
    target); a folder that holds the current directory (also through a link); a non-empty
    folder that is not ``output``'s (an entry it does not write, or one of the wrong kind, such
    as a folder named ``summary.md`` or a checkpoint inside ``figures/``); and a folder that
    holds ``keep`` (the artifact store: replacing the report would delete it). A run's folder
    (its measurements and ``manifest.json``) is replaced only by a run of the same protocol
    (``protocol``, its name); ``report --out`` (``protocol=None``) and a run of another
    protocol are refused there unless ``replace``: its measurements cannot be re-derived
    without the store that made them.

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
    real = Path(os.path.realpath(out))
    for cwd in {Path(os.path.abspath(os.getcwd())), Path(os.path.realpath(os.getcwd()))}:
        if cwd in (out, real) or out in cwd.parents or real in cwd.parents:
            raise ReportDestinationError(f"{path} holds the current directory; name a folder "
                                         "below it, e.g. reports/<name>")
    if keep is not None:
        # Resolved: a store reached through a symbolic link into the report is still inside it.
        kept = Path(os.path.realpath(keep))
        if kept == real or real in kept.parents:
            raise ReportDestinationError(f"{path} holds the artifact store {keep}; replacing the "
                                         "report would delete it: name another --out, or keep "
                                         "the store outside it (--store DIR)")
    if out.exists() and not out.is_dir():
        raise ReportDestinationError(f"{out} is a file, not a folder; name a new folder")
    if out.is_dir():
        why = _not_written_by(out, output)
        if why:
            raise ReportDestinationError(
                f"{out} is not a {output.what} ({why}) and not empty; name a new or empty "
                f"folder (a {output.what.removeprefix('dimple-stats ')} folder is replaced as a "
                "whole)")
        if output is REPORT and not replace:
            _check_not_another_run(out, protocol)
    # Found now, not when the finished report is renamed in: its parent takes the staging
    # folder, and an existing folder is renamed aside (an immutable one refuses).
    why = cannot_write_beside(out) or (cannot_write_in(out) if out.is_dir() else None)
    if why:
        raise ReportDestinationError(f"{path}: {why}; name a folder you can write to")
    return out


def _check_not_another_run(out: Path, protocol: str | None) -> None:
    """Refuse ``out`` when it holds the run (measurements and manifest) of a protocol other
    than ``protocol`` (any run when ``protocol`` is None)."""
    if not (out / MARKER).is_file():
        return
    try:
        name = json.loads((out / MARKER).read_text(encoding="utf-8"))["protocol"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        name = None
    if protocol is not None and name == protocol:
        return
    whose = f"protocol {name!r}" if isinstance(name, str) else "another protocol"
    raise ReportDestinationError(
        f"{out} holds the run of {whose} (its measurements and manifest.json), which replacing "
        "it would delete; name another folder, or pass --replace to replace that run")


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _wrong_kind(entries: dict[str, Path], output: OutputFolder) -> str:
    """Why one of ``entries`` (``output``'s names) is not what ``output`` writes there: a link,
    a folder where a file belongs, a file where a folder belongs, or a figures folder holding
    anything but figure files ("" if every entry is as written)."""
    for name, entry in sorted(entries.items()):
        if _LEFTOVER.match(name) and entry.is_file() and not entry.is_symlink():
            continue
        if entry.is_symlink():
            return f"its {name} is a symbolic link"
        if name in output.folders:
            if not entry.is_dir():
                return f"its {name} is not a folder"
            odd = sorted(f"{name}/{e.name}" for e in entry.iterdir()
                         if e.is_symlink() or not e.is_file()
                         or (e.suffix.lower() not in FIGURE_SUFFIXES
                             and not _LEFTOVER.match(e.name)))
            if odd:
                return f"it holds {_shown(odd)}, which no report writes"
        elif not entry.is_file():
            return f"its {name} is a folder, not a file"
    return ""


def _not_written_by(folder: Path, output: OutputFolder) -> str:
    """Why ``folder`` is not empty and not ``output``'s ("" if it is empty or ``output``'s)."""
    entries = {entry.name: entry for entry in folder.iterdir()}
    if not entries:
        return ""
    names = output.names()
    foreign = sorted(n for n in entries if n not in names and not _LEFTOVER.match(n))
    if foreign:
        return (f"it holds {_shown(foreign)}, which no "
                f"{output.what.removeprefix('dimple-stats ')} writes")
    why = _wrong_kind(entries, output)
    if why:
        return why
    for marker in output.markers:
        if (folder / marker).is_file():
            return "" if _signed(folder / marker) else (
                f"its {marker} was not written by dimple-stats")
    return f"no {' or '.join(output.markers)}"


def same_folder(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same folder (links resolved)."""
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_file(path: str | os.PathLike[str], *, written_by: Callable[[Path], bool],
                      what: str) -> Path:
    """``path`` if a one-file output may be written there: a new file, or one that
    ``written_by`` recognises as an earlier ``what``; else :class:`ReportDestinationError`.

    >>> import tempfile, pathlib
    >>> mine = pathlib.Path(tempfile.mkdtemp()) / "notes.json"
    >>> _ = mine.write_text("{}")
    >>> check_output_file(mine, written_by=lambda p: False, what="protocol schema")
    Traceback (most recent call last):
    ...
    dimple_stats.report.destination.ReportDestinationError: ... exists and is not a protocol schema ...
    """
    out = Path(path)
    if out.is_symlink():
        raise ReportDestinationError(f"{path} is a symbolic link; name the file itself")
    if out.is_dir():
        raise ReportDestinationError(f"{path} is a folder; name a file")
    if out.exists() and not written_by(out):
        raise ReportDestinationError(f"{path} exists and is not a {what} dimple-stats wrote; "
                                     "name a new file")
    return out


def mark_rendered(folder: str | os.PathLike[str],
                  run_dir: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Path:
    """Write :data:`RENDERED_MARKER` into a folder ``dimple-stats report --out`` (or
    ``compare --out``) wrote, so that a later ``--out`` may replace it (and nobody's own
    ``results.csv`` is taken for one); it names the run folder(s) it was rendered from."""
    from dimple_stats import __version__
    from dimple_stats.atomic import write_text_atomic

    source = (str(run_dir) if isinstance(run_dir, (str, os.PathLike))
              else [str(d) for d in run_dir])
    body = {"versions": {"dimple-stats": __version__}, "rendered_from": source}
    return write_text_atomic(Path(folder) / RENDERED_MARKER,
                             json.dumps(body, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _staging(tmp: Path) -> Iterator[None]:
    """Create the staging folder ``tmp``; delete it when the body raises or a stop signal came
    during it (one whose exception Python dropped included), so the old report stays."""
    tmp.mkdir()
    try:
        yield
        interrupts.check()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_report(path: str | os.PathLike[str], *,
                  keep: str | os.PathLike[str] | None = None,
                  output: OutputFolder = REPORT, protocol: str | None = None,
                  replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to write a report into; on success it replaces
    ``path`` (checked with :func:`check_destination`), on an exception it is deleted and
    ``path`` is left as it was.

    The swap is two renames (POSIX cannot replace a non-empty folder in one): the old report is
    moved aside, the new one into place, then the old one deleted. Only a crash between the two
    renames leaves no folder at ``path``; the old report is then the ``.<name>.old-*`` sibling.
    """
    checks = dict(keep=keep, output=output, protocol=protocol, replace=replace)
    out = check_destination(path, **checks)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    old = out.parent / f".{out.name}.old-{tag}"
    with _staging(tmp):
        yield tmp
    try:
        if out.exists():
            try:
                # it may have changed during a long run
                check_destination(out, **checks)
            except ReportDestinationError as exc:
                raise ReportDestinationError(f"{exc}; the finished report was kept at {tmp}"
                                             ) from None
        # A stop signal between the renames would leave no report at `out`, and one during
        # the deletion half an old one beside it: both wait until the swap is done.
        with interrupts.held():
            if out.exists():
                os.rename(out, old)
            os.rename(tmp, out)
            fsync_dir(out.parent)
            shutil.rmtree(old, ignore_errors=True)
    except ReportDestinationError:
        raise
    except BaseException:  # a stop signal before the swap: the old report stays, alone
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def report_inputs() -> frozenset[str]:
    """The entries of a run folder that ``dimple-stats report`` reads and never rewrites."""
    from dimple_stats.gallery import GALLERY_FILE
    from dimple_stats.measurements import TABLE_FILES

    return frozenset({MARKER, GALLERY_FILE, *TABLE_FILES.values()})


@contextlib.contextmanager
def staged_render(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden folder inside ``run_dir`` to render a report into; on success its entries
    replace the run folder's report outputs, and outputs of an earlier render that this one did
    not write (a ``results.tex`` when only CSV was asked for, a figure no longer drawn) are
    removed. The run's inputs (:func:`report_inputs`) and any entry no report writes are left
    alone. On an exception (or a stop signal) the hidden folder is deleted and the old report
    stays whole.

    Refused before any work (:class:`ReportDestinationError`): an output name of the wrong kind,
    such as a ``figures/`` holding a file that is not a figure, which the swap would delete.
    A crash between the renames of the swap leaves the older outputs in ``.render-old-*``
    beside the inputs; ``dimple-stats report`` renders them again.
    """
    folder = Path(run_dir)
    outputs = report_names() - report_inputs()
    present = {name: folder / name for name in outputs
               if (folder / name).exists() or (folder / name).is_symlink()}
    why = _wrong_kind(present, REPORT)
    if why:
        raise ReportDestinationError(f"{folder}: {why}; re-rendering would delete it (move it "
                                     "out of the run folder, or render with --out NEW_FOLDER)")
    tag = uuid.uuid4().hex[:12]
    tmp = folder / f".render-{tag}"
    with _staging(tmp):
        yield tmp
    written = {entry.name for entry in tmp.iterdir()}
    stray = sorted(written - outputs)
    if stray:  # a renderer writing an input's name would overwrite the run's data
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"the report wrote {', '.join(stray)}, which is not a report output")
    old = folder / f".render-old-{tag}"
    try:
        with interrupts.held():  # the swap runs whole, as in staged_report
            old.mkdir()
            for name in present:
                os.rename(folder / name, old / name)
            for name in written:
                os.rename(tmp / name, folder / name)
            tmp.rmdir()
            fsync_dir(folder)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
