"""MNIST, Fashion-MNIST, CIFAR-10 and SVHN from the on-disk formats torchvision uses.

Train images come from each dataset's official train split and eval images from its test split.
The (possibly large) uint8 arrays are read whole, but only the seeded subset is converted to float.
A missing file, or a failed download, becomes one :class:`DatasetNotFoundError` that says which files
belong where and where to get them.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimple_stats.protocol.schema import TorchvisionDataset
from runners.datasets._select import plan_classes, rng_for, select, to_pixel_range
from runners.datasets.base import DataFileError, DatasetNotFoundError, DatasetSplits, Split

__all__ = [
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "load_svhn",
    "read_cifar10_batch",
]

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_MNIST_URL = "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
_DIGIT_NAMES = tuple(str(d) for d in range(10))

ImageGetter = Callable[[np.ndarray], "np.ndarray | torch.Tensor"]


@dataclass(frozen=True)
class _Raw:
    """A dataset as read from disk: labels in full, images fetched only for chosen indices."""

    train_images: ImageGetter  # indices -> uint8 (n, C, H, W)
    train_labels: np.ndarray
    test_images: ImageGetter
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]


def _root(config: TorchvisionDataset) -> Path:
    return Path(config.root).expanduser().resolve()


def _missing(directory: Path, files: tuple[str, ...]) -> list[str]:
    return [f for f in files if not (directory / f).is_file()]


def _splits(config: TorchvisionDataset, raw: _Raw, seed: int) -> DatasetSplits:
    """Class filter, seeded stratified subsets, float conversion of the chosen images only."""
    name = config.name
    plan = plan_classes(name, raw.class_names, config.classes, config.eval_classes)
    train_idx = select(
        name, "train", raw.train_labels, plan.mask(raw.train_labels), config.train_samples,
        rng_for(seed, "train"), field="train_samples",
        what=f" in classes {list(plan.classes)} of the train split",
    )
    eval_idx = select(
        name, "eval", raw.test_labels, plan.mask(raw.test_labels, eval=True), config.eval_samples,
        rng_for(seed, "eval"), field="eval_samples",
        what=f" in eval_classes {list(plan.eval_classes)} of the test split",
    )

    def make(get: ImageGetter, labels: np.ndarray, idx: np.ndarray) -> Split:
        x = to_pixel_range(get(idx), 255.0, config.pixel_range)
        return Split(x=x, y=torch.from_numpy(plan.remap(labels[idx])),
                     index=torch.from_numpy(np.asarray(idx, dtype=np.int64)))

    return DatasetSplits(
        name=name,
        train=make(raw.train_images, raw.train_labels, train_idx),
        eval=make(raw.test_images, raw.test_labels, eval_idx),
        image_shape=raw.image_shape,
        num_classes=len(plan.classes),
        class_names=plan.names,
        pixel_range=tuple(float(v) for v in config.pixel_range),  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- MNIST-style IDX files


#: IDX headers with a rank above this are not image or label files.
_MAX_IDX_RANK = 4
#: What to do about a damaged or mismatched IDX file, ending each such error line.
_REPLACE = ("; replace it with an intact copy of the dataset's files (the four from one "
            "source, gunzipped or not)")


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (LeCun's format: ``0x0000``, a type code, the rank, big-endian sizes, data),
    gunzipped first when its name ends in ``.gz``; a damaged file is a :class:`DataFileError`
    naming it and what is wrong.

    Written here because torchvision's reader opens only uncompressed files and fails on a
    damaged one with a bare ``RuntimeError``/``AssertionError``, and Debian's
    ``dataset-fashion-mnist`` ships the original gzipped ones; unsigned bytes are all
    MNIST-style sets use.
    """
    import gzip
    import zlib

    p = Path(path)
    try:
        raw = p.read_bytes()
        data = gzip.decompress(raw) if p.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataFileError(f"{p}: cannot read ({exc}){_REPLACE}") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataFileError(f"{p}: not an IDX file of unsigned bytes (its first 4 bytes are "
                            f"{data[:4].hex() or 'missing'}, expected 000008 and a rank){_REPLACE}")
    rank = data[3]
    if not 1 <= rank <= _MAX_IDX_RANK or len(data) < 4 + 4 * rank:
        raise DataFileError(f"{p}: IDX header of rank {rank} is damaged or truncated{_REPLACE}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    expected = int(np.prod(shape, dtype=np.int64))
    if body.size != expected:
        what = "truncated" if body.size < expected else "followed by trailing bytes"
        raise DataFileError(f"{p}: {body.size} bytes of data for the header's shape {shape} "
                            f"({what}){_REPLACE}")
    return body.reshape(shape)


def _checked_split(images_path: Path, labels_path: Path, classes: int) -> _IdxSplit:
    """An images file and its labels file, checked against each other: (n, 28, 28) images, n
    labels, every label a class id."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) == 0:
        raise DataFileError(f"{images_path}: expected (n, 28, 28) images, got shape "
                            f"{images.shape}{_REPLACE}")
    if labels.ndim != 1:
        raise DataFileError(f"{labels_path}: expected one label per image, got shape "
                            f"{labels.shape}{_REPLACE}")
    if len(labels) != len(images):
        raise DataFileError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                            f"of {images_path.name}{_REPLACE}")
    bad = labels >= classes
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataFileError(f"{labels_path}: label {int(labels[first])} at position {first} is "
                            f"not a class id 0-{classes - 1} ({int(bad.sum())} such labels){_REPLACE}")
    return _IdxSplit(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))


def _flat_idx_files(root: Path) -> dict[str, Path]:
    """The IDX files lying directly in ``root``, gzipped or not (Debian's
    ``dataset-fashion-mnist`` installs the four ``*-idx?-ubyte.gz`` in one flat directory)."""
    found = {}
    for name in _IDX_FILES:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    return found


@dataclass(frozen=True)
class _IdxSplit:
    """One split read from flat IDX files, in the attributes torchvision's datasets have."""

    data: torch.Tensor  # (n, 28, 28) uint8
    targets: torch.Tensor  # (n,) int64


def _read_idx_dataset(
    config: TorchvisionDataset, class_name: str, folder: str, url: str
) -> tuple[Any, Any]:
    """MNIST/FashionMNIST for both splits, from a flat directory of (gzipped) IDX files or
    torchvision's ``<root>/<folder>/raw/``; missing files -> DatasetNotFoundError."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    root = _root(config)
    flat = _flat_idx_files(root)
    def split(files: dict[str, Path], prefix: str) -> _IdxSplit:
        return _checked_split(files[f"{prefix}-images-idx3-ubyte"],
                              files[f"{prefix}-labels-idx1-ubyte"], classes=10)

    if len(flat) == len(_IDX_FILES):
        return split(flat, "train"), split(flat, "t10k")
    if flat:  # some of them here: the user meant this directory
        raise DatasetNotFoundError(
            config.name, str(root), _IDX_FILES, url,
            missing=[n for n in _IDX_FILES if n not in flat],
            how=f"put all four IDX files (gzipped or not) in {root}; Debian's "
            "dataset-fashion-mnist installs Fashion-MNIST's in /usr/share/datasets/fashion-mnist")
    raw_dir = root / folder / "raw"
    local = _flat_idx_files(raw_dir)
    if len(local) == len(_IDX_FILES):  # read (and checked) here, not by torchvision
        return split(local, "train"), split(local, "t10k")
    try:
        # torchvision reads the raw IDX files by name (no md5 check), so hand-made subsets work.
        train = cls(str(root), train=True, download=config.download)
        test = cls(str(root), train=False, download=False)
    except Exception as exc:  # "not found" and failed downloads: RuntimeError, URLError, OSError
        missing = _missing(raw_dir, _IDX_FILES)
        if not missing:
            raise  # the files are there but unreadable: a real error, not a missing dataset
        raise DatasetNotFoundError(
            config.name, str(raw_dir), _IDX_FILES, url,
            missing=missing,
            how=(
                "set `download: true` in the protocol's dataset section on a machine with network "
                f"access, or copy the files (gunzipped) into that directory (official source: {url})"
            ),
            cause=_cause(exc) if config.download else None,
        ) from exc
    return train, test


def _idx_raw(train: Any, test: Any, names: tuple[str, ...]) -> _Raw:
    def getter(data: torch.Tensor) -> ImageGetter:
        return lambda idx: data[torch.from_numpy(idx)].unsqueeze(1)

    return _Raw(
        train_images=getter(train.data),
        train_labels=train.targets.numpy().astype(np.int64),
        test_images=getter(test.data),
        test_labels=test.targets.numpy().astype(np.int64),
        class_names=names,
        image_shape=(1, 28, 28),
    )


def load_mnist(config: TorchvisionDataset, seed: int = 0) -> DatasetSplits:
    """MNIST from ``<root>/MNIST/raw/`` (the four uncompressed IDX files), or from ``<root>``
    itself holding the four files, gzipped or not.

    Parameters
    ----------
    config : TorchvisionDataset
        ``name: mnist``.
    seed : int
        Replication seed: chooses the train and eval subsets.

    Returns
    -------
    DatasetSplits
        ``(1, 28, 28)`` images; train from the train files, eval from the t10k files.
    """
    train, test = _read_idx_dataset(config, "MNIST", "MNIST", _MNIST_URL)
    return _splits(config, _idx_raw(train, test, _DIGIT_NAMES), seed)


def load_fashion_mnist(config: TorchvisionDataset, seed: int = 0) -> DatasetSplits:
    """Fashion-MNIST from ``<root>/FashionMNIST/raw/`` (same IDX layout and file names as MNIST),
    or from ``<root>`` itself holding the four files, gzipped or not: Debian's
    ``apt-get install dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist``.

    Parameters
    ----------
    config : TorchvisionDataset
        ``name: fashion_mnist``.
    seed : int
        Replication seed.

    Returns
    -------
    DatasetSplits
    """
    train, test = _read_idx_dataset(config, "FashionMNIST", "FashionMNIST", _FASHION_URL)
    return _splits(config, _idx_raw(train, test, _FASHION_NAMES), seed)


# --------------------------------------------------------------------------- CIFAR-10 pickles

# torchvision's CIFAR10 uses unrestricted pickle.load (arbitrary code execution from a file) and
# md5-checks every batch, which rejects the small subsets tests and users write. Our reader allows
# only the globals a pickled numpy array needs: numpy's array/scalar reconstructors and dtype
# (under both numpy 1's `numpy.core` and numpy 2's `numpy._core` names), and `_codecs.encode`,
# with which Python 3 writes bytes into protocol-2 pickles.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
    | {
        (f"{pkg}.{mod}", name)
        for pkg in ("numpy.core", "numpy._core")
        for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                          ("numeric", "_frombuffer"))
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR-10 batch holds only numpy "
                "arrays, lists and strings"
            )
        if module.startswith("numpy.core."):
            # Pickles written by numpy 1 (and the real CIFAR-10 files) name numpy.core, which
            # numpy 2 renamed numpy._core.
            module = "numpy._core." + module.removeprefix("numpy.core.")
            if importlib.util.find_spec("numpy._core") is None:  # numpy 1
                module = module.replace("numpy._core.", "numpy.core.")
        return getattr(importlib.import_module(module), name)


def read_cifar10_batch(path: str | Path) -> dict[str, Any]:
    """Read one CIFAR-10 python batch (or ``batches.meta``) without executing arbitrary code.

    The official files are Python 2 pickles: they are read with ``encoding="latin1"`` and keys
    are normalised to ``str`` (files re-written by Python 3 may have ``bytes`` keys).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        The batch with ``str`` keys (``data``, ``labels``, ``label_names``, ...).

    Raises
    ------
    pickle.UnpicklingError
        When the file references anything but numpy's array reconstruction.
    """
    with open(path, "rb") as fh:
        obj = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"{path}: expected a dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar10_batch(path)
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # row-major CHW
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def _download_cifar10(root: Path) -> None:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    # Only the fetch (with torchvision's md5 check of the archive); reading is ours, see above.
    download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)


def load_cifar10(config: TorchvisionDataset, seed: int = 0) -> DatasetSplits:
    """CIFAR-10 from ``<root>/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``).

    Parameters
    ----------
    config : TorchvisionDataset
        ``name: cifar10``.
    seed : int
        Replication seed.

    Returns
    -------
    DatasetSplits
        ``(3, 32, 32)`` images; class names from ``batches.meta``.
    """
    root = _root(config)
    folder = root / _CIFAR_DIR
    _fetch_if_missing(
        config, folder, _CIFAR_FILES, _CIFAR_URL, lambda: _download_cifar10(root),
        how=(
            "set `download: true` in the protocol's dataset section on a machine with network "
            f"access, or download {_CIFAR_URL} and extract it into {root}"
        ),
    )
    parts = [_cifar_arrays(folder / f"data_batch_{i}") for i in range(1, 6)]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _cifar_arrays(folder / "test_batch")
    names = read_cifar10_batch(folder / "batches.meta")["label_names"]
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    raw = _Raw(
        train_images=lambda idx: train_x[idx],
        train_labels=train_y,
        test_images=lambda idx: test_x[idx],
        test_labels=test_y,
        class_names=names,
        image_shape=(3, 32, 32),
    )
    return _splits(config, raw, seed)


# --------------------------------------------------------------------------- SVHN .mat files


def _download_svhn(root: Path, files: list[str]) -> None:
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import download_url

    by_name = {fname: (url, md5) for url, fname, md5 in SVHN.split_list.values()}
    for fname in files:
        url, md5 = by_name[fname]
        download_url(url, str(root), filename=fname, md5=md5)


def _svhn_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    mat = loadmat(str(path))
    images = mat["X"]  # (32, 32, 3, N) uint8: height, width, channel, sample
    labels = np.asarray(mat["y"], dtype=np.int64).ravel()
    labels[labels == 10] = 0  # SVHN stores digit 0 as label 10
    return images, labels


def load_svhn(config: TorchvisionDataset, seed: int = 0) -> DatasetSplits:
    """SVHN (cropped digits) from ``<root>/train_32x32.mat`` and ``<root>/test_32x32.mat``.

    Parameters
    ----------
    config : TorchvisionDataset
        ``name: svhn``.
    seed : int
        Replication seed.

    Returns
    -------
    DatasetSplits
        ``(3, 32, 32)`` images; label ``d`` is digit ``d`` (the files' label 10 becomes 0).
    """
    root = _root(config)
    _fetch_if_missing(
        config, root, _SVHN_FILES, _SVHN_URL + "train_32x32.mat and test_32x32.mat",
        lambda: _download_svhn(root, _missing(root, _SVHN_FILES)),
    )
    train_x, train_y = _svhn_arrays(root / "train_32x32.mat")
    test_x, test_y = _svhn_arrays(root / "test_32x32.mat")

    def getter(images: np.ndarray) -> ImageGetter:
        # Index the sample axis first so only the chosen images are copied, then to (n, C, H, W).
        return lambda idx: np.transpose(images[..., idx], (3, 2, 0, 1))

    raw = _Raw(
        train_images=getter(train_x),
        train_labels=train_y,
        test_images=getter(test_x),
        test_labels=test_y,
        class_names=_DIGIT_NAMES,
        image_shape=(3, 32, 32),
    )
    return _splits(config, raw, seed)


# --------------------------------------------------------------------------- shared


def _cause(exc: BaseException) -> str:
    """First line of an exception, for the one-line not-found message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _fetch_if_missing(
    config: TorchvisionDataset,
    directory: Path,
    files: tuple[str, ...],
    url: str,
    download: Callable[[], None],
    how: str | None = None,
) -> None:
    """Download when allowed and needed; afterwards every file must exist or we raise."""
    missing = _missing(directory, files)
    if not missing:
        return
    cause = None
    if config.download:
        try:
            download()
        except Exception as exc:  # URLError, RuntimeError (md5), OSError, ...: all mean "not here"
            cause = _cause(exc)
        missing = _missing(directory, files)
        if not missing:
            return
    raise DatasetNotFoundError(
        config.name, str(directory), files, url, missing=missing, how=how, cause=cause
    )
