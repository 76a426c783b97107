"""How far a decoder is from an isometry, from its Jacobian at latent points."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from runners.geometry.jacobian import decoder_jacobian

__all__ = ["gram_spectrum", "isometry_diagnostics"]


def gram_spectrum(jac: Tensor) -> Tensor:
    """Eigenvalues (ascending) of H = J^T J for each Jacobian (B, n, k), in float64.

    Examples
    --------
    >>> J = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
    >>> gram_spectrum(J).tolist()
    [[1.0, 4.0]]
    """
    j = jac.to(torch.float64)
    return torch.linalg.eigvalsh(j.transpose(1, 2) @ j)


def isometry_diagnostics(
    decode: Callable[[Tensor], Tensor], z: Tensor, *, chunk_size: int | None = 16
) -> dict[str, float]:
    """Median condition number of J^T J and mean |sigma_i / mean(sigma) - 1| over latents ``z``.

    Both are 0-distortion measures up to scale: a scaled isometry has condition number 1 and
    zero spread of singular values, whatever the scale.
    """
    with torch.no_grad():
        eig = gram_spectrum(decoder_jacobian(decode, z, chunk_size=chunk_size))
    eig = eig.clamp_min(torch.finfo(torch.float64).tiny)
    cond = eig[:, -1] / eig[:, 0]
    sigma = eig.sqrt()
    spread = (sigma / sigma.mean(dim=1, keepdim=True) - 1).abs().mean(dim=1)
    return {
        "median_cond": float(cond.median()),
        "mean_sigma_spread": float(spread.mean()),
        "median_sigma": float(sigma.median()),
    }
