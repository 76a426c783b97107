"""Every committed report under reports/ is reproducible from its own run directory: re-analysing
``manifest.json`` + the measurement tables with today's code gives byte-identical tables.

This is the guarantee the README's results rest on: a change to an analysis that alters a
committed number fails here until the report is re-rendered (``dimple-stats report reports/X``)
and the README checked against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dimple_stats.report.run import report_run

REPORTS = Path(__file__).resolve().parents[2] / "reports"
RUN_DIRS = sorted(p.parent for p in REPORTS.glob("*/manifest.json"))


def test_there_are_committed_reports() -> None:
    assert {"quickstart", "synthetic_known_manifold"} <= {p.name for p in RUN_DIRS}


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=lambda p: p.name)
def test_committed_report_rerenders_identically(run_dir: Path, tmp_path: Path) -> None:
    report_run(run_dir, tmp_path, figures=False)
    for name in ("results.csv", "results.md", "results.tex", "summary.md"):
        committed = run_dir / name
        assert committed.is_file(), f"{committed} is missing"
        assert (tmp_path / name).read_bytes() == committed.read_bytes(), (
            f"{committed} differs from a fresh `dimple-stats report {run_dir.name}`")


def test_readme_quotes_the_mnist_summary_as_generated() -> None:
    """The verdicts the README shows are the committed summary.md's, line for line."""
    readme = (REPORTS.parent / "README.md").read_text()
    start, end = "<!-- summary:mnist_offmanifold -->", "<!-- /summary:mnist_offmanifold -->"
    quoted = readme.split(start)[1].split(end)[0].strip().splitlines()
    summary = (REPORTS / "mnist_offmanifold" / "summary.md").read_text().splitlines()
    assert quoted == [ln for ln in summary if ln.startswith("- **")]


SWEEPS = [p for p in RUN_DIRS if "sweep" in json.loads((p / "manifest.json").read_text())]


def test_the_multiverse_reports_are_committed() -> None:
    assert {"multiverse_digits", "multiverse_mnist"} <= {p.name for p in SWEEPS}


@pytest.mark.parametrize("run_dir", SWEEPS, ids=lambda p: p.name)
def test_a_committed_sweep_shows_each_claims_specification_curve(run_dir: Path) -> None:
    import pandas as pd

    results = pd.read_csv(run_dir / "results.csv")
    html = (run_dir / "report.html").read_text()
    summary = (run_dir / "summary.md").read_text()
    for claim in results.loc[results["decision"].isin(["reject H0", "retain H0"]), "claim"].unique():
        assert (run_dir / "figures" / f"spec_curve_{claim.replace('.', '_')}.png").is_file()
        assert f"Specification curve of {claim}" in html
        assert f"**{claim}**: supported in " in summary
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cells = manifest["sweep"]["cells"]
    assert sorted(results["cell"].unique()) == [c["cell"] for c in cells]


def test_a_rerendered_sweep_names_the_correction_it_was_adjusted_with(tmp_path: Path) -> None:
    """`dimple-stats report --correction fdr_bh --alpha 0.1` re-adjusts the p-values, and the
    prose that explains them says so (it once kept naming the protocol file's Holm)."""
    import pandas as pd

    run_dir = REPORTS / "multiverse_mnist"  # the smaller sweep: half the re-analysis time
    committed = (run_dir / "summary.md").read_text()
    assert "(correction: holm)" in committed and "alpha = 0.05" in committed
    results, _ = report_run(run_dir, tmp_path, correction="fdr_bh", alpha=0.1, figures=False,
                            html=False)
    for name in ("summary.md", "results.md"):
        text = (tmp_path / name).read_text()
        assert "(correction: fdr_bh)" in text and "alpha = 0.1" in text
        assert "(correction: holm)" not in text
    holm = pd.read_csv(run_dir / "results.csv")
    tested = holm["p_adj"].notna().to_numpy()
    assert (results["p_adj"].notna().to_numpy() == tested).all()
    bh, hm = results["p_adj"].to_numpy()[tested], holm["p_adj"].to_numpy()[tested]
    # BH never adjusts above Holm (m p_(i) / i <= (m - i + 1) p_(i)); here it is below somewhere
    assert (bh <= hm + 1e-12).all() and (bh < hm - 1e-9).any()


