"""`dimple-stats run` end to end: report files, executors, resume after SIGKILL, offline errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dimple_stats.cli import app
from dimple_stats.protocol import load_protocol_text
from runners.pipeline import run_protocol
from runners.store import ArtifactStore

TINY = """\
name: tiny
dataset: {name: digits, eval_samples: 40, pixel_range: [-1, 1]}
classifier: {arch: mlp, hidden: [64], epochs: 4}
autoencoders:
  plain: {arch: mlp, latent_dim: 8, hidden: [64], epochs: 10}
  isometric:
    {arch: mlp, latent_dim: 8, hidden: [64], epochs: 10, regulariser: {kind: isometric, weight: 0.1}}
attack:
  eps: {plain: 4, on: 8, off: 8}
  step: {plain: 0.1, on: 0.3, off: 0.1}
  steps: {plain: 40, on: 60, off: 60}
  batch_size: 16
tangent: {method: dense, dtype: float64}
claims:
  - dmm.perpendicular: {null: random_subspace}
  - dmm.perpendicular: {null: beta}
  - dmm.norm_asymmetry
  - dmm.off_succeeds_more
  - zp.not_below_random
  - iso.plain_vs_isometric
  - ae.validity
seeds: [0, 1]
"""


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    protocol = load_protocol_text(TINY)
    outcome = run_protocol(protocol, store_root=root / "store", out_dir=root / "report",
                           executor="local")
    return root, outcome


def test_end_to_end_writes_every_report_file(local_run) -> None:
    root, outcome = local_run
    report = root / "report"
    for name in ("results.csv", "results.tex", "results.md", "measurements.parquet",
                 "manifest.json"):
        assert (report / name).is_file(), name
    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert "r_T_vs_r_R.png" in figures and "norm_on_off_vs_dimension_counting.png" in figures
    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["protocol_hash"] == load_protocol_text(TINY).hash
    assert manifest["seeds"] == [0, 1]
    for key in ("versions", "machine", "timings", "git_commit", "git_dirty"):
        assert key in manifest
    assert "torch" in manifest["versions"]
    assert set(manifest["timings"]["0"]) >= {"train_classifier", "measure[plain]"}


def test_results_have_a_row_per_claim_autoencoder_seed_plus_pooled(local_run) -> None:
    _, outcome = local_run
    results = pd.read_csv(Path(outcome.out_dir) / "results.csv")
    tested = results[results["decision"].isin(["reject H0", "retain H0"])]
    perp = tested[(tested["claim"] == "dmm.perpendicular")
                  & (tested["variant"] == "random_subspace")]
    assert sorted(perp["seed"].astype(str)) == ["0", "0", "1", "1", "pooled", "pooled"]
    assert set(perp["autoencoder"]) == {"plain", "isometric"}
    for claim in ("dmm.norm_asymmetry", "dmm.off_succeeds_more", "zp.not_below_random",
                  "iso.plain_vs_isometric", "ae.validity"):
        assert claim in set(tested["claim"]), claim
    assert tested["p"].between(0, 1).all() and tested["p_adj"].between(0, 1).all()
    assert (tested["p_adj"] >= tested["p"] - 1e-12).all()
    # A CI is finite unless censored values make it a bound (an unbounded side is honest there).
    finite = tested[["ci_low", "ci_high"]].map(math.isfinite).all(axis=1)
    assert (finite | (tested["n_censored"] > 0)).all()
    assert tested[["ci_low", "ci_high"]].notna().all().all()


def test_measurements_keep_censored_rows_and_pair_samples(local_run) -> None:
    _, outcome = local_run
    m = outcome.measurements
    kept = m["base_ok"]
    for mode in ("plain", "on", "off"):
        failed = m[~m[f"success_{mode}"] & kept]
        assert (failed[f"norm_{mode}"] == failed[f"eps_{mode}"]).all()
        # a base point the classifier already gets wrong has no norm (excluded, not censored)
        assert m.loc[~kept, f"norm_{mode}"].isna().all()
    # The same images are measured under every autoencoder (paired claims need it).
    by_ae = {ae: set(zip(g["seed"], g["sample"])) for ae, g in m.groupby("autoencoder")}
    assert by_ae["plain"] == by_ae["isometric"] and len(by_ae["plain"]) > 20


def test_measurements_say_what_on_and_off_are_and_carry_controls(local_run) -> None:
    _, outcome = local_run
    m = outcome.measurements
    on, off = m[m["success_on"]], m[m["success_off"]]
    assert len(off) > 20 and len(on) > 20
    # attack.on_manifold latent (default): curved, mostly but not exactly in the tangent plane
    # at D(z*); its decoded-curve length is at least its chord; the off attack strictly in T-perp
    assert on["in_T_on"].between(0.3, 1.0 + 1e-9).all() and on["in_T_on"].median() > 0.9
    assert (off["in_T_off"] <= 1e-3).all()
    assert (on["path_on"] >= on["norm_on"] * (1 - 1e-5)).all() and m["measurable_on"].all()
    for col in ("r_PCA", "r_Rdata"):  # data-shaped controls measured for every attacked row
        assert m.loc[m["base_ok"], col].between(0, 1).all(), col
    assert m["r_T_grad_other"].notna().sum() > 20
    # attack.base manifold: z* is nearer to x than E(x)'s decoding
    assert (m["base_err"] <= m["recon_err"] * (1 + 1e-6)).all() and m["base_converged"].any()
    # image_id: the index in scikit-learn's 1,797 digits (each seed draws its own eval set).
    ids = {seed: set(g["image_id"]) for seed, g in m.groupby("seed")}
    assert ids[0] != ids[1] and max(ids[0] | ids[1]) < 1797
    assert (m.groupby(["seed", "sample"])["image_id"].nunique() == 1).all()


def test_a_strict_shard_outside_its_subspace_stops_the_run(tmp_path: Path, monkeypatch) -> None:
    # The real check with an unattainable threshold: the run must stop with exit 1, name the
    # shard and publish nothing for it (a resumed run must not load a shard that failed).
    import runners.measure

    monkeypatch.setattr(runners.measure, "IN_T_ON_MIN", 1.5)
    protocol_file = tmp_path / "p.yaml"
    protocol_file.write_text(TINY.replace("eps: {plain: 4, on: 8, off: 8}",
                                          "eps: {plain: 4, on: 20, off: 20}"))
    store = ArtifactStore(tmp_path / "store")
    result = CliRunner().invoke(app, ["run", str(protocol_file), "--store", str(store.root),
                                      "--out", str(tmp_path / "report"), "--seeds", "0",
                                      "--set", "attack.on_manifold=tangent",
                                      "--set", "attack.base=image"])
    assert result.exit_code == 1, result.output
    assert "seed 0, autoencoder 'plain', measurement shard 0" in result.output
    assert "median in_T_on" in result.output
    assert not list(store.root.rglob("measurements.parquet"))
    assert not (tmp_path / "report").exists()


def test_report_rerenders_identically(local_run) -> None:
    root, outcome = local_run
    report = Path(outcome.out_dir)
    before = {p.name: p.read_bytes() for p in report.glob("results.*")}
    result = CliRunner().invoke(app, ["report", str(report)])
    assert result.exit_code == 0, result.output
    assert before == {p.name: p.read_bytes() for p in report.glob("results.*")}


@pytest.mark.slow
def test_executors_give_identical_measurements(local_run, tmp_path: Path) -> None:
    import shutil

    root, outcome = local_run
    reference = outcome.measurements
    protocol = load_protocol_text(TINY)
    for executor in ("processes", "ray"):
        # The trained models are the local run's (training is not what differs by executor);
        # every measurement shard is removed, so each executor measures all of them itself.
        store = ArtifactStore(shutil.copytree(root / "store", tmp_path / executor / "store"))
        for key in list(store.keys()):
            if key.stage not in ("train_classifier", "train_autoencoder"):
                store.remove(key)
        other = run_protocol(protocol, store_root=store.root,
                             out_dir=tmp_path / executor / "report", executor=executor)
        pd.testing.assert_frame_equal(other.measurements, reference, check_exact=True)
        assert other.manifest["shards"]["0"]["computed"] > 0  # really recomputed, not loaded


def _measure_keys(store: ArtifactStore) -> dict[str, str]:
    return {str(k): store.meta(k)["created"] for k in store.keys("measure")}


@pytest.mark.slow
def test_sigkill_during_measurement_then_resume(local_run, tmp_path: Path) -> None:
    root, outcome = local_run
    protocol_file = tmp_path / "tiny.yaml"
    protocol_file.write_text(TINY)
    store = ArtifactStore(tmp_path / "store")
    args = [sys.executable, "-m", "dimple_stats", "run", str(protocol_file), "--store",
            str(store.root), "--out", str(tmp_path / "report")]
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(True for _ in store.keys("measure")):
            if proc.poll() is not None:
                pytest.fail("the run finished before any shard could be observed "
                            f"(exit {proc.returncode}): {log.read_text()[-2000:]}")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = _measure_keys(store)
    assert finished, "no measurement shard was published before the kill"
    assert not (tmp_path / "report" / "results.csv").exists()  # it really was interrupted
    total_shards = sum(s["computed"] + s["loaded"] for s in outcome.manifest["shards"].values())
    assert len(finished) < total_shards

    rerun = subprocess.run(args, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    after = _measure_keys(store)
    # Finished shards were reused, not rewritten: same keys, same creation stamps.
    assert {k: after[k] for k in finished} == finished
    assert len(after) == total_shards
    resumed = pd.read_parquet(tmp_path / "report" / "measurements.parquet")
    pd.testing.assert_frame_equal(resumed, outcome.measurements, check_exact=True)
    assert (tmp_path / "report" / "results.csv").read_bytes() == \
        (Path(outcome.out_dir) / "results.csv").read_bytes()


def test_missing_dataset_exits_2_and_leaves_the_store_intact(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    key = store.key("train_classifier", {"something": "finished earlier"})
    with store.writer(key) as w:
        w.save_json("metrics.json", {"test_accuracy": 0.9})
    protocol_file = tmp_path / "p.yaml"
    protocol_file.write_text(TINY.replace(
        "{name: digits, eval_samples: 40, pixel_range: [-1, 1]}",
        f"{{name: mnist, root: {tmp_path / 'nowhere'}, download: false}}"))
    result = CliRunner().invoke(app, ["run", str(protocol_file), "--store", str(store.root),
                                      "--out", str(tmp_path / "report")])
    assert result.exit_code == 2
    assert "train-images-idx3-ubyte" in result.output and "nowhere" in result.output
    assert store.has(key) and store.load_json(key, "metrics.json") == {"test_accuracy": 0.9}
    assert not (tmp_path / "report").exists()


def test_every_catalogue_claim_has_a_producer() -> None:
    from dimple_stats.claims.catalogue import CATALOGUE
    from runners.pipeline import check_supported

    listed = TINY.split("claims:\n", 1)[1]
    text = TINY.replace("  - ae.validity\n", "".join(f"  - {c}\n" for c in CATALOGUE
                                                    if f"  - {c}" not in listed))
    # dmm.dimpled_or_robust reads a sweep's classifier pairs
    text += "sweep: {grid: {classifier.adversarial: [null, {eps: 0.5}]}}\n"
    check_supported(load_protocol_text(text))  # raises UnsupportedClaimError if one is refused


def test_claims_without_a_producer_are_refused_before_compute(tmp_path: Path,
                                                               monkeypatch) -> None:
    # No built-in claim lacks a producer; the guard stays for claims whose table has no stage.
    from runners.stages import STAGES

    protocol_file = tmp_path / "p.yaml"
    protocol_file.write_text(TINY.replace("  - ae.validity\n", "  - ae.validity\n  - iso.defense\n"))
    stage = STAGES.unregister("defense")
    try:
        result = CliRunner().invoke(app, ["run", str(protocol_file), "--store",
                                          str(tmp_path / "s")])
    finally:
        STAGES.register("defense", stage)
    assert result.exit_code == 2 and "iso.defense" in result.output
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_collapsed_autoencoder_stops_the_run_and_keeps_the_store(tmp_path: Path) -> None:
    # lr 10 saturates the decoder's output sigmoid at once: reconstructions no better than the
    # mean image (the failure of the reproduction's wide MNIST conv AE at lr 1e-3).
    protocol_file = tmp_path / "p.yaml"
    protocol_file.write_text(TINY.replace(
        "plain: {arch: mlp, latent_dim: 8, hidden: [64], epochs: 10}",
        "plain: {arch: mlp, latent_dim: 8, hidden: [64], epochs: 2, lr: 10.0}"))
    store = ArtifactStore(tmp_path / "store")
    result = CliRunner().invoke(app, ["run", str(protocol_file), "--store", str(store.root),
                                      "--out", str(tmp_path / "report"), "--seeds", "0"])
    assert result.exit_code == 1, result.output
    assert "autoencoder 'plain' (seed 0) collapsed" in result.output
    assert "autoencoders.plain.lr (now 10)" in result.output
    # The trained models stay in the store (a rerun with a fixed lr retrains only the AE) and
    # no report is written from meaningless tangent spaces.
    stages = {p.parent.parent.name for p in store.root.rglob("metrics.json")}
    assert {"train_classifier", "train_autoencoder"} <= stages, stages
    assert not (tmp_path / "report").exists()


def test_collapse_check_passes_trained_and_legacy_metrics() -> None:
    from dimple_stats.protocol.schema import AutoencoderConfig
    from runners.training import CollapsedAutoencoderError, check_not_collapsed

    config = AutoencoderConfig(arch="mlp", latent_dim=8)
    check_not_collapsed("plain", 0, config, {"recon_vs_mean": 0.2})
    check_not_collapsed("plain", 0, config, {"recon_mse": 0.1})  # stored before the metric
    with pytest.raises(CollapsedAutoencoderError, match="1.03x"):
        check_not_collapsed("plain", 3, config, {"recon_vs_mean": 1.03, "recon_mse": 0.27})
