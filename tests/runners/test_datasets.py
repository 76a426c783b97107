"""Dataset layer: every loader reads small files written here in the REAL on-disk formats.

No loader is mocked and nothing touches the network: MNIST/Fashion-MNIST as IDX files, CIFAR-10 as
pickled batches (including a Python-2 style pickle like the official files), SVHN as .mat files,
image folders as PNGs. Known images are written and read back exactly after the range mapping.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
from PIL import Image

from dimple_stats.protocol.schema import (
    DigitsDataset,
    ImageFolderDataset,
    LinearSubspaceDataset,
    SyntheticDataset,
    TorchvisionDataset,
)
from runners.datasets import (
    DATASETS,
    DatasetConfigError,
    DatasetNotFoundError,
    DatasetSplits,
    Split,
    load_dataset,
)
from runners.datasets._select import stratified_choice
from runners.datasets.torchvision_sets import read_cifar10_batch

# ----------------------------------------------------------------------------- file writers


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX as in LeCun's MNIST files: magic 0x0000080<ndim> (uint8), big-endian dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def known_image(shape: tuple[int, ...]) -> np.ndarray:
    """A deterministic uint8 image containing both 0 and 255, asymmetric along every axis."""
    ramp = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    img = (ramp * 37) % 256
    img.flat[0], img.flat[-1] = 0, 255
    return img.astype(np.uint8)


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 40) -> dict:
    """Random IDX files with labels cycling 0..9; test image 0 is ``known_image``."""
    rng = np.random.default_rng(123)
    train_x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    test_x = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    test_x[0] = known_image((28, 28))
    train_y = np.arange(n_train) % 10
    test_y = np.arange(n_test) % 10
    raw = root / folder / "raw"
    write_idx(raw / "train-images-idx3-ubyte", train_x)
    assert (raw / "train-images-idx3-ubyte").read_bytes()[:4] == b"\x00\x00\x08\x03"
    write_idx(raw / "train-labels-idx1-ubyte", train_y)
    assert (raw / "train-labels-idx1-ubyte").read_bytes()[:4] == b"\x00\x00\x08\x01"
    write_idx(raw / "t10k-images-idx3-ubyte", test_x)
    write_idx(raw / "t10k-labels-idx1-ubyte", test_y)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


class _Py2Array:
    """Pickles an ndarray the way Python 2 numpy did for the official CIFAR-10 files: a protocol-2
    ``numpy.core.multiarray._reconstruct`` call whose raw data is a (latin-1) string."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        a = self.array
        state = (1, a.shape, a.dtype, False, a.tobytes().decode("latin1"))
        return (_reconstruct, (np.ndarray, (0,), "b"), state)


