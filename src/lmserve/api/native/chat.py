"""POST /api/v1/chat: LM Studio's native chat. Stateful (`previous_response_id`, in the
Responses API's store), with named SSE events that show the model loading and the prompt
being read, and MCP servers (`integrations`) whose tools the server runs for the model.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from lmserve.api.chat import ChatEvent, ChatSpec, Finish, start_chat
from lmserve.api.deps import get_manager, get_mcp_pool
from lmserve.api.errors import APIError, as_api_error
from lmserve.api.native.chat_protocol import (
    EphemeralMcpIntegration,
    NativeChatRequest,
    PluginIntegration,
)
from lmserve.api.openai.response_store import (
    ResponseStore,
    StoredResponse,
    get_store,
    previous_conversation,
)
from lmserve.api.openai.responses_protocol import conversation_messages
from lmserve.api.serving import Run, respond, stream_response
from lmserve.api.sse import sse_typed
from lmserve.api.tool_loop import (
    ServerCallArgsDelta,
    ServerCallArgsDone,
    ServerCallDone,
    ServerCallStart,
    ServerRequest,
    ServerToolLoop,
    ToolsListed,
    connect_servers,
)
from lmserve.engine import PromptProgress
from lmserve.mcp import remote_server
from lmserve.models import Model, ModelManager, ModelNotFoundError
from lmserve.parsers import ContentDelta, ReasoningDelta, ToolCallStart

router = APIRouter()

# Load progress is reported in steps of at least this much (llama.cpp reports per tensor).
_LOAD_STEP = 0.05


@router.post("/api/v1/chat")
async def chat(
    body: NativeChatRequest,
    request: Request,
    manager: ModelManager = Depends(get_manager),
    store: ResponseStore = Depends(get_store),
) -> Response:
    context = [*previous_conversation(store, body.previous_response_id), *body.input_items()]
    spec = body.chat_spec(conversation_messages(body.system_prompt, context))
    requests, providers = _server_requests(body)
    begin = await _chat_starter(request, spec, requests)
    target = _load_target(manager, body)
    model: Model | None = None
    if target is None:  # loaded already: every 4xx is decided before the response starts
        model = await manager.resolve(body.model)
        run = NativeChatRun(begin, model=model)
    else:
        run = NativeChatRun(begin, load=_loader(manager, body, target))
    response_id = "resp_" + secrets.token_hex(24) if body.store else None
    translator = NativeChatTranslator(
        model.id if model else target, providers, model=model, response_id=response_id,
        keep=_keeper(store, context, response_id) if response_id else None)
    if body.stream:
        return stream_response(request, run, translator)
    return await respond(request, run, translator)


# -- what runs ------------------------------------------------------------------------------


def _server_requests(body: NativeChatRequest
                     ) -> tuple[list[ServerRequest], dict[str, dict[str, Any]]]:
    """The MCP servers `integrations` name, and each one's provider_info by label."""
    requests: list[ServerRequest] = []
    providers: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(body.integrations or []):
        if isinstance(entry, str):
            entry = PluginIntegration(type="plugin", id=entry)
        if isinstance(entry, EphemeralMcpIntegration):
            try:
                server = remote_server(entry.server_label, entry.server_url, entry.headers)
            except ValueError as exc:
                raise APIError(400, str(exc),
                               param=f"integrations[{i}].server_url") from None
            requests.append(ServerRequest(entry.server_label, entry.allowed_tools,
                                          remote=server))
            providers[entry.server_label] = {"type": "ephemeral_mcp",
                                             "server_label": entry.server_label}
        else:
            name = entry.id.removeprefix("mcp/")
            requests.append(ServerRequest(name, entry.allowed_tools, declared=name))
            providers[name] = {"type": "plugin", "plugin_id": entry.id}
    return requests, providers


async def _chat_starter(request: Request, spec: ChatSpec, servers: list[ServerRequest]
                        ) -> Callable[[Model], Run]:
    """What submits the chat once the model is there: the chat core alone, or the tool
    loop over the integrations' MCP servers (connected now, so refusals come first)."""
    if not servers:
        return lambda model: start_chat(model, spec)
    pool = get_mcp_pool(request)
    connected = await connect_servers(pool, servers, param="integrations")

    def begin(model: Model) -> Run:
        loop = ServerToolLoop(connected, max_rounds=pool.settings.max_tool_rounds,
                              tool_timeout=pool.settings.tool_timeout_seconds)
        try:
            return loop.begin(model, spec)
        except BaseException:
            loop.cancel()
            raise
    return begin


def _load_target(manager: ModelManager, body: NativeChatRequest) -> str | None:
    """The model this request must load first (just in time, or with a new context
    length), or None when the instance it names is loaded as asked."""
    target = manager.serving_id(body.model)
    if target is None:
        raise ModelNotFoundError(body.model, manager.listed_ids(), jit=manager.jit)
    loaded = manager.get(target)
    if loaded is None:
        return target
    if body.context_length and loaded.config.context_length != body.context_length:
        return loaded.key
    return None


