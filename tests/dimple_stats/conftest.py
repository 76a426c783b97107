"""Synthetic measurement tables with known truth, shared by the statistics tests."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest


def make_measurements(
    *,
    seeds: Sequence[int] = (0, 1, 2),
    autoencoders: Sequence[str] = ("plain", "isometric"),
    samples: int = 60,
    n: int = 64,
    k: int = 8,
    shrink: float | dict[str, float] = 1.0,
    censor_on: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """A measurements table in the contract's format.

    r_T = shrink * r with r^2 ~ Beta(k/2, (n-k)/2) (shrink = 1: r_T at chance); r_R and r_Tother
    at chance; norm_on / norm_off = sqrt((n-k)/k) times noise (dimension counting); a fraction
    ``censor_on`` of on-manifold attacks fail (success_on False, norm_on = eps_on).
    """
    rng = np.random.default_rng(seed)
    a, b = k / 2, (n - k) / 2
    frames = []
    for s in seeds:
        recon = rng.gamma(4.0, 0.1, samples)  # per image, shared across autoencoders
        norm_plain = rng.gamma(9.0, 0.1, samples)
        for ae in autoencoders:
            f = shrink[ae] if isinstance(shrink, dict) else shrink
            norm_off = norm_plain * np.exp(rng.normal(0.0, 0.05, samples))
            norm_on = norm_off * np.sqrt((n - k) / k) * np.exp(rng.normal(0.0, 0.2, samples))
            eps_on = float(np.quantile(norm_on, 1 - censor_on)) if censor_on else 100.0
            success_on = norm_on < eps_on if censor_on else np.ones(samples, bool)
            frames.append(pd.DataFrame({
                "seed": s, "autoencoder": ae, "sample": np.arange(samples),
                "label": rng.integers(0, 2, samples), "n": n, "k": k,
                "recon_err": recon * (1.3 if ae == "plain" else 1.0),
                "norm_plain": norm_plain, "success_plain": True,
                "norm_on": np.where(success_on, norm_on, eps_on), "success_on": success_on,
                # One budget for on and off (success rates compare only at one eps).
                "norm_off": np.where(norm_off < eps_on, norm_off, eps_on),
                "success_off": norm_off < eps_on,
                "eps_plain": 100.0, "eps_on": eps_on, "eps_off": eps_on,
                "r_T": f * np.sqrt(rng.beta(a, b, samples)),
                "r_R": np.sqrt(rng.beta(a, b, samples)),
                "r_Tother": np.sqrt(rng.beta(a, b, samples)),
                "r_T_grad": f * np.sqrt(rng.beta(a, b, samples)),
                "iso_cond": rng.gamma(2.0, 2.0, samples) + 1.0,
            }))
    df = pd.concat(frames, ignore_index=True)
    # Columns added later draw from their own generator, so the columns above keep
    # the values the calibrated tests were written against. Every seed draws the same images
    # (image_id = sample), the strict attacks' membership is exact, the data controls at chance.
    extra = np.random.default_rng(seed + 1_000_003)
    a, b = k / 2.0, (n - k) / 2.0
    df.insert(3, "image_id", df["sample"].to_numpy())
    df["base_err"], df["base_converged"] = df["recon_err"], True
    df["in_T_on"], df["in_T_off"] = 1.0, 0.0
    # attack.base image, strict tangent attack with room along T everywhere
    df["base_ok"], df["measurable_on"] = True, True
    df["reach_on"], df["path_on"] = df["eps_on"], np.nan
    for col in ("r_PCA", "r_Rdata", "r_T_grad_other"):
        df[col] = np.sqrt(extra.beta(a, b, len(df)))
    return df


@pytest.fixture
def measurements() -> pd.DataFrame:
    """3 seeds x 2 autoencoders x 60 samples; plain's r_T at 0.6 x chance, isometric at chance."""
    return make_measurements(shrink={"plain": 0.6, "isometric": 1.0})


