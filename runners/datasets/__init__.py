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

from runners.datasets.base import (
    DatasetConfigError,
    DatasetNotFoundError,
    DatasetSplits,
    KnownManifold,
    Split,
)
from runners.datasets.digits import load_digits
from runners.datasets.imagefolder import load_imagefolder
from runners.datasets.synthetic import (
    LinearManifold,
    Manifold,
    load_linear_subspace,
    load_synthetic,
)
from runners.datasets.torchvision_sets import load_cifar10, load_fashion_mnist, load_mnist, load_svhn

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

#: Registry: dataset name (the protocol's ``dataset.name``) -> loader ``(config, seed) -> DatasetSplits``.
DATASETS: dict[str, Loader] = {
    "synthetic": load_synthetic,
    "linear_subspace": load_linear_subspace,
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "svhn": load_svhn,
    "imagefolder": load_imagefolder,
}


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
    from dimple_stats.suggest import did_you_mean

    name = config.get("name") if isinstance(config, Mapping) else getattr(config, "name", None)
    if name not in DATASETS:
        raise DatasetConfigError(
            f"unknown dataset {name!r}{did_you_mean(str(name), DATASETS)}; "
            f"known: {', '.join(DATASETS)}"
        )
    if isinstance(config, Mapping):
        from pydantic import TypeAdapter

        from dimple_stats.protocol.schema import DatasetConfig

        config = TypeAdapter(DatasetConfig).validate_python(dict(config))
    return DATASETS[name](config, int(seed))
