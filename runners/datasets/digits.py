"""scikit-learn's 8x8 handwritten digits: 1,797 real images shipped with scikit-learn, no download.

There is no official train/test split, so each replication seed draws its own stratified split:
the eval images first (from ``eval_classes``), then the training images from the rest.
"""

from __future__ import annotations

import numpy as np
import torch

from dimple_stats.protocol.schema import DigitsDataset
from runners.datasets._select import plan_classes, rng_for, select, to_pixel_range
from runners.datasets.base import DatasetSplits, Split

__all__ = ["load_digits"]

# load_digits stores integer intensities 0..16 (4x4-block counts of the 32x32 bitmaps).
_MAX_VALUE = 16.0


def load_digits(config: DigitsDataset, seed: int = 0) -> DatasetSplits:
    """The scikit-learn digits, split by ``seed`` into eval and train.

    Parameters
    ----------
    config : DigitsDataset
        ``root`` and ``download`` are ignored (the data ships with scikit-learn).
    seed : int
        Replication seed: chooses the stratified eval/train split.

    Returns
    -------
    DatasetSplits
        Images ``(1, 8, 8)`` in ``pixel_range``; ``train`` and ``eval`` are disjoint.

    Raises
    ------
    DatasetConfigError
        When ``eval_samples`` exceeds the images of ``eval_classes``, or ``train_samples`` the
        images left after the eval split.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # slow import; only when used

    bunch = sklearn_digits()
    images: np.ndarray = bunch.images  # (1797, 8, 8) float64 holding integers 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    plan = plan_classes("digits", [str(c) for c in range(10)], config.classes, config.eval_classes)

    eval_idx = select(
        "digits", "eval", labels, plan.mask(labels, eval=True), config.eval_samples,
        rng_for(seed, "eval"), field="eval_samples",
        what=f" in eval_classes {list(plan.eval_classes)}",
    )
    rest = plan.mask(labels)
    rest[eval_idx] = False  # train and eval never share an image
    train_idx = select(
        "digits", "train", labels, rest, config.train_samples, rng_for(seed, "train"),
        field="train_samples", what=f" in classes {list(plan.classes)} after the eval split",
    )

    def make(idx: np.ndarray) -> Split:
        x = to_pixel_range(images[idx][:, None], _MAX_VALUE, config.pixel_range)
        return Split(x=x, y=torch.from_numpy(plan.remap(labels[idx])),
                     index=torch.from_numpy(np.asarray(idx, dtype=np.int64)))

    return DatasetSplits(
        name="digits",
        train=make(train_idx),
        eval=make(eval_idx),
        image_shape=(1, 8, 8),
        num_classes=len(plan.classes),
        class_names=plan.names,
        pixel_range=tuple(float(v) for v in config.pixel_range),  # type: ignore[arg-type]
    )
