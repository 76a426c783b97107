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
