"""Datasets: a validated dataset config plus a replication seed -> train and eval tensors.

Every loader applies the protocol fields the same way: ``classes`` filters and remaps labels,
``eval_classes`` restricts the attacked images, ``train_samples``/``eval_samples`` draw seeded
stratified subsets, and pixels are mapped linearly onto ``pixel_range``. The same seed gives
identical tensors; different seeds give different subsets.

Examples
--------
>>> from dimple_stats.protocol.schema import DigitsDataset
>>> data = load_dataset(DigitsDataset(name="digits", classes=(3, 8), eval_samples=50), seed=0)
>>> data.eval.x.shape, data.num_classes, data.class_names
(torch.Size([50, 1, 8, 8]), 2, ('3', '8'))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dimple_stats.errors import UnknownNameError
from dimple_stats.protocol.schema import dataset_adapter
from dimple_stats.protocol.vocabulary import DATASETS as DATASET_REGISTRY
from dimple_stats.registry import resolve
from runners.datasets.base import (
    DatasetConfigError,
    DatasetNotFoundError,
    DatasetSplits,
    KnownManifold,
    Split,
)
from runners.datasets.synthetic import LinearManifold, Manifold

__all__ = [
    "DATASETS",
    "DatasetConfigError",
    "DatasetNotFoundError",
    "DatasetSplits",
    "KnownManifold",
    "LinearManifold",
    "Manifold",
    "Split",
    "load_dataset",
]

Loader = Callable[[Any, int], DatasetSplits]

#: The dataset registry (the protocol's ``dataset.name``): name -> config model and loader
#: ``(config, seed) -> DatasetSplits`` (see :mod:`dimple_stats.protocol.vocabulary`).
DATASETS = DATASET_REGISTRY


def load_dataset(config: Any, seed: int = 0) -> DatasetSplits:
    """Load the dataset a protocol describes, for one replication seed.

    Parameters
    ----------
    config : DatasetConfig or Mapping
        A validated dataset model (``Protocol.dataset``) or a plain mapping, which is validated
        against the protocol schema first.
    seed : int
        Replication seed (non-negative): chooses the subsets (and, for the synthetic datasets,
        the sampled latents; the manifold itself is fixed by ``manifold_seed``).

    Returns
    -------
    DatasetSplits

    Raises
    ------
    DatasetConfigError
        Unknown dataset name (with a "did you mean"), or a request the data cannot satisfy.
    DatasetNotFoundError
        The files are not on disk and were not (or could not be) downloaded.
    """
    name = config.get("name") if isinstance(config, Mapping) else getattr(config, "name", None)
    try:
        entry = DATASETS[name]
    except UnknownNameError as exc:
        raise DatasetConfigError(str(exc)) from None
    if isinstance(config, Mapping):
        config = dataset_adapter().validate_python(dict(config))
    loader = resolve(entry.loader) if isinstance(entry.loader, str) else entry.loader
    return loader(config, int(seed))
