"""The gallery rows of one measurement shard: the arrays behind a few of its rows, kept while the
shard's perturbations are still in memory (see :mod:`dimple_stats.gallery` for the table and
the selection rule)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from dimple_stats.gallery import ARRAYS, COLUMNS, quantile_positions
from runners.measure import MODES, Measurement, _eval_mode

if TYPE_CHECKING:
    from runners.models.autoencoders import Autoencoder

__all__ = ["gallery_candidates"]


def _labels(classifier: nn.Module, images: Tensor) -> np.ndarray:
    # One image per forward pass: a prediction anyone can recompute exactly from the stored
    # arrays. A refined x + d sits within 2**-12 of the boundary, where a batch of another
    # size (another matmul blocking) may round the logits to the other side.
    return np.asarray([int(classifier(image[None]).argmax(dim=1)) for image in images],
                      dtype=np.int64)


def _flat(t: Tensor) -> list[np.ndarray]:
    return list(t.detach().flatten(1).cpu().numpy().astype(np.float32))


def gallery_candidates(classifier: nn.Module, autoencoder: Autoencoder, x: Tensor,
                       result: Measurement, *, seed: int, name: str,
                       pixel_range: tuple[float, float]) -> pd.DataFrame:
    """The gallery rows the selection rule picks within one shard.

    Parameters
    ----------
    classifier, autoencoder : nn.Module
        The models ``result`` was measured with (run in eval mode, restored afterwards).
    x : Tensor
        The shard's images ``(N, C, H, W)``, in the order of ``result``'s rows.
    result : Measurement
        The shard's measurements and perturbations.
    seed : int
        The seed, and ``name`` the autoencoder, of the rows.
    pixel_range : (float, float)
        The data's pixel range (the display range of the images).

    Returns
    -------
    pandas.DataFrame
        At most ``len(dimple_stats.gallery.QUANTILES)`` rows, the columns of
        :func:`dimple_stats.gallery.validate_gallery`.
    """
    cols = result.columns
    positions, levels = quantile_positions(cols["r_T"], cols["success_plain"], cols["sample"])
    rows: dict[str, object] = {c: cols[c][positions] for c in COLUMNS if c in cols}
    idx = torch.as_tensor(positions, dtype=torch.long, device=x.device)
    images = x[idx]
    deltas = {m: result.delta[m][idx.cpu()].to(device=x.device, dtype=x.dtype) for m in MODES}
    c, h, w = (int(s) for s in x.shape[1:])
    with _eval_mode(classifier, autoencoder), torch.no_grad():
        x_hat = autoencoder.decode(autoencoder.encode(images)).reshape(images.shape)
        rows["pred_x"] = _labels(classifier, images)
        rows["pred_x_hat"] = _labels(classifier, x_hat)
        for m in MODES:
            rows[f"pred_{m}"] = _labels(classifier, images + deltas[m])
    rows.update(seed=seed, autoencoder=name, level=levels, channels=c, height=h, width=w,
                pixel_lo=float(pixel_range[0]), pixel_hi=float(pixel_range[1]),
                x=_flat(images), x_hat=_flat(x_hat),
                **{f"d_{m}": _flat(deltas[m]) for m in MODES})
    frame = pd.DataFrame(rows, index=pd.RangeIndex(len(positions)))
    return frame[[*COLUMNS, *ARRAYS]]
