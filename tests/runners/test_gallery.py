"""The example gallery of a real run (scikit-learn's 8x8 digits): what the shards keep, what the
run directory holds, and that every stored number is what the stored models give."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dimple_stats.gallery import ARRAYS, COLUMNS, QUANTILES, image, read_gallery
from dimple_stats.protocol import load_protocol_text
from dimple_stats.report.run import report_run
from runners.pipeline import run_protocol
from runners.store import ArtifactStore

pytestmark = pytest.mark.slow  # about a minute on one core: a real run and two cached reruns

# 70 eval images, about 60 classified correctly: two measurement shards (32 + the rest) per
# autoencoder, so the gallery is chosen across shards.
PROTOCOL = """\
name: gallery
dataset: {name: digits, eval_samples: 70, pixel_range: [-1, 1]}
classifier: {arch: mlp, hidden: [32], epochs: 3}
autoencoders:
  plain: {arch: mlp, latent_dim: 6, hidden: [64], epochs: 10}
  isometric:
    {arch: mlp, latent_dim: 6, hidden: [64], epochs: 10, regulariser: {kind: isometric, weight: 0.1}}
attack:
  base: image  # this test is about attacks at the image itself
  on_manifold: tangent
  eps: {plain: 4, on: 6, off: 6}
  step: {plain: 0.2, on: 0.3, off: 0.2}
  steps: {plain: 20, on: 20, off: 20}
  batch_size: 16
tangent: {method: dense, dtype: float64}
claims:
  - dmm.perpendicular: {null: random_subspace}
