"""The curved on-manifold attack: a minimal chord along the decoder's image (Stutz et al. 2019).

The tangent-plane attack moves within ``x + T``, a flat approximation that on MNIST leaves the
pixel box at once (most pixels sit at a bound, so ``(x + T) ∩ box`` is often ``{x}``). The
latent attack moves ON the learned manifold instead: ``x' = D(z* + delta)``, and its norm is the
image-space chord ``||D(z* + delta) - D(z*)||``. Every ``x'`` is an image, because the
decoder's output is squashed into the pixel box, so no image is unmeasurable for lack of room.

The search is steepest ascent of the classifier's margin loss per unit of image-space movement:
the latent step is the Riemannian gradient of the pull-back metric ``G = J^T J`` at ``z*``
(``J = dD/dz``; with its SVD ``J = U S V^T`` the step is ``V S^-1 w / ||w||``, ``w = S^-1 V^T
grad_z``, so the decoded image moves by about ``step`` along the part of the image gradient
that lies in ``T``). A sample stops at its first misclassification (the minimal chord up to one
step along this path), or fails once its chord exceeds eps (censored at eps, like every other
attack). A success is refined by bisection on ``t`` along the latent segment ``z* + t delta``
to the decision boundary; ``path`` is the length of the decoded curve ``t -> D(z* + t delta)``
from 0 to the refined point (16 chords), which is at least the chord.

Own code: the attack libraries (foolbox, torchattacks, adv-lib) attack inputs, not a
generator's latent space under an image-space norm.

Examples
--------
>>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # a flat manifold: the x-y plane
>>> decode = lambda z: torch.tanh(z @ W.T)                  # bounded, like every decoder here
>>> model = nn.Linear(3, 2)
>>> with torch.no_grad():
...     _ = model.weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]])); _ = model.bias.zero_()
>>> z0 = torch.atanh(torch.tensor([[0.3, 0.0]]))           # D(z0) = (0.3, 0, 0), class 0
>>> res = latent_attack(model, decode, z0, torch.tensor([0]), eps=1.0, step=0.01, steps=200)
>>> bool(res.success[0]), round(float(res.norm[0]), 3)      # the boundary x0 = 0 is 0.3 away
(True, 0.3)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn  # noqa: F401  (nn: the module docstring example)

from runners.attacks.base import AttackResult, Model, batch_norm, expand_like
from runners.attacks.losses import LOSSES, LossName
from runners.geometry.jacobian import decoder_jacobian

__all__ = ["LatentAttackResult", "latent_attack", "pullback_metric"]

#: Segments of the decoded curve whose chords sum to ``path``.
PATH_SEGMENTS = 16


@dataclass(frozen=True, eq=False)
class LatentAttackResult(AttackResult):
    """:class:`~runners.attacks.base.AttackResult` of the latent attack, plus its latent step.

    Attributes
    ----------
    latent : Tensor
        ``(B, k)`` the (refined) latent perturbation; ``delta = D(z* + latent) - D(z*)``.
    path : Tensor
        ``(B,)`` length of the decoded curve ``t -> D(z* + t latent)``, ``t`` in [0, 1]
        (NaN where the attack failed).
    """

    latent: Tensor | None = None
    path: Tensor | None = None


def pullback_metric(decode: Callable[[Tensor], Tensor], z: Tensor, *, dtype: torch.dtype,
                    chunk_size: int | None = 16) -> tuple[Tensor, Tensor]:
    """``(V, S^-1)`` of the decoder Jacobian ``J = U S V^T`` at ``z`` (pseudo-inverse: singular
    values at or below ``max(n, k) * eps * S_max`` give 0), ``(B, k, k)`` and ``(B, k)``,
    computed in ``dtype`` (a module's decoder is cast, the original untouched)."""
    from runners.geometry.spaces import decoder_in_dtype

    with torch.no_grad():  # a decoder whose parameters require grad must not leak a graph
        jac = decoder_jacobian(decoder_in_dtype(decode, dtype), z.to(dtype).detach(),
                               chunk_size=chunk_size)
    _, s, vh = torch.linalg.svd(jac, full_matrices=False)
    cut = max(jac.shape[1], jac.shape[2]) * torch.finfo(dtype).eps * s[:, :1]
    inv = torch.where(s > cut, 1.0 / torch.where(s > 0, s, torch.ones_like(s)),
                      torch.zeros_like(s))
    return vh.transpose(1, 2), inv


def _curve_length(decode: Callable[[Tensor], Tensor], z0: Tensor, d: Tensor) -> Tensor:
    total = torch.zeros(len(z0), dtype=torch.float64, device=z0.device)
    with torch.no_grad():
        prev = decode(z0)
        for i in range(1, PATH_SEGMENTS + 1):
            cur = decode(z0 + (i / PATH_SEGMENTS) * d)
            total += batch_norm(cur - prev, "l2").to(torch.float64)
            prev = cur
    return total


def latent_attack(
    model: Model,
    decode: Callable[[Tensor], Tensor],
    z0: Tensor,
    y: Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    metric: tuple[Tensor, Tensor] | None = None,
    loss: LossName = "margin",
    refine: bool = True,
    refine_steps: int = 12,
) -> LatentAttackResult:
    """Minimal-chord on-manifold adversarial examples ``D(z0 + delta)`` (module notes).

    Parameters
    ----------
    model : callable
        Images to logits, in eval mode.
    decode : callable
        Latents ``(B, k)`` to images ``(B, ...)`` inside the pixel box, in ``model``'s dtype.
    z0 : Tensor
        ``(B, k)`` base latents; ``D(z0)`` must be classified ``y``.
    y : Tensor
        ``(B,)`` labels.
    eps : float
        Budget on the chord ``||D(z0 + delta) - D(z0)||_2``; failures are censored at it.
    step : float
        Image-space length of each step (first order).
    steps : int
        Gradient steps at most.
    metric : (V, S^-1) or None
        :func:`pullback_metric` at ``z0``; None: the same Riemannian step at the CURRENT
        latent by conjugate gradients on Jacobian-vector products (for decoders too large for
        a dense Jacobian; a few JVPs per step).
    loss : {"margin", "ce"}
    refine : bool
        Bisect along ``z0 + t delta`` to the boundary.
    refine_steps : int

    Returns
    -------
    LatentAttackResult
        ``delta = D(z0 + latent) - D(z0)``; ``norm`` its L2 chord (eps where it failed).
    """
    if eps <= 0 or step <= 0 or steps < 0:
        raise ValueError("eps and step must be positive and steps >= 0")
    z0, y = z0.detach(), y.detach()
    size, dev = len(z0), z0.device
    with torch.no_grad():
        x0 = decode(z0)
    latent = torch.zeros_like(z0)
    found = torch.zeros_like(z0)
    success = torch.zeros(size, dtype=torch.bool, device=dev)
    done = torch.zeros(size, dtype=torch.bool, device=dev)
    n_steps = torch.zeros(size, dtype=torch.int64, device=dev)
    forwards = torch.zeros(size, dtype=torch.int64, device=dev)
    loss_fn = LOSSES[loss]
    for t in range(steps + 1):
        active = (~done).nonzero().squeeze(1)
        if len(active) == 0:
            break
        last = t == steps
        za = (z0[active] + latent[active]).detach().requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            xa = decode(za)
            logits = model(xa)
        forwards[active] += 1
        chord = batch_norm((xa - x0[active]).detach(), "l2")
        adv = (logits.argmax(dim=1) != y[active]) & (chord <= eps)
        found[active[adv]] = latent[active[adv]]
        success[active[adv]] = True
        # Beyond the budget without a flip: censored at eps (the chord only grows from here
        # along a steepest-ascent path, give or take the manifold's curvature).
        stop = adv | (chord > eps)
        done[active[stop]] = True
        if last or bool(stop.all()):
            break
        keep = ~stop
        (grad,) = torch.autograd.grad(loss_fn(logits, y[active])[keep].sum(), za)
        rows = active[keep]
        grad = grad[keep].detach()
        n_steps[rows] += 1
        latent[rows] = latent[rows] + _step(decode, z0[rows] + latent[rows], grad, step,
                                            None if metric is None
                                            else (metric[0][rows], metric[1][rows])).detach()
    done_latent = torch.where(expand_like(success, latent), found, latent)
    if refine and bool(success.any()):
        idx = success.nonzero().squeeze(1)
        done_latent[idx] = _bisect(model, decode, z0[idx], y[idx], done_latent[idx],
                                   steps=refine_steps)
        forwards[idx] += refine_steps
    with torch.no_grad():
        delta = decode(z0 + done_latent) - x0
    chord = batch_norm(delta, "l2")
    norm = torch.where(success, chord, torch.full_like(chord, eps))
    path = torch.full((size,), float("nan"), dtype=torch.float64, device=dev)
    if bool(success.any()):
        idx = success.nonzero().squeeze(1)
        path[idx] = _curve_length(decode, z0[idx], done_latent[idx])
    return LatentAttackResult(delta=delta, norm=norm, success=success, steps=n_steps,
                              forward_evals=forwards, eps=float(eps), p="l2",
                              latent=done_latent, path=path)


def _step(decode: Callable[[Tensor], Tensor], z: Tensor, grad: Tensor, step: float,
          metric: tuple[Tensor, Tensor] | None) -> Tensor:
    """The latent increment that moves the decoded image by about ``step`` (module notes)."""
    if metric is not None:
        v, s_inv = metric
        dtype = v.dtype
        w = s_inv * torch.einsum("bkj,bk->bj", v, grad.to(dtype))
        length = w.norm(dim=1, keepdim=True)
        direction = torch.einsum("bkj,bj->bk", v, s_inv * w) / torch.where(
            length > 0, length, torch.ones_like(length))
        return (step * direction).to(z.dtype)
    z = z.detach()
    v = _gram_solve(decode, z, grad)
    _, moved = torch.func.jvp(decode, (z,), (v,))
    length = expand_like(batch_norm(moved, "l2"), v)
    return step * v / torch.where(length > 0, length, torch.ones_like(length))


def _gram_solve(decode: Callable[[Tensor], Tensor], z: Tensor, g: Tensor, *,
                tol: float = 1e-6) -> Tensor:
    """``(J^T J)^-1 g`` at ``z`` by batched conjugate gradients on Jacobian-vector products
    (the decoder's Jacobian is never formed); exact in at most k iterations."""
    _, vjp_fn = torch.func.vjp(decode, z)

    def gram(v: Tensor) -> Tensor:
        _, jv = torch.func.jvp(decode, (z,), (v,))
        return vjp_fn(jv)[0]

    x = torch.zeros_like(g)
    r = g.clone()
    p = r.clone()
    rs = (r * r).sum(dim=1)
    scale = rs.sqrt().clamp_min(torch.finfo(g.dtype).tiny)
    for _ in range(min(2 * g.shape[1], 100)):
        gp = gram(p)
        curvature = (p * gp).sum(dim=1)
        alpha = torch.where(curvature > 0, rs / torch.where(curvature > 0, curvature,
                                                             torch.ones_like(curvature)),
                            torch.zeros_like(rs))
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * gp
        new = (r * r).sum(dim=1)
        if bool((new.sqrt() <= tol * scale).all()):
            break
        p = r + (new / torch.where(rs > 0, rs, torch.ones_like(rs)))[:, None] * p
        rs = new
    return x


def _bisect(model: Model, decode: Callable[[Tensor], Tensor], z0: Tensor, y: Tensor,
            latent: Tensor, *, steps: int) -> Tensor:
    """Smallest ``t`` in (0, 1] with ``D(z0 + t latent)`` misclassified (``t = 1`` is)."""
    lo = torch.zeros(len(z0), dtype=z0.dtype, device=z0.device)
    hi = torch.ones(len(z0), dtype=z0.dtype, device=z0.device)
    with torch.no_grad():
        for _ in range(steps):
            mid = (lo + hi) / 2
            adv = model(decode(z0 + mid[:, None] * latent)).argmax(dim=1) != y
            hi = torch.where(adv, mid, hi)
            lo = torch.where(adv, lo, mid)
    return hi[:, None] * latent