def test_every_committed_run_names_one_clean_commit_of_this_history() -> None:
    """A report is only reproducible from the commit its manifest names: that commit must be
    clean (no uncommitted edits) and in main's history."""
    import shutil
    import subprocess

    root = REPORTS.parent
    git = shutil.which("git")
    for run_dir in RUN_DIRS:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        commit = manifest["git_commit"]
        assert manifest["git_dirty"] is False, f"{run_dir.name} ran from a dirty tree"
        assert len(commit) == 40, f"{run_dir.name}: no commit recorded"
        if git and (root / ".git").exists():
            known = subprocess.run([git, "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"],
                                   capture_output=True)
            if known.returncode == 0:  # a shallow clone may lack old commits: nothing to check
                ancestor = subprocess.run(
                    [git, "-C", str(root), "merge-base", "--is-ancestor", commit, "HEAD"])
                assert ancestor.returncode == 0, f"{run_dir.name}: {commit} is not in HEAD's history"


def test_the_committed_comparison_is_the_reports_own() -> None:
    """reports/compare/ is `dimple-stats compare` over the committed reports it names, as they
    are now: a re-run report that changes a verdict or an estimate fails here until it is
    regenerated."""
    from dimple_stats.report.compare import compare_markdown, compare_runs

    committed = (REPORTS / "compare" / "compare.md").read_text()
    names = committed.split("Reports: ", 1)[1].split(".\n", 1)[0].split(", ")
    assert {"mnist_offmanifold", "fashion_mnist_offmanifold", "plain_vs_isometric"} <= set(names)
    assert compare_markdown(compare_runs([REPORTS / n for n in names])) == committed


_DECIMAL = r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?(?![\d.])"
_TOKEN = r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
# Numbers README Results quotes from the literature, not from a run (REFERENCES.md: the
# reproduction's published medians of on/plain, off/plain and on/off norm ratios on MNIST).
_PUBLISHED = {"2.89", "1.10", "2.68"}


def _report_numbers(run_dir: Path) -> tuple[set[str], list[float]]:
    """What a README number may be: a number as written in the report's prose (summary,
    attacks, the notes of results.md), or a rounding of a pooled row's estimate, CI, adjusted p
    or effect size, a model's reconstruction error or accuracy, or the run's wall time."""
    import csv
    import re

    written: set[str] = set()
    for name in ("summary.md", "attacks.md"):
        if (run_dir / name).is_file():
            written |= set(re.findall(_TOKEN, (run_dir / name).read_text()))
    notes = [ln for ln in (run_dir / "results.md").read_text().splitlines() if ln.startswith("- ")]
    written |= set(re.findall(_TOKEN, "\n".join(notes)))
    values: list[float] = []
    with open(run_dir / "results.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["seed"] == "pooled":
                for key in ("estimate", "ci_low", "ci_high", "p_adj", "effect_size"):
                    if row.get(key) not in (None, ""):
                        values.append(float(row[key]))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    values.append(float(manifest["total_seconds"]))
    for model in manifest.get("models", []):
        values += [float(model[k]) for k in ("recon_vs_mean", "test_accuracy") if k in model]
    return written, values


def _is_rounding_of(number: str, values: list[float]) -> bool:
    mantissa, _, exponent = number.partition("e")
    half = 0.5 * 10.0 ** (-len(mantissa.split(".")[1]) + (int(exponent) if exponent else 0))
    x = float(number)
    return any(abs(v - x) <= half * (1 + 1e-9) for v in values)


def test_every_number_in_readme_results_is_in_the_reports_it_names() -> None:
    """Each decimal number in README "Results" is found in a report its subsection names (any
    single-run report where it names none): written there as is, or a rounding of a reported
    value. Checked per subsection so a number cannot be matched by an unrelated report."""
    import re

    readme = (REPORTS.parent / "README.md").read_text()
    results = readme.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    reports = {p.name: _report_numbers(p) for p in RUN_DIRS}
    single = sorted(n for n in reports if n not in {p.name for p in SWEEPS})
    missing = []
    for section in results.split("\n### "):
        named = [n for n in reports if re.search(rf"\b{n}\b", section)] or single
        written = set().union(*(reports[n][0] for n in named))
        values = [v for n in named for v in reports[n][1]]
        for number in sorted(set(re.findall(_DECIMAL, section))):
            if number in written or number in _PUBLISHED or _is_rounding_of(number, values):
                continue
            missing.append(f"{section.splitlines()[0][:40]!r}: {number}")
    assert len(re.findall(_DECIMAL, results)) > 150  # the section quotes numbers at all
    assert not missing, "README Results quotes numbers no named report holds:\n" + "\n".join(missing)


def test_the_number_check_catches_a_number_no_report_holds() -> None:
    written, values = _report_numbers(REPORTS / "mnist_offmanifold")
    assert "0.406" in written  # the pooled r_T - r_R as the summary writes it
    assert _is_rounding_of("1.633", values) and _is_rounding_of("1.63", values)  # on/plain
    assert not _is_rounding_of("1.632", values) and "1.632" not in written


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=lambda p: p.name)
def test_no_committed_ci_excludes_the_null_beside_a_retained_verdict(run_dir: Path) -> None:
    """Issue 31, row 2: a pooled CI is drawn at the level its decision used, so a CI that lies
    on the claim's side of the null beside "retain H0" cannot appear without its reason in the
    note (quickstart had five; the exact McNemar test on few discordant pairs is the one
    remaining reason)."""
    import pandas as pd

    res = pd.read_csv(run_dir / "results.csv")
    pooled = res[(res["seed"].astype(str) == "pooled") & res["decision"].eq("retain H0")]
    bad = []
    for _, r in pooled.iterrows():
        lo, hi, null = r["ci_low"], r["ci_high"], r["null_value"]
        if r["alternative"] == "equivalence" or pd.isna(null):
            continue
        side = {"less": hi < null, "greater": lo > null,
                "two-sided": hi < null or lo > null}.get(r["alternative"], False)
        if side and "CI and test disagree" not in str(r["note"]):
            bad.append(f"{r['claim']} / {r['variant']} / {r['autoencoder']}: "
                       f"[{lo:.4g}, {hi:.4g}] at {r['ci_level']:.4g} vs {null:g}")
    assert bad == []