seeds: [0]
report: {formats: [csv], figures: true}
"""
MODES = ("plain", "on", "off")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    outcome = run_protocol(load_protocol_text(PROTOCOL), store_root=root / "store",
                           out_dir=root / "report", executor="local")
    return root, outcome, read_gallery(root / "report" / "gallery.parquet")


@pytest.fixture(scope="module")
def models(run):
    """The seed's data and models, loaded from the run's store (nothing is retrained)."""
    from runners.datasets import load_dataset
    from runners.seed_models import train_seed_models

    root, _, _ = run
    protocol = load_protocol_text(PROTOCOL)
    data = load_dataset(protocol.dataset, seed=0)
    loaded = train_seed_models(protocol, data, seed=0, store=ArtifactStore(root / "store"),
                               device=torch.device("cpu"))
    assert all(ae.loaded for ae in loaded.autoencoders.values()) and loaded.classifier.loaded
    return protocol, data, loaded


def test_gallery_holds_the_rule_s_rows_for_every_autoencoder(run) -> None:
    root, outcome, gallery = run
    m = outcome.measurements
    manifest = json.loads((root / "report" / "manifest.json").read_text())
    assert manifest["tables"] == ["gallery", "measurements"]
    assert manifest["shards"]["0"]["computed"] == 4  # two shards per autoencoder
    for name, rows in gallery.groupby("autoencoder"):
        assert 1 < len(rows) <= len(QUANTILES)
        assert rows["success_plain"].all() and rows["sample"].is_unique
        measured = m[(m["autoencoder"] == name) & m["success_plain"]]
        # The extremes of r_T are exact whatever the shards (each is its shard's extreme).
        low, high = measured.loc[measured["r_T"].idxmin()], measured.loc[measured["r_T"].idxmax()]
        assert rows["sample"].iloc[0] == low["sample"] and rows["level"].iloc[0] == 0.0
        assert rows["sample"].iloc[-1] == high["sample"] and rows["level"].iloc[-1] == 1.0
        assert rows["r_T"].is_monotonic_increasing and rows["level"].is_monotonic_increasing
    assert set(gallery["autoencoder"]) == {"plain", "isometric"}
    # Every value shared with the measurements table is that sample's value there.
    shared = [c for c in COLUMNS if c in m.columns]
    joined = gallery[shared].merge(m[shared], on=["seed", "autoencoder", "sample"],
                                   suffixes=("", "_m"), validate="one_to_one")
    for column in shared[3:]:
        assert joined[column].equals(joined[f"{column}_m"]), column


def test_gallery_arrays_are_the_eval_images_and_their_measured_perturbations(run, models
                                                                             ) -> None:
    _, _, gallery = run
    _, data, _ = models
    for _, row in gallery.iterrows():
        x = data.eval.x[int(row["sample"])]
        assert np.array_equal(image(row, "x"), x.numpy())
        assert int(row["image_id"]) == int(data.eval.ids[int(row["sample"])])
        assert int(row["label"]) == int(data.eval.y[int(row["sample"])]) == int(row["pred_x"])
        assert (int(row["channels"]), int(row["height"]), int(row["width"])) == (1, 8, 8)
        assert (row["pixel_lo"], row["pixel_hi"]) == (-1.0, 1.0)
        for mode in MODES:
            d = np.asarray(row[f"d_{mode}"], dtype=np.float64)
            norm = float(np.linalg.norm(d))
            if row[f"success_{mode}"]:
                assert norm == pytest.approx(row[f"norm_{mode}"], rel=1e-5), mode
            elif np.isnan(row[f"norm_{mode}"]):  # not measurable: (x + T) ∩ box is {x}
                assert mode == "on" and norm < 1e-9
            else:  # censored at eps: the last iterate stays inside the budget
                assert norm <= row[f"norm_{mode}"] * (1 + 1e-5), mode


def test_predictions_and_ratios_are_what_the_stored_models_give(run, models) -> None:
    from runners.geometry.spaces import TANGENT_DTYPES, decoder_in_dtype, tangent_space

    _, _, gallery = run
    protocol, data, loaded = models
    clf = loaded.classifier.model.eval()
    with torch.no_grad():
        for name, rows in gallery.groupby("autoencoder"):
            ae = loaded.autoencoders[name].model.eval()
            x = torch.stack([torch.from_numpy(image(r, "x")) for _, r in rows.iterrows()])
            delta = {m: torch.stack([torch.from_numpy(image(r, f"d_{m}"))
                                     for _, r in rows.iterrows()]) for m in MODES}
            x_hat = torch.stack([torch.from_numpy(image(r, "x_hat")) for _, r in rows.iterrows()])
            torch.testing.assert_close(x_hat, ae.decode(ae.encode(x)), rtol=0, atol=1e-5)
            for inputs, column in [(x, "pred_x"), (x_hat, "pred_x_hat"),
                                   *((x + delta[m], f"pred_{m}") for m in MODES)]:
                # One image per forward pass, as stored (see runners.gallery).
                preds = [int(clf(v[None]).argmax(dim=1)) for v in inputs]
                assert preds == rows[column].tolist(), (name, column)
            # Successful attacks: x + d is another class (refinement keeps it across).
            won = rows["success_plain"].to_numpy()
            assert (rows["pred_plain"].to_numpy()[won] != rows["label"].to_numpy()[won]).all()
            decode = decoder_in_dtype(ae, TANGENT_DTYPES[protocol.tangent.dtype])
            space = tangent_space(decode, ae.encode(x), config=protocol.tangent, n=x[0].numel())
            for m, column in (("plain", "r_T"), ("on", "in_T_on"), ("off", "in_T_off")):
                ratio = space.ratio(delta[m]).double().numpy()
                np.testing.assert_allclose(ratio, rows[column].to_numpy(), atol=1e-5,
                                           err_msg=f"{name} {column}")


def test_report_run_draws_one_gallery_figure_per_autoencoder(run, tmp_path: Path) -> None:
    root, _, _ = run
    figures = root / "report" / "figures"
    assert (figures / "gallery_plain.png").is_file()
    assert (figures / "gallery_isometric.png").is_file()
    report_run(root / "report", tmp_path, formats=["csv"])
    for name in ("gallery_plain.png", "gallery_isometric.png"):
        assert (tmp_path / "figures" / name).read_bytes() == (figures / name).read_bytes()


def test_a_cached_rerun_gives_the_same_gallery_without_measuring(run, tmp_path: Path) -> None:
    root, _, gallery = run
    # No figures: the report section is not part of any store key, and drawing takes longest.
    quick = PROTOCOL.replace("figures: true", "figures: false")
    again = run_protocol(load_protocol_text(quick), store_root=root / "store",
                         out_dir=tmp_path / "report", executor="local")
    assert again.manifest["shards"]["0"] == {"computed": 0, "loaded": 4}
    assert (tmp_path / "report" / "gallery.parquet").read_bytes() == \
        (root / "report" / "gallery.parquet").read_bytes()
    pd.testing.assert_frame_equal(read_gallery(tmp_path / "report" / "gallery.parquet")
                                  .drop(columns=list(ARRAYS)),
                                  gallery.drop(columns=list(ARRAYS)), check_exact=True)


def test_shards_stored_before_galleries_are_reused_without_a_gallery(run, tmp_path: Path
                                                                      ) -> None:
    # A store written before shards kept gallery rows: the same measurements, no gallery file.
    root, outcome, _ = run
    shutil.copytree(root / "store", tmp_path / "store")
    store = ArtifactStore(tmp_path / "store")
    legacy = [k for k in store.keys("measure")
              if set(store.load_table(k, "measurements.parquet")["autoencoder"]) == {"plain"}]
    assert len(legacy) == 2
    frame = store.load_table(legacy[0], "measurements.parquet")
    store.remove(legacy[0])
    with store.writer(legacy[0]) as writer:
        writer.save_table("measurements.parquet", frame)
    again = run_protocol(load_protocol_text(PROTOCOL), store_root=store.root,
                         out_dir=tmp_path / "report", executor="local")
    assert again.manifest["shards"]["0"] == {"computed": 0, "loaded": 4}
    pd.testing.assert_frame_equal(again.measurements, outcome.measurements, check_exact=True)
    # All or nothing per autoencoder: plain has none (not a pick from one shard only).
    assert set(read_gallery(tmp_path / "report" / "gallery.parquet")["autoencoder"]) == \
        {"isometric"}
    figures = {p.name for p in (tmp_path / "report" / "figures").glob("gallery_*.png")}
    assert figures == {"gallery_isometric.png"}
