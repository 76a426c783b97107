"""Extending the tool from outside the package: a toy claim, a toy attack and a toy dataset,
registered here and nowhere else, go through ``dimple-stats run`` like built-in ones (protocol
validation, training, measurement, analysis, pooling, report, ``claims --json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from dimple_stats.claims import CATALOGUE, ClaimDefinition
from dimple_stats.claims.rows import column_values, descriptive_row, image_ids, needs
from dimple_stats.cli import app
from dimple_stats.protocol.schema import DatasetCommon
from dimple_stats.protocol.vocabulary import DATASETS, DatasetEntry
from runners.attacks import ATTACKS, L2PGD

pytestmark = pytest.mark.slow

TOY_PROTOCOL = """\
name: toy
dataset: {name: digits, eval_samples: 16, pixel_range: [-1, 1]}
classifier: {arch: mlp, hidden: [64], epochs: 4}
autoencoders:
  plain: {arch: mlp, latent_dim: 8, hidden: [64], epochs: 6}
attack:
  base: image  # this test is about attacks at the image itself
  on_manifold: tangent
  eps: {plain: 4, on: 8, off: 8}
  step: {plain: 0.2, on: 0.4, off: 0.2}
  steps: {plain: 30, on: 30, off: 30}
tangent: {method: dense, dtype: float64}
claims:
  - toy.reconstruction: {scale: 2.0}