#: How a row says its censored norms entered: through the fitted norm model, at a bound, or as
#: the interval the median is identified in.
_CENSORING_SAID = ("bivariate log-normal model", "least favourable", "median lies in",
                   "their medians are bounds", "worst-case bound", "at least", "at most")


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=lambda p: p.name)
def test_no_committed_row_shows_a_censored_norm_as_observed(run_dir: Path) -> None:
    """Issue 31, row 8: a failed attack's norm is only a bound, so a norm-claim row (per seed or
    pooled) with censored pairs and an estimate must say how they entered. Claims whose
    "censored" count is the outcome itself (a success rate, robust accuracy) are exempt: their
    estimates use it as observed, correctly. The pooled Fashion-MNIST plain and MNIST IRVAE
    rows failed this (their seed 0 was uncensored, so the pool took its test text)."""
    import pandas as pd

    from dimple_stats.results import CENSORING_SENSITIVE

    res = pd.read_csv(run_dir / "results.csv")
    rows = res[res["claim"].isin(CENSORING_SENSITIVE) & (res["n_censored"] > 0)
               & res["estimate"].notna()]
    text = rows["test"].fillna("") + " | " + rows["note"].fillna("")
    said = text.apply(lambda t: any(s in t for s in _CENSORING_SAID))
    bad = [f"{r.claim} / {r.variant} / {r.autoencoder} / seed {r.seed}: {r.n_censored} censored"
           for r in rows[~said].itertuples()]
    assert bad == []


@pytest.mark.parametrize("run_dir", SWEEPS, ids=lambda p: p.name)
def test_a_committed_sweep_table_says_each_rows_verdict(run_dir: Path) -> None:
    """Issue 31 item 7: results.csv of a sweep carries the verdict column too, each row read in
    its sweep family, and its pooled readings are the ones the summary counts per null."""
    import pandas as pd

    from dimple_stats.report.robustness import robustness

    res = pd.read_csv(run_dir / "results.csv", dtype={"seed": str})
    assert "verdict" in res.columns
    rob = {r.claim: r for r in robustness(res.drop(columns=["verdict"]))}
    pooled = res[(res["seed"] == "pooled") & (res["claim"] == "dmm.perpendicular")]
    counted = {variant: dict(g["verdict"].value_counts())
               for variant, g in pooled.groupby("variant")}
    assert sorted(map(sorted, (c.items() for c in counted.values()))) == sorted(
        map(sorted, (c.items() for c in rob["dmm.perpendicular"].by_null.values())))
