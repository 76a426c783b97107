"""Per-sample attack losses (to be MAXIMISED) and input gradients.

``margin``: ``max_{j != y} f_j(x) - f_y(x)``, the untargeted margin of the reproduction; positive
exactly when ``x`` is misclassified, and for a linear classifier its gradient is ``w_j - w_y``,
whose norm sets the closed-form boundary distance. ``ce``: the cross-entropy of the true label.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["LOSSES", "LossName", "margin_loss", "cross_entropy_loss", "input_gradient"]

LossName = Literal["margin", "ce"]


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """``max_{j != y} logits_j - logits_y`` per sample (``(B, C), (B,) -> (B,)``).

    Examples
    --------
    >>> margin_loss(torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]]), torch.tensor([0, 0])).tolist()
    [-1.0, 3.0]
    """
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, y.unsqueeze(1), float("-inf"))
    return others.amax(dim=1) - true


def cross_entropy_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross-entropy of the true label."""
    return nn.functional.cross_entropy(logits, y, reduction="none")


#: Loss name (``AttackConfig.loss``) -> per-sample loss ``(logits, y) -> (B,)``.
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "margin": margin_loss,
    "ce": cross_entropy_loss,
}


def input_gradient(
    model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, loss: LossName = "margin"
) -> Tensor:
    """``d loss(model(x), y) / dx`` per sample, the shape of ``x`` (parameters get no grad).

    Examples
    --------
    >>> lin = nn.Linear(3, 2)
    >>> g = input_gradient(lin, torch.zeros(1, 3), torch.tensor([0]))
    >>> bool(torch.allclose(g[0], lin.weight[1] - lin.weight[0]))
    True
    """
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = LOSSES[loss](model(xg), y).sum()
        (grad,) = torch.autograd.grad(value, xg)
    return grad.detach()
