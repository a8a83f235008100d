"""POST /v1/responses, GET and DELETE /v1/responses/{id}: OpenAI's Responses API."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from lmserve.api.chat import ChatEvent, ChatRun, ChatSpec, Finish, LogprobsHold, start_chat
from lmserve.api.deps import get_manager, get_mcp_pool
from lmserve.api.errors import APIError, as_api_error
from lmserve.api.openai.protocol import logprobs_object
from lmserve.api.openai.response_store import (
    ResponseStore,
    StoredResponse,
    get_store,
    previous_conversation,
)
from lmserve.api.openai.responses_mcp import McpEvent, McpItems, start_with_mcp
from lmserve.api.openai.responses_protocol import (
    ResponseRequest,
    conversation_messages,
    new_item_id,
)
from lmserve.api.serving import respond, stream_once_started, stream_response
from lmserve.api.sse import sse_typed
from lmserve.api.tool_loop import ServerToolLoop
from lmserve.api.usage import TokenUsage
from lmserve.models import Model, ModelManager
from lmserve.parsers import ContentDelta, ReasoningDelta, ToolCallArgsDelta, ToolCallStart

router = APIRouter()

# The chat core names request fields after Chat Completions; these are their names here.
_PARAM_NAMES = {"messages": "input", "response_format": "text.format"}


@router.post("/v1/responses")
async def create_response(
    body: ResponseRequest,
    request: Request,
    manager: ModelManager = Depends(get_manager),
    store: ResponseStore = Depends(get_store),
) -> Response:
    if body.streams:
        return await stream_once_started(request, _answer(body, request, manager, store),
                                         _in_band_error)
    return await _answer(body, request, manager, store)


async def _answer(body: ResponseRequest, request: Request, manager: ModelManager,
                  store: ResponseStore) -> Response:
    context = [*previous_conversation(store, body.previous_response_id), *body.input_items()]
    spec = body.chat_spec(conversation_messages(body.instructions, context))
    if body.mcp_tools:
        run: ChatRun | ServerToolLoop = await start_with_mcp(
            body, spec, manager, get_mcp_pool(request), _start)
        model = run.model
    else:
        model = await manager.resolve(body.model)
        run = _start(model, spec)
    builder = ResponseBuilder(_head(body, model.id, spec), _token_counter(model),
                              keep=_keeper(store, context) if body.stores else None)
    if body.streams:
        return stream_response(request, run, builder)
    return await respond(request, run, builder)


def _in_band_error(exc: Exception) -> list[bytes]:
    """A stream that opened before its response was created (a model loading just in
    time) and then failed: the Responses API's `error` event."""
    err = as_api_error(exc)
    return [sse_typed({"type": "error", "code": err.code or err.type,
                       "message": err.message, "param": err.param, "sequence_number": 0})]


@router.get("/v1/responses/{response_id}")
async def retrieve_response(
    response_id: str, store: ResponseStore = Depends(get_store)
) -> JSONResponse:
    return JSONResponse(_stored(store, response_id).response)


