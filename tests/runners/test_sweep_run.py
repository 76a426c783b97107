"""`dimple-stats run` over a sweep: cells, stages shared through the store, grid-wide Holm,
the claim over classifier pairs, re-rendering, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from dimple_stats.protocol import load_protocol_text
from dimple_stats.sweep import CELL, SPECIFICATION
from runners.pipeline import run_protocol
from runners.store import ArtifactStore

SWEPT = """\
name: tiny_sweep
dataset: {name: synthetic, latent_dim: 3, image_shape: [1, 6, 6], hidden: 16, num_classes: 2,
          train_samples: 300, eval_samples: 24, pixel_range: [-1, 1]}
classifier: {arch: mlp, hidden: [32], epochs: 3}
autoencoders:
  plain: {arch: mlp, latent_dim: 3, hidden: [32], epochs: 40, lr: 0.003, patience: null}
attack:
  base: image  # this test is about attacks at the image itself
  on_manifold: tangent
  eps: {plain: 4, on: 6, off: 6}
  step: {plain: 0.1, on: 0.2, off: 0.1}
  steps: {plain: 40, on: 40, off: 60}
  batch_size: 16
tangent: {method: dense, dtype: float64}
claims:
  - dmm.perpendicular: {null: random_subspace}
  - dmm.perpendicular: {null: pca}
  - dmm.dimpled_or_robust
seeds: [0, 1]
sweep:
  grid:
    autoencoders.plain.latent_dim: [2, 3]
    classifier.adversarial: [null, {eps: 0.5, steps: 3}]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    outcome = run_protocol(load_protocol_text(SWEPT), store_root=root / "store",
                           out_dir=root / "report", executor="local")
    return root, outcome


@pytest.mark.slow
def test_every_cell_and_seed_is_measured_and_each_model_trained_once(swept) -> None:
    root, outcome = swept
    m = outcome.measurements
    assert sorted(m[CELL].unique()) == [0, 1, 2, 3]
    assert sorted(map(tuple, m[[CELL, "seed"]].drop_duplicates().to_numpy())) == [
        (c, s) for c in range(4) for s in (0, 1)]
    sweep = outcome.manifest["sweep"]
    assert [c["choices"] for c in sweep["cells"]] == [
        {"autoencoders.plain.latent_dim": k, "classifier.adversarial": adv}
        for k in (2, 3) for adv in (None, {"eps": 0.5, "steps": 3})]
    # 2 classifiers (standard, adversarial) and 2 autoencoders (k = 2, 3) per seed: each trained
    # once, although four cells use each classifier twice and each autoencoder twice.
    store = ArtifactStore(root / "store")
    assert len(list(store.keys("train_classifier"))) == 4
    assert len(list(store.keys("train_autoencoder"))) == 4
    assert sweep["distinct_models"] == 8 and sweep["models_trained"] == 8
    models = outcome.manifest["models"]
    assert sum(r["model"] == "classifier" for r in models) == 4
    assert all(not r["loaded"] for r in models)
    # The cells' own runs loaded every model: nothing was trained twice.
    assert sweep["cell_models_trained"] == 0
    assert set(outcome.manifest["timings"]) == {f"{c}/{s}" for c in range(4) for s in (0, 1)}


@pytest.mark.slow
def test_grid_wide_holm_within_each_claim_matches_statsmodels(swept) -> None:
    _, outcome = swept
    r = outcome.results
    assert {SPECIFICATION, CELL, "autoencoders.plain.latent_dim", "classifier.adversarial",
            "p_adj_cell"} <= set(r.columns)
    tested = r[r["decision"].isin(["reject H0", "retain H0"])]
    assert len(tested) > 10
    # within each claim, the pooled rows (verdicts) and the per-seed rows (replications) are
    # two families
    pooled = tested["seed"].astype(str) == "pooled"
    for _, g in tested.groupby([tested["claim"], pooled]):
        expected = multipletests(g["p"].to_numpy(float), method="holm")[1]
        np.testing.assert_allclose(g["p_adj"].to_numpy(float), expected, rtol=1e-12)
        assert ((g["p_adj"] <= 0.05) == (g["decision"] == "reject H0")).all()

    # each cell's dmm.perpendicular rows and each pair's dimpled_or_robust rows are present
    perp = r[r["claim"] == "dmm.perpendicular"]
    assert perp[CELL].nunique() == 4
    pairs = r[r["claim"] == "dmm.dimpled_or_robust"]
    assert sorted(pairs[CELL].unique()) == [1, 3]  # keyed by the adversarial cell of each pair
    assert set(pairs["variant"]) == {"unchanged", "unchanged_vs_pca",
                                     "unchanged_vs_data_random"}
    assert pairs["classifier.adversarial"].str.startswith("none vs ").all()


