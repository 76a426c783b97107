"""Geometric regularisers of autoencoders: isometric (Gropp et al. 2020) and IRVAE (Lee et al. 2022).

Both need directional derivatives of the decoder (and the encoder), one per sample, never the full
Jacobian: a JVP gives J u, a VJP gives u^T J. ``torch.func.jvp``/``vjp`` compute them for the whole
batch at once (samples are independent: no BatchNorm in our autoencoders) and stay differentiable
with respect to the module parameters, so the loss trains the weights by ordinary backprop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["unit_sphere", "isometry_loss", "pseudo_inverse_loss", "isometric_loss",
           "relaxed_distortion", "latent_mixup"]


def unit_sphere(shape: tuple[int, ...], *, like: Tensor, generator: torch.Generator | None = None
                ) -> Tensor:
    """Directions uniform on the unit sphere S^{k-1} (normalised Gaussians), shape (B, k)."""
    u = torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)
    return u / u.norm(dim=1, keepdim=True)


def isometry_loss(decode: Callable[[Tensor], Tensor], z: Tensor, u: Tensor) -> Tensor:
    """L_iso = mean_i (||J_f(z_i) u_i|| - 1)^2, one JVP for the batch.

    The norm is taken BEFORE the square: ``((J u)**2 - 1)**2`` elementwise is a known bug of a
    public reimplementation and pushes every pixel's derivative to 1 instead of the direction's
    length.

    Examples
    --------
    A linear decoder f(z) = W z has J = W, so the loss is (||W u|| - 1)^2:

    >>> W = torch.tensor([[2.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    >>> u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> float(isometry_loss(lambda z: z @ W.T, torch.zeros(2, 2), u))  # ((2-1)^2 + (0.5-1)^2) / 2
    0.625
    """
    _, ju = torch.func.jvp(decode, (z,), (u,))
    return ((ju.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def pseudo_inverse_loss(encode: Callable[[Tensor], Tensor], x: Tensor, u: Tensor) -> Tensor:
    """L_piso = mean_i (||u_i^T J_g(x_i)|| - 1)^2, one VJP for the batch: makes the encoder the
    decoder's pseudo-inverse (an orthogonal projection onto the manifold)."""
    _, pullback = torch.func.vjp(encode, x)
    (uj,) = pullback(u)
    return ((uj.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def latent_mixup(z: Tensor, *, eta: float, generator: torch.Generator | None = None) -> Tensor:
    """z~ = a z_i + (1 - a) z_pi(i), a ~ U[-eta, 1 + eta] (Lee et al. 2022): samples between and
    slightly beyond encoded points, where the decoder's geometry matters."""
    b = z.shape[0]
    a = (torch.rand(b, 1, generator=generator, dtype=z.dtype) * (1 + 2 * eta) - eta).to(z.device)
    perm = torch.randperm(b, generator=generator).to(z.device)
    return a * z + (1 - a) * z[perm]


def isometric_loss(
    encode: Callable[[Tensor], Tensor],
    decode: Callable[[Tensor], Tensor],
    x: Tensor,
    z: Tensor,
    *,
    interpolate: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L_iso + L_piso at the encoded training points ``z`` (optionally also their mixups).

    ``z`` is detached: the isometry term shapes the decoder around where data are encoded; the
    encoder is shaped by L_piso and the reconstruction loss.
    """
    z = z.detach()
    if interpolate:
        z = torch.cat([z, latent_mixup(z, eta=0.0, generator=generator)])
    u_dec = unit_sphere(tuple(z.shape), like=z, generator=generator)
    u_enc = unit_sphere((x.shape[0], z.shape[1]), like=z, generator=generator)
    return isometry_loss(decode, z, u_dec) + pseudo_inverse_loss(encode, x, u_enc)


def relaxed_distortion(
    decode: Callable[[Tensor], Tensor],
    z: Tensor,
    *,
    eta: float = 0.2,
    generator: torch.Generator | None = None,
    v: Tensor | None = None,
) -> Tensor:
    """IRVAE's relaxed distortion E[Tr H^2] / E[Tr H]^2 with H = J^T J, by Hutchinson estimates:
    Tr H ~ ||J v||^2 and Tr H^2 ~ ||J^T J v||^2 for v ~ N(0, I). Scale-invariant; its minimum 1/k
    is reached iff H = c I. Latents are mixed up (``eta``) as in Lee et al. 2022.

    Examples
    --------
    For an isometry scaled by 3, H = 9 I and E||J^T J v||^2 / (E||J v||^2)^2 = 81k / (9k)^2 = 1/k:

    >>> W = 3.0 * torch.eye(4)[:, :2]
    >>> v = 2 ** 0.5 * torch.eye(2).repeat(50, 1)  # E[v v^T] = I exactly, as Hutchinson needs
    >>> round(float(relaxed_distortion(lambda z: z @ W.T, torch.zeros(100, 2), eta=0.0, v=v)), 6)
    0.5
    """
    zt = latent_mixup(z.detach(), eta=eta, generator=generator) if eta > 0 else z.detach()
    if v is None:
        v = torch.randn(zt.shape, generator=generator, dtype=zt.dtype).to(zt.device)
    _, jv = torch.func.jvp(decode, (zt,), (v,))
    _, pullback = torch.func.vjp(decode, zt)
    (jtjv,) = pullback(jv)
    tr_h = jv.flatten(1).pow(2).sum(dim=1)
    tr_h2 = jtjv.flatten(1).pow(2).sum(dim=1)
    return tr_h2.mean() / tr_h.mean() ** 2
