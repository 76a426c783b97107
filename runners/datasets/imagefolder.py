"""ImageNet-style folder trees: ``root/<train_dir>/<class>/<image>`` and ``root/<eval_dir>/<class>/<image>``.

Class ids are the positions of the class folder names of ``train_dir`` in sorted order (the
torchvision ``ImageFolder`` convention, which makes ImageNet's synset folders map to the usual
0..999 indices). Only the file names are listed up front; the seeded subset of FILES is chosen
first and only those images are decoded, because ImageNet does not fit in memory.

Images are converted to RGB, resized so the shorter side is ``image_size`` (bilinear, antialiased)
and centre-cropped to ``image_size x image_size``. With ``normalize: imagenet`` channels are
standardised with the ImageNet mean and std (what torchvision's pretrained classifiers expect);
``pixel_range`` is then NOT applied and the splits report the standardised range instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dimple_stats.protocol.schema import ImageFolderDataset
from runners.datasets._select import plan_classes, rng_for, select, to_pixel_range
from runners.datasets.base import (
    DataFileError,
    DatasetConfigError,
    DatasetNotFoundError,
    DatasetSplits,
    Split,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_RANGE",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "MAX_BYTES",
    "load_imagefolder",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Refuse requests whose float32 tensors would exceed this: `train_samples: null` on ImageNet
# would otherwise decode 1.28M JPEGs for an hour and then die of memory.
MAX_BYTES = 16 * 2**30
_IMAGENET_URL = "https://image-net.org/download.php"


def _class_folders(directory: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(directory) if e.is_dir())


def _list_files(
    directory: Path, class_to_idx: dict[str, int]
) -> tuple[list[str], np.ndarray]:
    """Image paths (sorted within each class) and their class ids, without opening any image."""
    paths: list[str] = []
    labels: list[int] = []
    for name in _class_folders(directory):
        if name not in class_to_idx:
            raise DatasetConfigError(
                f"imagefolder: class folder {name!r} in {directory} is not a class of the train "
                f"folder (classes are the sub-folders of the train folder)"
            )
        files = sorted(
            e.path for e in os.scandir(directory / name)
            if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise DataFileError(
                f"imagefolder: class folder {directory / name} holds no image file "
                f"({', '.join(IMAGE_EXTENSIONS)}): remove it or add its images")
        paths.extend(files)
        labels.extend([class_to_idx[name]] * len(files))
    return paths, np.asarray(labels, dtype=np.int64)


def _not_found(config: ImageFolderDataset, root: Path) -> DatasetNotFoundError:
    layout = (
        f"{config.train_dir}/<class>/<image>.jpg|png", f"{config.eval_dir}/<class>/<image>.jpg|png"
    )
    return DatasetNotFoundError(
        "imagefolder", str(root), layout, _IMAGENET_URL,
        how=(
            "image folders are never downloaded: copy the images into that layout, one sub-folder "
            f"per class with the same class folder names in both splits (for ImageNet, get "
            f"ILSVRC2012 from {_IMAGENET_URL} and sort the flat validation images into class folders)"
        ),
    )


def _load_images(paths: list[str], size: int) -> torch.Tensor:
    """Decode, resize the shorter side to ``size``, centre-crop: uint8 ``(N, 3, size, size)``."""
    from PIL import Image
    from torchvision.transforms import functional as F

    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, path in enumerate(paths):  # one file at a time: decoding is inherently per file
        try:
            with Image.open(path) as img:
                rgb = _to_rgb(img, path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # UnidentifiedImageError and truncated files are OSErrors; the decompression-bomb
            # limit stays (a one-line error, not a traceback).
            raise DataFileError(f"imagefolder: {path}: cannot decode as an image "
                                f"({type(exc).__name__}: {exc}); remove it or replace it with "
                                "an intact image") from None
        # PIL returns an unchanged copy when the size already matches, so exact-size PNGs keep
        # their pixel values bit for bit.
        rgb = F.center_crop(F.resize(rgb, size), [size, size])
        out[i] = F.pil_to_tensor(rgb)
    return out


def _integer_bits(img: object) -> int | None:
    """Bits per sample of an integer-mode (``I``/``I;16``) image as its file declares them: the
    mode for ``I;16``, the TIFF BitsPerSample tag, 16 for a PNG (PIL opens only 16-bit PNGs in an
    integer mode); None where the file does not say."""
    mode, fmt = getattr(img, "mode", ""), getattr(img, "format", None)
    if str(mode).startswith("I;16"):
        return 16
    declared = getattr(img, "tag_v2", {}).get(258)
    if declared:
        values = declared if isinstance(declared, tuple) else (declared,)
        return int(values[0])
    return 16 if fmt == "PNG" else None


def _to_rgb(img: object, path: str) -> object:
    """``img`` as 8-bit RGB, keeping the dynamic range of 16-bit grayscale: PIL's
    ``convert("RGB")`` clips an ``I;16`` image's values at 255 (a 16-bit PNG became {0, 255})."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.mode.startswith("I;16") or img.mode == "I":
        bits = _integer_bits(img)
        if bits != 16:
            # A 32-bit integer image has no one intensity scale (counts, labels, 8-bit values
            # stored wide): scaling it by 16-bit's 257 made an 8-bit-valued TIFF near-black.
            raise DataFileError(f"imagefolder: {path}: "
                                f"{'32-bit' if bits == 32 else 'integer'} pixels of no known "
                                "intensity scale; save the image with 8 or 16 bits per channel")
        values = np.asarray(img, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise DataFileError(f"imagefolder: {path}: 16-bit pixels outside 0-65535; save the "
                                "image with 8 or 16 bits per channel")
        eight = np.round(values / 257.0).astype(np.uint8)  # 65535 -> 255
        return Image.fromarray(eight).convert("RGB")
    if img.mode == "F":
        raise DataFileError(f"imagefolder: {path}: floating-point pixels; save the image "
                            "with 8 or 16 bits per channel")
    return img.convert("RGB")


# Range of a standardised channel value: (0 - mean) / std to (1 - mean) / std over the channels.
IMAGENET_RANGE = (
    min((0.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)),
    max((1.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)),
)


def _imagenet_standardise(x: torch.Tensor) -> torch.Tensor:
    """In place: ``(x - mean) / std`` per channel, for ``x`` in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def load_imagefolder(config: ImageFolderDataset, seed: int = 0) -> DatasetSplits:
    """A seeded subset of an image-folder dataset.

    Parameters
    ----------
    config : ImageFolderDataset
    seed : int
        Replication seed: chooses which files are loaded.

    Returns
    -------
    DatasetSplits
        RGB images ``(3, image_size, image_size)``; class names are the train folder names.

    Raises
    ------
    DatasetNotFoundError
        When a split folder is missing or has no class sub-folders.
    DatasetConfigError
        For too many requested images or an eval class folder unknown to the train folder.
        (``pixel_range`` together with ``normalize: imagenet`` is rejected by the schema.)
    """
    root = Path(config.root).expanduser().resolve()
    train_dir, eval_dir = root / config.train_dir, root / config.eval_dir
    if not (train_dir.is_dir() and eval_dir.is_dir()) or not _class_folders(train_dir):
        raise _not_found(config, root)
    names = _class_folders(train_dir)
    class_to_idx = {name: i for i, name in enumerate(names)}
    train_paths, train_labels = _list_files(train_dir, class_to_idx)
    eval_paths, eval_labels = _list_files(eval_dir, class_to_idx)

    plan = plan_classes("imagefolder", names, config.classes, config.eval_classes)
    absent = [names[c] for c in plan.eval_classes if not (eval_labels == c).any()]
    if absent:  # its eval images would silently come from the other classes only
        raise DataFileError(
            f"imagefolder: {eval_dir} has no folder for the class(es) {', '.join(absent)} that "
            f"{config.train_dir} has; add their eval images, or leave them out with "
            "dataset.classes or dataset.eval_classes")
    train_idx = select(
        "imagefolder", "train", train_labels, plan.mask(train_labels), config.train_samples,
        rng_for(seed, "train"), field="train_samples", what=f" in {train_dir}",
    )
    eval_idx = select(
        "imagefolder", "eval", eval_labels, plan.mask(eval_labels, eval=True),
        config.eval_samples, rng_for(seed, "eval"), field="eval_samples",
        what=f" of eval_classes {list(plan.eval_classes)} in {eval_dir}",
    )
    needed = (len(train_idx) + len(eval_idx)) * 3 * config.image_size**2 * 4
    if needed > MAX_BYTES:
        raise DatasetConfigError(
            f"imagefolder: {len(train_idx)} train + {len(eval_idx)} eval images of "
            f"3x{config.image_size}x{config.image_size} need {needed / 2**30:.1f} GiB as float32 "
            f"(limit {MAX_BYTES / 2**30:.0f} GiB); set train_samples (or use a classifier checkpoint)"
        )

    imagenet = config.normalize == "imagenet"
    box = config.pixel_range or (0.0, 1.0)
    pixel_range = IMAGENET_RANGE if imagenet else tuple(float(v) for v in box)

    def make(paths: list[str], labels: np.ndarray, idx: np.ndarray) -> Split:
        images = _load_images([paths[i] for i in idx], config.image_size)
        if imagenet:
            x = _imagenet_standardise(to_pixel_range(images, 255.0, (0.0, 1.0)))
        else:
            x = to_pixel_range(images, 255.0, box)
        return Split(x=x, y=torch.from_numpy(plan.remap(labels[idx])),
                     index=torch.from_numpy(np.asarray(idx, dtype=np.int64)))

    train = make(train_paths, train_labels, train_idx)
    evals = make(eval_paths, eval_labels, eval_idx)
    return DatasetSplits(
        name="imagefolder",
        train=train,
        eval=evals,
        image_shape=(3, config.image_size, config.image_size),
        num_classes=len(plan.classes),
        class_names=plan.names,
        pixel_range=pixel_range,  # type: ignore[arg-type]
        manifold=None,
    )
