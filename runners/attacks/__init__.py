"""Adversarial attacks behind one contract (foolbox-3 style: keyword-only constructors).

* :mod:`~runners.attacks.base`: :class:`Attack`, the contract (a call returning an
  :class:`AttackResult`, refinement and censoring at eps), and :class:`MinimalNormAttack`, the
  attacks that run our loop (success tracking, feasible set).
* :mod:`~runners.attacks.pgd`: minimal-norm L2 / Linf PGD.
* :mod:`~runners.attacks.library`: FMN, DDN (foolbox), DeepFool, FAB (torchattacks) behind the
  contract (the ``attacks`` extra; plain mode only), and ``check_attack_available``.
* :mod:`~runners.attacks.factory`: :data:`ATTACKS` (by method name) and :func:`make_attack`.
* :mod:`~runners.attacks.losses`: the margin and cross-entropy losses and input gradients.

Adding an attack: subclass :class:`MinimalNormAttack` (``_start``, ``_direction``,
``_into_ball``, optionally ``_propose``), or ``LibraryAttack`` for a library's attack (``_run``),
write a factory ``(norm, **options) -> attack``, and
``ATTACKS.register(name, factory)`` (or a ``"module:function"`` target); protocols then accept
``attack.method: name`` and ``tests/runners/test_attack_contract.py`` shows what it must pass.
"""

from runners.attacks.base import (
    Attack,
    AttackResult,
    GradientProjection,
    MinimalNormAttack,
    Schedule,
    bisect_to_boundary,
)
from runners.attacks.factory import ATTACKS, attack_from_config, make_attack
from runners.attacks.losses import LOSSES, cross_entropy_loss, input_gradient, margin_loss
from runners.attacks.pgd import L2PGD, LinfPGD, cosine_schedule, pgd

__all__ = [
    "ATTACKS",
    "LOSSES",
    "Attack",
    "AttackResult",
    "GradientProjection",
    "L2PGD",
    "LinfPGD",
    "MinimalNormAttack",
    "Schedule",
    "attack_from_config",
    "bisect_to_boundary",
    "cosine_schedule",
    "cross_entropy_loss",
    "input_gradient",
    "make_attack",
    "margin_loss",
    "pgd",
]
