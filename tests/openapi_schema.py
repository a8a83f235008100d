"""Validates response JSON against the component schemas of OpenAI's published spec."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# OpenAI's published spec, vendored with its MIT licence (openai-openapi.LICENSE beside it).
SPEC_PATH = Path(__file__).resolve().parent / "conformance" / "openai-openapi.yaml"


def _nullable_to_type_union(node: Any) -> Any:
    """The spec mixes OpenAPI 3.0's `nullable: true` into 3.1 schemas; make it JSON Schema."""
    if isinstance(node, dict):
        node = {k: _nullable_to_type_union(v) for k, v in node.items()}
        if node.pop("nullable", False):
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
            if isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
            elif "type" not in node:
                node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable_to_type_union(v) for v in node]
    return node


@functools.cache
def _components() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: 1 s, not 20
    spec = yaml.load(SPEC_PATH.read_text(), Loader=loader)
    return _nullable_to_type_union(spec["components"])


def validate(instance: Any, schema_name: str) -> None:
    """Raises jsonschema.ValidationError if instance does not match the named schema."""
    root = {"components": _components()}
    schema = {"$ref": f"#/components/schemas/{schema_name}", **root}
    jsonschema.Draft202012Validator(schema).validate(instance)
