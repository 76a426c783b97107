"""What verifying stored files costs: loading a checkpoint through the store (which re-hashes the
file against its record first) against ``torch.load`` of the same file, side by side.

The store checks every file's SHA-256 on every load so that a changed, truncated or damaged file
is never used; this entry measures that the check is cheap next to the load itself, and also the
price of the data fingerprint (hashing a run's selected tensors once per seed).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import torch

from runners.bench.core import Benchmark, interleaved
from runners.store import ArtifactStore

__all__ = ["bench_store"]


def bench_store(quick: bool = False, repeats: int = 7) -> Benchmark:
    """Time a verified store load against an unverified ``torch.load`` of the same file.

    Parameters
    ----------
    quick : bool
        A 4 MB checkpoint instead of 64 MB (CI).
    repeats : int
        Interleaved repetitions of each contender.
    """
    megabytes = 4 if quick else 64
    bench = Benchmark("store", "Store integrity: a verified load vs torch.load",
                      settings={"checkpoint_MB": megabytes, "repeats": repeats})
    generator = torch.Generator().manual_seed(0)
    weights = {"w": torch.randn(megabytes * 2**18, generator=generator)}  # 4 bytes each
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore(Path(tmp))
        key = store.key("bench_store", {"MB": megabytes})
        with store.writer(key) as writer:
            writer.save_tensors("weights.pt", weights)
        path = store.path(key) / "weights.pt"
        runs, results = interleaved({
            "verified store load": lambda: store.load_tensors(key, "weights.pt"),
            "torch.load": lambda: torch.load(path, map_location="cpu", weights_only=True),
        }, repeats)
        bench.check("same tensors (max abs diff)", float(
            (results["verified store load"]["w"] - results["torch.load"]["w"]).abs().max()), 0.0)
        hash_runs, _ = interleaved({"sha256 of the file": lambda: hashlib.sha256(
            path.read_bytes()).hexdigest()}, repeats)
    verified = bench.timing("verified store load", runs["verified store load"])
    plain = bench.timing("torch.load", runs["torch.load"])
    hashing = bench.timing("sha256 of the file", hash_runs["sha256 of the file"])
    ratio = verified / plain
    per_mb_ms = (verified - plain) / megabytes * 1e3
    bench.ratios["verified load / torch.load"] = ratio
    bench.extra["hash_GB_per_s"] = megabytes / 1024 / hashing
    # An absolute bound, unlike the other targets: what matters is the seconds verification
    # adds to a run (a 100 MB checkpoint at 2 ms/MB: 0.2 s), not its ratio to a fast load.
    bench.target("time verification adds per MB loaded", "<= 2 ms/MB", per_mb_ms,
                 f"{per_mb_ms:.2f} ms/MB ({ratio:.2f}x torch.load: {verified * 1e3:.1f} vs "
                 f"{plain * 1e3:.1f} ms for {megabytes} MB; SHA-256 at "
                 f"{bench.extra['hash_GB_per_s']:.2f} GB/s)", per_mb_ms <= 2.0,
                 note="absolute time on this machine, measured side by side with the load")
    return bench
