"""Shared settings for the compute-side tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # On a small shared CPU, torch's OpenMP threads contend on tiny tensors and make tests tens
    # of times slower; one thread is also what `dimple-stats run` uses on CPU (bit-identical
    # results across executors).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _find_mnist_sample() -> Path:
    # The 5,000 real digits live in the project workspace's shared/ folder, beside the checkout;
    # CI may clone elsewhere, so look upward from here and then at the workspace's usual place.
    candidates = [p / "shared" / "data" / "mnist-sample" for p in Path(__file__).resolve().parents]
    candidates.append(Path("/work/shared/data/mnist-sample"))
    return next((c for c in candidates if (c / "MNIST" / "raw").is_dir()), candidates[0])


@pytest.fixture(scope="session")
def mnist_sample() -> Path:
    """Root of the real MNIST sample (``<root>/MNIST/raw``); skips where the workspace lacks it."""
    root = _find_mnist_sample()
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST sample not present at {root}")
    return root


def _small_digits_models(*, eval_samples: int, classifier_epochs: int, latent_dim: int,
                         autoencoder_epochs: int) -> tuple:
    """``(data, classifier, autoencoder)``: an MLP classifier and MLP autoencoder (64 hidden)
    trained on the 8x8 digits in [-1, 1] for seed 0, both in eval mode: the small real models
    the measurement tests attack."""
    from dimple_stats.protocol.schema import AutoencoderConfig, ClassifierConfig, DigitsDataset
    from runners.datasets import load_dataset
    from runners.training import train_autoencoder, train_classifier

    config = DigitsDataset(name="digits", pixel_range=(-1.0, 1.0), eval_samples=eval_samples)
    data = load_dataset(config, seed=0)
    clf = train_classifier(ClassifierConfig(arch="mlp", hidden=(64,), epochs=classifier_epochs),
                           data, data_config=config, seed=0).model.eval()
    ae = train_autoencoder(AutoencoderConfig(arch="mlp", latent_dim=latent_dim, hidden=(64,),
                                             epochs=autoencoder_epochs),
                           data, data_config=config, seed=0).model.eval()
    return data, clf, ae


@pytest.fixture(scope="session")
def small_digits_models():
    """The builder of :func:`_small_digits_models` (keyword arguments as there)."""
    return _small_digits_models
