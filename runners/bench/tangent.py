"""Tangent basis (Jacobian + QR) of the reproduction's MNIST conv decoder: ours vs the baselines.

Contenders, all on the same decoder and latents:

* ours: :func:`runners.geometry.tangent.tangent_basis` (``vmap(jacfwd)``: k JVPs per sample,
  batched over samples) followed by a batched reduced QR;
* the per-pixel loop of the earlier reproduction, re-implemented: one forward per image, then one
  reverse-mode ``autograd.grad`` per OUTPUT PIXEL (n = 784 backward passes per image);
* ``torch.autograd.functional.jacobian(vectorize=True)`` per image (reverse mode, vectorised
  over the n output rows);
* the floor for forward mode: k + 1 plain forward passes of the batch (the Jacobian has k
  columns, plus the primal).

The baselines are far slower, so they run on the first few images and are scaled linearly to
the batch (they are per-image loops: their cost IS linear in the number of images).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from runners.bench.core import Benchmark, interleaved
from runners.geometry.jacobian import decoder_jacobian
from runners.geometry.tangent import basis_from_jacobian, largest_principal_angle, tangent_basis
from runners.models.autoencoders import ConvAutoencoder

__all__ = ["bench_tangent", "per_pixel_jacobian", "functional_jacobian"]


def per_pixel_jacobian(decode: Any, z: Tensor) -> Tensor:
    """Jacobians ``(B, n, k)`` the way the earlier reproduction built them: per image, one
    backward pass per output pixel (the graph of the image's forward pass is retained)."""
    rows_per_image = []
    for zi in z:
        zi = zi.detach().unsqueeze(0).requires_grad_(True)
        with torch.enable_grad():
            out = decode(zi).reshape(-1)
            rows = [torch.autograd.grad(out[j], zi, retain_graph=j + 1 < out.numel())[0][0]
                    for j in range(out.numel())]
        rows_per_image.append(torch.stack(rows))
    return torch.stack(rows_per_image)


def functional_jacobian(decode: Any, z: Tensor) -> Tensor:
    """Jacobians ``(B, n, k)`` by ``torch.autograd.functional.jacobian(vectorize=True)``, per image
    (on the whole batch it would also differentiate every output w.r.t. every OTHER sample's
    latent: B times the work, all of it zeros)."""
    def flat(zi: Tensor) -> Tensor:
        return decode(zi.unsqueeze(0)).reshape(-1)

    return torch.stack([torch.autograd.functional.jacobian(flat, zi, vectorize=True)
                        for zi in z])


def bench_tangent(*, quick: bool, seed: int = 0) -> Benchmark:
    """Run the tangent-basis comparison.

    Parameters
    ----------
    quick : bool
        Tiny decoder and batch (for CI): the agreement checks are the same, the timings are not
        the targets' sizes.
    seed : int
        Seeds the (untrained) decoder weights and the latents; timing does not depend on
        trained weights, and agreement is checked on exactly these.

    Returns
    -------
    Benchmark
    """
    hidden = (8, 16, 32, 64) if quick else (128, 256, 512, 1024)
    batch, k = (4, 16) if quick else (64, 16)
    pp_images, fn_images = (1, 1) if quick else (2, 1)
    repeats = 2 if quick else 3
    bench = Benchmark("tangent", "Tangent basis (Jacobian + QR), MNIST-size conv decoder",
                      settings={"image_shape": [1, 28, 28], "latent_dim": k, "hidden": list(hidden),
                                "batch": batch, "dtype": "float32", "repeats": repeats,
                                "per_pixel_images": pp_images,
                                "functional_jacobian_images": fn_images,
                                "weights": "untrained, seeded (timing and agreement only)"})
    torch.manual_seed(seed)
    ae = ConvAutoencoder(image_shape=(1, 28, 28), latent_dim=k, hidden=hidden).eval()
    for p in ae.parameters():
        p.requires_grad_(False)
    decode = ae.decode
    z = torch.randn(batch, k)

    def forward_floor() -> Tensor:
        with torch.no_grad():
            for _ in range(k + 1):
                out = decode(z)
        return out

    runs, res = interleaved({"ours": lambda: tangent_basis(decode, z),
                             "forward_floor": forward_floor}, repeats)
    t_ours = bench.timing("ours", runs["ours"], images=batch)
    t_floor = bench.timing("forward_floor", runs["forward_floor"], images=batch,
                           what=f"{k + 1} forward passes of the batch, no_grad")
    # The baselines cost minutes per image at full size: one timed run each, on a few images.
    zp, zf = z[:pp_images], z[:fn_images]
    runs_b, res_b = interleaved({"per_pixel": lambda: per_pixel_jacobian(decode, zp),
                                 "functional": lambda: functional_jacobian(decode, zf)},
                                1 if not quick else repeats, warmup=quick)
    # The QR is part of the contender's cost (ours includes it); time it once on its Jacobians.
    qr_runs, _ = interleaved({"qr": lambda: basis_from_jacobian(res_b["per_pixel"])}, repeats)
    qr_per_image = min(qr_runs["qr"]) / pp_images
    t_pp = bench.timing("per_pixel_loop", runs_b["per_pixel"], images=pp_images,
                        scaled_to_batch_s=(sum(runs_b["per_pixel"]) / len(runs_b["per_pixel"])
                                           / pp_images + qr_per_image) * batch)
    t_fn = bench.timing("functional_jacobian_vectorize", runs_b["functional"], images=fn_images,
                        scaled_to_batch_s=(sum(runs_b["functional"]) / len(runs_b["functional"])
                                           / fn_images + qr_per_image) * batch)
    pp_batch = bench.timings["per_pixel_loop"]["scaled_to_batch_s"]
    fn_batch = bench.timings["functional_jacobian_vectorize"]["scaled_to_batch_s"]
    speedup_pp = pp_batch / t_ours
    speedup_fn = fn_batch / t_ours
    over_floor = t_ours / t_floor
    # The best any forward-mode method can do against the per-pixel loop is to run at the
    # floor: this ceiling shows whether the two targets can both be met on this machine.
    ceiling = pp_batch / t_floor
    bench.ratios = {"per_pixel_loop / ours": speedup_pp,
                    "functional_jacobian / ours": speedup_fn,
                    "ours / (k+1 forward passes)": over_floor,
                    "per_pixel_loop / (k+1 forward passes): forward mode's ceiling": ceiling}

    # Agreement: the same Jacobians (hence the same tangent spaces) from all three.
    with torch.no_grad():
        j_ours = decoder_jacobian(decode, zp)
    j_pp, j_fn = res_b["per_pixel"], res_b["functional"]
    scale = float(j_pp.abs().max())
    bench.check("max |J_ours - J_per_pixel| / max |J|",
                float((j_ours - j_pp).abs().max()) / scale, 1e-4,
                detail="float32 forward vs reverse mode")
    bench.check("max |J_functional - J_per_pixel| / max |J|",
                float((j_fn - j_pp[:fn_images]).abs().max()) / scale, 1e-4)
    tb_ours = res["ours"]
    tb_pp = basis_from_jacobian(j_pp)
    angle = float(largest_principal_angle(tb_ours.basis[:pp_images].double(),
                                          tb_pp.basis.double()).max())
    bench.check("largest principal angle, ours vs per-pixel basis (rad)", angle, 1e-3)
    bench.check("orthonormality of ours, max |Q^T Q - I|",
                float((tb_ours.basis.transpose(1, 2) @ tb_ours.basis
                       - torch.eye(k)).abs().max()), 1e-4)

    scaled = (f"per-pixel loop timed on {pp_images} image(s), functional.jacobian on "
              f"{fn_images}, scaled linearly to {batch}")
    bench.target("speed-up over the per-pixel backward loop", ">= 100x", speedup_pp,
                 f"{speedup_pp:.1f}x (ceiling at the forward floor: {ceiling:.0f}x)",
                 speedup_pp >= 100, scaled)
    bench.target("time relative to k+1 plain forward passes", "<= 1.5x", over_floor,
                 f"{over_floor:.2f}x", over_floor <= 1.5)
    bench.extra["functional_jacobian_vs_ours"] = speedup_fn
    bench.notes.append(
        f"ours: {t_ours:.3f} s for {batch} images ({1e3 * t_ours / batch:.1f} ms/image); "
        f"per-pixel loop: {t_pp / pp_images:.2f} s/image; functional.jacobian(vectorize=True): "
        f"{t_fn / fn_images:.2f} s/image; {k + 1} forward passes: {t_floor:.3f} s.")
    if quick:
        bench.notes.append("--quick: tiny decoder; the targets are the full run's.")
    return bench