def _dump(obj: dict, path: Path, style: str) -> None:
    if style == "py2":
        obj = {k: _Py2Array(v) if isinstance(v, np.ndarray) else v for k, v in obj.items()}
        blob = pickle.dumps(obj, protocol=2)
        # Python 2 era numpy lived in numpy.core (numpy 2 renamed it numpy._core).
        blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    elif style == "bytes_keys":
        blob = pickle.dumps({k.encode(): v for k, v in obj.items()})
    else:
        blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    path.write_bytes(blob)


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root: Path, style: str = "py2", per_batch: int = 10, n_test: int = 20) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    train_y = []
    for b in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(per_batch) + b) % 10]
        train_y += labels
        _dump({"batch_label": f"training batch {b} of 5", "data": data, "labels": labels},
              folder / f"data_batch_{b}", style)
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test[0] = known_image((3072,))  # row-major (3, 32, 32): R plane, G plane, B plane
    test_y = [int(v) for v in np.arange(n_test) % 10]
    _dump({"batch_label": "testing batch 1 of 1", "data": test, "labels": test_y},
          folder / "test_batch", style)
    _dump({"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch}, folder / "batches.meta", style)
    return {"test": test, "test_y": np.array(test_y), "train_y": np.array(train_y)}


def write_svhn(root: Path, n_train: int = 30, n_test: int = 20) -> dict:
    from scipy.io import savemat

    rng = np.random.default_rng(11)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # labels 1..10; 10 is digit 0
        if split == "test":
            x[..., 0] = known_image((32, 32, 3))  # (height, width, channel)
        savemat(str(root / f"{split}_32x32.mat"), {"X": x, "y": y})
        out[split] = (x, y)
    return out


def write_imagefolder(root: Path, size: int = 8, per_class: int = 4) -> dict:
    rng = np.random.default_rng(5)
    images = {}
    for split in ("train", "val"):
        for cls in ("cat", "ant", "bee"):  # sorted: ant=0, bee=1, cat=2
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                if (split, cls, i) == ("val", "bee", 0):
                    img = known_image((size, size, 3))
                Image.fromarray(img).save(folder / f"{i:03d}.png")
                images[(split, cls, i)] = img
            (folder / "notes.txt").write_text("not an image")
    return images


# ----------------------------------------------------------------------------- registry


def test_registry_names_every_schema_dataset() -> None:
    assert set(DATASETS) == {
        "synthetic", "linear_subspace", "digits", "mnist", "fashion_mnist", "cifar10", "svhn",
        "imagefolder",
    }


def test_unknown_dataset_suggests_nearest_name() -> None:
    with pytest.raises(DatasetConfigError, match=r"unknown dataset 'mnits' \(did you mean 'mnist'\?\)"):
        load_dataset({"name": "mnits"})


def test_mapping_config_is_validated_then_loaded() -> None:
    data = load_dataset({"name": "digits", "eval_samples": 20, "train_samples": 30}, seed=0)
    assert (len(data.eval), len(data.train)) == (20, 30)


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(DatasetConfigError, match="non-negative"):
        load_dataset(DigitsDataset(name="digits", eval_samples=10), seed=-1)


def test_stratified_choice_keeps_class_proportions() -> None:
    labels = np.repeat([0, 1, 2, 3], [100, 100, 50, 50])
    idx = stratified_choice(labels, 60, np.random.default_rng(0))
    assert len(np.unique(idx)) == 60 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [20, 20, 10, 10]


# ----------------------------------------------------------------------------- digits


def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def test_digits_shapes_range_and_exact_round_trip() -> None:
    lo, hi = -1.0, 1.0
    data = load_dataset(DigitsDataset(name="digits", eval_samples=300, pixel_range=(lo, hi)), seed=3)
    assert isinstance(data, DatasetSplits) and data.image_shape == (1, 8, 8) and data.n == 64
    assert (len(data.eval), len(data.train)) == (300, 1797 - 300)
    for split in (data.train, data.eval):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 8, 8)
        assert split.x.min().item() == lo and split.x.max().item() == hi  # 0 and 16 occur
    # Undo the range mapping: train + eval is exactly the 1,797 digits (a partition, so disjoint).
    images, target = _digits()
    x = torch.cat([data.train.x, data.eval.x]).numpy().reshape(-1, 64)
    back = np.rint((x.astype(np.float64) - lo) / (hi - lo) * 16)
    np.testing.assert_allclose((back / 16) * (hi - lo) + lo, x, atol=1e-6)
    got = sorted(map(bytes, np.c_[back, np.r_[data.train.y, data.eval.y]].astype(np.uint8)))
    want = sorted(map(bytes, np.c_[images.reshape(-1, 64), target].astype(np.uint8)))
    assert got == want


def test_digits_eval_split_is_stratified() -> None:
    data = load_dataset(DigitsDataset(name="digits", eval_samples=200), seed=0)
    counts = torch.bincount(data.eval.y, minlength=10)
    assert counts.sum() == 200 and counts.min() >= 19 and counts.max() <= 21


def test_digits_class_subset_remaps_labels_and_respects_eval_classes() -> None:
    cfg = DigitsDataset(name="digits", classes=(7, 2, 5), eval_classes=(5,), eval_samples=50)
    data = load_dataset(cfg, seed=1)
    assert data.num_classes == 3 and data.class_names == ("7", "2", "5")
    assert set(data.eval.y.tolist()) == {2}  # digit 5 is label 2 (its position in classes)
    assert set(data.train.y.tolist()) == {0, 1, 2}
    # Every image carries the label of its true digit: look each one up in the raw data.
    images, target = _digits()
    truth = {bytes(img.astype(np.uint8).ravel()): t for img, t in zip(images, target)}
    for split in (data.train, data.eval):
        raw = np.rint(split.x.numpy().reshape(-1, 64) * 16).astype(np.uint8)
        originals = [truth[bytes(r)] for r in raw]
        assert [cfg.classes[label] for label in split.y.tolist()] == originals


def test_digits_determinism() -> None:
    cfg = DigitsDataset(name="digits", eval_samples=100, train_samples=200)
    a, b, c = load_dataset(cfg, 4), load_dataset(cfg, 4), load_dataset(cfg, 5)
    assert torch.equal(a.eval.x, b.eval.x) and torch.equal(a.train.y, b.train.y)
    assert torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.eval.x, c.eval.x) and not torch.equal(a.train.x, c.train.x)


def test_digits_too_many_eval_samples_names_the_numbers() -> None:
    # Digits 0 and 1 have 178 + 182 = 360 images.
    with pytest.raises(DatasetConfigError, match=r"eval_samples=400 but only 360 eval images"):
        load_dataset(DigitsDataset(name="digits", classes=(0, 1), eval_samples=400))
    with pytest.raises(DatasetConfigError, match=r"train_samples=300 but only 260 train images"):
        load_dataset(DigitsDataset(name="digits", classes=(0, 1), eval_samples=100, train_samples=300))


