"""Progress without a terminal: log lines with elapsed time and ETA, throttled; none when quiet."""

from __future__ import annotations

import re

import pytest

from runners.progress import log_line, mode_of, peak_rss_mb, progress_bar


def _lines(text: str) -> list[str]:
    return [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", ln) for ln in text.splitlines()]


def test_log_mode_writes_the_first_and_last_step_and_throttles_between(capsys) -> None:
    with progress_bar("measure plain (seed 0)", 5, "log") as tick:
        for _ in range(5):
            tick(loss=0.5)
    lines = _lines(capsys.readouterr().err)
    assert lines[0] == "measure plain (seed 0): 0/5"
    assert len(lines) == 2  # five quick steps: one line per 30 s, plus the last
    assert re.fullmatch(r"measure plain \(seed 0\): 5/5 loss 0.5, \d+s elapsed", lines[1])


def test_verbose_mode_writes_every_step_with_an_eta(capsys) -> None:
    with progress_bar("classifier mlp (seed 1)", 3, "verbose") as tick:
        for _ in range(3):
            tick()
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 4
    assert all("ETA" in ln for ln in lines[1:3]) and "ETA" not in lines[3]


def test_a_step_count_cut_short_says_where_it_stopped(capsys) -> None:
    with progress_bar("classifier mlp (seed 0)", 30, "log") as tick:
        for _ in range(7):  # early stopping after 7 of 30 epochs
            tick()
    lines = _lines(capsys.readouterr().err)
    assert re.fullmatch(r"classifier mlp \(seed 0\): stopped at 7/30, \d+s elapsed", lines[-1])


@pytest.mark.parametrize("mode", ["off", False, None])
def test_off_writes_nothing(capsys, mode) -> None:
    with progress_bar("x", 3, mode) as tick:
        tick()
    log_line(mode, "a stage")
    assert capsys.readouterr().err == ""


def test_modes_and_memory() -> None:
    assert mode_of(True) == "bar" and mode_of("verbose") == "verbose"
    with pytest.raises(ValueError, match="progress mode"):
        mode_of("loud")
    assert peak_rss_mb() > 10  # this interpreter with torch loaded: tens of MB at least
