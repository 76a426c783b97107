"""The strict on-manifold attack: k-coordinate search against pixel-space PGD with ADMM.

Both attacks look for the minimal ``||d||`` with ``d`` in the tangent space T at the image, the
image plus ``d`` in the pixel box and the eps-ball, and the classifier fooled. The old one
(:class:`~runners.attacks.pgd.L2PGD` with ``box="strict"``) steps in pixel space and projects
every iterate onto ``(x + T) ∩ box ∩ ball`` by ADMM; the new one
(:func:`~runners.attacks.tangent_strict.strict_tangent_attack`) searches ``c`` in R^k with an
exact active-set projection, an FMN-style radius schedule and restarts. This entry runs both on
the SAME images, classifier and tangent spaces (``protocols/quickstart.yaml``, seed 0, tangent
at ``E(x)``: the setting of issue 30's review, where a 30-start SLSQP flipped 20/30 plain images
and the old attack 14/30), interleaved, and records successes, norms where both succeed, and
wall time. Agreement: every success of either attack is misclassified, in T and in the box.
"""

from __future__ import annotations

import math

import torch

from runners.bench.core import Benchmark, interleaved
from runners.bench.feasible import _QUICK_OVERRIDES, QUICKSTART, _models

__all__ = ["bench_strict_tangent"]


def bench_strict_tangent(*, quick: bool, seed: int = 0, images: int | None = None) -> Benchmark:
    """Time and compare the two strict on-manifold attacks (module notes).

    Parameters
    ----------
    quick : bool
        8 images, the plain autoencoder only, short training and 60-step attacks.
    seed : int
    images : int or None
        Correctly classified eval images attacked (default 8 quick, 30 full).
    """
    from dimple_stats.protocol.loader import load_protocol
    from runners.attacks.factory import attack_from_config
    from runners.attacks.tangent_strict import strict_tangent_attack
    from runners.geometry.spaces import decoder_in_dtype, tangent_space
    from runners.measure import correctly_classified

    overrides = list(_QUICK_OVERRIDES) if quick else []
    images = images or (8 if quick else 30)
    names = ("plain",) if quick else ("plain", "isometric")
    repeats = 1 if quick else 3
    protocol = load_protocol(QUICKSTART, overrides=overrides + ["attack.base=image",
                                                               "attack.on_manifold=tangent"])
    data, models, metrics = _models(protocol, names, seed)
    clf = models["classifier"]
    correct = correctly_classified(clf, data.eval.x, data.eval.y)
    x, y = data.eval.x[correct][:images], data.eval.y[correct][:images]
    a = protocol.attack
    eps, steps = a.eps["on"], int(a.steps["on"])
    bench = Benchmark("strict_tangent", "Strict on-manifold attack: k-coordinate search vs "
                      "pixel-space PGD + ADMM", settings={
                          "protocol": QUICKSTART.name, "overrides": overrides,
                          "images": len(x), "autoencoders": list(names), "eps": eps,
                          "steps": steps, "step (PGD)": a.step["on"], "repeats": repeats,
                          "seed": seed, "torch_threads": torch.get_num_threads(), **metrics})
    lo, hi = data.pixel_range
    worst_member, box_excess, fooled_min = 1.0, 0.0, 1.0
    for name in names:
        with torch.no_grad():
            z = models[name].encode(x)
        space = tangent_space(decoder_in_dtype(models[name], torch.float64), z,
                              config=protocol.tangent)
        pgd = attack_from_config(a, "on", bounds=data.pixel_range)
        contenders = {
            f"PGD + ADMM [{name} AE]": lambda pgd=pgd, space=space: pgd(
                clf, x, y, project_gradient=space.on_manifold()),
            f"k-coordinate search [{name} AE]": lambda space=space: strict_tangent_attack(
                clf, x, y, space.basis, eps=eps, bounds=data.pixel_range, steps=steps,
                generator=torch.Generator().manual_seed(seed)),
        }
        runs, results = interleaved(contenders, repeats)
        old, new = (results[label] for label in contenders)
        medians = {}
        for label, res in results.items():
            ok = res.success
            adv = x + res.delta
            if bool(ok.any()):
                with torch.no_grad():
                    fooled_min = min(fooled_min, float((clf(adv[ok]).argmax(1) != y[ok])
                                                       .float().mean()))
                member = float(space.ratio(res.delta)[ok].min())
                bench.extra[f"worst ‖P_T d‖/‖d‖ of a success, {label}"] = f"{member:.6g}"
                worst_member = min(worst_member, member)
            box_excess = max(box_excess, float((lo - adv).clamp_min(0).amax()),
                             float((adv - hi).clamp_min(0).amax()))
            medians[label] = bench.timing(label, runs[label], successes=int(ok.sum()))
        both = old.success & new.success
        ratio = (float((new.norm[both] / old.norm[both]).median()) if bool(both.any())
                 else math.nan)
        labels = list(contenders)
        wall = medians[labels[1]] / medians[labels[0]]
        bench.ratios[f"time k-coordinate / PGD + ADMM [{name} AE]"] = wall
        if not math.isnan(ratio):
            bench.ratios[f"median norm k-coordinate / PGD + ADMM, both succeed "
                         f"({int(both.sum())}) [{name} AE]"] = ratio
        bench.extra[f"successes k-coordinate / PGD + ADMM [{name} AE]"] = (
            f"{int(new.success.sum())} / {int(old.success.sum())} of {len(x)}")
        bench.target(f"strict on-manifold successes, k-coordinate >= PGD + ADMM [{name} AE]",
                     ">=", float(new.success.sum()),
                     f"{int(new.success.sum())} vs {int(old.success.sum())} of {len(x)}; "
                     f"{wall:.3g}x wall time; median norm ratio {ratio:.3g} where both succeed",
                     bool(new.success.sum() >= old.success.sum()),
                     note=f"{len(x)} digits images, seed {seed}, median of {repeats} "
                          "interleaved runs")
    bench.check("successful perturbations in T, worst ‖P_T d‖/‖d‖ (both attacks)",
                worst_member, 0.999, upper=False)
    bench.check("perturbed images outside the pixel box (largest excess)", box_excess, 1e-6)
    bench.check("successful perturbations still misclassified (smallest fraction)",
                fooled_min, 1.0, upper=False)
    return bench
