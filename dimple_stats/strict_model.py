"""Models that read booleans and numbers as written: no ``true`` for 1, no ``yes`` or ``0`` for
a boolean.

pydantic's lax mode converts ``true`` to 1.0 for a float field and ``"yes"``, ``"on"``, ``1``
or ``0`` to a boolean. In a protocol or a ``--set`` override those are slips, not settings:
``margin: true`` would test at margin 1.0 and ``early_stop: 0`` would switch early stopping off
without a word. Every protocol and claim-options model derives from :class:`StrictScalars`.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, model_validator

__all__ = ["StrictScalars"]


def _holds_bool(value: Any) -> bool:
    """A bool, or a list or tuple with one somewhere inside (sub-models check their own)."""
    if isinstance(value, bool):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_bool(v) for v in value)


def _bool_only(annotation: Any) -> bool:
    """Whether a field takes nothing but a boolean (or None): ``bool``, ``bool | None``."""
    if annotation is bool:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return len(args) == 1 and args[0] is bool
    return False


class StrictScalars(BaseModel):
    """Refuse a boolean where a field takes numbers or names, and anything but a boolean where
    it takes only booleans (a model validator: a field validator on ``"*"`` is not allowed on
    discriminator fields)."""

    @model_validator(mode="before")
    @classmethod
    def _scalars_as_written(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        hints = typing.get_type_hints(cls) if cls.model_fields else {}
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if field is None:
                continue
            annotation = hints.get(name, field.annotation)
            if _bool_only(annotation):
                if value is not None and not isinstance(value, bool):
                    raise ValueError(f"{name}: true or false, got {value!r}")
                continue
            text = str(annotation)
            if _holds_bool(value) and "bool" not in text and "Any" not in text:
                raise ValueError(f"{name}: a boolean (true/false) where a number or name is "
                                 "expected")
        return data
