"""Tools the server runs for the model (MCP): one chat request becomes several model
turns. Each turn sees the servers' tools as ordinary functions (the chat core renders,
constrains and parses them as it does client tools); each call the model makes to one of
them is run on its server and its result fed back as a tool message, until the model
answers without calling a server tool or the round limit is reached (the last turn then
runs without tools, so it answers).

`ServerToolLoop` is driven like a `ChatRun`: `events()` yields the model's chat events,
with its calls to server tools replaced by the `ServerCall*` events below, and one
`Finish` at the very end, whose usage counts every turn.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lmserve.api.chat import ChatEvent, ChatRun, ChatSpec, Finish, start_chat
from lmserve.api.errors import APIError
from lmserve.engine import Done
from lmserve.mcp import (
    McpConfigError,
    McpConnection,
    McpNotAllowedError,
    McpPool,
    McpTool,
    McpUnavailableError,
    RemoteServer,
    ToolOutcome,
)
from lmserve.mcp.connection import failure
from lmserve.models import Model
from lmserve.parsers import ContentDelta, ToolCallArgsDelta, ToolCallStart


@dataclass(frozen=True)
class ServerRequest:
    """One MCP server a request asks for: an mcp.json name, or a remote server of its own."""

    label: str
    allowed_tools: list[str] | None = None
    declared: str | None = None  # the mcp.json name
    remote: RemoteServer | None = None


@dataclass
class ServerTools:
    """A requested server once connected: its tools, or why they could not be listed."""

    request: ServerRequest
    tools: list[McpTool]
    connection: McpConnection | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return self.request.label

    @property
    def ephemeral(self) -> bool:
        return self.request.remote is not None


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolsListed:
    server: ServerTools


@dataclass(frozen=True)
class ServerCallStart:
    call_id: str
    server: ServerTools
    name: str


@dataclass(frozen=True)
class ServerCallArgsDelta:
    call_id: str
    text: str


@dataclass(frozen=True)
class ServerCallArgsDone:
    """The model has written the whole call: it runs now."""

    call_id: str
    server: ServerTools
    name: str
    arguments: str


@dataclass(frozen=True)
class ServerCallDone:
    call_id: str
    server: ServerTools
    name: str
    arguments: str
    outcome: ToolOutcome


McpEvent = ToolsListed | ServerCallStart | ServerCallArgsDelta | ServerCallArgsDone | \
    ServerCallDone
LoopEvent = ChatEvent | McpEvent


# -- connecting -----------------------------------------------------------------------------


async def connect_servers(pool: McpPool, requests: list[ServerRequest], param: str
                          ) -> list[ServerTools]:
    """Connects to every requested server and lists its tools. A server that cannot be
    reached is a ServerTools with an error, not an exception: the request goes on
    without it. The caller's mistakes (per-request servers while they are off, a name
    mcp.json does not declare) are APIErrors naming `param`, raised before any work."""
    try:
        if any(r.remote is not None for r in requests):
            pool.check_ephemeral()
        for r in requests:
            if r.declared is not None:
                pool.declared(r.declared)
    except McpNotAllowedError as exc:
        raise APIError(403, str(exc), type="permission_error", param=param,
                       code="mcp_ephemeral_not_allowed") from None
    except McpConfigError as exc:
        raise APIError(400, str(exc), param=param, code="mcp_server_not_found") from None
    return list(await asyncio.gather(*(_connect(pool, r) for r in requests)))


async def _connect(pool: McpPool, request: ServerRequest) -> ServerTools:
    connection: McpConnection | None = None
    try:
        if request.remote is not None:
            connection = await pool.ephemeral(request.remote)
        else:
            assert request.declared is not None
            connection = await pool.shared(request.declared)
        tools = await connection.list_tools(request.allowed_tools)
    except (McpUnavailableError, McpConfigError) as exc:  # mcp.json may change meanwhile
        if connection is not None and request.remote is not None:
            connection.release()
        return ServerTools(request, [], error=str(exc))
    return ServerTools(request, tools, connection)


# -- the loop -------------------------------------------------------------------------------


@dataclass
class _Call:
    call_id: str
    name: str
    server: ServerTools | None  # None: a client function, returned to the caller
    parts: list[str] = field(default_factory=list)

    @property
    def arguments(self) -> str:
        return "".join(self.parts)


class ServerToolLoop:
    def __init__(self, servers: list[ServerTools], *, max_rounds: int, tool_timeout: float,
                 start: Callable[[Model, ChatSpec], ChatRun] = start_chat) -> None:
        self._servers = servers
        self._max_rounds = max_rounds
        self._tool_timeout = tool_timeout
        self._start = start
        self._by_name: dict[str, ServerTools] = {}
        self._run: ChatRun | None = None

    def begin(self, model: Model, spec: ChatSpec) -> ServerToolLoop:
        """Submits the first turn: its 4xx are raised here, before any streaming."""
        self.model = model
        client_names = {t["function"]["name"] for t in spec.tools if "function" in t}
        tools = list(spec.tools)
        for server in self._servers:
            for tool in server.tools:
                # A name taken by a client tool or an earlier server keeps its first owner.
                if tool.name not in client_names and tool.name not in self._by_name:
                    self._by_name[tool.name] = server
                    tools.append(tool.as_function())
        choice = spec.tool_choice
        if not self._by_name and not client_names or self._max_rounds == 0:
            choice = "none"  # no tool to call: the model answers
        elif isinstance(choice, dict) and any(s.error for s in self._servers) \
                and _chosen_name(choice) not in client_names | set(self._by_name):
            choice = "auto"  # the forced tool was on a server that is down
        self._spec = replace(spec, tools=tools, tool_choice=choice, n=1)
        self._run = self._start(model, self._spec)
        return self

    def cancel(self) -> None:
        if self._run is not None:
            self._run.cancel()
        for server in self._servers:
            if server.ephemeral and server.connection is not None:
                server.connection.release()

    async def events(self) -> AsyncIterator[tuple[int, LoopEvent]]:
        for server in self._servers:
            yield 0, ToolsListed(server)
        messages = list(self._spec.messages)
        turns: list[Done] = []
        while True:
            calls: list[_Call] = []
            text: list[str] = []
            finish: Finish | None = None
            assert self._run is not None
            async for _, event in self._run.events():
                if isinstance(event, ToolCallStart):
                    call = _Call(event.id, event.name, self._by_name.get(event.name))
                    calls.append(call)
                    if call.server is None:
                        yield 0, event
                    else:
                        yield 0, ServerCallStart(call.call_id, call.server, call.name)
                elif isinstance(event, ToolCallArgsDelta) and calls:
                    call = calls[-1]
                    call.parts.append(event.text)
                    yield 0, (event if call.server is None
                              else ServerCallArgsDelta(call.call_id, event.text))
                elif isinstance(event, Finish):
                    finish = event
                else:
                    if isinstance(event, ContentDelta):
                        text.append(event.text)
                    yield 0, event
            if finish is None:
                return  # cancelled
            turns.append(finish.done)
            server_calls = [c for c in calls if c.server is not None]
            cut_off = finish.done.finish_reason == "length"
            results = []
            for call in server_calls:
                assert call.server is not None
                yield 0, ServerCallArgsDone(call.call_id, call.server, call.name,
                                            call.arguments)
                # A call cut off by the token limit may be incomplete: it is not run.
                outcome = failure("The call was not run: the model's output reached the "
                                  "token limit.") if cut_off else await self._call(call)
                results.append((call, outcome))
                yield 0, ServerCallDone(call.call_id, call.server, call.name, call.arguments,
                                        outcome)
            budget = self._token_budget(turns)
            # Calls to client functions go back to the caller, who runs them.
            if not server_calls or len(server_calls) < len(calls) or cut_off or budget == 0:
                reason = "length" if budget == 0 else finish.reason
                yield 0, Finish(reason, _total(turns, reason))
                return
            messages += _turn_messages("".join(text), results)
            # Past the round limit the model turns without tools, so it answers.
            tools_left = len(turns) < self._max_rounds
            self._run = self._start(self.model, replace(
                self._spec, messages=messages, max_tokens=budget,
                tool_choice="auto" if tools_left else "none"))

    def _token_budget(self, turns: list[Done]) -> int | None:
        """The output tokens the next turn may use: max_tokens bounds the whole loop."""
        if self._spec.max_tokens is None:
            return None
        return max(0, self._spec.max_tokens - sum(d.completion_tokens for d in turns))

    async def _call(self, call: _Call) -> ToolOutcome:
        server = call.server
        assert server is not None
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            return failure(f"The arguments of '{call.name}' are not a JSON object: "
                           f"{call.arguments!r}.", code=-32602)
        if server.connection is None:
            return failure(server.error or f"MCP server '{server.label}' is not connected.")
        return await server.connection.call_tool(call.name, arguments, self._tool_timeout)


def _chosen_name(choice: dict[str, Any]) -> str | None:
    return (choice.get("function") or {}).get("name") or choice.get("name")


def _turn_messages(text: str, results: list[tuple[_Call, ToolOutcome]]
                   ) -> list[dict[str, Any]]:
    """The model's turn and the tools' results, as the next turn's prompt shows them."""
    assistant = {"role": "assistant", "content": text, "tool_calls": [
        {"id": call.call_id, "type": "function",
         "function": {"name": call.name, "arguments": call.arguments}}
        for call, _ in results]}
    tool_messages = [{"role": "tool", "tool_call_id": call.call_id, "name": call.name,
                      "content": outcome.output if not outcome.failed
                      else f"Error: {outcome.error_text}"}
                     for call, outcome in results]
    return [assistant, *tool_messages]


def _total(turns: list[Done], reason: str) -> Done:
    """One Done for the whole loop: how it ended, every turn's tokens."""
    engine_reason = "length" if reason == "length" else turns[-1].finish_reason
    return replace(turns[-1], finish_reason=engine_reason,
                   prompt_tokens=sum(d.prompt_tokens for d in turns),
                   completion_tokens=sum(d.completion_tokens for d in turns),
                   cached_tokens=sum(d.cached_tokens for d in turns))

