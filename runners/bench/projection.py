"""ImageNet-scale tangent projection without the dense basis: peak memory, time, CG iterations.

Each measured projection runs in its OWN subprocess (``python -m runners.bench.projection``), so
its peak resident memory (``ru_maxrss`` from ``os.wait4``) is that projection's alone, torch and
the decoder weights included, not whatever this process touched before.

Two decoders, both 512 x 7 x 7 = 25,088 latents to 3 x 224 x 224 = 150,528 pixels:

* ``segnet``: :class:`runners.models.autoencoders.SegNetAutoencoder`'s decoder, randomly
  initialised, with reduced hidden widths except the last 512 (CPU time); J is ill-conditioned.
* ``near_isometric``: isometric BY CONSTRUCTION up to 10%: a 1x1 convolution 512 -> 3072 with
  orthonormal weight columns, a depth-to-space (pixel shuffle, a permutation) by 32, then
  ``a + 0.1 tanh(a)`` elementwise, so the singular values of J lie in [1, 1.1].

Agreement is checked where a dense basis fits: the same SegNet architecture at 32 x 32 pixels,
matrix-free CG against the dense QR projection, in float64.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import torch
from torch import Tensor, nn

from runners.bench.core import Benchmark

__all__ = ["NearIsometricDecoder", "bench_projection", "measure_in_subprocess"]

DENSE_BYTES_IMAGENET = 150_528 * 25_088 * 4  # float32 basis: 15.1 GB


class NearIsometricDecoder(nn.Module):
    """A decoder whose Jacobian has singular values in ``[1, 1 + slope]`` by construction.

    Parameters
    ----------
    channels : int
        Latent channels (512).
    out_channels : int
        Image channels (3).
    factor : int
        Depth-to-space factor (32: 7 x 7 -> 224 x 224).
    slope : float
        Strength of the elementwise nonlinearity ``a + slope * tanh(a)``.
    seed : int
    """

    def __init__(self, channels: int = 512, out_channels: int = 3, factor: int = 32,
                 slope: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        wide = out_channels * factor * factor
        if wide < channels:
            raise ValueError("the 1x1 embedding must not reduce the channel count")
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(wide, channels, generator=gen))
        self.register_buffer("weight", q.reshape(wide, channels, 1, 1).contiguous())
        self.shuffle = nn.PixelShuffle(factor)
        self.channels, self.slope = channels, slope

    def forward(self, z: Tensor) -> Tensor:
        side = int(round((z.shape[1] // self.channels) ** 0.5))
        a = self.shuffle(nn.functional.conv2d(z.reshape(-1, self.channels, side, side),
                                              self.weight.to(z.dtype)))
        return a + self.slope * torch.tanh(a)


def _segnet(image: int, hidden: list[int], seed: int) -> Any:
    from runners.models.autoencoders import SegNetAutoencoder

    torch.manual_seed(seed)
    ae = SegNetAutoencoder(image_shape=(3, image, image), hidden=tuple(hidden)).eval()
    for p in ae.parameters():
        p.requires_grad_(False)
    return ae


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One projection, as the subprocess runs it."""
    from runners.geometry.matrix_free import project_matrix_free

    torch.set_num_threads(int(spec.get("threads", 1)))
    gen = torch.Generator().manual_seed(int(spec["seed"]))
    image = int(spec["image"])
    if spec["decoder"] == "segnet":
        ae = _segnet(image, spec["hidden"], int(spec["seed"]))
        decode, k = ae.decode, ae.latent_dim
    else:
        dec = NearIsometricDecoder(factor=32, seed=int(spec["seed"]))
        decode, k = dec, 512 * (image // 32) ** 2
    z = torch.randn(int(spec["batch"]), k, generator=gen)
    n = 3 * image * image
    v = torch.randn(int(spec["batch"]), n, generator=gen)
    start = time.perf_counter()
    res = project_matrix_free(decode, z, v, solver=spec.get("solver", "cg"),
                              tol=float(spec["tol"]), max_iter=int(spec["max_iter"]))
    elapsed = time.perf_counter() - start
    info = res.info
    assert info is not None
    # Sanity of the returned projection: it cannot be longer than v (Pythagoras).
    ratio = float((res.projection.norm(dim=1) / v.norm(dim=1)).max())
    return {"n": n, "k": k, "seconds": elapsed,
            "iterations": info.iterations.tolist(), "residual": info.residual.tolist(),
            "converged": info.converged.tolist(), "projection_norm_ratio_max": ratio}


def measure_in_subprocess(spec: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Run one projection in a fresh interpreter, reap it with ``os.wait4`` for its peak RSS.

    Parameters
    ----------
    spec : dict
        ``decoder`` (``"segnet"`` or ``"near_isometric"``), ``image``, ``hidden``, ``batch``,
        ``tol``, ``max_iter``, ``seed``, ``threads``.
    timeout : float
        Seconds before the child is killed.

    Returns
    -------
    dict
        The worker's report plus ``peak_rss_bytes``.
    """
    import tempfile

    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "runners.bench.projection",
                                 json.dumps(spec)], stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise TimeoutError(f"projection worker exceeded {timeout} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"projection worker failed: {err.read().strip()[-2000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    result["peak_rss_bytes"] = int(usage.ru_maxrss) * scale
    return result


def _agreement(bench: Benchmark, hidden: list[int]) -> None:
    """Matrix-free CG vs the dense QR projection where the dense basis fits (32 x 32, float64)."""
    from runners.geometry.matrix_free import project_matrix_free
    from runners.geometry.tangent import tangent_basis

    ae = _segnet(32, hidden, 1).double()
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, ae.latent_dim, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 3 * 32 * 32, generator=gen, dtype=torch.float64)
    tb = tangent_basis(ae.decode, z)
    dense = (tb.basis @ (tb.basis.transpose(1, 2) @ v.unsqueeze(-1))).squeeze(-1)
    mf = project_matrix_free(ae.decode, z, v, tol=1e-10, max_iter=4 * ae.latent_dim)
    err = float(((mf.projection - dense).norm(dim=1) / dense.norm(dim=1)).max())
    bench.check("matrix-free vs dense projection at 32x32 px (relative L2 error)", err, 1e-4,
                detail=f"n = 3072, k = {ae.latent_dim}, float64, CG tol 1e-10, "
                       f"{int(mf.info.iterations.max())} iterations")


def bench_projection(*, quick: bool, seed: int = 0) -> Benchmark:
    """Run the ImageNet-scale projection measurements (reduced sizes with ``quick``).

    Parameters
    ----------
    quick : bool
        64 x 64 images and a low iteration cap.
    seed : int

    Returns
    -------
    Benchmark
    """
    image = 64 if quick else 224
    hidden = [4, 8, 16, 32, 512] if quick else [16, 32, 64, 256, 512]
    cap_plain = 20 if quick else 500
    cap_iso = 50
    tol = 1e-4
    k = 512 * (image // 32) ** 2
    n = 3 * image * image
    bench = Benchmark("projection", "ImageNet-scale tangent projection, matrix-free (CG)",
                      settings={"image": [3, image, image], "n": n, "k": k,
                                "segnet_hidden": hidden, "batch": 1, "tol": tol,
                                "solver": "cg (CGLS, full reorthogonalisation)",
                                "max_iter_plain": cap_plain, "max_iter_isometric": cap_iso,
                                "dtype": "float32", "threads": 1,
                                "isometric_decoder": "near-isometric by construction: "
                                "orthonormal 1x1 conv 512->3072, pixel shuffle x32, "
                                "a + 0.1 tanh(a); singular values in [1, 1.1]"})
    _agreement(bench, [4, 8, 16, 32, 64] if quick else [8, 16, 32, 64, 128])
    common = {"image": image, "hidden": hidden, "batch": 1, "tol": tol, "seed": seed,
              "threads": 1}
    plain = measure_in_subprocess({**common, "decoder": "segnet", "max_iter": cap_plain}, 900)
    iso = measure_in_subprocess({**common, "decoder": "near_isometric", "max_iter": cap_iso}, 900)
    bench.extra["plain"], bench.extra["isometric"] = plain, iso
    bench.timing("plain segnet decoder: one projection", [plain["seconds"]],
                 iterations=plain["iterations"][0], residual=plain["residual"][0])
    bench.timing("near-isometric decoder: one projection", [iso["seconds"]],
                 iterations=iso["iterations"][0], residual=iso["residual"][0])
    for label, r in (("plain", plain), ("isometric", iso)):
        bench.check(f"{label}: ||P v|| <= ||v||", r["projection_norm_ratio_max"], 1.0 + 1e-4)
    peak = max(plain["peak_rss_bytes"], iso["peak_rss_bytes"])
    gib = 2**30
    bench.ratios = {"dense basis bytes / matrix-free peak RSS": DENSE_BYTES_IMAGENET / peak,
                    "CG iterations plain / isometric":
                        plain["iterations"][0] / max(iso["iterations"][0], 1)}
    bench.target("matrix-free peak memory (whole process, torch included)", "<= 2 GiB",
                 peak / gib, f"{peak / gib:.2f} GiB (dense basis: 15.1 GB)", peak <= 2 * gib,
                 "" if not quick else f"--quick: {image}x{image} px, n = {n}, k = {k}")
    p_conv = bool(plain["converged"][0])
    bench.target("time to relative residual 1e-4 per projection, plain SegNet decoder",
                 "reached, time stated", plain["seconds"],
                 (f"{plain['seconds']:.1f} s, {plain['iterations'][0]} iterations"
                  if p_conv else
                  f"NOT reached in {cap_plain} iterations ({plain['seconds']:.1f} s): "
                  f"residual {plain['residual'][0]:.2e}"), p_conv,
                 f"untrained decoder, hidden {hidden}")
    i_conv = bool(iso["converged"][0])
    bench.target("time to relative residual 1e-4 per projection, isometric decoder",
                 "reached, time stated", iso["seconds"],
                 f"{iso['seconds']:.2f} s, {iso['iterations'][0]} iterations, "
                 f"residual {iso['residual'][0]:.1e}", i_conv)
    few = iso["iterations"][0] * 5 <= plain["iterations"][0]
    bench.target("CG iterations, isometric vs plain decoder", "far fewer for isometric",
                 float(iso["iterations"][0]),
                 f"{iso['iterations'][0]} vs {plain['iterations'][0]}"
                 + ("" if p_conv else f" (plain capped at {cap_plain})"), few and i_conv)
    return bench


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
