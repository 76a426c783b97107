"""The example gallery's table (selection rule, shards, Parquet round trip) and its figure."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dimple_stats.gallery import (
    ARRAYS,
    COLUMNS,
    GalleryError,
    drawable,
    image,
    quantile_positions,
    read_gallery,
    reduce_to_quantiles,
    validate_gallery,
    write_gallery,
)
from dimple_stats.report import figure_names, write_report
from dimple_stats.report.gallery import gallery_figure

ROOT = Path(__file__).resolve().parents[2]


def make_gallery(rows: int = 3, shape: tuple[int, int, int] = (1, 4, 5), *,
                 autoencoder: str = "plain", seed: int = 0, failed_on: int | None = None
                 ) -> pd.DataFrame:
    """A gallery table with known arrays: d_plain of row i is (i + 1) * 0.01 * a ramp."""
    size = int(np.prod(shape))
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    frame = pd.DataFrame({
        "seed": seed, "autoencoder": autoencoder, "sample": np.arange(rows) * 3,
        "image_id": np.arange(rows) + 100, "label": np.arange(rows) % 10,
        "recon_err": 0.5, "r_T": np.linspace(0.1, 0.9, rows), "in_T_on": 1.0, "in_T_off": 0.0,
        "norm_plain": 0.2, "norm_on": 0.4, "norm_off": 0.3, "success_plain": True,
        "success_on": [i != failed_on for i in range(rows)], "success_off": True,
        "level": np.linspace(0.0, 1.0, rows), "channels": shape[0], "height": shape[1],
        "width": shape[2], "pixel_lo": 0.0, "pixel_hi": 1.0, "pred_x": np.arange(rows) % 10,
        "pred_x_hat": np.arange(rows) % 10, "pred_plain": 7, "pred_on": 7, "pred_off": 7,
    })
    frame["x"] = [np.full(size, 0.5, np.float32) for _ in range(rows)]
    frame["x_hat"] = [np.full(size, 0.4, np.float32) for _ in range(rows)]
    frame["d_plain"] = [(i + 1) * 0.01 * ramp for i in range(rows)]
    frame["d_on"] = [-0.02 * ramp for _ in range(rows)]
    frame["d_off"] = [0.03 * ramp for _ in range(rows)]
    return frame


# --- selection rule --------------------------------------------------------------------------
def test_quantile_positions_take_evenly_spaced_ranks_of_successful_rows() -> None:
    # 13 successful rows: ranks q * 12 = 0, 2, ..., 12 exactly; the failed and NaN rows are
    # the extremes of the column and must not be picked.
    rng = np.random.default_rng(0)
    r = rng.permutation(np.arange(13) / 16)
    r_all = np.concatenate([r, [-1.0, 2.0, np.nan]])
    ok = np.concatenate([np.ones(13, bool), [False, False, True]])
    pos, levels = quantile_positions(r_all, ok, np.arange(16))
    assert r_all[pos].tolist() == [0, 2 / 16, 4 / 16, 6 / 16, 8 / 16, 10 / 16, 12 / 16]
    assert levels == pytest.approx([0, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1])


def test_quantile_positions_break_ties_by_sample_and_round_half_ranks_down() -> None:
    pos, _ = quantile_positions([0.3, 0.3, 0.3, 0.3], [True] * 4, [40, 10, 30, 20], (0.0, 1.0))
    assert pos.tolist() == [1, 0]  # samples 10 (first) and 40 (last)
    # The median of 4 is rank 1.5: the lower middle one (r = 0.2).
    pos, levels = quantile_positions([0.4, 0.1, 0.3, 0.2], [True] * 4, range(4), (0.5,))
    assert pos.tolist() == [3] and levels == [pytest.approx(1 / 3)]
    pos, levels = quantile_positions([0.4], [False], [0])
    assert pos.tolist() == [] and levels == []
    pos, levels = quantile_positions([0.4, 0.9], [True, False], [0, 1])
    assert pos.tolist() == [0] and levels == [0.5]  # one row: its own median


def _shard_candidates(measurements: pd.DataFrame) -> pd.DataFrame:
    pos, levels = quantile_positions(measurements["r_T"], measurements["success_plain"],
                                     measurements["sample"])
    return measurements.iloc[pos].assign(level=levels)


def test_one_shard_reduces_to_the_rule_itself() -> None:
    m = pd.DataFrame({"sample": range(20), "r_T": np.random.default_rng(1).random(20),
                      "success_plain": [i % 5 != 0 for i in range(20)]})
    out = reduce_to_quantiles(_shard_candidates(m), m)
    expected = _shard_candidates(m)
    assert out["sample"].tolist() == expected["sample"].tolist()
    assert out["level"].tolist() == expected["level"].tolist()


def test_several_shards_use_the_nearest_candidate_where_the_target_was_not_kept() -> None:
    # Shard A: samples 0..12, r = i/64; shard B: samples 13..24, r = (32 + i)/64 (N = 25).
    # Global ranks 0, 4, 8, 12, 16, 20, 24 -> samples 0, 4, 8, 12, 16, 20, 24; shard B kept
    # its ranks 0, 2, 4, 5, 7, 9, 11 (samples 13, 15, 17, 18, 20, 22, 24), so sample 16
    # (r = 35/64) is stood in for by the nearest kept one: 34/64 (sample 15) and 36/64
    # (sample 17) tie, and the smaller sample id wins.
    a = pd.DataFrame({"sample": range(13), "r_T": np.arange(13) / 64, "success_plain": True})
    b = pd.DataFrame({"sample": range(13, 25), "r_T": (32 + np.arange(12)) / 64,
                      "success_plain": True})
    assert _shard_candidates(b)["sample"].tolist() == [13, 15, 17, 18, 20, 22, 24]
    out = reduce_to_quantiles(pd.concat([_shard_candidates(a), _shard_candidates(b)]),
                              pd.concat([a, b], ignore_index=True))
    assert out["sample"].tolist() == [0, 4, 8, 12, 15, 20, 24]
    assert out["level"].tolist() == pytest.approx([0, 4 / 24, 8 / 24, 12 / 24, 16 / 24,
                                                   20 / 24, 1])


# --- table -----------------------------------------------------------------------------------
def test_gallery_round_trips_through_parquet(tmp_path: Path) -> None:
    g = make_gallery(rows=4, shape=(3, 2, 3))
    back = read_gallery(write_gallery(g, tmp_path / "gallery.parquet"))
    assert list(back.columns) == [*COLUMNS, *ARRAYS]
    for name in ARRAYS:
        for a, b in zip(back[name], g[name]):
            assert a.dtype == np.float32 and np.array_equal(a, b)
    pd.testing.assert_frame_equal(back[list(COLUMNS)], validate_gallery(g)[list(COLUMNS)])
    assert image(back.iloc[1], "d_plain").shape == (3, 2, 3)
    assert np.array_equal(image(back.iloc[1], "d_plain").ravel(), g["d_plain"][1])


def test_an_empty_gallery_round_trips(tmp_path: Path) -> None:
    """A run where no plain attack succeeded keeps no example: zero rows, same columns."""
    empty = make_gallery(rows=4, shape=(1, 2, 2)).iloc[:0]
    back = read_gallery(write_gallery(empty, tmp_path / "gallery.parquet"))
    assert len(back) == 0 and list(back.columns) == [*COLUMNS, *ARRAYS]


def test_gallery_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="missing column.*d_off"):
        validate_gallery(make_gallery().drop(columns=["d_off"]))
    bad = make_gallery()
    bad.at[1, "x_hat"] = np.zeros(3, np.float32)
    with pytest.raises(GalleryError, match=r"'x_hat': rows \[1\]"):
        validate_gallery(bad)
    (tmp_path / "gallery.parquet").write_bytes(b"not parquet")
    with pytest.raises(GalleryError, match="cannot read"):
        read_gallery(tmp_path / "gallery.parquet")


def test_only_greyscale_and_rgb_images_are_drawable() -> None:
    g = pd.concat([make_gallery(shape=(1, 4, 4), autoencoder="grey"),
                   make_gallery(shape=(3, 4, 4), autoencoder="rgb"),
                   make_gallery(shape=(1, 1, 16), autoencoder="vector"),
                   make_gallery(shape=(4, 4, 4), autoencoder="four")], ignore_index=True)
    assert drawable(g) == ["grey", "rgb"]


# --- figure ----------------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60, metadata={"Software": None})
    return buf.getvalue()


@pytest.mark.parametrize("channels", [1, 3])
def test_gallery_figure_shares_one_symmetric_heat_scale_and_marks_failures(channels: int
                                                                           ) -> None:
    g = pd.concat([make_gallery(rows=3, shape=(channels, 4, 5), failed_on=1),
                   make_gallery(rows=2, shape=(channels, 4, 5), seed=1)], ignore_index=True)
    fig = gallery_figure(g, "plain")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 3 * 8  # seed 0 only (the first seed), eight panels per image
    heat = [ax.images[0] for i, ax in enumerate(panels) if i % 8 >= 5]
    # The largest |value| of any heat map: 0.03 x the ramp (row 3's d_plain and every d_off)
    # averaged over the channels: 0.03 itself for greyscale, the ramp's end.
    ramp = np.linspace(-1.0, 1.0, channels * 20).reshape(channels, 4, 5).mean(axis=0)
    (clim,) = {im.get_clim() for im in heat}
    top = 0.03 * np.abs(ramp).max()
    assert clim == (pytest.approx(-top, rel=1e-6), pytest.approx(top, rel=1e-6))
    assert channels == 3 or top == pytest.approx(0.03)
    assert heat[0].get_array().shape == (4, 5)  # RGB: the mean over channels, signed
    titles = [ax.get_title() for ax in panels]
    assert titles[8 + 3].startswith("x + d_on\nFAILED") and "FAILED" in titles[8 + 6]
    assert panels[8 + 6].title.get_color() == "tab:red"
    assert not any("FAILED" in t for i, t in enumerate(titles) if i // 8 != 1)
    assert "r_T 0.100" in titles[5] and "in_T 1.000" in titles[6] and "in_T 0.000" in titles[7]
    assert _png(gallery_figure(g, "plain")) == _png(gallery_figure(g, "plain"))
    with pytest.raises(ValueError, match="no rows for autoencoder 'other'"):
        gallery_figure(g, "other")


def test_write_report_draws_one_gallery_figure_per_drawable_autoencoder(tmp_path: Path,
                                                                        synthetic) -> None:
    import dimple_stats as ds

    measurements = synthetic.measurements(seeds=(0,))
    results = ds.test_claim(measurements, "dmm.perpendicular", stats={"bootstrap": 200})
    g = pd.concat([make_gallery(autoencoder="plain"),
                   make_gallery(autoencoder="flat", shape=(1, 1, 20))], ignore_index=True)
    names = figure_names(results, measurements, {"gallery": g})
    assert "gallery_plain.png" in names and "gallery_flat.png" not in names
    assert not [n for n in figure_names(results, measurements) if n.startswith("gallery")]
    paths = write_report(results, measurements, tmp_path, formats=["csv"], html=False,
                         tables={"gallery": g})
    assert tmp_path / "figures" / "gallery_plain.png" in paths
    assert not (tmp_path / "figures" / "gallery_flat.png").exists()


def test_gallery_reads_and_draws_without_torch(tmp_path: Path, run_without_torch) -> None:
    path = write_gallery(make_gallery(), tmp_path / "gallery.parquet")
    proc = run_without_torch(
        "from dimple_stats.gallery import read_gallery\n"
        "from dimple_stats.report.gallery import gallery_figure\n"
        f"gallery_figure(read_gallery({str(path)!r}), 'plain')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'runners')]\n"
        "print('ok')\n", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
