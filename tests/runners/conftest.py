"""Shared settings for the compute-side tests."""

from __future__ import annotations

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
