"""The protocol's ``claims:`` list item, generated from the catalogue.

An item is a one-key mapping ``{claim_id: {options}}`` (or a bare id). Generating one optional,
aliased field per claim id lets pydantic do the work: an unknown id is an unknown key (so it gets
the same line number and "did you mean" as any misspelt key), options are validated by that
claim's own model, and the JSON Schema lists every claim with its options for editors.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from dimple_stats.claims.catalogue import CATALOGUE

__all__ = ["ClaimEntry", "ClaimItem", "entry_model"]


def _field_name(claim_id: str) -> str:
    return claim_id.replace(".", "__")


class ClaimEntry(BaseModel):
    """One claim to test: ``{claim_id: {options}}`` (or a bare id).

    Validation builds the item model from the catalogue as registered at that moment
    (:func:`entry_model`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False, allow_inf_nan=False)

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
        for name, field_info in type(self).model_fields.items():
            if getattr(self, name) is not None:
                return str(field_info.alias)
        raise AssertionError("validated ClaimEntry holds no claim")  # unreachable after validation

    @property
    def options(self) -> BaseModel:
        return getattr(self, _field_name(self.id))


class _LiveCatalogue:
    """Annotation of the protocol's ``claims`` items: validated, dumped and described with the
    item model of the catalogue as it is when that happens (:func:`entry_model`), so a claim
    registered after import (a plugin, a test's toy claim) is accepted like the built-in ones."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        def validate(value: Any) -> ClaimEntry:
            return value if isinstance(value, ClaimEntry) else entry_model().model_validate(value)

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(
                lambda entry: entry.model_dump(by_alias=True), when_used="always"))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(entry_model().__pydantic_core_schema__)


#: The type of one item of a protocol's ``claims:`` list.
ClaimItem = Annotated[ClaimEntry, _LiveCatalogue]


_MODELS: dict[tuple[tuple[str, int], ...], type[ClaimEntry]] = {}


def entry_model() -> type[ClaimEntry]:
    """The ``claims:`` item model of the catalogue as registered now (cached per catalogue)."""
    state = CATALOGUE.state()
    if state not in _MODELS:
        _MODELS[state] = create_model(  # type: ignore[call-overload]
            "ClaimEntry",
            __base__=ClaimEntry,
            __doc__="One claim to test: ``{claim_id: {options}}``.",
            **{
                _field_name(cid): (
                    definition.options | None,
                    Field(None, alias=cid, description=definition.hypothesis),
                )
                for cid, definition in CATALOGUE.items()
            },
        )
    return _MODELS[state]
