"""One way to build an attack: by method name (:data:`ATTACKS`), norm and options.

Measurement and the projection defense build their attacks here, so a registered attack is
available to both. Adversarial training builds its attack here too, but always PGD (Madry's
recipe: ``runners.training``), whatever ``attack.method`` says.
"""

from __future__ import annotations

from typing import Any, Literal

from dimple_stats.protocol.schema import AttackConfig, Mode
from dimple_stats.protocol.vocabulary import ATTACK_METHODS, LIBRARY_ATTACK_METHODS
from runners.attacks.base import Attack, Bounds

__all__ = ["ATTACKS", "attack_from_config", "make_attack"]

#: The attack registry (the protocol's ``attack.method``): name -> factory or its target.
ATTACKS = ATTACK_METHODS


def make_attack(method: str, norm: Literal["l2", "linf"], **options: Any) -> Attack:
    """The attack ``method`` in ``norm`` with the contract's keyword options.

    >>> make_attack("pgd", "linf", eps=0.1, step=0.01, steps=20)
    LinfPGD(eps=0.1, step=0.01, steps=20, loss='margin', early_stop=True, refine=False, box='strict')
    """
    attack = ATTACKS.load(method)(norm, **options)
    if not isinstance(attack, Attack):
        raise TypeError(f"attack {method!r} built a {type(attack).__name__}, not an Attack "
                        "(runners.attacks.base)")
    return attack


#: Steps of the minimal-norm search (FMN's radius schedule) that follows each success of our
#: own attacks when they stop early (:meth:`~runners.attacks.base.MinimalNormAttack._minimise`).
SEARCH_STEPS = 100


def attack_from_config(config: AttackConfig, mode: Mode, *,
                       bounds: Bounds = (0.0, 1.0)) -> Attack:
    """The attack an :class:`~dimple_stats.protocol.schema.AttackConfig` describes for ``mode``.

    A method run by an attack library (:data:`LIBRARY_ATTACK_METHODS`: fmn, ddn, deepfool,
    fab) is the attack of the ``plain`` mode only: the libraries cannot project gradients onto
    the tangent space, so the ``on`` and ``off`` modes build PGD from the same config (its
    ``on``/``off`` eps, step and steps).

    Examples
    --------
    >>> attack_from_config(AttackConfig(), "on")
    L2PGD(eps=10.0, step=0.2, steps=1000, loss='margin', early_stop=True, refine=True, box='strict')
    >>> attack_from_config(AttackConfig(method="fab"), "plain")
    L2FAB(eps=2.0, steps=50, refine=True, box='strict')
    >>> attack_from_config(AttackConfig(method="fab"), "off")
    L2PGD(eps=10.0, step=0.02, steps=1000, loss='margin', early_stop=True, refine=True, box='strict')
    """
    c = config
    options = dict(
        eps=c.eps[mode], step=c.step[mode], steps=int(c.steps[mode]), loss=c.loss,
        random_start=c.random_start, early_stop=c.early_stop, refine=c.refine,
        refine_steps=c.refine_steps, bounds=bounds, box=c.box, box_tol=c.box_tol,
        box_max_iter=c.box_max_iter)
    method = "pgd" if mode != "plain" and c.method in LIBRARY_ATTACK_METHODS else c.method
    if method not in LIBRARY_ATTACK_METHODS and c.early_stop:
        options["search_steps"] = SEARCH_STEPS
    return make_attack(method, c.norm, **options)
