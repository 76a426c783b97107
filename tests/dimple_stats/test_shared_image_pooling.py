"""ae.validity's pooled row with images the seeds share (issue 31, row 4).

Its per-seed rows are Spearman correlations; the pooled row combines their Fisher z values.
Seeds that measure the same images give correlated z values, and a pooled variance that treats
them as independent is too small: size 15% at the +-0.2 boundary and CI coverage 84.5% before.
The pooled row now adds the covariance of the shared images (a joint image bootstrap of the
per-seed Fisher z), as the median rows already did.

Chance model: each experiment has a pool of images, each with a latent pair (a, b) from a
bivariate normal whose Spearman correlation is exactly the margin (0.2, the boundary of the
equivalence null |rho| >= 0.2); x = recon_err / norm_plain = exp(a), y = r_T = Phi(b). A seed
measures 60 images, half of them a set every seed of the experiment measures, half its own.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import dimple_stats as ds

MARGIN = 0.2
SAMPLES, SHARED = 60, 30


def _experiments(rng: np.random.Generator, n_exp: int, seeds: int) -> pd.DataFrame:
    r = 2 * math.sin(math.pi * MARGIN / 6)  # Pearson r of a normal pair with Spearman 0.2
    cov = [[1.0, r], [r, 1.0]]
    frames = []
    for e in range(n_exp):
        shared = rng.multivariate_normal([0, 0], cov, size=SHARED)
        for s in range(seeds):
            own = rng.multivariate_normal([0, 0], cov, size=SAMPLES - SHARED)
            ab = np.vstack([shared, own])
            ids = np.concatenate([np.arange(SHARED), 1000 * (s + 1) + np.arange(SAMPLES - SHARED)])
            frames.append(pd.DataFrame({
                "autoencoder": f"e{e}", "seed": s, "sample": np.arange(SAMPLES),
                "image_id": e * 100_000 + ids, "recon_err": np.exp(ab[:, 0]), "norm_plain": 1.0,
                "success_plain": True, "r_T": stats.norm.cdf(ab[:, 1])}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [3, 5])
def test_validity_pooled_size_and_coverage_with_shared_images(seeds: int) -> None:
    n_exp = 400
    df = _experiments(np.random.default_rng(100 + seeds), n_exp, seeds)
    res = ds.test_claim(df, "ae.validity", margin=MARGIN,
                        stats={"alpha": 0.05, "correction": "none", "bootstrap": 200})
    pooled = res[(res["seed"] == "pooled") & (res["variant"] == "equivalence")]
    assert len(pooled) == n_exp
    assert pooled["test"].str.contains("images the seeds share").all()
    size = float((pooled["decision"] == "reject H0").mean())
    covered = float(((pooled["ci_low"] <= MARGIN) & (MARGIN <= pooled["ci_high"])).mean())
    level = float(pooled["ci_level"].iloc[0])
    mc = math.sqrt(0.05 * 0.95 / n_exp)
    print(f"\n{seeds} seeds: size {size:.3f}, coverage {covered:.3f} at {level:.3f} "
          f"(MC SE {mc:.3f})")
    assert size <= 0.075
    assert covered >= level - 2 * math.sqrt(level * (1 - level) / n_exp)
