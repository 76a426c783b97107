"""Nearest point on a decoder's image: batched Levenberg-Marquardt for ``argmin_z ||D(z) - x||``.

The tangent space used for an image ``x`` is that of the decoder's image at a base point ``D(z)``.
The encoder's ``z = E(x)`` is only an approximation of the foot of the perpendicular from ``x``
onto the image: ``||x - D(E(x))||`` can exceed the adversarial norms being measured, and the
tangent space at ``z*`` can differ from that at ``E(x)`` by tens of degrees. :func:`nearest_latent`
refines a starting latent (``E(x)``, say) to a local minimiser of the reconstruction error.

This is our own code because no maintained batched Levenberg-Marquardt solver exists for torch:
``scipy.optimize.least_squares`` (and MINPACK behind it) solves one problem at a time on the CPU
in float64, which for a few hundred images and a GPU decoder means a Python loop of host
round-trips. Here every operation is batched over the samples: one ``vmap(jacfwd)`` Jacobian, one
batched ``torch.linalg.solve`` and one decoder call per iteration, for all samples still running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from runners.geometry.jacobian import decoder_jacobian

__all__ = ["NearestLatent", "nearest_latent"]

# Damping bounds: lam grows by 4 on each rejected step; the cap keeps lam * diag(J^T J) finite.
_LAM_MAX = 1e32
# "Residual essentially zero": ||D(z) - x|| within this many rounding units of the images' size.
_ZERO_RESIDUAL_ULPS = 100.0
# Rounding level of ||D(z) - x|| (see the acceptance rule in nearest_latent).
_ROUNDING_ULPS = 8.0


@dataclass(frozen=True, eq=False)
class NearestLatent:
    """Result of :func:`nearest_latent` for a batch.

    Attributes
    ----------
    z : Tensor
        ``(B, k)`` the base points found, in the dtype of ``z0``.
    start_err : Tensor
        ``(B,)`` float64 ``||D(z0) - x||``.
    err : Tensor
        ``(B,)`` float64 ``||D(z) - x||`` at the result; never larger than ``start_err`` (only
        steps that decrease the residual are accepted).
    iterations : Tensor
        ``(B,)`` int64 Levenberg-Marquardt iterations (accepted and rejected steps) per sample.
    converged : Tensor
        ``(B,)`` bool: a stopping criterion was met within ``max_iter`` iterations (False where
        the iteration budget ran out first).
    """

    z: Tensor
    start_err: Tensor
    err: Tensor
    iterations: Tensor
    converged: Tensor


def _flat(decode: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    return decode(z).reshape(z.shape[0], -1)


# Own batched solver: no maintained batched Levenberg-Marquardt exists in torch, and
# scipy.optimize.least_squares solves one problem at a time on the CPU (see the module docstring).
def nearest_latent(
    decode: Callable[[Tensor], Tensor],
    x: Tensor,
    z0: Tensor,
    *,
    max_iter: int = 50,
    tol: float = 1e-6,
    damping: float = 1e-3,
    chunk_size: int | None = 16,
) -> NearestLatent:
    """Latents whose decodings are locally nearest to ``x``: batched Levenberg-Marquardt.

    Minimises ``||r(z)||`` with ``r(z) = vec(D(z) - x)`` for every sample, starting from ``z0``.
    Each iteration computes the Jacobian ``J`` (n x k) by batched forward mode
    (:func:`~runners.geometry.jacobian.decoder_jacobian`) and solves, per sample,

        ``(J^T J + lam * diag(J^T J) + delta * I) dz = -J^T r``

    (Marquardt's scaled damping; ``delta = eps * max diag(J^T J)`` keeps rank-deficient Jacobians
    solvable). A step is accepted only where it decreases the residual, and then ``lam /= 3``;
    otherwise ``z`` is kept and ``lam *= 4``. One refinement: once the decrease a step can give
    is below the rounding error of ``||r||`` (about ``8 * eps * (||x|| + ||D(z)||)``), comparing
    residuals cannot tell a good step from a bad one, and strict acceptance would stall ``z`` at
    about ``sqrt(eps) * ||r|| / sigma_min(J)`` from the minimiser; a step whose predicted and
    actual changes are both within that rounding is therefore accepted (the residual then moves
    by rounding only, and never above ``||D(z0) - x||``). The Jacobian is recomputed only for
    samples whose ``z`` moved. The search finds a LOCAL minimiser: the one the start's basin
    leads to.

    Stopping, per sample (a stopped sample no longer changes; the loop ends when every sample
    has stopped or after ``max_iter`` iterations):

    * first-order optimality, scale free: ``||J^T r|| <= tol * ||J||_F * ||r||`` at the current
      ``z`` (unchanged by rescaling the images or the latents). It leaves ``z`` about
      ``tol * ||r|| * ||J||_F / sigma_min(J)^2`` from ``z*``: pass ``tol=1e-12`` in float64 for
      foot points accurate to near rounding;
    * relative residual change below ``tol``: ``||r(z + dz) - r(z)|| <= tol * ||r(z)||`` for the
      step just tried (accepted or rejected). The change of the residual VECTOR is first order in
      the step, like the gradient test (the change of its NORM is second order near a minimum
      and would stop with ``z`` only ``sqrt(tol)``-accurate); it also stops samples whose steps
      are lost in rounding or crushed by damping;
    * residual essentially zero: ``||r|| <= 100 * eps * (||x|| + ||D(z)||)`` (``x`` on the
      image; the gradient test is meaningless on pure rounding noise).

    Deterministic: there is no randomness, so the same inputs (and decoder) give the same result
    ("seeded" in that sense), up to the usual floating-point nondeterminism of the device.

    Parameters
    ----------
    decode : callable
        Decoder mapping latents ``(B, k)`` to ``(B, C, H, W)`` or ``(B, n)``, computing in the
        dtype of its input and treating samples independently (no batch statistics).
    x : Tensor
        Target images ``(B, ...)`` with ``n`` numbers per sample; cast to the dtype of ``z0``.
    z0 : Tensor
        Starting latents ``(B, k)`` (typically ``E(x)``), floating point. Its dtype is the
        working dtype (float64 for accurate foot points). Not differentiated through.
    max_iter : int
        Most iterations (accepted plus rejected steps) per sample; 0 returns ``z0``.
    tol : float
        Tolerance of the gradient and residual-change tests (relative, dimensionless).
    damping : float
        Initial Marquardt parameter ``lam`` (small: start close to Gauss-Newton).
    chunk_size : int or None
        Samples per vectorised Jacobian call (bounds memory at about ``chunk_size * n * k``).

    Returns
    -------
    NearestLatent

    Examples
    --------
    A linear decoder ``D(z) = W z + b``: the nearest latent is the least-squares solution.

    >>> g = torch.Generator().manual_seed(0)
    >>> W = torch.randn(6, 2, generator=g, dtype=torch.float64)
    >>> b = torch.randn(6, generator=g, dtype=torch.float64)
    >>> x = torch.randn(3, 6, generator=g, dtype=torch.float64)
    >>> res = nearest_latent(lambda z: z @ W.T + b, x, torch.zeros(3, 2, dtype=torch.float64),
    ...                      tol=1e-12)
    >>> z_ls = torch.linalg.lstsq(W, (x - b).T).solution.T
    >>> bool(torch.allclose(res.z, z_ls, atol=1e-10)), bool(res.converged.all())
    (True, True)
    >>> bool((res.err <= res.start_err).all())
    True
    """
    if z0.dim() != 2:
        raise ValueError(f"z0 must be (B, k); got shape {tuple(z0.shape)}")
    if not z0.dtype.is_floating_point:
        raise TypeError(f"z0 must be floating point; got {z0.dtype}")
    batch, k = z0.shape
    if x.shape[0] != batch:
        raise ValueError(f"x has {x.shape[0]} samples but z0 has {batch}")
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0; got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0; got {tol}")
    if not damping > 0:
        raise ValueError(f"damping must be > 0; got {damping}")

    dtype, device = z0.dtype, z0.device
    eps = torch.finfo(dtype).eps
    tiny = torch.finfo(dtype).tiny
    target = x.detach().reshape(batch, -1).to(dtype=dtype, device=device)
    z = z0.detach().clone()

    # Forward-mode transforms ignore no_grad; it only stops a decoder whose parameters require
    # grad from recording an autograd graph of every decode.
    with torch.no_grad():
        out = _flat(decode, z)
        if out.shape != target.shape:
            raise ValueError(
                f"decode(z0) has {out.shape[1]} numbers per sample, x has {target.shape[1]}"
            )
        r = out - target
        f = torch.linalg.vector_norm(r, dim=1)
        f_start = f.clone()
        start_err = f.to(torch.float64, copy=True)
        x_norm = torch.linalg.vector_norm(target, dim=1)

        lam = torch.full((batch,), float(damping), dtype=dtype, device=device)
        gram = torch.zeros(batch, k, k, dtype=dtype, device=device)  # J^T J
        grad = torch.zeros(batch, k, dtype=dtype, device=device)  # J^T r
        j_norm = torch.zeros(batch, dtype=dtype, device=device)  # ||J||_F
        stale = torch.ones(batch, dtype=torch.bool, device=device)  # J not yet at the current z
        active = torch.ones(batch, dtype=torch.bool, device=device)
        converged = torch.zeros(batch, dtype=torch.bool, device=device)
        iterations = torch.zeros(batch, dtype=torch.int64, device=device)

        step = 0
        while True:
            # Jacobians only where z moved (rejected steps keep z, hence J, J^T J and J^T r).
            refresh = (active & stale).nonzero().squeeze(1)
            if refresh.numel():
                jac = decoder_jacobian(decode, z[refresh], chunk_size=chunk_size)
                gram[refresh] = jac.mT @ jac
                grad[refresh] = (jac.mT @ r[refresh].unsqueeze(-1)).squeeze(-1)
                j_norm[refresh] = torch.linalg.matrix_norm(jac)
                stale[refresh] = False

            # Tests at the current z: first-order optimality, or a residual of rounding size.
            small_grad = torch.linalg.vector_norm(grad, dim=1) <= tol * j_norm * f
            out_norm = torch.linalg.vector_norm(r + target, dim=1)
            zero_res = f <= _ZERO_RESIDUAL_ULPS * eps * (x_norm + out_norm)
            done = active & (small_grad | zero_res)
            converged |= done
            active &= ~done
            if step >= max_iter or not bool(active.any()):
                break

            idx = active.nonzero().squeeze(1)
            a, g, lam_i, f_i = gram[idx], grad[idx], lam[idx], f[idx]
            diag = a.diagonal(dim1=-2, dim2=-1)
            shift = lam_i.unsqueeze(-1) * diag + eps * diag.amax(-1, keepdim=True) + tiny
            dz = torch.linalg.solve(a + torch.diag_embed(shift), -g)
            z_try = z[idx] + dz
            r_try = _flat(decode, z_try) - target[idx]
            f_try = torch.linalg.vector_norm(r_try, dim=1)
            # Accept where the residual decreases. Near a minimum with ||r|| > 0 a step's decrease
            # is second order in it and drops below the rounding of ||r|| once z is within about
            # sqrt(eps) * ||r|| / sigma_min of z*: there the comparison cannot tell, and the
            # linear model decides. A step whose predicted decrease (pred_sq = ||r||^2 -
            # ||r + J dz||^2 >= ||J dz||^2 for an LM step, computed without cancellation) and
            # actual change are both within rounding is accepted, never above ||D(z0) - x||.
            finite = torch.isfinite(f_try)
            noise = _ROUNDING_ULPS * eps * (x_norm[idx] + out_norm[idx])
            pred_sq = -(2.0 * (g * dz).sum(-1) + (dz * (a @ dz.unsqueeze(-1)).squeeze(-1)).sum(-1))
            pred_drop = pred_sq / (f_i + torch.sqrt((f_i**2 - pred_sq).clamp(min=0.0)))
            in_rounding = (f_try - f_i <= noise) & (pred_drop <= noise) & (f_try <= f_start[idx])
            accept = finite & ((f_try < f_i) | in_rounding)

            # Relative change of the residual vector (non-finite trials never count as small).
            change = torch.linalg.vector_norm(r_try - r[idx], dim=1)
            small_change = torch.isfinite(change) & (change <= tol * f_i)

            moved = idx[accept]
            z[moved] = z_try[accept]
            r[moved] = r_try[accept]
            f[moved] = f_try[accept]
            stale[moved] = True
            lam[idx] = torch.where(accept, lam_i / 3.0, (lam_i * 4.0).clamp(max=_LAM_MAX))
            iterations[idx] += 1

            stop = idx[small_change]
            converged[stop] = True
            active[stop] = False
            step += 1

    return NearestLatent(
        z=z,
        start_err=start_err,
        err=f.to(torch.float64),
        iterations=iterations,
        converged=converged,
    )
