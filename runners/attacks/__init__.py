"""Adversarial attacks, one module per family (foolbox-3 style: keyword-only constructors).

* :mod:`~runners.attacks.pgd`: minimal-norm L2 / Linf PGD with per-sample early stop, optional
  per-step gradient projection (on/off-manifold) and bisection refinement to the boundary.
* :mod:`~runners.attacks.losses`: the margin and cross-entropy losses and input gradients.
"""

from runners.attacks.losses import LOSSES, cross_entropy_loss, input_gradient, margin_loss
from runners.attacks.pgd import (
    AttackResult,
    GradientProjection,
    L2PGD,
    LinfPGD,
    Schedule,
    attack_from_config,
    bisect_to_boundary,
    cosine_schedule,
    pgd,
)

__all__ = [
    "LOSSES",
    "AttackResult",
    "GradientProjection",
    "L2PGD",
    "LinfPGD",
    "Schedule",
    "attack_from_config",
    "bisect_to_boundary",
    "cosine_schedule",
    "cross_entropy_loss",
    "input_gradient",
    "margin_loss",
    "pgd",
]
