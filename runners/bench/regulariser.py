"""What dominates the quickstart: the isometric regulariser. Current vs a candidate fix.

The profile of the end-to-end run puts most of its time in ``train_autoencoder[isometric]``,
and inside it in :func:`runners.models.regularisers.isometric_loss`: ``torch.func.jvp`` runs
``nn.Linear``'s forward-mode rule through Python reference decompositions (``torch._refs``,
meta kernels, symbolic-shape guards), thousands of small Python calls per training step.

The candidate computes the same two quantities with native reverse mode only:

* ``J u`` by the double-backward trick: ``g(w) = J^T w`` is linear in ``w``, so
  ``d/dw <g(w), u> = J u``; two reverse passes, both differentiable (``create_graph``);
* ``u^T J_g`` of the encoder by one ``autograd.grad`` with ``create_graph``.

It is measured here, side by side, with the loss value and every parameter gradient checked to
agree. It is NOT wired into ``runners/models/regularisers.py`` by this benchmark (that file
belongs to the models/training work); the report states the measured gain.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from runners.bench.core import Benchmark, interleaved
from runners.models.autoencoders import MLPAutoencoder
from runners.models.regularisers import isometric_loss, unit_sphere

__all__ = ["bench_regulariser", "isometric_loss_reverse"]


def _jvp_by_double_backward(fn: Callable[[Tensor], Tensor], z: Tensor, u: Tensor) -> Tensor:
    z = z.detach().requires_grad_(True)
    out = fn(z)
    w = torch.zeros_like(out, requires_grad=True)
    (g,) = torch.autograd.grad(out, z, w, create_graph=True)
    (ju,) = torch.autograd.grad(g, w, u, create_graph=True)
    return ju


def isometric_loss_reverse(
    encode: Callable[[Tensor], Tensor],
    decode: Callable[[Tensor], Tensor],
    x: Tensor,
    z: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``L_iso + L_piso`` as :func:`runners.models.regularisers.isometric_loss` (without
    interpolation), by reverse mode only; the same random directions from the same generator.

    Examples
    --------
    >>> W = torch.tensor([[2.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    >>> g = torch.Generator().manual_seed(0)
    >>> loss = isometric_loss_reverse(lambda x: x @ W, lambda z: z @ W.T, torch.zeros(2, 3),
    ...                               torch.zeros(2, 2), generator=g)
    >>> bool(loss >= 0)
    True
    """
    z = z.detach()
    u_dec = unit_sphere(tuple(z.shape), like=z, generator=generator)
    u_enc = unit_sphere((x.shape[0], z.shape[1]), like=z, generator=generator)
    ju = _jvp_by_double_backward(decode, z, u_dec)
    iso = ((ju.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
    xg = x.detach().requires_grad_(True)
    (uj,) = torch.autograd.grad(encode(xg), xg, u_enc, create_graph=True)
    piso = ((uj.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
    return iso + piso


def bench_regulariser(*, quick: bool, seed: int = 0) -> Benchmark:
    """One training step's regulariser (loss + backward) on the quickstart's autoencoder.

    Parameters
    ----------
    quick : bool
        Fewer steps per timing.
    seed : int

    Returns
    -------
    Benchmark
    """
    steps = 20 if quick else 100
    repeats = 3 if quick else 5
    torch.manual_seed(seed)
    ae = MLPAutoencoder(image_shape=(1, 8, 8), latent_dim=8, hidden=(128, 64),
                        pixel_range=(-1.0, 1.0))
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    bench = Benchmark("regulariser", "Profile finding: the isometric regulariser step "
                      "(current torch.func vs candidate reverse-mode)",
                      settings={"autoencoder": "quickstart MLP 64-128-64-8, batch 64",
                                "steps_per_timing": steps, "repeats": repeats,
                                "applied_to_runners": False})

    def run(loss_fn: Callable[..., Tensor]) -> Callable[[], tuple[float, Tensor]]:
        def fn() -> tuple[float, Tensor]:
            for _ in range(steps):
                ae.zero_grad()
                g = torch.Generator().manual_seed(seed)
                loss = loss_fn(ae.encode, ae.decode, x, ae.encode(x), generator=g)
                loss.backward()
            grads = torch.cat([p.grad.flatten() for p in ae.parameters() if p.grad is not None])
            return float(loss.detach()), grads
        return fn

    runs, res = interleaved({"current": run(isometric_loss),
                             "candidate": run(isometric_loss_reverse)}, repeats)
    t_cur = bench.timing("current: torch.func jvp/vjp", runs["current"], steps=steps)
    t_new = bench.timing("candidate: reverse mode (double backward)", runs["candidate"],
                         steps=steps)
    bench.ratios = {"current / candidate": t_cur / t_new}
    (l_cur, g_cur), (l_new, g_new) = res["current"], res["candidate"]
    bench.check("loss, |current - candidate|", abs(l_cur - l_new), 1e-5 * max(1.0, abs(l_cur)))
    bench.check("parameter gradients, max |current - candidate| / max |g|",
                float((g_cur - g_new).abs().max() / g_cur.abs().max()), 1e-4)
    bench.target("isometric regulariser step, speed-up of the candidate fix", "recorded",
                 t_cur / t_new, f"{t_cur / t_new:.2f}x ({1e3 * t_cur / steps:.2f} -> "
                 f"{1e3 * t_new / steps:.2f} ms/step); NOT yet applied to the runner", True,
                 "same loss and gradients; apply in runners/models/regularisers.py")
    return bench
