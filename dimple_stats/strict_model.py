"""Models that read booleans and numbers as written: no ``true`` for 1, no ``yes`` or ``0`` for
a boolean, no quoted ``"12"`` for a number.

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
from pydantic_core import PydanticCustomError

__all__ = ["KEYED", "StrictScalars", "keyed_error"]


def _holds_bool(value: Any) -> bool:
    """A bool, or a list or tuple with one somewhere inside (sub-models check their own)."""
    if isinstance(value, bool):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_bool(v) for v in value)


#: The error type of a model-level check about one field (a scalar written as the wrong kind,
#: a class id the dataset lacks); its ``field`` lets the protocol loader name the key (and a
#: ``--set`` that gave it) rather than the enclosing section.
KEYED = "keyed_value_error"


def keyed_error(name: str, message: str) -> PydanticCustomError:
    """An error a model validator raises about its field ``name`` (see :data:`KEYED`)."""
    return PydanticCustomError(KEYED, "{field}: {what}", {"field": name, "what": message})



def _holds_str(value: Any) -> bool:
    """A string, or a list or tuple with one somewhere inside."""
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_str(v) for v in value)


def _numbers_only(text: str) -> bool:
    """Whether an annotation (as text) takes numbers and no names: ``int``, ``float``,
    ``tuple[int, ...]``, ``float | None``; not ``int | str``, a ``Literal`` or ``Any``."""
    return (("int" in text or "float" in text)
            and not any(name in text for name in ("str", "Literal", "Any", "dict", "BaseModel")))


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
                    raise keyed_error(name, f"true or false, got {value!r}")
                continue
            text = str(annotation)
            if _holds_bool(value) and "bool" not in text and "Any" not in text:
                raise keyed_error(name, "a boolean (true/false) where a number or name is expected")
            if _holds_str(value) and _numbers_only(text):
                # A quoted "12" is a slip (or a number pasted as text), not a number.
                raise keyed_error(name, f"a number, got the text {value!r}; write it without quotes")
        return data
