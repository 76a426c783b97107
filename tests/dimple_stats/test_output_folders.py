"""What the ``--out`` of every command may replace, and what a stop signal leaves (issue 32,
F1-F5 and F15-F16): nobody's file is deleted or overwritten, a report is replaced as a whole,
and a stop is never turned into exit code 0 with a half-new report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

from dimple_stats import __version__
from dimple_stats.cli import app
from dimple_stats.measurements import read_measurements, write_measurements
from dimple_stats.report.destination import (
    ReportDestinationError,
    check_destination,
)

from .test_report import make_run_dir

runner = CliRunner()
FAST = ["--format", "csv", "--no-figures", "--no-html"]


@pytest.fixture
def run_dir(tmp_path: Path, synthetic: SimpleNamespace) -> Path:
    """A run folder as a run writes it: a signed manifest naming its seeds."""
    path = make_run_dir(tmp_path / "run", synthetic)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(versions={"dimple-stats": __version__}, seeds=[0, 1])
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def report(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, ["report", *map(str, args)])
    return result.exit_code, result.output


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- F1: entries of the wrong kind are someone's ----------------------------------------------

def test_a_file_inside_figures_that_no_report_writes_is_refused_and_kept(
        run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, text = report(run_dir, "--out", out, "--format", "csv", "--no-html")
    assert code == 0, text
    (out / "figures" / "model.pt").write_bytes(b"weights the user keeps here")
    before = tree(out)
    code, text = report(run_dir, "--out", out, *FAST)
    assert code == 2, text
    assert "figures/model.pt" in text and "which no report writes" in text
    assert tree(out) == before  # nothing deleted, nothing rewritten
    # the same rule guards a run's --out (check_destination is what `run` calls first)
    with pytest.raises(ReportDestinationError, match="figures/model.pt"):
        check_destination(out)


@pytest.mark.parametrize("name", ["summary.md", "results.csv", "manifest.json"])
def test_a_folder_under_a_report_file_name_is_refused(run_dir: Path, tmp_path: Path,
                                                      name: str) -> None:
    out = tmp_path / "out"
    assert report(run_dir, "--out", out, *FAST)[0] == 0
    if (out / name).exists():
        (out / name).unlink()
    (out / name).mkdir()
    (out / name / "thesis.tex").write_text("mine")
    code, text = report(run_dir, "--out", out, *FAST)
    assert code == 2 and f"its {name} is a folder" in text, text
    assert (out / name / "thesis.tex").read_text() == "mine"


def test_a_link_inside_a_report_is_refused(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert report(run_dir, "--out", out, *FAST)[0] == 0
    (tmp_path / "elsewhere.md").write_text("mine")
    (out / "summary.md").unlink()
    (out / "summary.md").symlink_to(tmp_path / "elsewhere.md")
    code, text = report(run_dir, "--out", out, *FAST)
    assert code == 2 and "summary.md is a symbolic link" in text, text
    assert (tmp_path / "elsewhere.md").read_text() == "mine"


def test_the_current_directory_reached_through_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real" / "reports").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    cwd = os.getcwd()
    os.chdir(tmp_path / "real")
    try:
        with pytest.raises(ReportDestinationError, match="holds the current directory"):
            check_destination(tmp_path / "alias" / "..")
        with pytest.raises(ReportDestinationError, match="holds the current directory"):
            check_destination(tmp_path / "real")
    finally:
        os.chdir(cwd)


# --- F2: a table cannot steer a write outside the report ---------------------------------------

def test_an_autoencoder_name_that_is_a_path_is_refused_before_any_write(
        run_dir: Path, tmp_path: Path) -> None:
    table = read_measurements(run_dir / "measurements.parquet")
    table["autoencoder"] = table["autoencoder"].replace("plain", "../../../victim")
    write_measurements(table, run_dir / "measurements.parquet")
    code, text = report(run_dir, "--out", tmp_path / "deep" / "out")
    assert code == 2, text
    assert "'../../../victim'" in text and "does not name" in text
    assert not (tmp_path / "deep").exists()
    assert not list(tmp_path.rglob("gallery_*")) and not list(tmp_path.rglob("*victim*"))


def test_rows_of_a_seed_the_run_did_not_have_are_refused(run_dir: Path) -> None:
    table = read_measurements(run_dir / "measurements.parquet")
    table.loc[table.index[:5], "seed"] = 99
    write_measurements(table, run_dir / "measurements.parquet")
    code, text = report(run_dir, *FAST)
    assert code == 2 and "seed" in text and "99" in text, text


@pytest.mark.parametrize("column, value, message", [
    ("n", 10, "column 'n' holds 10, but the manifest's data have 64 pixels per image"),
    ("sample", 10_000, "column 'sample' holds 10000, outside the manifest's"),
    ("sample", -1, "column 'sample' holds -1"),
])
def test_rows_the_manifests_data_cannot_have_are_refused(column: str, value: int, message: str,
                                                         run_dir: Path) -> None:
    """Issue 32 row 7 (rest): an image dimension other than the data's (it sets the chance
    law Beta(k/2, (d-k)/2) every perpendicularity test uses) or a sample index beyond the
    run's evaluation images is not this run's measurement."""
    table = read_measurements(run_dir / "measurements.parquet")
    table.loc[table.index[0], column] = value  # one row: (seed, autoencoder, sample) is a key
    write_measurements(table, run_dir / "measurements.parquet")
    code, text = report(run_dir, *FAST)
    assert code == 2 and message in text, text


# --- F3, F16: compare, schema and bench never overwrite someone's file ---------------------------

def test_compare_out_refuses_someone_elses_compare_md_and_replaces_its_own(
        run_dir: Path, tmp_path: Path) -> None:
    assert report(run_dir, "--format", "csv", "--no-figures", "--no-html")[0] == 0
    mine = tmp_path / "cmp"
    mine.mkdir()
    (mine / "compare.md").write_text("my notes")
    result = runner.invoke(app, ["compare", str(run_dir), "--out", str(mine)])
    assert result.exit_code == 2, result.output
    assert "not a dimple-stats comparison" in result.output
    assert (mine / "compare.md").read_text() == "my notes"
    ours = tmp_path / "ours"
    for _ in range(2):  # its own earlier output is replaced as a whole
        result = runner.invoke(app, ["compare", str(run_dir), "--out", str(ours)])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ours.iterdir()) == ["compare.csv", "compare.md",
                                                      "rendered.json"]
    (ours / "stray.txt").write_text("x")
    assert runner.invoke(app, ["compare", str(run_dir), "--out", str(ours)]).exit_code == 2


def test_schema_out_replaces_an_earlier_schema_but_not_someone_elses_file(
        tmp_path: Path) -> None:
    target = tmp_path / "protocol.schema.json"
    for _ in range(2):
        result = runner.invoke(app, ["schema", "--out", str(target)])
        assert result.exit_code == 0, result.output
    assert json.loads(target.read_text())["title"] == "Protocol"
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    result = runner.invoke(app, ["schema", "--out", str(notes)])
    assert result.exit_code == 2 and "not a protocol JSON Schema" in result.output
    assert notes.read_text() == '{"mine": true}'
    assert runner.invoke(app, ["schema", "--out", str(tmp_path)]).exit_code == 2


def test_bench_out_at_a_file_or_someone_elses_folder_exits_2_before_any_work(
        tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    result = runner.invoke(app, ["bench", "--quick", "--out", str(tmp_path / "file")])
    assert result.exit_code == 2 and "is a file" in result.output, result.output
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "benchmarks.md").write_text("my table")
    result = runner.invoke(app, ["bench", "--quick", "--out", str(tmp_path / "folder")])
    assert result.exit_code == 2 and "benchmark report" in result.output, result.output
    assert (tmp_path / "folder" / "benchmarks.md").read_text() == "my table"
    assert (tmp_path / "file").read_text() == "mine"


# --- F4: a report is replaced as a whole, never mixed ------------------------------------------

def test_report_out_over_another_runs_report_replaces_it_as_a_whole(
        run_dir: Path, tmp_path: Path, synthetic: SimpleNamespace) -> None:
    other = make_run_dir(tmp_path / "other", synthetic)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["versions"] = {"dimple-stats": __version__}
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert report(other, "--format", "csv,latex", "--no-figures", "--no-html")[0] == 0
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    # a run's folder holds measurements only its store can re-derive: refused unless asked
    code, text = report(run_dir, "--out", other, *FAST)
    assert code == 2 and "holds the run of" in text and "--replace" in text, text
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before
    code, text = report(run_dir, "--out", other, "--replace", *FAST)
    assert code == 0, text
    names = sorted(p.name for p in other.iterdir())
    # nothing of the other run survives: not its manifest, tables or LaTeX table
    assert names == ["rendered.json", "results.csv", "summary.md"], names
    assert json.loads((other / "rendered.json").read_text())["rendered_from"] == str(run_dir)


def test_an_in_place_render_leaves_no_output_of_an_earlier_render(run_dir: Path) -> None:
    assert report(run_dir, "--format", "csv,latex,markdown", "--no-figures")[0] == 0
    assert (run_dir / "results.tex").is_file() and (run_dir / "report.html").is_file()
    inputs = {n: (run_dir / n).read_bytes() for n in ("manifest.json", "measurements.parquet",
                                                      "defense.parquet")}
    (run_dir / "my_notes.txt").write_text("kept")  # not a report output: left alone
    code, text = report(run_dir, *FAST)
    assert code == 0, text
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "defense.parquet", "manifest.json", "measurements.parquet", "my_notes.txt",
        "results.csv", "summary.md"]
    assert {n: (run_dir / n).read_bytes() for n in inputs} == inputs
    # a figures/ folder holding a user's file is refused, not swept away
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "draft.svg").write_text("<svg/>")
    code, text = report(run_dir, *FAST)
    assert code == 2 and "figures/draft.svg" in text, text
    assert (run_dir / "figures" / "draft.svg").is_file()


# --- F5: stop signals ---------------------------------------------------------------------------

SWALLOWED = textwrap.dedent("""
    import gc, os, signal, sys, weakref
    from dimple_stats import interrupts
    from dimple_stats.report.destination import staged_report

    interrupts.install()

    class Figure:
        pass

    def finalizer(ref):
        # The signal's exception is raised here, in a weakref callback: Python prints
        # "Exception ignored" and drops it, as when it lands while matplotlib cleans up.
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass

    with staged_report(sys.argv[1]) as staging:
        (staging / "summary.md").write_text("new")
        figure = Figure()
        keep = weakref.ref(figure, finalizer)
        del figure
        gc.collect()
        print("went on after the signal", flush=True)
