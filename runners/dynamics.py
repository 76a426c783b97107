"""The unrestricted minimal-norm attack and its r_T under several manifolds: the per-sample
quantities of ``dmm.clinging_then_dimpling`` (per training epoch) and
``dmm.adv_training_deepens`` (standard vs adversarially trained classifier).

Unlike :func:`runners.measure.measure` it runs only the plain attack (the on/off-manifold ones
are not needed and cost most of the time) and it accepts samples the classifier gets WRONG: an
early-epoch classifier misclassifies some of a fixed sample set, and such a sample's boundary
distance is 0 (success at step 0, ``norm_plain = 0``, ``r_T`` NaN since there is no direction;
the analyses drop non-finite ratios and count them).

The tangent spaces depend only on the autoencoder and the images, not on the classifier, so
:class:`ManifoldCache` computes them once and every epoch reuses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from dimple_stats.protocol.schema import AttackConfig, TangentConfig
from runners.attacks.base import Bounds
from runners.attacks.factory import attack_from_config
from runners.geometry.controls import random_subspace, random_subspace_ratio
from runners.geometry.spaces import TANGENT_DTYPES, DenseSubspace, Subspace, decoder_in_dtype, tangent_space

if TYPE_CHECKING:
    import pandas as pd

    from runners.models.autoencoders import Autoencoder

__all__ = ["ManifoldCache", "plain_attack_table"]



class ManifoldCache:
    """Tangent spaces of each autoencoder at a FIXED set of images, computed once.

    Parameters
    ----------
    autoencoders : dict of str to Autoencoder
    x : Tensor
        The images (the same for every classifier measured against them).
    tangent : TangentConfig
    """

    def __init__(self, autoencoders: dict[str, Autoencoder], x: Tensor,
                 tangent: TangentConfig) -> None:
        self.spaces: dict[str, Subspace] = {}
        n = x[0].numel()
        for name, ae in autoencoders.items():
            ae.eval()
            with torch.no_grad():
                z = ae.encode(x)
            decode = decoder_in_dtype(ae, TANGENT_DTYPES[tangent.dtype])
            self.spaces[name] = tangent_space(decode, z, config=tangent, n=n)
        self.n = n


def plain_attack_table(
    classifier: nn.Module,
    x: Tensor,
    y: Tensor,
    manifolds: ManifoldCache,
    *,
    attack: AttackConfig,
    generator: torch.Generator,
    bounds: Bounds,
    sample_ids: np.ndarray,
) -> pd.DataFrame:
    """One row per (autoencoder, sample): norm_plain, success_plain, r_T, r_R, n, k.

    Parameters
    ----------
    classifier : nn.Module
        Put in eval mode (restored afterwards).
    x, y : Tensor
        The fixed images and labels (those misclassified get ``norm_plain = 0``).
    manifolds : ManifoldCache
        Tangent spaces at ``x`` per autoencoder.
    attack : AttackConfig
        The protocol's attack; its ``plain`` eps, step and steps are used.
    generator : torch.Generator
        Random subspaces (and random starts): same state, same table.
    bounds : (lo, hi) or None
        Pixel box.
    sample_ids : numpy.ndarray
        Values of the ``sample`` column.
    """
    import pandas as pd

    was = classifier.training
    classifier.eval()
    try:
        pgd = attack_from_config(attack, "plain", bounds=bounds)
        deltas, norms, success = [], [], []
        for start in range(0, len(x), attack.batch_size):
            sl = slice(start, start + attack.batch_size)
            res = pgd(classifier, x[sl], y[sl], generator=generator)
            deltas.append(res.delta.detach())
            success.append(res.success.cpu())
            norms.append(torch.where(res.success.cpu(), res.norm.cpu().double(),
                                     torch.full((len(res.norm),), res.eps, dtype=torch.float64)))
    finally:
        classifier.train(was)
    delta = torch.cat(deltas)
    norm = torch.cat(norms).numpy()
    ok = torch.cat(success).numpy()
    frames = []
    for name, space in manifolds.spaces.items():
        r_t = space.ratio(delta).double().cpu().numpy()
        if isinstance(space, DenseSubspace):
            control = random_subspace(manifolds.n, space.dims, generator=generator,
                                      dtype=space.dtype, device=delta.device)
            r_r = control.ratio(delta).double().cpu().numpy()
        else:
            r_r = random_subspace_ratio(manifolds.n, space.dims, generator=generator).numpy()
        frames.append(pd.DataFrame({
            "autoencoder": name, "sample": sample_ids.astype(np.int64), "norm_plain": norm,
            "success_plain": ok.astype(bool), "r_T": r_t, "r_R": r_r,
            "n": np.full(len(x), manifolds.n, dtype=np.int64),
            "k": space.dims.cpu().numpy().astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)
