"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API.

Errors leave in Anthropic's envelope, {"type": "error", "error": {"type", "message"}},
so the routes validate their bodies themselves instead of relying on the app's
handlers, which answer in OpenAI's envelope.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from lmserve.api.anthropic.protocol import CountTokensRequest, MessagesRequest
from lmserve.api.chat import ChatEvent, Finish, render_prompt, start_chat
from lmserve.api.deps import get_manager
from lmserve.api.errors import as_api_error
from lmserve.api.serving import respond, stream_once_started, stream_response
from lmserve.api.sse import sse_typed
from lmserve.api.usage import TokenUsage
from lmserve.models import Model, ModelManager
from lmserve.parsers import ContentDelta, ReasoningDelta, ToolCallArgsDelta, ToolCallStart

router = APIRouter()

Body = TypeVar("Body", bound=BaseModel)

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


# -- routes ---------------------------------------------------------------------------


@router.post("/v1/messages")
async def create_message(
    request: Request,
    manager: ModelManager = Depends(get_manager),
) -> Response:
    # anthropic-version is accepted and ignored: the server speaks one version of the
    # API. A key, when keys are on, was checked before (api/security.py).
    try:
        body = await parse_body(request, MessagesRequest)
        if body.stream:
            return await stream_once_started(request, _answer(body, request, manager),
                                             _in_band_error)
        return await _answer(body, request, manager)
    except Exception as exc:
        return error_response(exc)


async def _answer(body: MessagesRequest, request: Request, manager: ModelManager
                  ) -> Response:
    model = await manager.resolve(body.model)
    run = start_chat(model, body.chat_spec())
    translator = MessageTranslator(
        _message_head(model, input_tokens=len(run.streams[0].request.prompt)))
    if body.stream:
        return stream_response(request, run, translator)
    return await respond(request, run, translator)


def _in_band_error(exc: Exception) -> list[bytes]:
    return [sse_typed(error_body(exc)[0])]  # the stream has opened: Anthropic's error event


@router.post("/v1/messages/count_tokens")
async def count_message_tokens(
    request: Request,
    manager: ModelManager = Depends(get_manager),
) -> Response:
    try:
        body = await parse_body(request, CountTokensRequest)
        model = await manager.resolve(body.model)
        prompt = render_prompt(model, body.chat_spec())
        return JSONResponse({"input_tokens": len(prompt.tokens)})
    except Exception as exc:
        return error_response(exc)


# -- requests -------------------------------------------------------------------------


async def parse_body(request: Request, schema: type[Body]) -> Body:
    raw = await request.body()
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc)) from exc


class InvalidRequestError(ValueError):
    """A body that does not follow the schema; maps to a 400 like any ValueError."""


def validation_message(exc: ValidationError) -> str:
    """One readable line, in Anthropic's style: 'messages.0.role: Input should be ...'."""
    errors = exc.errors()
    if not errors:
        return "Invalid request."
    # With unions, the deepest location is usually the branch the client meant.
    first = max(errors, key=lambda e: len(e["loc"]))
    if first["type"] == "json_invalid":
        return "The request body is not valid JSON."
    path = ".".join(str(p) for p in _client_path(first["loc"]))
    if first["type"] in ("model_type", "model_attributes_type") and not path:
        return "The request body must be a JSON object."
    message = first["msg"].removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


_BLOCK_TAGS = ("text", "tool_use", "tool_result", "thinking", "redacted_thinking")


def _client_path(loc: tuple[int | str, ...]) -> list[int | str]:
    """The location as the client wrote it: pydantic adds the union member that failed
    ('str', 'list[...]') and, inside a content block, the block's type tag."""
    path: list[int | str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str):
            if part in ("str", "int", "float", "bool") or part.startswith(
                    ("list[", "dict[", "function-")):
                continue
            # messages.0.content.0.text.text: the first 'text' is the tag, the last the field.
            if 0 < i < len(loc) - 1 and isinstance(loc[i - 1], int) and part in _BLOCK_TAGS:
                continue
        path.append(part)
    return path


# -- responses ------------------------------------------------------------------------


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def tool_use_id(call_id: str) -> str:
    return "toolu_" + call_id.removeprefix("call_")


def stop_reason(finish: Finish) -> str:
    if finish.reason == "stop" and finish.done.stop_string is not None:
        return "stop_sequence"
    return _STOP_REASONS.get(finish.reason, "end_turn")