def make_defense(*, seeds: Sequence[int] = (0, 1), samples: int = 80,
                 eps: Sequence[float] = (0.5, 1.0),
                 robust: dict[str, float] | None = None, seed: int = 0) -> pd.DataFrame:
    """iso.defense table: robust accuracy per defense (probability), nested so that a stronger
    defense keeps every sample a weaker one keeps (plenty of discordant pairs one way)."""
    robust = robust or {"none": 0.2, "plain": 0.3, "isometric": 0.6}
    rng = np.random.default_rng(seed)
    frames = []
    for s in seeds:
        clean = rng.random(samples) > 0.05
        for e in eps:
            u = rng.random(samples)
            for name, acc in robust.items():
                frames.append(pd.DataFrame({
                    "seed": s, "defense": name, "eps": e, "sample": np.arange(samples),
                    "robust_correct": (u < acc / e * 0.5) & clean, "clean_correct": clean}))
    return pd.concat(frames, ignore_index=True)


def make_training(*, seeds: Sequence[int] = (0, 1), samples: int = 40, epochs: int = 15,
                  change: int = 5, early: float = 0.5, late: float = 0.03,
                  seed: int = 0) -> pd.DataFrame:
    """Training curves: median norm_plain falls fast until ``change``, slowly after; r_T at 0.6 x
    chance throughout."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in seeds:
        base = rng.gamma(20.0, 0.05, samples)
        for e in range(epochs):
            level = 4.0 - early * min(e, change) - late * max(e - change, 0)
            frames.append(pd.DataFrame({
                "seed": s, "epoch": e, "sample": np.arange(samples),
                "norm_plain": level * base * np.exp(rng.normal(0, 0.05, samples)),
                "success_plain": True,
                "r_T": 0.6 * np.sqrt(rng.beta(4, 28, samples)),
                "r_R": np.sqrt(rng.beta(4, 28, samples)), "n": 64, "k": 8}))
    return pd.concat(frames, ignore_index=True)


def make_adv_training(*, seeds: Sequence[int] = (0, 1), samples: int = 80,
                      deepen: float = 1.5, seed: int = 0) -> pd.DataFrame:
    """Adversarial training multiplies norms by ``deepen`` and leaves r_T unchanged (small noise)."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in seeds:
        r_t = np.sqrt(rng.beta(4, 28, samples)) * 0.6
        norm = rng.gamma(9.0, 0.1, samples)
        for name, factor in (("standard", 1.0), ("adversarial", deepen)):
            frames.append(pd.DataFrame({
                "seed": s, "classifier": name, "sample": np.arange(samples),
                "r_T": r_t + rng.normal(0, 0.005, samples),
                "norm_plain": norm * factor * np.exp(rng.normal(0, 0.05, samples)),
                "success_plain": True}))
    return pd.concat(frames, ignore_index=True)


def make_classifier_pairs(*, turn: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Two cells' measurements (standard, adversarial classifier) of the same images; the
    adversarial one's r_T is larger by ``turn`` (plus small noise)."""
    rng = np.random.default_rng(seed)
    std = make_measurements(seed=seed).assign(classifier="standard")
    adv = std.assign(classifier="adversarial",
                     r_T=std["r_T"] + turn + rng.normal(0, 0.01, len(std)))
    return pd.concat([std, adv], ignore_index=True)


@pytest.fixture
def synthetic() -> SimpleNamespace:
    """The table factories above (test modules cannot import conftest under importlib mode)."""
    return SimpleNamespace(measurements=make_measurements, defense=make_defense,
                           training=make_training, adv_training=make_adv_training,
                           classifier_pairs=make_classifier_pairs)


# Every torch (and runners) import fails, as on a machine without torch.
_BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by test)")
        return None
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.fixture
def run_without_torch():
    """``run(body, cwd=..., timeout=..., blocked=...)``: run Python code in a subprocess where
    torch (and by default ``runners``) cannot be imported; returns the CompletedProcess."""
    import subprocess
    import sys

    def run(body: str, *, cwd=None, timeout: float = 300,
            blocked: tuple[str, ...] = ("torch", "torchvision", "runners")
            ) -> subprocess.CompletedProcess:
        # `runners` is blocked by default (the torch side as a whole); its torch-free parts
        # (the store) are tested with only torch blocked.
        code = f"BLOCKED = {blocked!r}\n" + _BLOCK_TORCH + body
        return subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True, cwd=cwd, timeout=timeout)

    return run
