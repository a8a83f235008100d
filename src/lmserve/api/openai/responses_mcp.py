"""The Responses API's items and stream events for tools the server runs on MCP servers:
`mcp_list_tools` (the tools a server offers) and `mcp_call` (one call and its result)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lmserve.api.chat import ChatRun, ChatSpec
from lmserve.api.errors import APIError
from lmserve.api.openai.responses_protocol import ResponseRequest, new_item_id
from lmserve.api.tool_loop import (
    McpEvent,
    ServerCallArgsDelta,
    ServerCallArgsDone,
    ServerCallDone,
    ServerCallStart,
    ServerRequest,
    ServerToolLoop,
    ToolsListed,
    connect_servers,
)
from lmserve.mcp import McpPool, remote_server
from lmserve.models import Model, ModelManager

if TYPE_CHECKING:  # the builder this completes, which imports this module
    from lmserve.api.openai.responses import ResponseBuilder, _OpenItem


async def start_with_mcp(body: ResponseRequest, spec: ChatSpec, manager: ModelManager,
                         pool: McpPool, start: Callable[[Model, ChatSpec], ChatRun]
                         ) -> ServerToolLoop:
    """Connects to the request's MCP servers and submits the first model turn; every
    4xx is raised here, before the response starts."""
    requests = []
    for i, tool in enumerate(body.tools or []):
        if tool.type != "mcp":
            continue
        param = f"tools[{i}]"
        if tool.require_approval not in (None, "never"):
            raise APIError(400, "Only require_approval 'never' is supported: lmserve runs "
                           "MCP tools without asking for approval.",
                           param=f"{param}.require_approval", code="unsupported_value")
        try:
            server = remote_server(tool.server_label, tool.server_url, tool.headers)
        except ValueError as exc:
            raise APIError(400, str(exc), param=f"{param}.server_url") from None
        requests.append(ServerRequest(tool.server_label, tool.allowed_tools, remote=server))
    servers = await connect_servers(pool, requests, param="tools")
    loop = ServerToolLoop(servers, max_rounds=pool.settings.max_tool_rounds,
                          tool_timeout=pool.settings.tool_timeout_seconds, start=start)
    try:
        return loop.begin(await manager.resolve(body.model), spec)
    except BaseException:
        loop.cancel()
        raise


class McpItems:
    """The MCP part of a ResponseBuilder, through the builder's own item and event
    methods. A call's item stays open from the model's first word of it until its
    server has answered, which may come after other items began."""

    def __init__(self, builder: ResponseBuilder) -> None:
        self._builder = builder
        self._calls: dict[str, _OpenItem] = {}  # by the model's call id

    def feed(self, event: McpEvent) -> list[dict[str, Any]]:
        b = self._builder
        if isinstance(event, ToolsListed):
            return self._listed(event)
        if isinstance(event, ServerCallStart):
            events = b._close("completed")
            events += b._add({"id": new_item_id("mcp"), "type": "mcp_call",
                              "server_label": event.server.label, "name": event.name,
                              "arguments": "", "output": None, "error": None,
                              "status": "in_progress", "approval_request_id": None})
            item = self._calls[event.call_id] = b._open
            events.append(b._event("response.mcp_call.in_progress",
                                   item_id=item.body["id"], output_index=item.index))
            return events
        if isinstance(event, ServerCallArgsDelta):
            item = self._calls[event.call_id]
            item.parts.append(event.text)
            return [b._event("response.mcp_call_arguments.delta", item_id=item.body["id"],
                             output_index=item.index, delta=event.text)]
        if isinstance(event, ServerCallArgsDone):
            item = self._calls[event.call_id]
            return b._close("completed") if b._open is item else []
        return self._done(event)

    def close_call(self, item: _OpenItem) -> list[dict[str, Any]]:
        """The model has said all of a call: it is being run now."""
        item.body["arguments"] = item.text
        item.body["status"] = "calling"
        return [self._builder._event("response.mcp_call_arguments.done",
                                     item_id=item.body["id"], output_index=item.index,
                                     arguments=item.text)]

    def _listed(self, event: ToolsListed) -> list[dict[str, Any]]:
        b, server = self._builder, event.server
        events = b._close("completed")
        body: dict[str, Any] = {"id": new_item_id("mcpl"), "type": "mcp_list_tools",
                                "server_label": server.label, "tools": [], "error": None}
        events += b._add(body)
        item = b._open
        b._open = None
        where = {"item_id": body["id"], "output_index": item.index}
        events.append(b._event("response.mcp_list_tools.in_progress", **where))
        body["tools"] = [{"name": t.name, "description": t.description,
                          "input_schema": t.input_schema, "annotations": t.annotations}
                         for t in server.tools]
        body["error"] = server.error
        events.append(b._event("response.mcp_list_tools.failed" if server.error else
                               "response.mcp_list_tools.completed", **where))
        events.append(b._event("response.output_item.done", output_index=item.index,
                               item=copy.deepcopy(body)))
        return events

    def _done(self, event: ServerCallDone) -> list[dict[str, Any]]:
        b = self._builder
        item = self._calls.pop(event.call_id)
        body, failed = item.body, event.outcome.failed
        body["arguments"] = event.arguments
        if failed:
            body.update(status="failed", error=event.outcome.error)
        else:
            body.update(status="completed", output=event.outcome.output)
        return [b._event("response.mcp_call.failed" if failed else "response.mcp_call.completed",
                         item_id=body["id"], output_index=item.index),
                b._event("response.output_item.done", output_index=item.index,
                         item=copy.deepcopy(body))]
