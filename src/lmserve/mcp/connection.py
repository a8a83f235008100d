"""One live session with an MCP server, through the official `mcp` SDK's client.

The SDK's transports hold anyio task groups, which must be entered and left by one
task. So each connection has a task of its own that opens the session, waits until it
is told to close, and closes it; requests use the session from their own tasks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED

from lmserve.mcp.servers import RemoteServer, ServerSpec, StdioServer

log = logging.getLogger("lmserve.mcp")


class McpUnavailableError(Exception):
    """The server could not be reached, or its session broke."""


@dataclass(frozen=True)
class McpTool:
    name: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None = None

    def as_function(self) -> dict[str, Any]:
        """The tool as a chat function, so the model sees it as it sees client tools."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.input_schema}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolOutcome:
    """What a call gave: its output text, or why it failed."""

    output: str | None = None
    # {"type": "mcp_tool_execution_error" | "mcp_protocol_error" | "http_error", ...}
    error: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def error_text(self) -> str:
        if self.error is None:
            return ""
        if "message" in self.error:
            return self.error["message"]
        return _content_text(self.error.get("content") or [])


def failure(message: str, code: int = -32603) -> ToolOutcome:
    return ToolOutcome(error={"type": "mcp_protocol_error", "code": code, "message": message})


class McpConnection:
    def __init__(self, spec: ServerSpec, connect_timeout: float) -> None:
        self.spec = spec
        self._connect_timeout = connect_timeout
        self._client: Client | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def alive(self) -> bool:
        return self._client is not None and not self._closing.is_set() \
            and self._task is not None and not self._task.done()

    async def open(self) -> None:
        """Connects, or raises McpUnavailableError saying why not."""
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._hold(ready), name=f"mcp {self.label}")
        try:
            async with asyncio.timeout(self._connect_timeout):
                self._client = await asyncio.shield(ready)
        except TimeoutError:
            await self.close()
            raise McpUnavailableError(f"MCP server '{self.label}' did not answer within "
                                      f"{self._connect_timeout:g} s.") from None
        except Exception as exc:
            await self.close()
            raise McpUnavailableError(f"Cannot connect to MCP server '{self.label}': "
                                      f"{_reason(exc)}") from None

    def release(self) -> None:
        """Lets the connection's task close the session (callable from sync code)."""
        self._closing.set()

    async def close(self) -> None:
        self._closing.set()
        self._client = None
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:  # a server that will not stop: its process is killed
                self._task.cancel()

    async def _hold(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(
                    Client(await self._transport(stack)))
                ready.set_result(client)
                await self._closing.wait()
        except BaseException as exc:  # the SDK raises exception groups from its tasks
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else
                                    McpUnavailableError("the connection was cancelled"))
            elif not self._closing.is_set():
                log.warning("MCP server '%s' closed its session: %s", self.label, _reason(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _transport(self, stack: AsyncExitStack) -> Any:
        spec = self.spec
        if isinstance(spec, StdioServer):
            return stdio_client(StdioServerParameters(command=spec.command,
                                                      args=list(spec.args),
                                                      env=dict(spec.env) or None))
        assert isinstance(spec, RemoteServer)
        timeout = httpx2.Timeout(self._connect_timeout, read=300)
        if spec.uses_sse:
            return sse_client(spec.url, headers=dict(spec.headers),
                              timeout=self._connect_timeout)
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=dict(spec.headers), timeout=timeout))
        return streamable_http_client(spec.url, http_client=http)

    def _session(self) -> Client:
        if not self.alive:
            raise McpUnavailableError(f"MCP server '{self.label}' is not connected.")
        assert self._client is not None
        return self._client

    async def list_tools(self, allowed: list[str] | None = None) -> list[McpTool]:
        """The server's tools, only those named in `allowed` when it is given."""
        client = self._session()
        tools: list[McpTool] = []
        cursor: str | None = None
        try:
            while True:
                page = await asyncio.wait_for(client.list_tools(cursor=cursor),
                                              self._connect_timeout)
                tools += [McpTool(t.name, t.description, t.input_schema,
                                  t.annotations.model_dump(exclude_none=True)
                                  if t.annotations else None) for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    break
        except TimeoutError:
            raise McpUnavailableError(f"MCP server '{self.label}' did not list its tools "
                                      f"within {self._connect_timeout:g} s.") from None
        except Exception as exc:
            raise McpUnavailableError(f"MCP server '{self.label}' could not list its tools: "
                                      f"{_reason(exc)}") from None
        if allowed is not None:
            tools = [t for t in tools if t.name in allowed]
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        timeout: float) -> ToolOutcome:
        """Runs one tool; every failure comes back as an outcome, never raised."""
        try:
            client = self._session()
            result = await asyncio.wait_for(client.call_tool(name, arguments), timeout)
        except TimeoutError:
            return failure(f"Tool '{name}' on MCP server '{self.label}' did not answer "
                           f"within {timeout:g} s.", code=-32001)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:  # the server went away: the pool starts it anew
                self.release()
            return failure(exc.message, exc.code)
        except McpUnavailableError as exc:
            return failure(str(exc))
        except Exception as exc:  # the session broke: the pool will open a new one
            self.release()
            return failure(f"MCP server '{self.label}' failed: {_reason(exc)}")
        content = [block.model_dump(mode="json", exclude_none=True, by_alias=True)
                   for block in result.content]
        if result.is_error:
            return ToolOutcome(error={"type": "mcp_tool_execution_error", "content": content})
        if not content and result.structured_content is not None:
            return ToolOutcome(output=json.dumps(result.structured_content, ensure_ascii=False))
        return ToolOutcome(output=_content_text(content))


def _content_text(content: list[dict[str, Any]]) -> str:
    """Text blocks as their text; other blocks (images, resources) as their JSON."""
    return "\n".join(block["text"] if block.get("type") == "text" else
                     json.dumps(block, ensure_ascii=False) for block in content)


def _reason(exc: BaseException) -> str:
    """The innermost message of an exception (group): what a user can act on."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return str(exc) or type(exc).__name__
