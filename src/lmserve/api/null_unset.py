"""Request models where an explicit `null` for an optional field means "not sent".

OpenAI's spec marks most optional request fields nullable, and clients (or libraries
that serialise every field) send `"n": null` or `"stream": null`; such a field takes its
default, as on OpenAI's API. A required field stays required: null is refused there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

_META = ("title", "description", "default")


class NullMeansUnset(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _nulls_are_unset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items()
                if v is not None or k not in fields or fields[k].is_required()}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The OpenAPI document says so too: every optional field admits null."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        required = set(schema.get("required", ()))
        properties = schema.get("properties", {})
        for name, prop in properties.items():
            if name not in required and not _admits_null(prop):
                meta = {k: prop[k] for k in _META if k in prop}
                rest = {k: v for k, v in prop.items() if k not in _META}
                properties[name] = {"anyOf": [rest, {"type": "null"}], **meta}
        return schema


def _admits_null(prop: JsonSchemaValue) -> bool:
    return prop.get("type") == "null" or any(
        option.get("type") == "null" for option in prop.get("anyOf", ()))
