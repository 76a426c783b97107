"""Every table says each row's verdict: results.csv/.md/.tex carry a ``verdict`` column, and a
retained H0 whose CI lies on the other side with a significant reverse test reads
"contradicted" there (it read "retain" in every table before), with the forest marker to match.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dimple_stats.report import write_report
from dimple_stats.report.forest import _decision, _look
from dimple_stats.report.verdicts import row_verdicts, verdicts
from dimple_stats.results import ResultRow, finalise


def _row(ae: str, estimate: float, lo: float, hi: float, p: float, *,
         variant: str = "beta", test: str = "sign test") -> ResultRow:
    return ResultRow("dmm.perpendicular", variant, ae, 0, 60, 0, estimate, lo, hi, 0.05,
                     "median r_T - chance (0 = chance)", 0.1, "r", 1.0, "S", p,
                     "r_T is no smaller than chance", test, "less", null_value=0.0)


def _table() -> pd.DataFrame:
    return finalise([
        _row("a", -0.2, -0.3, -0.1, 1e-6),          # below chance: the claim's side, supported
        _row("b", 0.2, 0.1, 0.3, 1 - 1e-6),         # above chance, reverse test significant
        _row("c", 0.01, -0.05, 0.07, 0.4),          # nothing either way
        ResultRow("dmm.perpendicular", "naive", "d", 0, 60, 0, 0.3, 0.2, 0.4, 0.05, "m",
                  math.nan, "", math.nan, "", math.nan, "(descriptive)", "descriptive", ""),
    ])


#: Each row of _table() then its pooled row (one seed each).
EXPECTED = [w for w in ("supported", "contradicted", "not supported", "descriptive")
            for _ in range(2)]


def test_each_row_reads_in_the_four_verdict_words() -> None:
    table = _table()
    assert list(table["decision"][::2]) == ["reject H0", "retain H0", "retain H0", "descriptive"]
    assert row_verdicts(table) == EXPECTED


def test_the_verdict_column_agrees_with_the_verdicts_in_words() -> None:
    table = finalise([_row("b", 0.2, 0.1, 0.3, 1 - 1e-6)])
    (words,) = verdicts(table)
    assert words.category == row_verdicts(table)[0] == "contradicted"


def test_every_table_file_has_the_verdict(tmp_path: Path) -> None:
    write_report(_table(), None, tmp_path, figures=False, html=False)
    csv = pd.read_csv(tmp_path / "results.csv")
    cols = list(csv.columns)
    assert cols[cols.index("decision") + 1] == "verdict"
    assert list(csv["verdict"]) == EXPECTED
    md = (tmp_path / "results.md").read_text()
    assert "| decision | verdict |" in md and "| retain H0 | contradicted |" in md
    tex = (tmp_path / "results.tex").read_text()
    assert "verdict" in tex and "contrad." in tex and "not supp." in tex


def test_forest_markers_follow_the_verdict() -> None:
    table = _table().assign(verdict=row_verdicts(_table()))
    words = [_decision(r) for _, r in table.iterrows()]
    assert words == EXPECTED
    supported, contradicted, retained = (_look(w, False) for w in words[:6:2])
    assert supported["mfc"] == supported["color"] and retained["mfc"] == "white"
    assert contradicted["color"] not in (supported["color"], retained["color"])
    assert contradicted["mfc"] == contradicted["color"]
    # A table written before the column existed still draws by its decisions.
    old = _table()
    assert [_decision(r) for _, r in old.iterrows()][:6:2] == ["supported", "not supported",
                                                               "not supported"]


def test_a_modelled_norm_row_contradicts_only_without_worst_case_pairs() -> None:
    """Modelled censored pairs are estimates (the row may contradict); pairs with a failed off
    attack sit at the worst case, which biases the estimate low (an independent check: CI upper
    end below 0 in 65% of null tables), so such a row may not contradict."""
    from dimple_stats.claims.rows import WORST_OFF
    from dimple_stats.stats.censored_ratio import MODELLED

    def norm_row(test: str) -> ResultRow:
        return ResultRow("dmm.norm_asymmetry", "beyond_dimension_counting", "plain", 0, 200, 5,
                         -0.3, -0.4, -0.2, 0.05, "m", -0.5, "r", 10.0, "S", 1 - 1e-9, "null",
                         test, "greater", null_value=0.0)

    modelled = f"sign test, censored signs from {MODELLED}"
    assert row_verdicts(finalise([norm_row(modelled)]))[0] == "contradicted"
    assert row_verdicts(finalise([norm_row(modelled + WORST_OFF)]))[0] == "not supported"
    assert row_verdicts(finalise([norm_row("sign test, censored values at their least "
                                           "favourable bound")]))[0] == "not supported"
