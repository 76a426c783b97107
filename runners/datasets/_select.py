"""Seeded sample selection, class filtering and pixel-range mapping shared by the loaders.

Every loader goes through the same three steps so that the protocol fields mean the same thing
for every dataset: filter by ``classes`` (and ``eval_classes`` for the eval split), draw a seeded
stratified subset, and only then convert the selected images to float in ``pixel_range``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dimple_stats.seeds import numpy_rng
from runners.datasets.base import DatasetConfigError

__all__ = [
    "ClassPlan",
    "plan_classes",
    "rng_for",
    "select",
    "stratified_choice",
    "to_pixel_range",
]


def rng_for(seed: int, purpose: str) -> np.random.Generator:
    """A numpy Generator for one purpose of one seed.

    Each purpose ("train", "eval", "manifold", ...) gets its own independent stream, so that e.g.
    changing ``train_samples`` never changes which images are attacked, and a manifold seed equal to
    a replication seed does not reuse the same random numbers.

    Parameters
    ----------
    seed : int
        Replication (or manifold) seed; must be non-negative.
    purpose : str
        Name of the stream.

    Returns
    -------
    numpy.random.Generator
    """
    if seed < 0:
        raise DatasetConfigError(f"seeds must be non-negative integers, got {seed}")
    return numpy_rng(seed, purpose)


class ClassPlan:
    """The class subset of a request, resolved against a dataset's classes.

    Attributes
    ----------
    classes : tuple of int
        Original class ids kept, in label order (remapped label ``i`` is ``classes[i]``).
    eval_classes : tuple of int
        Original class ids the eval samples are drawn from.
    names : tuple of str
        Names of the kept classes, in label order.
    """

    def __init__(
        self, classes: tuple[int, ...], eval_classes: tuple[int, ...], names: tuple[str, ...]
    ) -> None:
        self.classes = classes
        self.eval_classes = eval_classes
        self.names = names
        # Lookup table original id -> remapped label (-1: dropped); vectorised remapping.
        self._lut = np.full(max(classes) + 1, -1, dtype=np.int64)
        self._lut[list(classes)] = np.arange(len(classes))

    def remap(self, labels: np.ndarray) -> np.ndarray:
        """Original labels (all kept) -> ``0..C-1`` in the order of ``classes``."""
        return self._lut[labels]

    def mask(self, labels: np.ndarray, *, eval: bool = False) -> np.ndarray:
        """Boolean mask of the samples kept for the train (or eval) split."""
        return np.isin(labels, self.eval_classes if eval else self.classes)


def plan_classes(
    dataset: str,
    class_names: Sequence[str],
    classes: tuple[int, ...] | None,
    eval_classes: tuple[int, ...] | None,
) -> ClassPlan:
    """Check a class subset against a dataset's classes and resolve the defaults.

    Raises
    ------
    DatasetConfigError
        When a class id is outside ``0..len(class_names)-1`` or repeated.
    """
    num = len(class_names)
    kept = tuple(range(num)) if classes is None else tuple(int(c) for c in classes)
    for field, values in (("classes", kept), ("eval_classes", eval_classes or ())):
        bad = sorted({c for c in values if not 0 <= c < num})
        if bad:
            raise DatasetConfigError(
                f"{dataset}: {field} {bad} do not exist; class ids are 0..{num - 1}"
            )
        dupes = sorted({c for c in values if values.count(c) > 1})
        if dupes:
            raise DatasetConfigError(f"{dataset}: {field} lists {dupes} more than once")
    if len(kept) < 2:
        raise DatasetConfigError(f"{dataset}: a classifier needs at least 2 classes, got {list(kept)}")
    evals = kept if eval_classes is None else tuple(int(c) for c in eval_classes)
    missing = sorted(set(evals) - set(kept))
    if missing:
        raise DatasetConfigError(f"{dataset}: eval_classes {missing} are not in classes {list(kept)}")
    return ClassPlan(kept, evals, tuple(str(class_names[c]) for c in kept))


def stratified_choice(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``size`` indices without replacement, each class in proportion to its frequency.

    Allocation is by largest remainder with ties broken at random (so with many small classes,
    which classes get the extra sample changes with the seed instead of always being the first).

    Parameters
    ----------
    labels : numpy.ndarray
        Labels of the candidates ``(N,)``.
    size : int
        Number of indices to draw, at most ``N``.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        Sorted int64 indices into ``labels`` (file order reads faster and keeps the result
        independent of the draw order).
    """
    total = len(labels)
    if size > total:
        raise ValueError(f"cannot draw {size} of {total}")
    if size == total:
        return np.arange(total, dtype=np.int64)
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = size * counts / total
    alloc = np.floor(quota).astype(np.int64)
    short = size - int(alloc.sum())
    if short:
        order = rng.permutation(len(values))
        # Stable sort of a random permutation by descending remainder: random tie-breaking.
        ranked = order[np.argsort(-(quota - alloc)[order], kind="stable")]
        alloc[ranked[:short]] += 1
    # One rng.choice per class (not per sample); a random key per candidate keeps it vectorised:
    # within each class the `alloc` candidates with the smallest keys are taken.
    keys = rng.random(total)
    by_class = np.lexsort((keys, inverse))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(total, dtype=np.int64)
    rank[by_class] = np.arange(total) - np.repeat(starts, counts)
    return np.flatnonzero(rank < alloc[inverse]).astype(np.int64)


