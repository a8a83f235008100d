"""Anthropic Messages for an upstream that only speaks chat completions (llama-cpp-python's
server, older vLLM): the request is read as lmserve's own /v1/messages reads it and sent as
a chat completion; the upstream's answer is turned into the chat events lmserve's
Messages translator already turns into a message or its stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from lmserve.api.anthropic.messages import MessageTranslator, new_message_id
from lmserve.api.anthropic.protocol import MessagesRequest
from lmserve.api.chat.events import ChatEvent, Finish
from lmserve.api.errors import APIError
from lmserve.engine.request import Done, Timings
from lmserve.parsers import ContentDelta, ReasoningDelta, ToolCallArgsDelta, ToolCallStart


def chat_body(payload: dict[str, Any], served_name: str) -> dict[str, Any]:
    """The chat completion request a Messages request means (pydantic's ValidationError
    for a request /v1/messages refuses)."""
    request = MessagesRequest.model_validate(payload)
    spec = request.chat_spec()
    body: dict[str, Any] = {"model": served_name, "messages": spec.messages,
                            "max_tokens": request.max_tokens, "stream": request.stream}
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if spec.stop:
        body["stop"] = spec.stop
    for name in ("temperature", "top_p", "top_k"):
        if (value := getattr(request, name)) is not None:
            body[name] = value
    if spec.tools:
        body.update(tools=spec.tools, tool_choice=spec.tool_choice,
                    parallel_tool_calls=spec.parallel_tool_calls)
    return body


def translator(model_id: str) -> MessageTranslator:
    return MessageTranslator({"id": new_message_id(), "type": "message", "role": "assistant",
                              "model": model_id, "content": [], "stop_reason": None,
                              "stop_sequence": None,
                              "usage": {"input_tokens": 0, "output_tokens": 0}})


class ChatEvents:
    """Chat completion chunks, or a whole chat completion, as chat events. The finish is
    held until the usage has been seen (it comes in a chunk of its own after it)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def of_chunk(self, payload: dict[str, Any]) -> list[ChatEvent]:
        self._note_usage(payload)
        events: list[ChatEvent] = []
        for choice in payload.get("choices") or []:
            delta = choice.get("delta") or {}
            events += self._parts(delta.get("content"), delta.get("reasoning_content"),
                                  delta.get("tool_calls") or [])
            self.reason = choice.get("finish_reason") or self.reason
        return events

    def of_whole(self, payload: dict[str, Any]) -> list[ChatEvent]:
        self._note_usage(payload)
        choice = (payload.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        calls = [{**call, "index": i} for i, call in enumerate(message.get("tool_calls") or [])]
        self.reason = choice.get("finish_reason")
        return [*self._parts(message.get("content"), message.get("reasoning_content"), calls),
                self.finish()]

    def finish(self) -> Finish:
        reason = self.reason if self.reason in ("stop", "length", "tool_calls") else "stop"
        done = Done("length" if reason == "length" else "stop", self.prompt_tokens,
                    self.completion_tokens, 0, Timings(0.0, 0.0, 0.0, 0.0, 0))
        return Finish(reason, done)

    def _parts(self, content: Any, reasoning: Any, calls: list[dict[str, Any]]
               ) -> list[ChatEvent]:
        events: list[ChatEvent] = []
        if reasoning:
            events.append(ReasoningDelta(str(reasoning)))
        if content:
            events.append(ContentDelta(str(content)))
        for call in calls:
            function = call.get("function") or {}
            index = int(call.get("index", 0))
            if call.get("id") or function.get("name"):
                events.append(ToolCallStart(index, str(call.get("id") or f"call_{index}"),
                                            str(function.get("name") or "")))
            if function.get("arguments"):
                events.append(ToolCallArgsDelta(index, str(function["arguments"])))
        return events

    def _note_usage(self, payload: dict[str, Any]) -> None:
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)


class UpstreamChatRun:
    """A Run (api/serving.py) over an upstream's chat completion stream."""

    def __init__(self, response: httpx.Response, on_failure: Any) -> None:
        self.response = response
        self.on_failure = on_failure  # called with the transport error, returns a message
        self.chat = ChatEvents()

    async def events(self) -> AsyncIterator[tuple[int, Any]]:
        try:
            async for line in self.response.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                payload = json.loads(line[5:])
                if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                    raise APIError(502, str(payload["error"].get("message")),
                                   type="api_error", code="upstream_failed")
                for event in self.chat.of_chunk(payload):
                    yield 0, event
        except httpx.HTTPError as exc:
            raise APIError(502, self.on_failure(exc), type="api_error",
                           code="upstream_failed") from exc
        yield 0, self.chat.finish()

    def cancel(self) -> None:
        pass  # the exchange closes the upstream response