def test_unknown_class_id_is_a_config_error() -> None:
    # refused by the config itself (validate, before any data), where the dataset fixes its
    # classes; the loader still refuses ids its files do not have (image folders)
    with pytest.raises(pydantic.ValidationError, match=r"classes: \[12\] are not classes of digits"):
        DigitsDataset(name="digits", classes=(1, 12))
    with pytest.raises(DatasetConfigError, match=r"classes \[12\] do not exist; class ids are 0..9"):
        load_dataset(DigitsDataset.model_construct(name="digits", classes=(1, 12),
                                                   **{k: v.default for k, v in
                                                      DigitsDataset.model_fields.items()
                                                      if k not in ("name", "classes")}))


def test_no_true_tangent_space_for_real_images() -> None:
    data = load_dataset(DigitsDataset(name="digits", eval_samples=10), seed=0)
    assert data.manifold is None and data.eval.latent is None
    with pytest.raises(ValueError, match="only for the synthetic and linear_subspace"):
        data.eval.tangent_basis()


# ----------------------------------------------------------------------------- MNIST / Fashion-MNIST


def test_mnist_idx_round_trip_in_pixel_range(tmp_path: Path) -> None:
    files = write_mnist(tmp_path)
    cfg = TorchvisionDataset(name="mnist", root=str(tmp_path), eval_samples=40, pixel_range=(-1, 1))
    data = load_dataset(cfg, seed=0)
    assert data.image_shape == (1, 28, 28) and data.class_names[:2] == ("0", "1")
    assert data.train.x.shape == (60, 1, 28, 28) and data.eval.x.shape == (40, 1, 28, 28)
    assert data.eval.x.dtype == torch.float32 and data.eval.y.dtype == torch.int64
    # All 40 test images, in file order: image 0 is the known one, read back exactly.
    expected = torch.from_numpy(files["test_x"][0]).to(torch.float32) / 255.0 * 2.0 - 1.0
    assert torch.equal(data.eval.x[0, 0], expected)
    assert data.eval.x[0].min().item() == -1.0 and data.eval.x[0].max().item() == 1.0
    assert data.eval.x.min() >= -1.0 and data.eval.x.max() <= 1.0
    assert data.eval.y.tolist() == files["test_y"].tolist()
    assert torch.equal(data.train.x, torch.from_numpy(files["train_x"]).float()[:, None] / 255 * 2 - 1)


def test_fashion_mnist_subset_remap_eval_classes(tmp_path: Path) -> None:
    files = write_mnist(tmp_path, folder="FashionMNIST")
    cfg = TorchvisionDataset(
        name="fashion_mnist", root=str(tmp_path), classes=(9, 0), eval_classes=(0,), eval_samples=4
    )
    data = load_dataset(cfg, seed=2)
    assert data.class_names == ("Ankle boot", "T-shirt/top") and data.num_classes == 2
    assert data.eval.y.tolist() == [1, 1, 1, 1]  # only class 0 (T-shirt/top), remapped to 1
    assert sorted(data.train.y.tolist()) == [0] * 6 + [1] * 6
    # The train images labelled 0 are exactly the files' class-9 images.
    nines = torch.from_numpy(files["train_x"][files["train_y"] == 9]).float()[:, None] / 255
    assert torch.equal(data.train.x[data.train.y == 0], nines)


def test_mnist_subsets_are_seeded(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    cfg = TorchvisionDataset(name="mnist", root=str(tmp_path), train_samples=20, eval_samples=10)
    a, b, c = (load_dataset(cfg, s) for s in (0, 0, 1))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.eval.x, b.eval.x)
    assert not torch.equal(a.train.x, c.train.x) and not torch.equal(a.eval.x, c.eval.x)
    assert torch.bincount(a.eval.y).tolist() == [1] * 10  # stratified: one of each digit
    # The attacked images do not depend on how many training images were asked for.
    more = load_dataset(cfg.model_copy(update={"train_samples": 30}), 0)
    assert torch.equal(more.eval.x, a.eval.x)


def test_mnist_offline_error_names_files_and_directory(tmp_path: Path) -> None:
    cfg = TorchvisionDataset(name="mnist", root=str(tmp_path), download=False)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(cfg)
    message = str(info.value)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert name in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "download: true" in message and "yann.lecun.com/exdb/mnist" in message


def test_download_true_with_files_present_never_fetches(tmp_path: Path) -> None:
    # This machine has no network: a fetch attempt would fail, so success proves none was made.
    write_mnist(tmp_path)
    write_cifar(tmp_path, style="py3")
    for name in ("mnist", "cifar10"):
        cfg = TorchvisionDataset(name=name, root=str(tmp_path), download=True, eval_samples=5)
        assert len(load_dataset(cfg).eval) == 5