def _message_head(model: Model, input_tokens: int) -> dict[str, Any]:
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model.id,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 0},
    }


class ContentBlocks:
    """Content blocks built from chat events in the order the model wrote them.

    `add` returns the stream events that describe each change, so the streamed and the
    non-streamed message are built by the same code.
    """

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []
        self._open: str | None = None  # type of the block still receiving deltas
        self._arguments = ""  # JSON text of the open tool_use block

    def add(self, event: ChatEvent) -> list[dict[str, Any]]:
        if isinstance(event, ContentDelta):
            out = self._ensure_open({"type": "text", "text": ""})
            self.blocks[-1]["text"] += event.text
            return [*out, self._delta({"type": "text_delta", "text": event.text})]
        if isinstance(event, ReasoningDelta):
            # Local reasoning is not signed: the signature is empty.
            out = self._ensure_open({"type": "thinking", "thinking": "", "signature": ""})
            self.blocks[-1]["thinking"] += event.text
            return [*out, self._delta({"type": "thinking_delta", "thinking": event.text})]
        if isinstance(event, ToolCallStart):
            out = self.close()
            block = {"type": "tool_use", "id": tool_use_id(event.id), "name": event.name,
                     "input": {}}
            return [*out, *self._start(block)]
        if isinstance(event, ToolCallArgsDelta):
            self._arguments += event.text
            return [self._delta({"type": "input_json_delta", "partial_json": event.text})]
        return []  # logprobs: the Messages API has no place for them

    def close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        if self._open == "tool_use":
            self.blocks[-1]["input"] = _tool_input(self._arguments)
            self._arguments = ""
        self._open = None
        return [{"type": "content_block_stop", "index": len(self.blocks) - 1}]

    def _ensure_open(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        if self._open == block["type"]:
            return []
        return [*self.close(), *self._start(block)]

    def _start(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        self.blocks.append(block)
        self._open = block["type"]
        return [{"type": "content_block_start", "index": len(self.blocks) - 1,
                 "content_block": dict(block)}]

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta}


def _tool_input(arguments: str) -> dict[str, Any]:
    # The parsers emit arguments as a JSON object; anything else is a bug worth a 500.
    value = json.loads(arguments or "{}")
    if not isinstance(value, dict):
        raise TypeError(f"tool call arguments are not a JSON object: {arguments!r}")
    return value


class MessageTranslator:
    """Chat events as Messages stream events, and the message they add up to."""

    closing = b""
    frame = staticmethod(sse_typed)

    def __init__(self, message: dict[str, Any]) -> None:
        self._message = message
        self._blocks = ContentBlocks()
        self._finish: Finish | None = None

    def start(self) -> list[dict[str, Any]]:
        return [{"type": "message_start", "message": self._message}, {"type": "ping"}]

    def feed(self, index: int, event: ChatEvent) -> list[dict[str, Any]]:
        if not isinstance(event, Finish):
            return self._blocks.add(event)
        self._finish = event
        return [*self._blocks.close(), {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(event),
                      "stop_sequence": event.done.stop_string},
            "usage": {"output_tokens": event.done.completion_tokens},
        }]

    def end(self) -> list[dict[str, Any]]:
        if self._finish is None:
            raise RuntimeError("generation ended without a result")
        return [{"type": "message_stop"}]

    def fail(self, exc: Exception) -> list[dict[str, Any]]:
        return [error_body(exc)[0]]  # headers are gone: reported in-band, as Anthropic does

    def result(self) -> dict[str, Any]:
        assert self._finish is not None
        counts = TokenUsage.of([self._finish.done], shared_prompt=True)
        return {
            **self._message,
            "content": self._blocks.blocks,
            "stop_reason": stop_reason(self._finish),
            "stop_sequence": self._finish.done.stop_string,
            "usage": {"input_tokens": counts.prompt, "output_tokens": counts.completion},
        }


# -- errors ---------------------------------------------------------------------------


def error_body(exc: Exception) -> tuple[dict[str, Any], int, dict[str, str] | None]:
    """Anthropic's error envelope for exc, with the status the OpenAI routes would use."""
    err = as_api_error(exc)
    kind = _ERROR_TYPES.get(err.status,
                            "invalid_request_error" if err.status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}, err.status, \
        err.headers


def error_response(exc: Exception) -> JSONResponse:
    body, status, headers = error_body(exc)
    return JSONResponse(body, status_code=status, headers=headers)