seeds: [0]
"""


class ToyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    scale: float = Field(1.0, gt=0)


@needs(("seed", "autoencoder", "sample", "recon_err"))
def toy_reconstruction(df: pd.DataFrame, opts: ToyOptions, stats, *, claim: str) -> list:
    """toy.reconstruction: the median reconstruction error times ``scale``, descriptive.

    Censoring: no attack is involved; nothing is censored.
    """
    return [descriptive_row(
        claim=claim, variant="median", autoencoder=str(ae), seed=int(seed),
        values=opts.scale * column_values(g, "recon_err"), estimate_meaning="scale x recon_err",
        n_censored=0, null="(descriptive)", stats=stats, ids=image_ids(g))
        for (ae, seed), g in df.groupby(["autoencoder", "seed"])]


TOY = ClaimDefinition(
    id="toy.reconstruction", source="a test", hypothesis="Reconstructions are imperfect.",
    statistic="recon_err", test="none (descriptive)", nulls={}, censoring="none",
    options=ToyOptions, analysis=toy_reconstruction)


def test_a_claim_registered_in_a_test_runs_through_dimple_stats_run(tmp_path: Path) -> None:
    protocol = tmp_path / "toy.yaml"
    protocol.write_text(TOY_PROTOCOL)
    runner = CliRunner()
    # Unknown before registration: the protocol is refused at its key, exit 2.
    out = runner.invoke(app, ["validate", str(protocol)])
    assert out.exit_code == 2 and "toy.reconstruction" in out.output, out.output
    with CATALOGUE.registered(TOY.id, TOY):
        listed = json.loads(runner.invoke(app, ["claims", "--json"]).output)
        assert listed[-1]["id"] == TOY.id
        assert listed[-1]["columns"] == ["seed", "autoencoder", "sample", "recon_err"]
        out = runner.invoke(app, ["run", str(protocol), "--store", str(tmp_path / "store"),
                                  "--out", str(tmp_path / "report")])
        assert out.exit_code == 0, out.output
    results = pd.read_csv(tmp_path / "report" / "results.csv")
    measured = pd.read_parquet(tmp_path / "report" / "measurements.parquet")
    row = results[(results["claim"] == TOY.id) & (results["seed"] == "0")].iloc[0]
    # Ground truth from the measurements the run wrote: n rows, 2 x their median recon_err.
    assert row["n"] == len(measured) > 0
    assert np.isclose(row["estimate"], 2.0 * np.median(measured["recon_err"]))
    assert TOY.id not in CATALOGUE  # gone again after the block


class HalfStepPGD(L2PGD):
    """A toy attack: L2 PGD whose steps are half the configured length."""

    def _propose(self, delta, grad, scale):
        return delta + 0.5 * scale * self._direction(grad)


def test_an_attack_registered_in_a_test_runs_through_dimple_stats_run(tmp_path: Path) -> None:
    protocol = tmp_path / "toy.yaml"
    protocol.write_text(TOY_PROTOCOL.replace("  - toy.reconstruction: {scale: 2.0}",
                                             "  - dmm.perpendicular")
                        .replace("attack:\n", "attack:\n  method: half_pgd\n"))
    runner = CliRunner()
    out = runner.invoke(app, ["validate", str(protocol)])
    assert out.exit_code == 2 and "half_pgd" in out.output, out.output
    with ATTACKS.registered("half_pgd", lambda norm, **options: HalfStepPGD(**options)):
        out = runner.invoke(app, ["run", str(protocol), "--store", str(tmp_path / "store"),
                                  "--out", str(tmp_path / "report")])
        assert out.exit_code == 0, out.output
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["protocol"]["attack"]["method"] == "half_pgd"
    m = pd.read_parquet(tmp_path / "report" / "measurements.parquet")
    assert len(m) > 0 and m["success_plain"].any()
    # The strict feasible set is the contract's, not the attack's: on-manifold perturbations of
    # the toy attack lie in T (the run's membership check would have stopped it otherwise).
    ok = m["success_on"]
    assert ok.any() and float(m.loc[ok, "in_T_on"].min()) > 0.999


class ToyStripes(DatasetCommon):
    """A toy dataset: 6x6 images of a horizontal (class 0) or vertical (class 1) bar, with noise."""

    name: Literal["toy_stripes"]


def load_toy_stripes(config: ToyStripes, seed: int = 0):
    import torch

    from runners.datasets import DatasetSplits, Split

    def split(n: int, offset: int) -> Split:
        g = torch.Generator().manual_seed(1000 * seed + offset)
        y = torch.randint(0, 2, (n,), generator=g)
        x = 0.1 * torch.randn(n, 1, 6, 6, generator=g)
        pos = torch.randint(1, 5, (n,), generator=g)
        for i in range(n):  # a test fixture: clarity over speed
            if y[i] == 0:
                x[i, 0, pos[i], :] += 1.0
            else:
                x[i, 0, :, pos[i]] += 1.0
        lo, hi = config.pixel_range
        return Split(x=x.clamp(0, 1) * (hi - lo) + lo, y=y,
                     index=torch.arange(offset, offset + n))

    return DatasetSplits(name="toy_stripes", train=split(config.train_samples or 1000, 10_000),
                         eval=split(config.eval_samples, 0), image_shape=(1, 6, 6),
                         num_classes=2, class_names=("horizontal", "vertical"),
                         pixel_range=tuple(config.pixel_range))


def test_a_dataset_registered_in_a_test_runs_through_dimple_stats_run(tmp_path: Path) -> None:
    protocol = tmp_path / "toy.yaml"
    protocol.write_text(TOY_PROTOCOL.replace("dataset: {name: digits, eval_samples: 16,",
                                             "dataset: {name: toy_stripes, eval_samples: 16,")
                        .replace("  - toy.reconstruction: {scale: 2.0}", "  - dmm.perpendicular")
                        .replace("latent_dim: 8, hidden: [64], epochs: 6",
                                 "latent_dim: 4, hidden: [64], epochs: 40"))
    runner = CliRunner()
    out = runner.invoke(app, ["validate", str(protocol)])
    assert out.exit_code == 2 and "toy_stripes" in out.output, out.output
    with DATASETS.registered("toy_stripes", DatasetEntry(ToyStripes, load_toy_stripes)):
        out = runner.invoke(app, ["run", str(protocol), "--store", str(tmp_path / "store"),
                                  "--out", str(tmp_path / "report")])
        assert out.exit_code == 0, out.output
    m = pd.read_parquet(tmp_path / "report" / "measurements.parquet")
    assert len(m) > 0 and set(m["n"]) == {36}  # 6x6 images, measured end to end
    assert (m["image_id"] < 16).all()  # the toy loader's eval ids