def test_mnist_too_many_eval_samples(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    cfg = TorchvisionDataset(name="mnist", root=str(tmp_path), classes=(1, 2), eval_samples=9)
    with pytest.raises(DatasetConfigError, match="eval_samples=9 but only 8 eval images"):
        load_dataset(cfg)


def test_real_mnist_sample(mnist_sample: Path) -> None:
    cfg = TorchvisionDataset(name="mnist", root=str(mnist_sample), eval_samples=1000)
    data = load_dataset(cfg, seed=0)
    assert (len(data.train), len(data.eval)) == (4000, 1000)
    assert data.train.x.min().item() == 0.0 and data.train.x.max().item() == 1.0
    # Real handwritten digits: MNIST's mean intensity is 0.1307, most pixels are background.
    assert 0.11 < data.train.x.mean().item() < 0.15
    assert (data.train.x == 0).float().mean().item() > 0.7
    assert torch.bincount(data.train.y, minlength=10).min() > 300  # roughly balanced
    with pytest.raises(DatasetConfigError, match="eval_samples=1001 but only 1000"):
        load_dataset(cfg.model_copy(update={"eval_samples": 1001}))


# ----------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("style", ["py2", "py3", "bytes_keys"])
def test_cifar10_reads_pickled_batches(tmp_path: Path, style: str) -> None:
    files = write_cifar(tmp_path, style=style)
    cfg = TorchvisionDataset(name="cifar10", root=str(tmp_path), eval_samples=20, pixel_range=(0, 1))
    data = load_dataset(cfg, seed=0)
    assert data.class_names == tuple(CIFAR_NAMES) and data.image_shape == (3, 32, 32)
    assert data.train.x.shape == (50, 3, 32, 32) and data.eval.x.shape == (20, 3, 32, 32)
    expected = torch.from_numpy(files["test"][0].reshape(3, 32, 32)).to(torch.float32) / 255.0
    assert torch.equal(data.eval.x[0], expected)
    assert data.eval.x[0].min().item() == 0.0 and data.eval.x[0].max().item() == 1.0
    assert data.eval.y.tolist() == files["test_y"].tolist()
    assert sorted(data.train.y.tolist()) == sorted(files["train_y"].tolist())


def test_cifar10_class_subset_and_eval_classes(tmp_path: Path) -> None:
    write_cifar(tmp_path, style="py3")
    cfg = TorchvisionDataset(
        name="cifar10", root=str(tmp_path), classes=(0, 1), eval_classes=(1,), eval_samples=2
    )
    data = load_dataset(cfg, seed=0)
    assert data.class_names == ("airplane", "automobile")
    assert data.eval.y.tolist() == [1, 1] and set(data.train.y.tolist()) == {0, 1}
    assert len(data.train) == 10  # 5 batches x (one airplane + one automobile)


def test_cifar10_reader_refuses_arbitrary_globals(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        read_cifar10_batch(path)


def test_cifar10_offline_error(tmp_path: Path) -> None:
    cfg = TorchvisionDataset(name="cifar10", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(cfg)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    for name in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert name in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


# ----------------------------------------------------------------------------- SVHN


def test_svhn_mat_layout_and_label_ten_is_zero(tmp_path: Path) -> None:
    files = write_svhn(tmp_path)
    cfg = TorchvisionDataset(name="svhn", root=str(tmp_path), eval_samples=20, pixel_range=(-0.5, 0.5))
    data = load_dataset(cfg, seed=0)
    assert data.train.x.shape == (30, 3, 32, 32) and data.eval.x.shape == (20, 3, 32, 32)
    # .mat stores (height, width, channel, sample); we return (channel, height, width).
    hwc = files["test"][0][..., 0]
    expected = torch.from_numpy(hwc.transpose(2, 0, 1).copy()).to(torch.float32) / 255.0 * 1.0 - 0.5
    assert torch.equal(data.eval.x[0], expected)
    assert data.eval.x.min().item() == -0.5 and data.eval.x.max().item() == 0.5
    assert data.eval.y.tolist() == [(i % 10 + 1) % 10 for i in range(20)]  # 10 -> digit 0


def test_svhn_offline_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(TorchvisionDataset(name="svhn", root=str(tmp_path)))
    message = str(info.value)
    assert "train_32x32.mat" in message and "test_32x32.mat" in message and str(tmp_path) in message
    assert "http://ufldl.stanford.edu/housenumbers/" in message


# ----------------------------------------------------------------------------- image folders


def test_imagefolder_png_round_trip(tmp_path: Path) -> None:
    images = write_imagefolder(tmp_path)
    cfg = ImageFolderDataset(name="imagefolder", root=str(tmp_path), image_size=8, eval_samples=12)
    data = load_dataset(cfg, seed=0)
    assert data.class_names == ("ant", "bee", "cat")  # sorted folder names; .txt files ignored
    assert data.train.x.shape == (12, 3, 8, 8) and data.eval.x.shape == (12, 3, 8, 8)
    assert data.eval.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    expected = torch.from_numpy(images[("val", "bee", 0)].transpose(2, 0, 1).copy()).float() / 255.0
    assert torch.equal(data.eval.x[4], expected)
    assert data.eval.x[4].min().item() == 0.0 and data.eval.x[4].max().item() == 1.0


def test_imagefolder_subset_classes_resize_and_crop(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    # A larger non-square JPEG: resized (shorter side 20 -> 8) and centre-cropped to 8x8.
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "train" / "cat" / "wide.jpg")
    cfg = ImageFolderDataset(
        name="imagefolder", root=str(tmp_path), image_size=8, classes=(2, 0), eval_classes=(2,),
        eval_samples=3, pixel_range=(-1, 1),
    )
    a, b = load_dataset(cfg, 0), load_dataset(cfg, 0)
    assert a.class_names == ("cat", "ant") and a.train.x.shape == (9, 3, 8, 8)  # 5 cats + 4 ants
    assert sorted(a.train.y.tolist()) == [0] * 5 + [1] * 4
    assert a.eval.y.tolist() == [0, 0, 0]
    assert a.train.x.min() >= -1 and a.train.x.max() <= 1
    grey = (a.train.x - (200 / 255 * 2 - 1)).abs().amax(dim=(1, 2, 3))
    assert grey.min() < 3 / 255  # the constant JPEG survived resize + crop
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.eval.x, b.eval.x)
    seeds = {load_dataset(cfg, s).eval.x.sum().item() for s in range(6)}
    assert len(seeds) > 1  # different seeds pick different files
    with pytest.raises(DatasetConfigError, match="train_samples=10 but only 9 train images"):
        load_dataset(cfg.model_copy(update={"train_samples": 10}))


def test_imagefolder_imagenet_normalisation(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    cfg = ImageFolderDataset(
        name="imagefolder", root=str(tmp_path), image_size=8, eval_samples=3, normalize="imagenet"
    )
    data = load_dataset(cfg, 0)
    lo, hi = data.pixel_range
    assert lo == pytest.approx(-0.485 / 0.229) and hi == pytest.approx((1 - 0.406) / 0.225)
    assert data.eval.x.min() < 0 < data.eval.x.max()
    with pytest.raises(pydantic.ValidationError, match="pixel_range"):
        ImageFolderDataset(**{**cfg.model_dump(), "pixel_range": (-1.0, 1.0)})


def test_imagefolder_missing_tree(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(ImageFolderDataset(name="imagefolder", root=str(tmp_path / "imagenet")))
    message = str(info.value)
    assert str(tmp_path / "imagenet") in message and "train/<class>/" in message and "val/<class>/" in message


# ----------------------------------------------------------------------------- synthetic manifold


@pytest.fixture(scope="module")
def synthetic() -> DatasetSplits:
    cfg = SyntheticDataset(
        name="synthetic", latent_dim=4, image_shape=(2, 6, 6), hidden=16, num_classes=3,
        train_samples=300, eval_samples=50, pixel_range=(-1, 1), manifold_seed=3,
    )
    return load_dataset(cfg, seed=0)


def test_synthetic_shapes_range_labels(synthetic: DatasetSplits) -> None:
    assert synthetic.image_shape == (2, 6, 6) and synthetic.n == 72
    assert synthetic.train.x.shape == (300, 2, 6, 6) and synthetic.train.latent.shape == (300, 4)
    assert synthetic.train.x.dtype == torch.float32
    assert -1 <= synthetic.train.x.min() and synthetic.train.x.max() <= 1
    assert synthetic.train.x.std(dim=0).mean() > 0.1  # images vary along the manifold
    assert set(synthetic.train.y.tolist()) == {0, 1, 2}


def test_synthetic_points_lie_on_the_manifold(synthetic: DatasetSplits) -> None:
    m, split = synthetic.manifold, synthetic.eval
    assert torch.equal(m.decode(split.latent.double()).float(), split.x)
    assert torch.allclose(m.decode(split.latent), split.x, atol=1e-6)
    decoder = m.as_module()
    assert isinstance(decoder, torch.nn.Module) and not list(decoder.parameters())
    assert torch.equal(decoder(split.latent), m.decode(split.latent))
    decoder64 = m.as_module(torch.float64)
    assert torch.equal(decoder64(split.latent.double()), m.decode(split.latent.double()))


def test_synthetic_jacobian_matches_finite_differences(synthetic: DatasetSplits) -> None:
    m = synthetic.manifold
    z = synthetic.eval.latent[:8].double()
    jac = m.jacobian(z)
    assert jac.shape == (8, 72, 4) and jac.dtype == torch.float64
    h = 1e-5
    fd = torch.stack(
        [(m.decode(z + h * e) - m.decode(z - h * e)).reshape(8, -1) / (2 * h)
         for e in torch.eye(4, dtype=torch.float64)],
        dim=-1,
    )
    assert ((jac - fd).norm() / jac.norm()).item() < 1e-5


def test_synthetic_tangent_basis_is_orthonormal_and_spans_the_jacobian(synthetic: DatasetSplits) -> None:
    basis = synthetic.eval.tangent_basis()
    assert basis.shape == (50, 72, 4) and basis.dtype == torch.float64
    eye = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(basis.transpose(1, 2) @ basis, eye.expand(50, 4, 4), atol=1e-10)
    jac = synthetic.manifold.jacobian(synthetic.eval.latent.double())
    residual = jac - basis @ (basis.transpose(1, 2) @ jac)
    assert residual.abs().max() < 1e-10
    assert torch.allclose(synthetic.eval.tangent_basis([3, 4]), basis[[3, 4]], atol=1e-12)
    assert synthetic.eval.tangent_basis(7).shape == (1, 72, 4)


def test_synthetic_manifold_fixed_across_seeds_samples_not() -> None:
    cfg = SyntheticDataset(name="synthetic", train_samples=50, eval_samples=20)
    a, b, c = load_dataset(cfg, 0), load_dataset(cfg, 0), load_dataset(cfg, 1)
    z = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.manifold.decode(z), c.manifold.decode(z))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.eval.latent, b.eval.latent)
    assert not torch.equal(a.train.x, c.train.x)
    other = load_dataset(cfg.model_copy(update={"manifold_seed": 1}), 0)
    assert not torch.equal(a.manifold.decode(z), other.manifold.decode(z))


def test_synthetic_class_subset_and_eval_classes() -> None:
    cfg = SyntheticDataset(
        name="synthetic", num_classes=3, classes=(2, 0), eval_classes=(0,), train_samples=100,
        eval_samples=30,
    )
    data = load_dataset(cfg, seed=0)
    assert data.num_classes == 2 and data.class_names == ("2", "0")
    assert set(data.eval.y.tolist()) == {1} and set(data.train.y.tolist()) == {0, 1}
    # Labels are argmax of a linear map of z: the remapped label must match the generator's.
    from runners.datasets.synthetic import _label_map

    original = np.argmax(data.train.latent.double().numpy() @ _label_map(0, 8, 3), axis=1)
    assert [cfg.classes[i] for i in data.train.y.tolist()] == original.tolist()


def test_synthetic_rejects_impossible_dimensions() -> None:
    # Caught by the schema (so `dimple-stats validate` reports them without torch) ...
    with pytest.raises(pydantic.ValidationError, match=r"hidden \(4\) must be >= latent_dim \(8\)"):
        SyntheticDataset(name="synthetic", hidden=4, eval_samples=5)
    with pytest.raises(pydantic.ValidationError, match=r"latent_dim \(100\) must be smaller"):
        LinearSubspaceDataset(name="linear_subspace", latent_dim=100, eval_samples=5)
    # ... and by the manifold itself when built directly.
    from runners.datasets.synthetic import LinearManifold, Manifold

    with pytest.raises(DatasetConfigError, match="hidden=4 < latent_dim=8"):
        Manifold(latent_dim=8, image_shape=(1, 8, 8), hidden=4)
    with pytest.raises(DatasetConfigError, match="latent_dim=100 exceeds the image dimension n=64"):
        LinearManifold(latent_dim=100, image_shape=(1, 8, 8))


# ----------------------------------------------------------------------------- linear subspace


def test_linear_subspace_points_lie_on_the_subspace() -> None:
    cfg = LinearSubspaceDataset(
        name="linear_subspace", latent_dim=5, image_shape=(1, 10, 10), train_samples=400,
        eval_samples=50, pixel_range=(-1, 2),
    )
    data = load_dataset(cfg, seed=0)
    m = data.manifold
    u, c = m.basis, m.offset
    assert torch.allclose(u.T @ u, torch.eye(5, dtype=torch.float64), atol=1e-12)
    x = data.train.x.double().reshape(400, -1)
    diff = x - c
    off_subspace = diff - (diff @ u) @ u.T
    assert off_subspace.norm(dim=1).max() < 1e-6
    assert data.train.x.min() >= -1 and data.train.x.max() <= 2
    assert torch.allclose(m.decode(data.train.latent.double()).float(), data.train.x)
    basis = data.eval.tangent_basis()
    assert basis.shape == (50, 100, 5) and torch.equal(basis, u.expand(50, -1, -1))
    assert torch.allclose(m.as_module()(data.eval.latent), data.eval.x, atol=1e-6)
    assert set(data.train.y.tolist()) == {0, 1}


# ----------------------------------------------------------------------------- containers


def test_split_validates_shapes() -> None:
    with pytest.raises(TypeError, match="float32"):
        Split(x=torch.zeros(2, 4), y=torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="int64"):
        Split(x=torch.zeros(2, 1, 2, 2), y=torch.zeros(3, dtype=torch.int64))



def test_debian_flat_gzipped_layout_reads_the_same_images(tmp_path: Path) -> None:
    """Debian's dataset-fashion-mnist: the four *-idx?-ubyte.gz directly in one directory."""
    import gzip

    nested = tmp_path / "torchvision"
    files = write_mnist(nested, folder="FashionMNIST")
    flat = tmp_path / "debian"
    flat.mkdir()
    for raw in (nested / "FashionMNIST" / "raw").iterdir():
        (flat / f"{raw.name}.gz").write_bytes(gzip.compress(raw.read_bytes()))
    cfg = dict(name="fashion_mnist", eval_samples=40, pixel_range=(-1, 1))
    from_flat = load_dataset(TorchvisionDataset(root=str(flat), **cfg), seed=1)
    from_tv = load_dataset(TorchvisionDataset(root=str(nested), **cfg), seed=1)
    assert torch.equal(from_flat.train.x, from_tv.train.x)
    assert torch.equal(from_flat.eval.x, from_tv.eval.x)
    assert from_flat.eval.y.tolist() == from_tv.eval.y.tolist() == files["test_y"].tolist()
    assert from_flat.fingerprint == from_tv.fingerprint  # the same data, the same store keys
    # uncompressed files in a flat directory work too (MNIST as well)
    plain = tmp_path / "plain"
    plain.mkdir()
    for raw in (nested / "FashionMNIST" / "raw").iterdir():
        (plain / raw.name).write_bytes(raw.read_bytes())
    digits = load_dataset(TorchvisionDataset(name="mnist", root=str(plain), eval_samples=40), 0)
    assert digits.eval.y.tolist() == files["test_y"].tolist()


def test_a_flat_directory_missing_a_file_names_it(tmp_path: Path) -> None:
    import gzip

    from runners.datasets.base import DatasetNotFoundError

    files = write_mnist(tmp_path / "tv", folder="FashionMNIST")
    assert files
    flat = tmp_path / "debian"
    flat.mkdir()
    for raw in (tmp_path / "tv" / "FashionMNIST" / "raw").iterdir():
        if raw.name != "t10k-labels-idx1-ubyte":
            (flat / f"{raw.name}.gz").write_bytes(gzip.compress(raw.read_bytes()))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(TorchvisionDataset(name="fashion_mnist", root=str(flat), eval_samples=4), 0)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte" in message and str(flat) in message
    assert "train-images" not in message.split("missing")[-1]


def test_read_idx_refuses_a_file_that_is_not_idx(tmp_path: Path) -> None:
    from runners.datasets.torchvision_sets import read_idx

    bad = tmp_path / "x-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x09\x01" + b"\x00\x00\x00\x02" + b"ab")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "y-idx1-ubyte"
    short.write_bytes(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"abc")
    with pytest.raises(ValueError, match="3 bytes of data"):
        read_idx(short)


def _damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[:-7])
    elif kind == "trailing":
        path.write_bytes(data + b"\x00" * 3)
    elif kind == "bad_magic":
        path.write_bytes(b"\x00\x00\x0b" + data[3:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "header_only":
        path.write_bytes(data[:6])


@pytest.mark.parametrize("file, kind, message", [
    ("train-images-idx3-ubyte", "truncated", "truncated"),
    ("train-images-idx3-ubyte", "trailing", "trailing bytes"),
    ("t10k-labels-idx1-ubyte", "bad_magic", "not an IDX file"),
    ("t10k-images-idx3-ubyte", "empty", "not an IDX file"),
    ("train-labels-idx1-ubyte", "header_only", "damaged or truncated"),
])
def test_a_damaged_idx_file_is_a_one_line_error_naming_it(file: str, kind: str, message: str,
                                                         tmp_path: Path) -> None:
    from runners.datasets.torchvision_sets import DataFileError

    write_mnist(tmp_path)
    _damage(tmp_path / "MNIST" / "raw" / file, kind)
    with pytest.raises(DataFileError) as info:
        load_dataset(TorchvisionDataset(name="mnist", root=str(tmp_path), eval_samples=20),
                     seed=0)
    assert file in str(info.value) and message in str(info.value)
    assert "; replace it with an intact copy" in str(info.value)  # what to do, not only what


def test_idx_labels_must_match_their_images_in_count_and_class(tmp_path: Path) -> None:
    from runners.datasets.torchvision_sets import DataFileError

    files = write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    cfg = TorchvisionDataset(name="mnist", root=str(tmp_path), eval_samples=20)
    write_idx(raw / "train-labels-idx1-ubyte", files["train_y"][:-1])  # one label short
    with pytest.raises(DataFileError, match="59 labels for the 60 images.*; replace it"):
        load_dataset(cfg, seed=0)
    bad = files["train_y"].copy()
    bad[7] = 42  # not a class: it used to be dropped silently and another subset drawn
    write_idx(raw / "train-labels-idx1-ubyte", bad)
    with pytest.raises(DataFileError, match="label 42 at position 7 is not a class id 0-9"):
        load_dataset(cfg, seed=0)
    write_idx(raw / "train-labels-idx1-ubyte", files["train_y"])
    bad = files["test_y"].copy()
    bad[3] = 200
    write_idx(raw / "t10k-labels-idx1-ubyte", bad)
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte: label 200"):
        load_dataset(cfg, seed=0)


def test_imagefolder_16_bit_grayscale_keeps_its_intensities(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040)  # 0 .. 65520
    for i in range(4):  # every val image of "bee" is a 16-bit grayscale PNG
        path = tmp_path / "val" / "bee" / f"{i:03d}.png"
        Image.fromarray(ramp).save(path)
        assert Image.open(path).mode.startswith("I")  # really 16 bits on disk
    cfg = ImageFolderDataset(name="imagefolder", root=str(tmp_path), image_size=8, eval_samples=12)
    data = load_dataset(cfg, seed=0)
    got = data.eval.x[4]  # the first bee image, (3, 8, 8) in [0, 1]
    expected = torch.from_numpy(np.round(ramp / 257.0)).float() / 255.0
    assert torch.allclose(got[0], expected) and torch.equal(got[0], got[2])
    assert len(torch.unique(got)) > 50  # convert("RGB") clipped it to {0, 1}


def test_imagefolder_16_bit_tiff_keeps_its_intensities_and_32_bit_is_refused(
        tmp_path: Path) -> None:
    """A 16-bit TIFF reads like a 16-bit PNG; a 32-bit integer TIFF (here 8-bit values stored
    wide) has no intensity scale: it was divided by 16-bit's 257 (a near-black image) and is
    now refused in one line naming the file."""
    from runners.datasets.base import DataFileError

    write_imagefolder(tmp_path)
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040)
    path = tmp_path / "val" / "bee" / "000.png"
    path.unlink()
    Image.fromarray(ramp).save(path.with_suffix(".tif"))
    cfg = ImageFolderDataset(name="imagefolder", root=str(tmp_path), image_size=8, eval_samples=12)
    data = load_dataset(cfg, seed=0)
    expected = torch.from_numpy(np.round(ramp / 257.0)).float() / 255.0
    assert torch.allclose(data.eval.x[4][0], expected)
    wide = tmp_path / "val" / "bee" / "001.png"
    wide.unlink()
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.int32)).save(
        wide.with_suffix(".tif"))
    with pytest.raises(DataFileError, match=r"001\.tif: 32-bit pixels of no known intensity"):
        load_dataset(cfg, seed=0)


