"""The protocol's ``claims:`` list item, generated from the catalogue.

An item is a one-key mapping ``{claim_id: {options}}`` (or a bare id). Generating one optional,
aliased field per claim id lets pydantic do the work: an unknown id is an unknown key (so it gets
the same line number and "did you mean" as any misspelt key), options are validated by that
claim's own model, and the JSON Schema lists every claim with its options for editors.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    create_model,
    model_serializer,
    model_validator,
)

from dimple_stats.claims.catalogue import CATALOGUE

__all__ = ["ClaimEntry"]


def _field_name(claim_id: str) -> str:
    return claim_id.replace(".", "__")


class _ClaimEntryBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {v: {}}
        if isinstance(v, dict):
            if len(v) != 1:
                raise ValueError(
                    "a claim is a one-key mapping {claim_id: {options}}; got "
                    f"{len(v)} keys: {', '.join(map(str, v)) or '(none)'}"
                )
            ((key, opts),) = v.items()
            return {key: {} if opts is None else opts}
        return v

    @model_serializer(mode="wrap")
    def _one_key(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Dump the one-key form the loader reads, {claim_id: options}, not all eleven fields.
        return {key: value for key, value in handler(self).items() if value is not None}

    @property
    def id(self) -> str:
        for claim_id in CATALOGUE:
            if getattr(self, _field_name(claim_id)) is not None:
                return claim_id
        raise AssertionError("validated ClaimEntry holds no claim")  # unreachable after validation

    @property
    def options(self) -> BaseModel:
        return getattr(self, _field_name(self.id))


ClaimEntry: type[_ClaimEntryBase] = create_model(  # type: ignore[call-overload]
    "ClaimEntry",
    __base__=_ClaimEntryBase,
    __doc__="One claim to test: ``{claim_id: {options}}``.",
    **{
        _field_name(cid): (
            Optional[definition.options],
            Field(None, alias=cid, description=definition.hypothesis),
        )
        for cid, definition in CATALOGUE.items()
    },
)
