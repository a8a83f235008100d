"""/openapi.json describes the routes as they are: every route, the real statuses (400,
never FastAPI's default 422), the error envelope and the streams."""

from __future__ import annotations

import json
import re

import httpx
import jsonschema
import pytest
from starlette.routing import Route

from lmserve.api import create_app
from lmserve.models import ModelManager
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> dict:
    response = httpx.get(f"{server.origin}/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()


def _validator(document: dict, schema: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def test_no_route_advertises_422(document: dict) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], f"{method} {path}"
    assert "HTTPValidationError" not in document["components"]["schemas"]


def _served(routes: list) -> set[tuple[str, str]]:
    """(method, path) of every route, through included routers (no prefixes are used)."""
    out = set()
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI keeps included routers whole
            out |= _served(route.original_router.routes)
        elif isinstance(route, Route) and route.include_in_schema:
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {id:path} -> {id}
            out |= {(method.lower(), path) for method in route.methods - {"HEAD"}}
    return out


def test_every_route_the_app_serves_is_documented(document: dict) -> None:
    served = _served(create_app(ModelManager()).routes)
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert served - documented == set()
    assert len(served) >= 25


def test_every_operation_documents_its_success_and_error_bodies(document: dict) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert responses["200"].get("content"), f"{method} {path}: 200 without a body"
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]["$ref"]
                    assert schema.endswith("ErrorResponse"), f"{method} {path} {status}"


def test_streaming_routes_document_their_event_stream(document: dict) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages",
                 "/api/v1/logs/stream"):
        operation = next(iter(document["paths"][path].values()))
        assert "text/event-stream" in operation["responses"]["200"]["content"], path


def test_the_messages_route_documents_its_body(document: dict) -> None:
    body = document["paths"]["/v1/messages"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert {"model", "messages", "max_tokens"} <= set(document["components"]["schemas"][ref]
                                                      ["required"])


def test_real_answers_match_their_documented_status_and_schema(
        document: dict, server: ServerProcess) -> None:
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    calls = [
        ({"model": "x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
         "200"),
        ({"model": "x", "messages": "not a list"}, "400"),
        ({"model": "x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": -5},
         "400"),
        (b"{not json", "400"),
    ]
    for body, expected in calls:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = httpx.post(f"{server.base_url}/chat/completions", timeout=60, **kwargs)
        assert str(response.status_code) == expected, response.text
        schema = chat[expected]["content"]["application/json"]["schema"]
        _validator(document, schema).validate(response.json())

    # A name that matches no model is answered with the default model, as inference is.
    mapped = httpx.get(f"{server.base_url}/models/no-such-model", timeout=30)
    assert mapped.status_code == 200
    schema = document["paths"]["/v1/models/{model_id}"]["get"]["responses"]["200"]
    _validator(document, schema["content"]["application/json"]["schema"]).validate(
        mapped.json())
    missing = httpx.get(f"{server.base_url}/responses/resp_missing", timeout=30)
    assert missing.status_code == 404
    schema = document["paths"]["/v1/responses/{response_id}"]["get"]["responses"]["404"]
    _validator(document, schema["content"]["application/json"]["schema"]).validate(
        missing.json())


@pytest.mark.parametrize("field, value", [("stream", 0), ("max_tokens", "8"),
                                          ("temperature", "0.5"), ("logprobs", 1)])
def test_what_the_document_calls_ill_typed_is_refused(server: ServerProcess, field: str,
                                                      value: object) -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            field: value}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


def test_a_wrong_method_names_every_method_of_the_path(server: ServerProcess) -> None:
    # GET and DELETE /v1/responses/{id} are two routes; Allow must name both.
    response = httpx.put(f"{server.base_url}/responses/resp_x", timeout=30)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "DELETE"}
    # DELETE /api/v1/models/{key:path} matches any path below, but names a model there.
    response = httpx.put(f"{server.origin}/api/v1/models/unload", timeout=30)
    assert response.status_code == 405 and response.headers["allow"] == "POST"


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                              "stream_options": {"include_usage": True}}),
    ("/v1/completions", {"prompt": "Once upon a time"}),
    ("/v1/responses", {"input": "Hi"}),
    ("/v1/messages", {"messages": [{"role": "user", "content": "Hi"}]}),
])
def test_every_streamed_event_matches_its_documented_schema(
        document: dict, server: ServerProcess, path: str, body: dict) -> None:
    events = document["paths"][path]["post"]["responses"]["200"]["content"][
        "text/event-stream"]["schema"]
    data_schema = events["properties"]["data"]
    json_data = next(s for s in data_schema.get("anyOf", [data_schema]) if "contentSchema" in s)
    payload = _validator(document, json_data["contentSchema"])
    body = {"model": "x", "max_tokens": 6, "stream": True, **body}
    with httpx.stream("POST", f"{server.origin}{path}", json=body, timeout=120) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert len(lines) >= 2
    for line in lines:
        data = line.removeprefix("data: ")
        _validator(document, events).validate({"data": data, "event": "message"})
        if data != "[DONE]":
            payload.validate(json.loads(data))