def _loader(manager: ModelManager, body: NativeChatRequest, target: str
            ) -> Callable[[Callable[[float], None]], Awaitable[Model]]:
    async def load(progress: Callable[[float], None]) -> Model:
        if body.context_length:
            model, _ = await manager.load(target, context_length=body.context_length,
                                          on_progress=progress)
            return model
        return await manager.resolve(body.model, on_progress=progress)
    return load


def _keeper(store: ResponseStore, context: list[dict[str, Any]], response_id: str
            ) -> Callable[[list[dict[str, Any]]], None]:
    def keep(items: list[dict[str, Any]]) -> None:
        store.put(StoredResponse({"id": response_id, "object": "chat", "output": items},
                                 context))
    return keep


# -- loading, then chatting -----------------------------------------------------------------


@dataclass(frozen=True)
class ModelLoadStart:
    pass


@dataclass(frozen=True)
class ModelLoadProgress:
    progress: float  # 0 to 1


@dataclass(frozen=True)
class ModelLoadEnd:
    model: Model


class NativeChatRun:
    """The chat's run, after loading its model when the request needs that: the load's
    progress comes first, as events of the run."""

    def __init__(self, begin: Callable[[Model], Run], *, model: Model | None = None,
                 load: Callable[[Callable[[float], None]], Awaitable[Model]] | None = None
                 ) -> None:
        self._begin = begin
        self._load = load
        self._run = begin(model) if model is not None else None

    def cancel(self) -> None:
        if self._run is not None:
            self._run.cancel()

    async def events(self) -> AsyncIterator[tuple[int, Any]]:
        if self._run is None:
            async for event in self._loading():
                yield 0, event
        assert self._run is not None
        async for item in self._run.events():
            yield item

    async def _loading(self) -> AsyncIterator[Any]:
        assert self._load is not None
        yield ModelLoadStart()
        loop = asyncio.get_running_loop()
        reports: asyncio.Queue[float] = asyncio.Queue()
        # Called from the loading thread; its reports arrive before the load's end does.
        load = asyncio.ensure_future(self._load(
            lambda share: loop.call_soon_threadsafe(reports.put_nowait, share)))
        shown = 0.0
        while not load.done() or not reports.empty():
            report = asyncio.ensure_future(reports.get())
            try:
                await asyncio.wait({load, report}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reported = report.done()
                if not reported:
                    report.cancel()
            if not reported:
                continue
            share = report.result()
            if share - shown >= _LOAD_STEP or (share >= 1.0 > shown):
                shown = share
                yield ModelLoadProgress(share)
        model = load.result()
        yield ModelLoadEnd(model)
        self._run = self._begin(model)


# -- the wire format ------------------------------------------------------------------------


NativeEvent = ChatEvent | ModelLoadStart | ModelLoadProgress | ModelLoadEnd | ToolsListed \
    | ServerCallStart | ServerCallArgsDelta | ServerCallArgsDone | ServerCallDone

_ERROR_TYPES = {404: "model_not_found"}


class NativeChatTranslator:
    """Run events as LM Studio's chat events, and the chat result they add up to."""

    closing = b""
    frame = staticmethod(sse_typed)

    def __init__(self, instance_id: str, providers: dict[str, dict[str, Any]], *,
                 model: Model | None, response_id: str | None,
                 keep: Callable[[list[dict[str, Any]]], None] | None) -> None:
        self._instance_id = instance_id
        self._providers = providers
        self._response_id = response_id
        self._keep = keep
        self._model = model  # None until a model loaded for the request is there
        self.output: list[dict[str, Any]] = []
        self._stored: list[dict[str, Any]] = []  # the output as Responses items
        self._open: str | None = None  # "message" or "reasoning", while its deltas come
        self._reading = False  # a prompt is being read
        self._finish: Finish | None = None
        self._load_time: float | None = None

    def start(self) -> list[dict[str, Any]]:
        return [{"type": "chat.start", "model_instance_id": self._instance_id}]

    def feed(self, index: int, event: NativeEvent) -> list[dict[str, Any]]:
        if isinstance(event, ModelLoadStart | ModelLoadProgress | ModelLoadEnd):
            return self._loading(event)
        if isinstance(event, PromptProgress):
            return self._reading_prompt(event)
        if isinstance(event, ContentDelta | ReasoningDelta):
            kind = "message" if isinstance(event, ContentDelta) else "reasoning"
            events = self._open_item(kind)
            self.output[-1]["content"] += event.text
            return [*events, {"type": f"{kind}.delta", "content": event.text}]
        if isinstance(event, ToolCallStart):  # a call to a tool no server offers
            return [*self._close(), *self._invalid(
                f"Cannot find tool with name {event.name}.",
                {"type": "invalid_name", "tool_name": event.name})]
        if isinstance(event, ServerCallStart):
            return [*self._close(), {"type": "tool_call.start", "tool": event.name,
                                     "provider_info": self._providers.get(event.server.label)}]
        if isinstance(event, ServerCallArgsDone):  # the model has written it: it runs now
            return [{"type": "tool_call.arguments", "tool": event.name,
                     "arguments": _arguments_object(event.arguments),
                     "provider_info": self._providers.get(event.server.label)}]
        if isinstance(event, ServerCallDone):
            return self._call_done(event)
        if isinstance(event, ToolsListed) and event.server.error:
            return [{"type": "error", "error": {"type": "mcp_connection_error",
                                                "message": event.server.error}}]
        if isinstance(event, Finish):
            self._finish = event
            events = self._close()
            if self._keep:
                self._keep(list(self._stored))
            return events
        return []  # log-probabilities, argument pieces (sent whole once the call ran)

    def end(self) -> list[dict[str, Any]]:
        if self._finish is None:
            raise RuntimeError("generation ended without a result")
        return [{"type": "chat.end", "result": self.result()}]

    def fail(self, exc: Exception) -> list[dict[str, Any]]:
        """An error event, then chat.end with what was generated, as LM Studio does."""
        err = as_api_error(exc)
        kind = _ERROR_TYPES.get(err.status,
                                "invalid_request" if err.status < 500 else "internal_error")
        error = {"type": kind, "message": err.message}
        error.update({k: v for k, v in (("code", err.code), ("param", err.param)) if v})
        return [*self._close(), {"type": "error", "error": error},
                {"type": "chat.end", "result": self.result()}]

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_instance_id": self._instance_id,
                               "output": self.output, "stats": self._stats()}
        if self._response_id:
            out["response_id"] = self._response_id
        return out

    # -- pieces ---------------------------------------------------------------------------

    def _loading(self, event: ModelLoadStart | ModelLoadProgress | ModelLoadEnd
                 ) -> list[dict[str, Any]]:
        where = {"model_instance_id": self._instance_id}
        if isinstance(event, ModelLoadStart):
            return [{"type": "model_load.start", **where}]
        if isinstance(event, ModelLoadProgress):
            return [{"type": "model_load.progress", **where,
                     "progress": round(min(event.progress, 1.0), 4)}]
        self._model = event.model
        self._instance_id = event.model.id
        self._load_time = round(event.model.load_time_s, 3)
        return [{"type": "model_load.end", "model_instance_id": self._instance_id,
                 "load_time_seconds": self._load_time}]

    def _reading_prompt(self, event: PromptProgress) -> list[dict[str, Any]]:
        events = []
        if not self._reading:
            self._reading = True
            events.append({"type": "prompt_processing.start"})
        events.append({"type": "prompt_processing.progress",
                       "progress": round(event.processed / event.total, 4)})
        if event.processed >= event.total:
            self._reading = False
            events.append({"type": "prompt_processing.end"})
        return events

    def _open_item(self, kind: str) -> list[dict[str, Any]]:
        if self._open == kind:
            return []
        events = self._close()
        self._open = kind
        self.output.append({"type": kind, "content": ""})
        return [*events, {"type": f"{kind}.start"}]

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        kind, self._open = self._open, None
        if kind == "message":
            self._stored.append({"type": "message", "role": "assistant",
                                 "content": self.output[-1]["content"]})
        return [{"type": f"{kind}.end"}]

    def _invalid(self, reason: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        self.output.append({"type": "invalid_tool_call", "reason": reason,
                            "metadata": metadata})
        return [{"type": "tool_call.failure", "reason": reason, "metadata": metadata}]

    def _call_done(self, event: ServerCallDone) -> list[dict[str, Any]]:
        provider = self._providers.get(event.server.label)
        arguments = _arguments_object(event.arguments)
        outcome = event.outcome
        self._stored.append({"type": "mcp_call", "id": event.call_id, "name": event.name,
                             "arguments": event.arguments, "output": outcome.output,
                             "error": outcome.error_text if outcome.failed else None})
        if outcome.failed:
            return self._invalid(outcome.error_text, {
                "type": "invalid_arguments", "tool_name": event.name,
                "arguments": arguments, "provider_info": provider})
        item = {"type": "tool_call", "tool": event.name, "arguments": arguments,
                "output": outcome.output, "provider_info": provider}
        self.output.append(item)
        return [{**item, "type": "tool_call.success"}]

    def _stats(self) -> dict[str, Any]:
        done = self._finish.done if self._finish else None
        reasoning = "".join(i["content"] for i in self.output if i["type"] == "reasoning")
        output_tokens = done.completion_tokens if done else 0
        stats: dict[str, Any] = {
            "input_tokens": done.prompt_tokens if done else 0,
            "total_output_tokens": output_tokens,
            "reasoning_output_tokens": min(self._count(reasoning), output_tokens),
            "tokens_per_second": round(done.tokens_per_s, 2) if done else 0.0,
            "time_to_first_token_seconds": round(done.timings.ttft_s, 3) if done else 0.0,
        }
        if self._load_time is not None:
            stats["model_load_time_seconds"] = self._load_time
        return stats

    def _count(self, text: str) -> int:
        if not text or self._model is None:
            return 0
        return len(self._model.llama.tokenize(text, add_special=False, parse_special=True))


def _arguments_object(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