@pytest.mark.parametrize("content, what", [
    (b"", "cannot decode"),                                 # empty .png
    (b"this is not a png at all", "cannot decode"),         # a text file named .png
    ("truncated", "cannot decode"),                         # a PNG cut in half
])
def test_imagefolder_undecodable_file_is_one_line_naming_it(content, what, tmp_path: Path) -> None:
    from runners.datasets.base import DataFileError

    write_imagefolder(tmp_path)
    path = tmp_path / "val" / "ant" / "001.png"
    if content == "truncated":
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    cfg = ImageFolderDataset(name="imagefolder", root=str(tmp_path), image_size=8, eval_samples=12)
    with pytest.raises(DataFileError) as info:
        load_dataset(cfg, seed=0)
    assert str(path) in str(info.value) and what in str(info.value)
    assert "; remove it or replace it with an intact image" in str(info.value)


def test_imagefolder_decompression_bomb_is_refused_in_one_line(tmp_path: Path,
                                                                monkeypatch) -> None:
    from runners.datasets.base import DataFileError

    write_imagefolder(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # an 8x8 image is 6.4x the limit
    cfg = ImageFolderDataset(name="imagefolder", root=str(tmp_path), image_size=8, eval_samples=12)
    with pytest.raises(DataFileError, match="DecompressionBombError"):
        load_dataset(cfg, seed=0)


def test_imagefolder_empty_class_folder_is_refused(tmp_path: Path) -> None:
    from runners.datasets.base import DataFileError

    write_imagefolder(tmp_path)
    (tmp_path / "train" / "dog").mkdir()  # a class without a single training image
    cfg = ImageFolderDataset(name="imagefolder", root=str(tmp_path), image_size=8, eval_samples=12)
    with pytest.raises(DataFileError, match="dog holds no image file"):
        load_dataset(cfg, seed=0)


def test_imagefolder_eval_split_without_a_class_folder_is_refused(tmp_path: Path) -> None:
    """val/ lacks a class train/ has: the eval images came from the other classes without a
    word. Leaving the class out of the eval classes is the way to say it is meant."""
    from runners.datasets.base import DataFileError

    write_imagefolder(tmp_path, per_class=6)
    shutil.rmtree(tmp_path / "val" / "cat")
    cfg = ImageFolderDataset(name="imagefolder", root=str(tmp_path), image_size=8, eval_samples=8)
    with pytest.raises(DataFileError, match=r"val has no folder for the class\(es\) cat that "
                                            r"train has; add their eval images"):
        load_dataset(cfg, seed=0)
    meant = load_dataset(cfg.model_copy(update={"eval_classes": (0, 1)}), seed=0)
    assert set(meant.eval.y.tolist()) == {0, 1} and len(meant.eval.y) == 8
