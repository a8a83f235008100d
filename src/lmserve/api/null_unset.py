"""Request models where an explicit `null` for an optional field means "not sent".

OpenAI's spec marks most optional request fields nullable, and clients (or libraries
that serialise every field) send `"n": null` or `"stream": null`; such a field takes its
default, as on OpenAI's API. A required field stays required: null is refused there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator


class NullMeansUnset(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _nulls_are_unset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items()
                if v is not None or k not in fields or fields[k].is_required()}
