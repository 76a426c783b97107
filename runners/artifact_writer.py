"""Writing one artifact: files go into a private temporary directory that
:meth:`runners.store.ArtifactStore.writer` publishes atomically when the ``with`` block exits."""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runners.artifacts import ArtifactError, check_name, json_default

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = ["ArtifactWriter"]


class ArtifactWriter:
    """Fills one artifact's private temporary directory; obtained from :meth:`ArtifactStore.writer`.

    File names are relative POSIX paths inside the artifact (``"model.pt"``, ``"shards/seed0.parquet"``)
    and each may be written once. Nothing is visible to readers until the ``with`` block exits.

    Attributes
    ----------
    published : bool or None
        After the ``with`` block: True if this writer's directory became the artifact, False if
        another process had published the same key first and this copy was discarded.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._open = True
        self.published: bool | None = None

    @property
    def dir(self) -> Path:
        """The temporary directory, for a tool that writes its files itself (valid inside the block)."""
        self._check_open()
        return self._dir

    def save_bytes(self, name: str, data: bytes | bytearray | memoryview) -> Path:
        """Write raw bytes to file ``name``; return its (temporary) path."""
        target = self._target(name)
        with open(target, "xb") as fh:
            fh.write(data)
        return target

    def save_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as indented JSON with sorted keys; numpy/torch scalars and arrays become
        lists/numbers.

        Non-finite floats are written as ``NaN``/``Infinity`` (Python's JSON dialect) rather than
        refused, because a diverged training run must still be able to record its losses.
        """
        if hasattr(obj, "model_dump"):
            obj = obj.model_dump(mode="json", by_alias=True)
        text = json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n"
        return self.save_bytes(name, text.encode("utf-8"))

    def save_tensors(self, name: str, tensors: Mapping[str, torch.Tensor]) -> Path:
        """Write a state dict or any mapping of names to tensors with ``torch.save``.

        Tensors are detached and moved to the CPU so the checkpoint loads on any machine, and views
        are copied so a slice does not drag its whole base storage into the file. Only tensors are
        accepted: anything else would need full unpickling to load, which the store refuses.
        """
        import torch

        if not isinstance(tensors, Mapping):
            raise TypeError(f"save_tensors takes a mapping of names to tensors, got {type(tensors).__name__}")
        # An OrderedDict (what state_dict returns) can carry _metadata below; weights_only loads it.
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for tensor_name, value in tensors.items():
            if not isinstance(tensor_name, str):
                raise TypeError(f"tensor names must be str, got {tensor_name!r}")
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"save_tensors stores tensors only, but {tensor_name!r} is a {type(value).__name__}; "
                    "put scalars and settings in save_json"
                )
            out[tensor_name] = _portable_tensor(value)
        # load_state_dict uses the per-module version numbers in _metadata to upgrade old checkpoints;
        # it is a dict of dicts of ints, which weights_only loading accepts.
        module_versions = getattr(tensors, "_metadata", None)
        if module_versions is not None:
            out._metadata = copy.deepcopy(module_versions)  # type: ignore[attr-defined]
        target = self._target(name)
        torch.save(out, target)
        return target

    def save_table(self, name: str, table: pd.DataFrame) -> Path:
        """Write a DataFrame as Parquet (pyarrow), keeping dtypes and the index."""
        import pandas as pd

        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"save_table takes a pandas DataFrame, got {type(table).__name__}")
        target = self._target(name)
        table.to_parquet(target, engine="pyarrow")
        return target

    def _target(self, name: str) -> Path:
        self._check_open()
        target = self._dir / check_name(name)
        if target.exists():
            raise ArtifactError(f"file {name!r} was already written to this artifact")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _check_open(self) -> None:
        if not self._open:
            raise ArtifactError("the artifact writer is closed: write files inside the `with` block")

    def _close(self) -> None:
        self._open = False


def _portable_tensor(value: torch.Tensor) -> torch.Tensor:
    import torch

    tensor = value.detach().cpu()
    if tensor.layout == torch.strided:
        used = tensor.numel() * tensor.element_size()
        if tensor.untyped_storage().nbytes() > used:
            tensor = tensor.clone()
    return tensor
