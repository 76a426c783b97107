"""Minimal-norm projected gradient descent (L2 and Linf), batched, with per-sample early stop.

The reproduction's attack (``docs/references.md#reproduction-attack``): untargeted margin loss, a
unit-L2-normalised gradient step, projection onto the L2 eps-ball and the pixel range, stop at the
first misclassification. The loop, the feasible set, refinement and censoring are the contract's
(:class:`~runners.attacks.base.MinimalNormAttack`); this module defines the PGD steps.

Examples
--------
>>> model = nn.Linear(2, 2)
>>> with torch.no_grad():
...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])); _ = model.bias.zero_()
>>> x, y = torch.tensor([[0.3, 0.5]]), torch.tensor([0])  # boundary x0 = 0 at distance 0.3
>>> res = L2PGD(eps=1.0, step=0.05, steps=50, refine=True, bounds=None)(model, x, y)
>>> bool(res.success[0]), round(float(res.norm[0]), 3), int(res.steps[0])
(True, 0.3, 7)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn  # noqa: F401  (nn: the module docstring example)

from runners.attacks.base import (
    AttackResult,
    GradientProjection,
    MinimalNormAttack,
    Model,
    Schedule,
    batch_norm,
    expand_like,
)

__all__ = ["L2PGD", "LinfPGD", "cosine_schedule", "make_pgd", "pgd"]


def cosine_schedule(steps: int, *, floor: float = 0.1) -> Schedule:
    """Step multiplier decaying from 1 to ``floor`` along a half cosine over ``steps`` steps.

    Examples
    --------
    >>> s = cosine_schedule(11, floor=0.0)
    >>> round(s(0), 3), round(s(5), 3), round(s(10), 3)
    (1.0, 0.5, 0.0)
    """
    span = max(steps - 1, 1)
    return lambda t: floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))


class L2PGD(MinimalNormAttack):
    """L2 PGD: ``delta += step * g / ||g||``, then onto the L2 eps-ball and the pixel box.

    Parameters
    ----------
    eps : float
        L2 budget.
    step : float
        L2 length of each step (before the schedule).
    steps : int
        Maximum gradient steps.
    loss : {"margin", "ce"}
        Maximised per-sample loss.
    random_start : bool
        Start uniformly in the eps-ball (in the projected subspace when ``project_gradient`` is
        given, so an on-manifold attack does not start off the manifold).
    early_stop : bool
        Stop each sample at its first misclassification (it leaves the active batch). Without it
        every sample runs all steps and the smallest adversarial iterate is kept.
    refine : bool
        Bisect to the boundary along the found perturbation.
    refine_steps : int
    schedule : callable or None
        ``t -> multiplier`` of ``step`` (e.g. :func:`cosine_schedule`).
    bounds : (lo, hi) or None
        Pixel box (floats or tensors broadcastable to an image); None for no box.
    box : {"strict", "clip", "none"}
        Feasible set of the iterates (module notes): ``strict`` keeps them in the subspace of
        ``project_gradient``, the ball and the box; ``clip`` clips after the projected step
        (leaves the subspace); ``none`` ignores ``bounds``.
    box_tol, box_max_iter : float, int
        Relative residual and iteration cap of the ``strict`` projection (ADMM).
    """

    p = "l2"

    def _subspace_part(self, d: Tensor) -> Tensor:
        return self._into_ball(d)

    def _direction(self, g: Tensor) -> Tensor:
        n = batch_norm(g, "l2")
        # A zero gradient (saturated model, or nothing left after projection) gives no step.
        return g / expand_like(torch.where(n > 0, n, torch.ones_like(n)), g)

    def _into_ball(self, d: Tensor) -> Tensor:
        n = batch_norm(d, "l2")
        factor = torch.clamp(self.eps / torch.where(n > 0, n, torch.ones_like(n)), max=1.0)
        return d * expand_like(factor, d)

    def _start(self, x: Tensor, project: GradientProjection | None,
               generator: torch.Generator | None) -> Tensor:
        # Drawn on the CPU (where the generator lives) and moved: same numbers on any device.
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        if project is not None:
            noise = project(noise, torch.arange(len(x), device=x.device))
        dim = x[0].numel()
        radius = self.eps * torch.rand(len(x), generator=generator,
                                       dtype=x.dtype).to(x.device) ** (1.0 / dim)
        return self._direction(noise) * expand_like(radius, x)


class LinfPGD(MinimalNormAttack):
    """Linf PGD: ``delta += step * sign(g)``, then clipped to ``[-eps, eps]`` and the pixel box.

    Parameters as :class:`L2PGD` (``eps`` and ``step`` in Linf). With ``project_gradient`` the
    sign is taken of the PROJECTED gradient, so steps are not confined to the subspace.
    """

    p = "linf"

    def _box_offsets(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = super()._box_offsets(x)
        return lo.clamp(min=-self.eps), hi.clamp(max=self.eps)

    def _direction(self, g: Tensor) -> Tensor:
        return torch.sign(g)

    def _into_ball(self, d: Tensor) -> Tensor:
        return torch.clamp(d, -self.eps, self.eps)

    def _start(self, x: Tensor, project: GradientProjection | None,
               generator: torch.Generator | None) -> Tensor:
        noise = (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) - 1)
        noise = noise * self.eps
        if project is not None:
            noise = self._into_ball(project(noise, torch.arange(len(x), device=x.device)))
        return noise


def make_pgd(norm: Literal["l2", "linf"], **options: Any) -> MinimalNormAttack:
    """PGD in ``norm`` with the contract's keyword options (the ``pgd`` entry of ATTACKS)."""
    return (L2PGD if norm == "l2" else LinfPGD)(**options)


def pgd(
    model: Model,
    x: Tensor,
    y: Tensor,
    *,
    norm: Literal["l2", "linf"] = "l2",
    project_gradient: GradientProjection | Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> AttackResult:
    """Functional form: build :class:`L2PGD` / :class:`LinfPGD` with ``options`` and run once."""
    return make_pgd(norm, **options)(model, x, y, project_gradient=project_gradient,
                                     generator=generator)
