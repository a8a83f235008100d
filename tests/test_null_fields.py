"""An explicit null, wherever OpenAI's spec marks an optional request field nullable,
means "not sent": the request is served as if the field were left out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.openapi_schema import _components, validate


def _nullable_optional_fields(schema_name: str) -> list[str]:
    """The request's optional fields whose spec schema admits null."""
    schemas = _components()["schemas"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schemas[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def admits_null(node: dict[str, Any]) -> bool:
        node = resolve(node)
        types = node.get("type")
        return (types == "null" or (isinstance(types, list) and "null" in types)
                or any(admits_null(alt) for key in ("anyOf", "oneOf")
                       for alt in node.get(key, [])))

    def parts(node: dict[str, Any]) -> list[dict[str, Any]]:
        node = resolve(node)
        return [node, *(p for sub in node.get("allOf", []) for p in parts(sub))]

    properties, required = {}, set()
    for part in parts(schemas[schema_name]):
        properties.update(part.get("properties", {}))
        required.update(part.get("required", []))
    return sorted(k for k, v in properties.items() if k not in required and admits_null(v))


CASES = {
    "chat": ("/v1/chat/completions", "CreateChatCompletionRequest",
             {"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 4},
             # Not nullable in the spec, but sent as null by some clients.
             ["parallel_tool_calls", "tools", "tool_choice", "response_format", "user"],
             "CreateChatCompletionResponse"),
    "completions": ("/v1/completions", "CreateCompletionRequest",
                    {"prompt": "Once upon a time", "max_tokens": 4}, ["user"],
                    "CreateCompletionResponse"),
    "embeddings": ("/v1/embeddings", "CreateEmbeddingRequest", {"input": "hello"},
                   ["dimensions", "encoding_format", "user"], "CreateEmbeddingResponse"),
    "responses": ("/v1/responses", "CreateResponse",
                  {"input": "Hi", "max_output_tokens": 16},
                  ["tools", "tool_choice", "text", "top_logprobs", "user"], "Response"),
}


@pytest.mark.parametrize(("route", "request_schema", "body", "also", "response_schema"),
                         CASES.values(), ids=CASES.keys())
def test_null_means_unset(server, route, request_schema, body, also, response_schema):
    nullable = _nullable_optional_fields(request_schema)
    if route != "/v1/embeddings":
        assert {"stream", "temperature", "top_p"} <= set(nullable)
    nulls = {name: None for name in [*nullable, *also] if name not in body}
    r = httpx.post(server.origin + route, json={"model": "m", **body, **nulls}, timeout=120)
    assert r.status_code == 200, (sorted(nulls), r.text)
    validate(r.json(), response_schema)


def test_null_for_a_required_field_is_still_a_400(server):
    r = httpx.post(server.origin + "/v1/chat/completions", timeout=30,
                   json={"model": "m", "messages": None})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
