"""What the strict feasible set costs: ``box: strict`` against ``box: clip`` on the same attacks.

The on-manifold attack may only move within ``x + T`` and the off-manifold one within
``x + T-perp`` (:mod:`runners.attacks.feasible`). ``box: clip`` (the reproduction's attack)
projects the gradient and clips the iterate to the pixel box, which moves it out of the subspace
wherever the clip is active; ``box: strict`` projects every iterate onto the intersection of the
subspace, the eps-ball and the pixel box by ADMM, warm-started from the previous step. This entry
times both on the SAME images, classifier, tangent spaces and attack settings
(``protocols/quickstart.yaml``: digits, pixels in [-1, 1], the quickstart's eps, steps and step
sizes), interleaved, and records what each returns: successes, norms, and the share
``||P_T d|| / ||d||`` of each perturbation in T, which strict must hold at 1 (on) and 0 (off).

Two time ratios per mode. The wall-time ratio is what a run pays; it also counts that the two
attacks take different numbers of steps (strict perturbations may not use the clipped pixels, so
an on-manifold attack needs more steps and fails more often, running its whole budget). The ratio
per gradient step (wall time over the gradient steps summed over the samples) is the price of
the projection itself.

The models are trained here, in process, from the quickstart's configs (seed 0, no store), as
the pipeline would train them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from runners.bench.core import Benchmark, interleaved

__all__ = ["bench_feasible", "QUICKSTART"]

QUICKSTART = Path(__file__).resolve().parents[2] / "protocols" / "quickstart.yaml"
# Quick (CI) sizes: a classifier of a few epochs, an autoencoder of 10 (with 2 it reconstructs no
# better than the mean image), a short attack budget.
_QUICK_OVERRIDES = ["classifier.epochs=3", "autoencoders.plain.epochs=10",
                    "attack.steps.on=60", "attack.steps.off=60"]
MODES = ("on", "off")
BOXES = ("strict", "clip")
#: Strict perturbations must be in T (on) / T-perp (off) to this (as ``runners.measure``'s
#: membership check, but for EVERY successful row, not the median).
ON_MIN, OFF_MAX = 0.999, 1e-3
#: Perturbed images may exceed the pixel box by float32 rounding of ``x + delta`` only.
BOX_TOL = 1e-6


def _models(protocol: Any, autoencoders: tuple[str, ...], seed: int
            ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from runners.datasets import load_dataset
    from runners.training import train_autoencoder, train_classifier

    data = load_dataset(protocol.dataset, seed=seed)
    clf = train_classifier(protocol.classifier, data, data_config=protocol.dataset, seed=seed)
    aes = {name: train_autoencoder(protocol.autoencoders[name], data, data_config=protocol.dataset,
                                   seed=seed, name=name) for name in autoencoders}
    metrics = {"classifier_test_accuracy": clf.metrics.get("test_accuracy")}
    for name, ae in aes.items():
        metrics[f"{name}_recon_vs_mean"] = ae.metrics.get("recon_vs_mean")
    return data, {"classifier": clf.model.eval(),
                  **{name: ae.model.eval() for name, ae in aes.items()}}, metrics


def _quantiles(values: Tensor) -> tuple[float, float, float]:
    """Median, min and max of a non-empty 1-d tensor (NaN for an empty one)."""
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    v = values.double()
    return float(v.median()), float(v.min()), float(v.max())


def bench_feasible(*, quick: bool, seed: int = 0, images: int | None = None,
                   autoencoders: tuple[str, ...] | None = None) -> Benchmark:
    """Time ``box="strict"`` against ``box="clip"`` for the on- and off-manifold attacks.

    Parameters
    ----------
    quick : bool
        8 images, the plain autoencoder only, short training, 60-step attacks
        (``_QUICK_OVERRIDES``) and one timed run after the warm-up; agreement is checked as in
        the full run.
    seed : int
        Training seed (and which correctly classified eval images come first).
    images : int or None
        Correctly classified eval images attacked (default 8 quick, 48 full).
    autoencoders : tuple of str or None
        Which of the quickstart's autoencoders give the tangent spaces (default ``plain`` quick,
        ``plain`` and ``isometric`` full).

    Returns
    -------
    Benchmark
    """
    from dimple_stats.protocol.loader import load_protocol
    from runners.attacks.factory import attack_from_config
    from runners.geometry.spaces import decoder_in_dtype, tangent_space
    from runners.measure import correctly_classified

    overrides = list(_QUICK_OVERRIDES) if quick else []
    images = images or (8 if quick else 48)
    autoencoders = autoencoders or (("plain",) if quick else ("plain", "isometric"))
    repeats = 1 if quick else 3
    protocol = load_protocol(QUICKSTART, overrides=overrides)
    data, models, metrics = _models(protocol, autoencoders, seed)
    clf = models["classifier"]
    x_all, y_all = data.eval.x, data.eval.y
    correct = correctly_classified(clf, x_all, y_all)
    x, y = x_all[correct][:images], y_all[correct][:images]
    a = protocol.attack
    bench = Benchmark("feasible", "Strict feasible set: box strict vs clip (on/off-manifold PGD)",
                      settings={"protocol": QUICKSTART.name, "overrides": overrides,
                                "dataset": protocol.dataset.name,
                                "pixel_range": list(data.pixel_range),
                                "images": len(x), "autoencoders": list(autoencoders),
                                "attack": (f"{a.norm} {a.loss}, eps on/off {a.eps['on']}/"
                                           f"{a.eps['off']}, step {a.step['on']}/{a.step['off']}, "
                                           f"steps {int(a.steps['on'])}/{int(a.steps['off'])}, "
                                           f"early stop {a.early_stop}, refine {a.refine}"),
                                "box_tol": a.box_tol, "box_max_iter": a.box_max_iter,
                                "tangent": f"{protocol.tangent.method}, {protocol.tangent.dtype}",
                                "repeats": repeats, "seed": seed,
                                "torch_threads": torch.get_num_threads(), **metrics})

    spaces: dict[str, Any] = {}
    contenders: dict[str, Any] = {}
    labels: dict[tuple[str, str, str], str] = {}
    for name in autoencoders:
        ae = models[name]
        with torch.no_grad():
            z = ae.encode(x)
        space = tangent_space(decoder_in_dtype(ae, torch.float64), z, config=protocol.tangent)
        spaces[name] = space
        for mode in MODES:
            project = space.on_manifold() if mode == "on" else space.off_manifold()
            for box in BOXES:
                attack = attack_from_config(a.model_copy(update={"box": box}), mode,
                                            bounds=data.pixel_range)
                key = (name, mode, box)
                labels[key] = f"{mode}-manifold, box {box} [{name} AE]"
                contenders[labels[key]] = (
                    lambda attack=attack, project=project: attack(clf, x, y,
                                                                   project_gradient=project))
    runs, results = interleaved(contenders, repeats)

    lo, hi = data.pixel_range
    box_excess, misclassified = 0.0, 1.0
    summary: dict[tuple[str, str], dict[str, Any]] = {}
    for name in autoencoders:
        space = spaces[name]
        for mode in MODES:
            stats: dict[str, dict[str, Any]] = {}
            for box in BOXES:
                label = labels[(name, mode, box)]
                res = results[label]
                ok = res.success
                adv = x + res.delta
                box_excess = max(box_excess, float((lo - adv).clamp_min(0).amax()),
                                 float((adv - hi).clamp_min(0).amax()))
                if bool(ok.any()):
                    with torch.no_grad():
                        fooled = clf(adv[ok]).argmax(1) != y[ok]
                    misclassified = min(misclassified, float(fooled.float().mean()))
                member = space.ratio(res.delta)[ok]
                m_med, m_min, m_max = _quantiles(member)
                steps = int(res.steps.sum())
                iters = (float(res.projection_iters.sum()) / max(steps, 1)
                         if res.projection_iters is not None else None)
                s = {"successes": int(ok.sum()), "median_norm": _quantiles(res.norm[ok])[0],
                     "grad_steps_total": steps,
                     "membership_median": m_med,
                     "membership_worst": m_min if mode == "on" else m_max}
                if iters is not None:
                    s["projection_iters_per_step"] = iters
                    s["projection_residual_max"] = float(res.projection_residual.max())
                    s["projection_iters_per_step_max_sample"] = float(
                        (res.projection_iters.double() / res.steps.clamp_min(1).double()).max())
                med = bench.timing(label, runs[label], **s)
                s["median_s"], s["member"] = med, member
                stats[box] = s
            st, cl = stats["strict"], stats["clip"]
            wall = st["median_s"] / cl["median_s"]
            per_step = ((st["median_s"] / max(st["grad_steps_total"], 1))
                        / (cl["median_s"] / max(cl["grad_steps_total"], 1)))
            both = results[labels[(name, mode, "strict")]].success & \
                results[labels[(name, mode, "clip")]].success
            norm_ratio = (float((results[labels[(name, mode, "strict")]].norm[both]
                                 / results[labels[(name, mode, "clip")]].norm[both]).median())
                          if bool(both.any()) else math.nan)
            tag = f"{mode}-manifold [{name} AE]"
            bench.ratios[f"time strict / clip, {tag}"] = wall
            bench.ratios[f"time per gradient step strict / clip, {tag}"] = per_step
            if not math.isnan(norm_ratio):
                bench.ratios[f"median norm strict / clip (both succeed, {int(both.sum())}), "
                             f"{tag}"] = norm_ratio
            # Membership of the strict perturbations, over every successful row.
            member = st["member"]
            where = f"{int(len(member))} successes"
            if len(member) == 0:  # nothing succeeded: judge the last iterates instead
                last = results[labels[(name, mode, "strict")]].delta
                nonzero = last.flatten(1).norm(dim=1) > 0
                member = space.ratio(last[nonzero])
                where = f"no successes; {int(nonzero.sum())} nonzero last iterates"
            if mode == "on":
                worst = float(member.min()) if len(member) else 1.0
                bench.check(f"strict on-manifold ‖P_T d‖/‖d‖, worst row [{name} AE]", worst,
                            ON_MIN, upper=False, detail=where)
            else:
                worst = float(member.max()) if len(member) else 0.0
                bench.check(f"strict off-manifold ‖P_T d‖/‖d‖, worst row [{name} AE]", worst,
                            OFF_MAX, detail=where)
            bench.extra[f"{tag}: successes strict / clip"] = (
                f"{st['successes']} / {cl['successes']} of {len(x)}")
            bench.extra[f"{tag}: ‖P_T d‖/‖d‖ median (worst) strict; clip"] = (
                f"{st['membership_median']:.4g} ({st['membership_worst']:.4g}); "
                f"{cl['membership_median']:.4g} ({cl['membership_worst']:.4g})")
            summary[(name, mode)] = {"wall": wall, "per_step": per_step, "strict": st,
                                     "clip": cl}
    bench.check("perturbed images outside the pixel box (largest excess, every contender and row)",
                box_excess, BOX_TOL)
    bench.check("successful perturbations still misclassified (smallest fraction)",
                misclassified, 1.0, upper=False)

    for name in autoencoders:
        for mode in MODES:
            r = summary[(name, mode)]
            st, cl = r["strict"], r["clip"]
            tag = f"{mode}-manifold" + ("" if name == "plain" else f" [{name} AE]")
            finite = math.isfinite(r["wall"]) and math.isfinite(r["per_step"])
            bench.target(f"time ratio strict / clip, {tag}", "recorded", r["wall"],
                         f"{r['wall']:.3g}x wall ({r['per_step']:.3g}x per gradient step); "
                         f"{st['median_s']:.3g} s vs {cl['median_s']:.3g} s; successes "
                         f"{st['successes']} vs {cl['successes']} of {len(x)}; "
                         f"{st['projection_iters_per_step']:.3g} projection iterations per step",
                         finite,
                         note=f"{len(x)} digits images, {name} autoencoder's T, median of "
                              f"{repeats} interleaved runs")
            if mode == "on":
                goal, ok = f">= {ON_MIN}", st["membership_worst"] >= ON_MIN
            else:
                goal, ok = f"<= {OFF_MAX:g}", st["membership_worst"] <= OFF_MAX
            if st["successes"] == 0:
                ok = False
            bench.target(f"‖P_T d‖/‖d‖ of strict {mode}-manifold perturbations, worst "
                         f"success" + ("" if name == "plain" else f" [{name} AE]"), goal,
                         st["membership_worst"],
                         f"{st['membership_worst']:.4g} (median {st['membership_median']:.4g}); "
                         f"clip: {cl['membership_worst']:.4g} (median "
                         f"{cl['membership_median']:.4g})", ok,
                         note="clip shown for comparison: it leaves the subspace")
    bench.notes.append(
        "The wall-time ratio also counts the steps: a strict on-manifold perturbation may not "
        "use the pixels the clip cuts, so it needs more steps and fails more often (a failure "
        "runs the whole step budget). The per-gradient-step ratio (wall time over the gradient "
        "steps summed over samples) isolates the cost of the projection itself; norms are "
        "compared only where both attacks succeed.")
    return bench