@pytest.mark.slow
def test_pairs_compare_the_same_images_under_both_classifiers(swept) -> None:
    """The claim over pairs, recomputed here with pandas and scipy from the measurements."""
    from scipy.stats import binomtest

    _, outcome = swept
    m, r = outcome.measurements, outcome.results
    std = m[(m[CELL] == 0) & (m["seed"] == 0)].set_index("sample")
    adv = m[(m[CELL] == 1) & (m["seed"] == 0)].set_index("sample")
    both = std.index.intersection(adv.index)
    # the same sample index is the same image in both cells (same seed, same split)
    assert (std.loc[both, "image_id"] == adv.loc[both, "image_id"]).all()
    d = adv.loc[both, "r_T"] - std.loc[both, "r_T"]
    row = r[(r["claim"] == "dmm.dimpled_or_robust") & (r[CELL] == 1) & (r["seed"] == 0)
            & (r["variant"] == "unchanged")].iloc[0]
    assert row["n"] == len(both)
    assert row["estimate"] == pytest.approx(float(np.median(d)))
    # the default test: the exact sign test of the median (two-sided)
    signs = np.sign(d.to_numpy())
    assert row["p"] == pytest.approx(
        binomtest(int((signs > 0).sum()), int((signs != 0).sum()), 0.5).pvalue, rel=1e-6)


@pytest.mark.slow
def test_report_rerenders_identically_with_spec_curves_in_html(swept, tmp_path: Path) -> None:
    from dimple_stats.report.run import report_run

    root, _ = swept
    report = root / "report"
    before = {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()}
    figures = sorted(p.name for p in (report / "figures").iterdir())
    assert figures == ["spec_curve_dmm_dimpled_or_robust.pdf", "spec_curve_dmm_dimpled_or_robust.png",
                       "spec_curve_dmm_perpendicular.pdf", "spec_curve_dmm_perpendicular.png"]
    report_run(report)
    after = {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()}
    assert before == after
    html = (report / "report.html").read_text()
    assert "Specification curve of dmm.perpendicular" in html
    assert "Specification curve of dmm.dimpled_or_robust" in html
    summary = (report / "summary.md").read_text()
    assert "specifications" in summary and "dmm.dimpled_or_robust" in summary


@pytest.mark.slow
def test_sigkill_during_a_sweep_then_resume(swept, tmp_path: Path) -> None:
    _, outcome = swept
    protocol_file = tmp_path / "sweep.yaml"
    protocol_file.write_text(SWEPT)
    store = ArtifactStore(tmp_path / "store")
    args = [sys.executable, "-m", "dimple_stats", "run", str(protocol_file), "--store",
            str(store.root), "--out", str(tmp_path / "report")]
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(list(store.keys("measure"))) < 2:
            if proc.poll() is not None:
                pytest.fail(f"the run finished before it could be killed (exit "
                            f"{proc.returncode}): {log.read_text()[-2000:]}")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = {str(k): store.meta(k)["created"] for k in store.keys("measure")}
    assert 2 <= len(done) < 8
    assert not (tmp_path / "report" / "results.csv").exists()
    rerun = subprocess.run(args, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    after = {str(k): store.meta(k)["created"] for k in store.keys("measure")}
    assert {k: after[k] for k in done} == done  # finished cells were reused, not redone
    assert len(after) == 8
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["sweep"]["models_trained"] == 0  # every model came from the first attempt
    resumed = pd.read_parquet(tmp_path / "report" / "measurements.parquet")
    pd.testing.assert_frame_equal(resumed, outcome.measurements, check_exact=True)
    assert (tmp_path / "report" / "results.csv").read_bytes() == \
        (Path(outcome.out_dir) / "results.csv").read_bytes()
