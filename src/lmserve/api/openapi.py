"""The OpenAPI document at /openapi.json, describing what the routes really answer.

FastAPI documents request bodies from the pydantic models, but knows nothing of the
bodies the routes build themselves, of their SSE streams, or of the error envelope, and
it advertises a 422 the server never sends (validation errors are 400s). This module
fills in the success schemas, the streams and every error status from one table, so
tools that read the document (client generators, fuzzers) see the server as it is.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from lmserve.api.anthropic.protocol import CountTokensRequest, MessagesRequest

JSON = dict[str, Any]


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: JSON, optional: JSON | None = None) -> JSON:
    """An object schema; further properties are allowed, as clients must tolerate them."""
    return {"type": "object", "properties": {**required, **(optional or {})},
            "required": list(required)}


def _nullable(schema: JSON) -> JSON:
    return {"anyOf": [schema, {"type": "null"}]}


_STR, _INT, _NUM, _BOOL = ({"type": t} for t in ("string", "integer", "number", "boolean"))
_ANY_OBJ: JSON = {"type": "object"}


def _const(value: str) -> JSON:
    return {"type": "string", "const": value}


def _list_of(item: JSON) -> JSON:
    return {"type": "array", "items": item}


_USAGE = _obj({"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT},
              {"prompt_tokens_details": _ANY_OBJ})
_NATIVE_EXTRAS: JSON = {"stats": _ANY_OBJ, "model_info": _ANY_OBJ}

SCHEMAS: dict[str, JSON] = {
    "ErrorResponse": _obj({"error": _obj({
        "message": _STR,
        "type": _STR,
        "param": _nullable(_STR),
        "code": _nullable(_STR),
    })}),
    "AnthropicErrorResponse": _obj({
        "type": _const("error"),
        "error": _obj({"type": _STR, "message": _STR}),
    }),
    "ChatCompletion": _obj({
        "id": _STR,
        "object": _const("chat.completion"),
        "created": _INT,
        "model": _STR,
        "choices": _list_of(_obj({
            "index": _INT,
            "message": _obj({"role": _const("assistant"), "content": _nullable(_STR)},
                            {"tool_calls": _list_of(_ANY_OBJ),
                             "reasoning_content": _nullable(_STR),
                             "refusal": _nullable(_STR)}),
            "logprobs": _nullable(_ANY_OBJ),
            "finish_reason": {"enum": ["stop", "length", "tool_calls"]},
        })),
        "usage": _USAGE,
    }, _NATIVE_EXTRAS),
    "Completion": _obj({
        "id": _STR,
        "object": _const("text_completion"),
        "created": _INT,
        "model": _STR,
        "choices": _list_of(_obj({
            "index": _INT,
            "text": _STR,
            "logprobs": _nullable(_ANY_OBJ),
            "finish_reason": {"enum": ["stop", "length"]},
        })),
        "usage": _USAGE,
    }, _NATIVE_EXTRAS),
    "EmbeddingList": _obj({
        "object": _const("list"),
        "data": _list_of(_obj({
            "object": _const("embedding"),
            "index": _INT,
            "embedding": {"anyOf": [_list_of(_NUM), _STR]},
        })),
        "model": _STR,
        "usage": _obj({"prompt_tokens": _INT, "total_tokens": _INT}),
    }),
    "Model": _obj({"id": _STR, "object": _const("model"), "created": _INT, "owned_by": _STR}),
    "ModelList": _obj({"object": _const("list"), "data": _list_of(_ref("Model"))}),
    "Response": _obj({
        "id": _STR,
        "object": _const("response"),
        "created_at": _INT,
        "model": _STR,
        "status": _STR,
        "output": _list_of(_ANY_OBJ),
    }, {"usage": _nullable(_ANY_OBJ)}),
    "DeletedResponse": _obj({"id": _STR, "object": _const("response"), "deleted": _BOOL}),
    "AnthropicResponse": _obj({
        "id": _STR,
        "type": _const("message"),
        "role": _const("assistant"),
        "model": _STR,
        "content": _list_of(_obj({"type": _STR})),
        "stop_reason": _nullable(_STR),
        "stop_sequence": _nullable(_STR),
        "usage": _obj({"input_tokens": _INT, "output_tokens": _INT}),
    }),
    "AnthropicTokenCount": _obj({"input_tokens": _INT}),
    "Tokens": _obj({"model": _STR, "tokens": _list_of(_INT)}, {"pieces": _list_of(_STR)}),
    "Text": _obj({"model": _STR, "text": _STR}),
    "RootTokens": _obj({"count": _INT, "max_model_len": _INT, "tokens": _list_of(_INT),
                        "token_strs": _nullable(_list_of(_STR))}),
    "RootText": _obj({"prompt": _STR}),
    "TokenizerInfo": _obj({"tokenizer_class": _STR, "model": _STR,
                           "bos_token": _nullable(_STR), "eos_token": _nullable(_STR),
                           "pad_token": _nullable(_STR), "chat_template": _nullable(_STR),
                           "model_max_length": _INT}),
    # What one SSE event's `data` holds, per stream.
    "ChatCompletionChunk": _obj({
        "id": _STR,
        "object": _const("chat.completion.chunk"),
        "created": _INT,
        "model": _STR,
        "choices": _list_of(_obj({
            "index": _INT,
            "delta": _ANY_OBJ,
            "logprobs": _nullable(_ANY_OBJ),
            "finish_reason": _nullable({"enum": ["stop", "length", "tool_calls"]}),
        })),
    }, {"usage": _nullable(_USAGE), **_NATIVE_EXTRAS}),
    "CompletionChunk": _obj({
        "id": _STR,
        "object": _const("text_completion"),
        "created": _INT,
        "model": _STR,
        "choices": _list_of(_obj({
            "index": _INT,
            "text": _STR,
            "logprobs": _nullable(_ANY_OBJ),
            "finish_reason": _nullable({"enum": ["stop", "length"]}),
        })),
    }, {"usage": _nullable(_USAGE), **_NATIVE_EXTRAS}),
    "TypedEvent": _obj({"type": _STR}),  # Responses, Anthropic and native chat events
    "NativeChatResult": _obj({
        "model_instance_id": _STR,
        "output": _list_of(_obj({"type": {"enum": ["message", "reasoning", "tool_call",
                                                    "invalid_tool_call"]}})),
        "stats": _obj({"input_tokens": _INT, "total_output_tokens": _INT,
                       "reasoning_output_tokens": _INT, "tokens_per_second": _NUM,
                       "time_to_first_token_seconds": _NUM},
                      {"model_load_time_seconds": _NUM}),
    }, {"response_id": _STR}),
    "LogRecord": _obj({"time": _NUM, "level": _STR, "logger": _STR, "message": _STR}),
    "Health": _obj({"status": _const("ok")}),
    "ServerStatus": _obj({"status": _STR, "version": _STR, "base_url": _STR,
                          "models": _list_of(_obj({"id": _STR, "busy_slots": _INT,
                                                   "queued": _INT}))}),
    "Library": _obj({"object": _const("list"),
                     "data": _list_of(_obj({"key": _STR, "loaded_instances": _list_of(
                         _ANY_OBJ)}))}),
    "Runtime": _obj({"backend": _STR, "backends": _list_of(_STR),
                     "llama_cpp_version": _STR, "cpu_features": _ANY_OBJ,
                     "gpus": _list_of(_ANY_OBJ)}),
    "LoadResult": _obj({"instance_id": _STR, "model": _STR,
                        "status": {"enum": ["loaded", "already_loaded"]},
                        "load_time_seconds": _NUM}, {"load_config": _ANY_OBJ}),
    "UnloadResult": _obj({"unloaded": _list_of(_STR)}),
    "DefaultModel": _obj({"default": _STR}),
    "DeletedModel": _obj({"deleted": _STR, "files": _list_of(_STR)}),
    "DownloadJob": _obj({"job_id": _STR,
                         "status": {"enum": ["downloading", "completed", "failed",
                                             "cancelled"]},
                         "model_key": _STR, "total_size_bytes": _INT,
                         "downloaded_bytes": _INT, "resumed_from_bytes": _INT,
                         "error": _nullable(_STR)}),
    "ImportResult": _obj({"key": _nullable(_STR), "path": _STR,
                          "action": {"enum": ["copy", "move", "symlink", "hardlink",
                                              "convert"]},
                          "message": _STR}),
}

# What each status means, in the words the document shows.
_ERRORS = {
    400: "The request is malformed: invalid JSON, a missing or ill-typed field, a value out "
         "of range, or a prompt too long for the context.",
    404: "No such model, route or stored object.",
    409: "A conflict with the machine's state: the model is loaded (unload it first), the "
         "import's destination exists, or the download has completed or another is "
         "writing its files.",
    502: "The model hub could not be reached or refused the request.",
    503: "The queue is full, or the model is busy or unloading; see Retry-After.",
    # from the middleware in api/security.py and api/limits.py, before any route
    401: "API keys are on and the request carries none, or a wrong one.",
    403: "Refused: a Host this server does not answer to, a key without the admin scope, "
         "a web page from a foreign origin managing the machine or loading a model, or a "
         "request naming its own MCP server while mcp.allow_ephemeral is off.",
    413: "The request body is larger than limits.max_body_mb.",
}

_SSE_NOTE = ("With `stream: true`: Server-Sent Events, one `data: <JSON>` event per chunk")


def _route(ok: str | None, errors: tuple[int, ...] = (), *,
           stream: tuple[str, str] | None = None, anthropic: bool = False,
           body: type[BaseModel] | None = None, text: str | None = None) -> JSON:
    """`stream` is (the schema of each event's data, a description of the stream)."""
    return {"ok": ok, "errors": errors, "stream": stream, "anthropic": anthropic,
            "body": body, "text": text}


def _sse_event(payload: str, *, error: str, done: bool) -> JSON:
    """One event as schemathesis and Open API 3.2 read a stream: its `data` is JSON, the
    payload or an in-band error (the status is sent before a failure can happen), or the
    closing `[DONE]`."""
    data: JSON = {"type": "string", "contentMediaType": "application/json",
                  "contentSchema": {"anyOf": [_ref(payload), _ref(error)]}}
    if done:
        data = {"anyOf": [{"const": "[DONE]"}, data]}
    return _obj({"data": data}, {"event": _STR})


_GENERATION = (400, 404, 503)
_CHAT_STREAM = ("ChatCompletionChunk",
                f"{_SSE_NOTE} (chat.completion.chunk objects), then `data: [DONE]`.")
_COMPLETION_STREAM = ("CompletionChunk",
                      f"{_SSE_NOTE} (text_completion objects), then `data: [DONE]`.")
# (method, path) -> what the route answers. Routes not listed get a generic JSON 200.
ROUTES: dict[tuple[str, str], JSON] = {
    ("post", "/v1/chat/completions"): _route(
        "ChatCompletion", _GENERATION,
        stream=_CHAT_STREAM),
    ("post", "/api/v1/chat/completions"): _route(
        "ChatCompletion", _GENERATION, stream=_CHAT_STREAM),
    ("post", "/v1/completions"): _route(
        "Completion", _GENERATION,
        stream=_COMPLETION_STREAM),
    ("post", "/api/v1/completions"): _route(
        "Completion", _GENERATION, stream=_COMPLETION_STREAM),
    ("post", "/v1/embeddings"): _route("EmbeddingList", _GENERATION),
    ("get", "/v1/models"): _route("ModelList"),
    ("get", "/v1/models/{model_id}"): _route("Model", (400, 404)),
    ("post", "/v1/responses"): _route(
        "Response", _GENERATION,
        stream=("TypedEvent", f"{_SSE_NOTE}, each with an `event:` line naming its type "
                              "(response.created ... response.completed).")),
    ("get", "/v1/responses/{response_id}"): _route("Response", (400, 404)),
    ("delete", "/v1/responses/{response_id}"): _route("DeletedResponse", (400, 404)),
    ("post", "/v1/messages"): _route(
        "AnthropicResponse", _GENERATION, anthropic=True, body=MessagesRequest,
        stream=("TypedEvent", f"{_SSE_NOTE}, each with an `event:` line (message_start "
                              "... message_stop).")),
    ("post", "/v1/messages/count_tokens"): _route(
        "AnthropicTokenCount", _GENERATION, anthropic=True, body=CountTokensRequest),
    ("post", "/api/v1/chat"): _route(
        "NativeChatResult", (400, 403, 404, 503),
        stream=("TypedEvent", f"{_SSE_NOTE}, each with an `event:` line naming its type "
                              "(chat.start, model_load.*, prompt_processing.*, reasoning.*, "
                              "tool_call.*, message.*, error ... chat.end).")),
    ("post", "/api/v1/tokenize"): _route("Tokens", _GENERATION),
    ("post", "/api/v1/detokenize"): _route("Text", _GENERATION),
    ("post", "/tokenize"): _route("RootTokens", _GENERATION),
    ("post", "/detokenize"): _route("RootText", _GENERATION),
    ("get", "/tokenizer_info"): _route("TokenizerInfo", _GENERATION),
    ("get", "/health"): _route("Health"),
    ("get", "/api/v1/status"): _route("ServerStatus"),
    ("get", "/api/v1/runtime"): _route("Runtime"),
    ("get", "/api/v1/models"): _route("Library"),
    ("post", "/api/v1/models/load"): _route("LoadResult", _GENERATION),
    ("post", "/api/v1/models/unload"): _route("UnloadResult", (400, 404)),
    ("post", "/api/v1/models/default"): _route("DefaultModel", (400, 404)),
    ("delete", "/api/v1/models/{key}"): _route("DeletedModel", (400, 404, 409)),
    ("post", "/api/v1/models/download"): _route("DownloadJob", (400, 404, 502)),
    ("get", "/api/v1/models/download/status/{job_id}"): _route("DownloadJob", (400, 404)),
    ("post", "/api/v1/models/download/cancel/{job_id}"): _route("DownloadJob",
                                                                (400, 404, 409)),
    ("post", "/api/v1/models/import"): _route("ImportResult", (400, 409)),
    ("get", "/metrics"): _route(None, text="Prometheus metrics in the text exposition "
                                           "format (version 0.0.4)."),
    ("get", "/api/v1/logs/stream"): _route(
        None, stream=("LogRecord", "Server-Sent Events, one `data: {time, level, logger, "
                                   "message}` event per log record (with `request_id`, "
                                   "and a request's end line with `method`, `path`, "
                                   "`status`, `duration_s`, `model`, tokens and `error`), "
                                   "until the client disconnects.")),
}


def _error_response(status: int, anthropic: bool) -> JSON:
    envelope = "AnthropicErrorResponse" if anthropic else "ErrorResponse"
    return {"description": _ERRORS[status],
            "content": {"application/json": {"schema": _ref(envelope)}}}


def _responses(spec: JSON) -> JSON:
    content: JSON = {}
    if spec["ok"]:
        content["application/json"] = {"schema": _ref(spec["ok"])}
    if spec["stream"]:
        payload, description = spec["stream"]
        error = "AnthropicErrorResponse" if spec["anthropic"] else "ErrorResponse"
        events = _sse_event(payload, error=error, done=payload.endswith("Chunk"))
        content["text/event-stream"] = {"schema": events, "description": description}
    if spec["text"]:
        content["text/plain"] = {"schema": _STR, "description": spec["text"]}
    out: JSON = {"200": {"description": "Success.", "content": content}}
    for status in spec["errors"]:
        out[str(status)] = _error_response(status, spec["anthropic"])
    return out


def _anthropic_body(model: type[BaseModel]) -> tuple[JSON, JSON]:
    """A requestBody for a route that parses its body itself, and the schemas it uses,
    named apart from OpenAI's (both APIs have a `Tool`, for one)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/Anthropic{model}")
    defs = {f"Anthropic{name}": s for name, s in schema.pop("$defs", {}).items()}
    name = f"Anthropic{model.__name__}"
    return ({"required": True, "content": {"application/json": {"schema": _ref(name)}}},
            {**defs, name: schema})


def build_document(app: FastAPI) -> JSON:
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                      description="An OpenAI-compatible local LLM server. Errors use "
                                  "OpenAI's envelope (Anthropic's on /v1/messages).")
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(SCHEMAS)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            spec = ROUTES.get((method, path))
            if spec is None:
                # Not described yet: at least say that errors use the envelope.
                operation["responses"].pop("422", None)
                operation["responses"].setdefault("400", _error_response(400, False))
            else:
                operation["responses"] = _responses(spec)
                if spec["body"] is not None:
                    operation["requestBody"], used = _anthropic_body(spec["body"])
                    schemas.update(used)
            anthropic = bool(spec and spec["anthropic"])
            access = [403] + ([401] if path != "/health" else []) + \
                ([413] if method in ("post", "put", "patch") else [])
            for status in access:
                operation["responses"][str(status)] = _error_response(status, anthropic)
    return doc


def install_openapi(app: FastAPI) -> None:
    def openapi() -> JSON:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
