"""Where a run's numbers came from: the code's commit, the package versions and the machine.

Written into every report's ``manifest.json`` so that a committed result names what produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["git_commit", "git_dirty", "machine", "versions"]


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty() -> bool | None:
    """Whether tracked files differ from ``git_commit`` (then the commit alone cannot rerun it)."""
    try:
        # reports/ holds run outputs (a rerun replaces its own report), not code or protocols.
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                              ".", ":(exclude)reports"],
                             capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def versions() -> dict[str, str]:
    """Python and the versions of the packages that can change a number."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("dimple-stats", "torch", "torchvision", "numpy", "scipy", "statsmodels",
                    "pandas", "pyarrow", "pydantic", "ray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine(device: str) -> dict[str, Any]:
    """Platform, cores, torch threads, the device (and the GPU's name on CUDA)."""
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