@router.delete("/v1/responses/{response_id}")
async def delete_response(
    response_id: str, store: ResponseStore = Depends(get_store)
) -> dict[str, Any]:
    if not store.delete(response_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


def _not_found(response_id: str) -> APIError:
    return APIError(404, f"Response with id '{response_id}' not found.", param="response_id")


def _stored(store: ResponseStore, response_id: str) -> StoredResponse:
    stored = store.get(response_id)
    # The store keeps /api/v1/chat's chats too: they continue, but are no Response.
    if stored is None or stored.response.get("object") != "response":
        raise _not_found(response_id)
    return stored


def _start(model: Model, spec: ChatSpec) -> ChatRun:
    try:
        return start_chat(model, spec)
    except Exception as exc:
        err = as_api_error(exc)
        err.param = _PARAM_NAMES.get(err.param or "", err.param)
        if err is exc:
            raise
        raise err from exc


def _token_counter(model: Model) -> Callable[[str], int]:
    def count(text: str) -> int:
        return len(model.llama.tokenize(text, add_special=False, parse_special=True))
    return count


def _keeper(store: ResponseStore, context: list[dict[str, Any]]
            ) -> Callable[[dict[str, Any]], None]:
    def keep(response: dict[str, Any]) -> None:
        store.put(StoredResponse(response, context))
    return keep


def _head(body: ResponseRequest, model_id: str, spec: ChatSpec) -> dict[str, Any]:
    """The response object's fields that are known before generation starts."""
    return {
        "id": new_item_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "model": model_id,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "previous_response_id": body.previous_response_id,
        "parallel_tool_calls": spec.parallel_tool_calls,
        # The values sampling ran with, defaults included.
        "temperature": spec.sampling.temperature,
        "top_p": spec.sampling.top_p,
        "top_logprobs": body.top_logprobs,
        "tools": body.echo_tools(),
        "tool_choice": body.echo_tool_choice(),
        "text": body.echo_text(),
        "reasoning": {"effort": body.reasoning.effort, "summary": None}
        if body.reasoning else None,
        "truncation": "disabled",
        "background": False,
        "store": body.stores,
        "metadata": body.metadata or {},
    }


# -- building the output ----------------------------------------------------------------


@dataclass
class _OpenItem:
    index: int
    body: dict[str, Any]  # the output item; it lives in the builder's output list
    parts: list[str] = field(default_factory=list)  # its text or arguments so far
    logprobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.body["type"]

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ResponseBuilder:
    """Turns chat events into Responses output items and the stream events describing
    them. The non-streaming route goes the same way and drops the events, so both
    return the same response."""

    closing = b""
    frame = staticmethod(sse_typed)

    def __init__(self, head: dict[str, Any], count_tokens: Callable[[str], int],
                 keep: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.head = head
        # Stores a finished response before the client hears it is done, so that it
        # can follow up at once.
        self._keep = keep
        self.output: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None  # set once the response has ended
        self._count_tokens = count_tokens
        self._open: _OpenItem | None = None
        self._held = LogprobsHold()
        self._reasoning: list[str] = []
        self._sequence = 0
        self._mcp = McpItems(self)

    def response(self, status: str, **fields: Any) -> dict[str, Any]:
        return {
            **self.head,
            "status": status,
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            "output": copy.deepcopy(self.output),
            **fields,
        }

    def _event(self, type: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def start(self) -> list[dict[str, Any]]:
        snapshot = self.response("in_progress")
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def feed(self, index: int, event: ChatEvent) -> list[dict[str, Any]]:
        entries = self._held.take(index, event)
        if entries is None:
            return []
        # Log-probabilities belong to the text they produced; elsewhere they are dropped.
        if isinstance(event, ContentDelta):
            return self._text("message", event.text, entries)
        if isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
            return self._text("reasoning", event.text, [])
        if isinstance(event, ToolCallStart):
            return [*self._close("completed"), *self._open_call(event)]
        if isinstance(event, ToolCallArgsDelta):
            return self._arguments(event.text)
        if isinstance(event, Finish):
            return self._finish(event)
        if isinstance(event, McpEvent):
            return self._mcp.feed(event)
        return []

    def end(self) -> list[dict[str, Any]]:
        if self.final is None:
            raise RuntimeError("generation ended without a result")
        return []

    def result(self) -> dict[str, Any]:
        assert self.final is not None
        return self.final

    def fail(self, exc: Exception) -> list[dict[str, Any]]:
        """The events that end a stream whose generation broke: headers are gone, so
        the failure is reported in-band, with the output produced so far."""
        err = as_api_error(exc)
        if self._open is not None:
            self._settle(self._open, "incomplete")
            self._open = None
        self.final = self.response("failed", error={"code": "server_error",
                                                    "message": err.message})
        return [self._event("response.failed", response=self.final)]

    # -- items ---------------------------------------------------------------------------

    def _add(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        self._open = _OpenItem(len(self.output), body)
        self.output.append(body)
        return [self._event("response.output_item.added", output_index=self._open.index,
                            item=copy.deepcopy(body))]

    def _open_text(self, kind: str) -> list[dict[str, Any]]:
        if kind == "message":
            body = {"id": new_item_id("msg"), "type": "message", "role": "assistant",
                    "status": "in_progress", "content": []}
            part = _output_text("", [])
        else:
            body = {"id": new_item_id("rs"), "type": "reasoning", "summary": [],
                    "content": [], "status": "in_progress"}
            part = _reasoning_text("")
        events = self._add(body)
        events.append(self._event("response.content_part.added", item_id=body["id"],
                                  output_index=self._open.index, content_index=0,
                                  part=part))
        return events

    def _open_call(self, start: ToolCallStart) -> list[dict[str, Any]]:
        return self._add({"id": new_item_id("fc"), "type": "function_call",
                          "call_id": start.id, "name": start.name, "arguments": "",
                          "status": "in_progress"})

    def _text(self, kind: str, text: str, entries: list) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is None or self._open.kind != kind:
            events += self._close("completed")
            events += self._open_text(kind)
        item = self._open
        item.parts.append(text)
        where = {"item_id": item.body["id"], "output_index": item.index, "content_index": 0}
        if kind == "reasoning":
            events.append(self._event("response.reasoning_text.delta", **where, delta=text))
            return events
        logprobs = logprobs_object(entries)["content"] if entries else []
        item.logprobs.extend(logprobs)
        events.append(self._event("response.output_text.delta", **where, delta=text,
                                  logprobs=logprobs))
        return events

    def _arguments(self, text: str) -> list[dict[str, Any]]:
        item = self._open
        if item is None or item.kind != "function_call":
            return []  # arguments without their call: the chat core never sends these
        item.parts.append(text)
        return [self._event("response.function_call_arguments.delta",
                            item_id=item.body["id"], output_index=item.index, delta=text)]

    def _settle(self, item: _OpenItem, status: str) -> None:
        """Writes the item's final state into its output entry."""
        body = item.body
        body["status"] = status
        if item.kind == "message":
            body["content"] = [_output_text(item.text, item.logprobs)]
        elif item.kind == "reasoning":
            body["content"] = [_reasoning_text(item.text)]
        else:
            body["arguments"] = item.text

    def _close(self, status: str) -> list[dict[str, Any]]:
        item = self._open
        if item is None:
            return []
        self._open = None
        self._settle(item, status)
        if item.kind == "mcp_call":
            return self._mcp.close_call(item)
        body = item.body
        where = {"item_id": body["id"], "output_index": item.index}
        if item.kind == "function_call":
            events = [self._event("response.function_call_arguments.done", **where,
                                  name=body["name"], arguments=body["arguments"])]
        else:
            part = body["content"][0]
            if item.kind == "message":
                events = [self._event("response.output_text.done", **where, content_index=0,
                                      text=item.text, logprobs=item.logprobs)]
            else:
                events = [self._event("response.reasoning_text.done", **where,
                                      content_index=0, text=item.text)]
            events.append(self._event("response.content_part.done", **where,
                                      content_index=0, part=copy.deepcopy(part)))
        events.append(self._event("response.output_item.done", output_index=item.index,
                                  item=copy.deepcopy(body)))
        return events

    def _finish(self, finish: Finish) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if not self.output:
            events += self._open_text("message")  # an empty answer is still a message
        # The token limit, not the chat finish reason: a cut-off tool call reports
        # "tool_calls" there but is incomplete all the same.
        truncated = finish.done.finish_reason == "length"
        events += self._close("incomplete" if truncated else "completed")
        usage = self._usage(finish)
        if truncated:
            self.final = self.response("incomplete", usage=usage, incomplete_details={
                "reason": "max_output_tokens"})
            events.append(self._event("response.incomplete", response=self.final))
        else:
            self.final = self.response("completed", usage=usage,
                                       completed_at=int(time.time()))
            events.append(self._event("response.completed", response=self.final))
        if self._keep:
            self._keep(self.final)
        return events

    def _usage(self, finish: Finish) -> dict[str, Any]:
        counts = TokenUsage.of([finish.done], shared_prompt=True)
        reasoning = self._count_tokens("".join(self._reasoning)) if self._reasoning else 0
        return {
            "input_tokens": counts.prompt,
            "input_tokens_details": {
                "cached_tokens": counts.cached,
                # The prompt tokens evaluated now stay in the slot's KV cache for reuse.
                "cache_write_tokens": counts.prompt - counts.cached,
            },
            "output_tokens": counts.completion,
            "output_tokens_details": {"reasoning_tokens": min(reasoning, counts.completion)},
            "total_tokens": counts.prompt + counts.completion,
        }


def _output_text(text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def _reasoning_text(text: str) -> dict[str, Any]:
    return {"type": "reasoning_text", "text": text}
