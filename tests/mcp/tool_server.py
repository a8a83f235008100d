"""An MCP server for the tests, written with the official SDK's MCPServer.

Tools: add(a, b), lookup(key), explode(code) (raises), stall(count) (sleeps a minute).
Every call is appended to $MCP_CALLS_FILE as one JSON line {"tool", "arguments", "pid"}, so a
test sees what the server really received; over HTTP, the `X-Test-Token` header of each
request is appended to $MCP_HEADERS_FILE.

    python tests/mcp/tool_server.py stdio
    python tests/mcp/tool_server.py http|sse PORT_FILE   # binds a free loopback port
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from pydantic import Field

server = MCPServer("lmserve-test-tools")

# One digit: the grammar keeps the model's arguments short.
Digit = Annotated[int, Field(ge=0, le=9)]

FACTS = {"capital_of_france": "Paris", "boiling_point_c": "100"}


def _record(tool: str, arguments: dict[str, Any]) -> None:
    path = os.environ.get("MCP_CALLS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps({"tool": tool, "arguments": arguments,
                                   "pid": os.getpid()}) + "\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    _record("add", {"a": a, "b": b})
    return a + b


@server.tool()
def lookup(key: str) -> str:
    """Looks up a fact by its key, e.g. capital_of_france."""
    _record("lookup", {"key": key})
    return FACTS.get(key, f"no fact named {key}")


@server.tool()
def explode(code: Digit) -> str:
    """Always fails."""
    _record("explode", {"code": code})
    raise RuntimeError(f"exploded with code {code}")


@server.tool()
async def stall(count: Digit) -> str:
    """Answers after a minute: longer than any tool timeout of the tests."""
    _record("stall", {"count": count})
    await anyio.sleep(60)
    return "awake"


def _recording_headers(app: Any) -> Any:
    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        path = os.environ.get("MCP_HEADERS_FILE")
        if path and scope["type"] == "http":
            token = dict(scope["headers"]).get(b"x-test-token")
            if token is not None:
                with open(path, "a", encoding="utf-8") as file:
                    file.write(token.decode() + "\n")
        await app(scope, receive, send)
    return wrapped


def main() -> None:
    transport = sys.argv[1]
    if transport == "stdio":
        server.run("stdio")
        return
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # before the port is told: connections wait for the server
    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    config = uvicorn.Config(_recording_headers(app), log_level="warning")
    Path(sys.argv[2]).write_text(str(sock.getsockname()[1]))
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