""")


def test_a_signal_dropped_in_a_weakref_callback_still_stops_the_swap(
        run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert report(run_dir, "--out", out, *FAST)[0] == 0
    before = tree(out)
    done = subprocess.run([sys.executable, "-c", SWALLOWED, str(out)], capture_output=True,
                          text=True, timeout=120)
    assert "Exception ignored" in done.stderr  # the exception really was dropped
    assert "went on after the signal" in done.stdout
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert tree(out) == before  # the old report stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]  # no staging left


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM])
def test_a_stop_signal_mid_render_leaves_no_staging_and_a_nonzero_exit(
        run_dir: Path, tmp_path: Path, signum: int) -> None:
    out = tmp_path / "out"
    assert report(run_dir, "--out", out, *FAST)[0] == 0
    before = tree(out)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, "-m", "dimple_stats", "report", str(run_dir),
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    # Wait until the render has begun (its staging folder exists), then stop it.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()):
            break
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # finished before the signal: the new report is whole
        assert (out / "report.html").is_file()
    else:
        assert proc.returncode == 128 + signum, err
        assert "Traceback" not in err, err
        assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]
    assert pd.read_csv(out / "results.csv").shape[0] > 0


# --- F8: tables no measurement can produce: exit 2 naming the column, no traceback -----------

@pytest.mark.parametrize("column, value, words", [
    ("k", 70, "0 < k < n"), ("k", 0, "0 < k < n"), ("norm_plain", 0.0, "must be > 0"),
    ("label", -7, "class index >= 0"), ("norm_off", 1e6, "must be at most 'eps_off'")])
def test_impossible_values_exit_2_naming_the_column(run_dir: Path, column: str, value: float,
                                                     words: str) -> None:
    table = read_measurements(run_dir / "measurements.parquet")
    table.loc[table.index[:3], column] = value
    write_measurements(table, run_dir / "measurements.parquet")
    code, text = report(run_dir, *FAST)
    assert code == 2 and words in text and f"'{column}'" in text, text
    assert "Traceback" not in text and "Warning" not in text


def test_a_run_with_no_rows_exits_2(run_dir: Path) -> None:
    for name, kind in (("measurements.parquet", "measurements"), ("defense.parquet", "defense")):
        table = read_measurements(run_dir / name, kind)  # type: ignore[arg-type]
        write_measurements(table.iloc[:0], run_dir / name, kind)  # type: ignore[arg-type]
    code, text = report(run_dir, *FAST)
    assert code == 2 and "no rows" in text, text


def test_a_stop_signal_during_the_swap_waits_for_it(tmp_path: Path, monkeypatch) -> None:
    """SIGTERM between the swap's renames once left the finished report as .NAME.tmp-* and
    the old one half-deleted as .NAME.old-* (issue 32, row 23): it is now held until the swap
    is done, then stops the command, and only the new report is left."""
    import os
    import signal

    from dimple_stats import interrupts
    from dimple_stats.report.destination import mark_rendered, staged_report

    out = tmp_path / "rep"
    out.mkdir()
    (out / "results.csv").write_text("old\n")
    mark_rendered(out, "somewhere")
    rename = os.rename

    def rename_then_signal(src, dst):  # the signal lands right after the first rename
        rename(src, dst)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS}
    interrupts.install()
    try:
        with pytest.raises(SystemExit) as stopped:
            with staged_report(out) as staging:
                (staging / "results.csv").write_text("new\n")
                mark_rendered(staging, "somewhere")
                monkeypatch.setattr(os, "rename", rename_then_signal)
        assert stopped.value.code == 128 + signal.SIGTERM
    finally:
        monkeypatch.setattr(os, "rename", rename)
        for s, handler in previous.items():
            signal.signal(s, handler)
        interrupts._received.clear()
    assert (out / "results.csv").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no .rep.tmp-*, .rep.old-*
