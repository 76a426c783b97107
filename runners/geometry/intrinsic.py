"""Intrinsic dimension of a decoder's image from the tangent QR's R diagonal.

``|R_jj|`` is the length of the part of the j-th Jacobian column not explained by the earlier
ones, so it measures how much NEW variation latent direction j adds. Two summaries per sample:

* ``count``: the number of ``|R_jj|`` above ``rel * max_j |R_jj|`` (directions that carry at
  least that fraction of the strongest one's variation); ``rel = 1e-2`` by default, far above
  the rounding cut-off that sets the numerical rank.
* ``participation``: ``(sum r_j^2)^2 / sum r_j^4``, a threshold-free effective number of
  directions (k for equal |R_jj|, 1 when one dominates).

An unpivoted QR is not rank-revealing in the strict sense: the summaries are a cheap estimate
that is exact for a decoder whose Jacobian has orthogonal columns (an isometric decoder), and
they are reported beside the nominal latent size, not used by any test.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from runners.geometry.tangent import tangent_basis

__all__ = ["intrinsic_dimension", "decoder_intrinsic_dimension"]


def intrinsic_dimension(r_diag: Tensor, *, rel: float = 1e-2) -> dict[str, float]:
    """Summaries of ``(B, k)`` R diagonals: median count above ``rel`` and participation ratio.

    Examples
    --------
    >>> r = torch.tensor([[1.0, 0.5, 1e-4], [2.0, 1.0, 1e-5]], dtype=torch.float64)
    >>> d = intrinsic_dimension(r)
    >>> d["intrinsic_dim_count"], round(d["intrinsic_dim_participation"], 3)
    (2.0, 1.471)
    """
    r = r_diag.abs().to(torch.float64)
    top = r.amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    count = (r > rel * top).sum(dim=1).to(torch.float64)
    r2 = r**2
    participation = r2.sum(dim=1) ** 2 / (r2**2).sum(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    return {"intrinsic_dim_count": float(np.median(count.numpy())),
            "intrinsic_dim_participation": float(np.median(participation.numpy())),
            "intrinsic_dim_rel": float(rel)}


def decoder_intrinsic_dimension(decode: Callable[[Tensor], Tensor], z: Tensor, *,
                                rel: float = 1e-2, chunk_size: int = 16) -> dict[str, float]:
    """:func:`intrinsic_dimension` of ``decode``'s Jacobian at the latents ``z`` (float64 QR)."""
    tb = tangent_basis(decode, z, dtype=torch.float64, chunk_size=chunk_size)
    out = intrinsic_dimension(tb.r_diag, rel=rel)
    out["numerical_rank"] = float(np.median(tb.rank.numpy()))
    return out
