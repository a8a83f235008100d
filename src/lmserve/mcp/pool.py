"""The MCP servers a running lmserve talks to.

Servers declared in mcp.json are started (stdio) or connected (remote) once, on their
first use, reused by every request, and stopped when the server shuts down. Servers a
request names itself are ephemeral: connected for that request and closed after it,
and only when the user allows them (`mcp.allow_ephemeral`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from lmserve.mcp.connection import McpConnection
from lmserve.mcp.servers import McpConfigError, RemoteServer, ServerSpec, read_mcp_json


class McpNotAllowedError(Exception):
    """A request named its own MCP server while per-request servers are off."""


@dataclass(frozen=True)
class McpSettings:
    allow_ephemeral: bool = False
    max_tool_rounds: int = 8  # model turns that may call tools before it must answer
    tool_timeout_seconds: float = 60.0
    connect_timeout_seconds: float = 15.0


class McpPool:
    def __init__(self, settings: McpSettings, config_path: Path) -> None:
        self.settings = settings
        self.config_path = config_path
        self._shared: dict[str, McpConnection] = {}
        self._lock = asyncio.Lock()

    def declared(self, name: str) -> ServerSpec:
        """The mcp.json server of that name (read afresh, so edits apply at once)."""
        servers = read_mcp_json(self.config_path)
        if name not in servers:
            known = ", ".join(f"mcp/{n}" for n in servers) or "none"
            raise McpConfigError(f"No MCP server '{name}' in {self.config_path} "
                                 f"(configured: {known}).")
        return servers[name]

    async def shared(self, name: str) -> McpConnection:
        """The running connection to an mcp.json server, started on first use; raises
        McpUnavailableError when it cannot be started."""
        spec = self.declared(name)
        async with self._lock:
            current = self._shared.get(name)
            if current is not None and current.alive and current.spec == spec:
                return current
            if current is not None:  # it exited, or mcp.json changed it: start it anew
                del self._shared[name]
                await current.close()
            connection = McpConnection(spec, self.settings.connect_timeout_seconds)
            await connection.open()
            self._shared[name] = connection
            return connection

    def check_ephemeral(self) -> None:
        if not self.settings.allow_ephemeral:
            raise McpNotAllowedError(
                "Per-request MCP servers are turned off. Allow them with "
                "`lmserve config set mcp.allow_ephemeral true`, or declare the server in "
                f"{self.config_path}.")

    async def ephemeral(self, spec: RemoteServer) -> McpConnection:
        """A new connection for one request; the caller closes it."""
        self.check_ephemeral()
        connection = McpConnection(spec, self.settings.connect_timeout_seconds)
        await connection.open()
        return connection

    async def close(self) -> None:
        """Stops every shared server (at shutdown)."""
        async with self._lock:
            connections, self._shared = list(self._shared.values()), {}
        await asyncio.gather(*(c.close() for c in connections))
