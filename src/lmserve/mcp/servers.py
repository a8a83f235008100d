"""Which MCP servers exist: those the user declares in `$LMSERVE_HOME/mcp.json`, and
remote ones a request names.

mcp.json has the shape LM Studio and Claude Desktop use:

    {"mcpServers": {
        "files": {"command": "uvx", "args": ["mcp-server-files"], "env": {"ROOT": "/data"}},
        "search": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer …"}}
    }}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FILE_NAME = "mcp.json"


class McpConfigError(Exception):
    """mcp.json cannot be read, or names a server that is not in it."""


@dataclass(frozen=True)
class StdioServer:
    """A local server that lmserve starts as a process and talks to over its stdin/stdout."""

    label: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RemoteServer:
    """A server reached over HTTP: streamable HTTP, or SSE when the path ends in /sse."""

    label: str
    url: str
    # Often a credential: compared and sent, never logged or echoed (repr left out).
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def uses_sse(self) -> bool:
        return urlsplit(self.url).path.rstrip("/").endswith("/sse")


ServerSpec = StdioServer | RemoteServer


def remote_server(label: str, url: str, headers: dict[str, str] | None = None) -> RemoteServer:
    """A request's remote server; ValueError says what is wrong with its URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server_url must be an http:// or https:// URL, got {url!r}.")
    return RemoteServer(label, url, tuple(sorted((headers or {}).items())))


def read_mcp_json(path: Path) -> dict[str, ServerSpec]:
    """The servers declared in mcp.json, by name; none when the file does not exist."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise McpConfigError(f"Cannot read {path}: {exc}") from exc
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(f"{path} must hold an object with an 'mcpServers' object.")
    return {name: _server(name, entry, path) for name, entry in servers.items()}


def _server(name: str, entry: Any, path: Path) -> ServerSpec:
    where = f"mcpServers.{name} in {path}"
    if not isinstance(entry, dict):
        raise McpConfigError(f"{where} must be an object.")
    if isinstance(entry.get("url"), str):
        headers = _strings(entry.get("headers", {}), f"{where}: headers")
        try:
            return remote_server(name, entry["url"], headers)
        except ValueError as exc:
            raise McpConfigError(f"{where}: {exc}") from None
    command = entry.get("command")
    if not isinstance(command, str) or not command:
        raise McpConfigError(f"{where} needs a 'command' (stdio) or a 'url' (remote).")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise McpConfigError(f"{where}: args must be a list of strings.")
    env = _strings(entry.get("env", {}), f"{where}: env")
    return StdioServer(name, command, tuple(args), tuple(sorted(env.items())))


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise McpConfigError(f"{what} must be an object of strings.")
    return value