def select(
    dataset: str,
    split: str,
    labels: np.ndarray,
    mask: np.ndarray,
    size: int | None,
    rng: np.random.Generator,
    *,
    field: str,
    what: str = "",
) -> np.ndarray:
    """Indices of a seeded stratified subset of the masked candidates.

    Parameters
    ----------
    dataset, split : str
        For the error message.
    labels : numpy.ndarray
        Labels of all candidates ``(N,)``.
    mask : numpy.ndarray
        Boolean ``(N,)``: candidates that pass the class filter.
    size : int or None
        Subset size (all candidates when None).
    rng : numpy.random.Generator
    field : str
        Protocol field that asked for ``size`` (named in the error).
    what : str
        Description of the candidate pool for the error message.

    Returns
    -------
    numpy.ndarray
        Sorted int64 indices into ``labels``.

    Raises
    ------
    DatasetConfigError
        When ``size`` exceeds the number of candidates.
    """
    candidates = np.flatnonzero(mask)
    if size is None:
        return candidates.astype(np.int64)
    if size > len(candidates):
        raise DatasetConfigError(
            f"{dataset}: {field}={size} but only {len(candidates)} {split} images are available"
            f"{what}; lower {field}", field=field, available=len(candidates))
    return candidates[stratified_choice(labels[candidates], size, rng)]


def to_pixel_range(
    images: np.ndarray | torch.Tensor, max_value: float, pixel_range: tuple[float, float]
) -> torch.Tensor:
    """Integer images -> float32 in ``pixel_range``: ``lo + (hi - lo) * (v / max_value)``.

    Done in place on one float32 copy, so peak memory is the selected images once.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor
        Selected images (any integer or float dtype), already ``(N, C, H, W)``.
    max_value : float
        Value that maps to the top of the range (255 for uint8, 16 for scikit-learn digits).
    pixel_range : tuple of float
        ``(lo, hi)``.

    Returns
    -------
    torch.Tensor
        Contiguous float32 tensor.
    """
    src = torch.as_tensor(images)
    # Always a fresh contiguous float32 copy: the in-place scaling below must never touch the
    # caller's array (as_tensor shares memory with float32 inputs).
    t = torch.empty(src.shape, dtype=torch.float32)
    t.copy_(src)
    t.div_(float(max_value))
    lo, hi = float(pixel_range[0]), float(pixel_range[1])
    if (lo, hi) != (0.0, 1.0):
        t.mul_(hi - lo).add_(lo)
    return t
