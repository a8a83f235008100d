"""mcp.json as LM Studio and Claude Desktop write it, and the remote servers requests name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmserve.mcp import McpConfigError, RemoteServer, StdioServer, remote_server
from lmserve.mcp.servers import read_mcp_json


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(data))
    return path


def test_stdio_and_remote_servers(tmp_path):
    servers = read_mcp_json(write(tmp_path, {"mcpServers": {
        "files": {"command": "uvx", "args": ["mcp-server-files", "/data"],
                  "env": {"ROOT": "/data"}},
        "search": {"url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer secret"}},
        "legacy": {"url": "http://127.0.0.1:8000/sse"},
    }}))
    assert servers["files"] == StdioServer("files", "uvx", ("mcp-server-files", "/data"),
                                           (("ROOT", "/data"),))
    search = servers["search"]
    assert isinstance(search, RemoteServer) and not search.uses_sse
    assert dict(search.headers) == {"Authorization": "Bearer secret"}
    assert "secret" not in repr(search)  # headers stay out of logs and tracebacks
    assert servers["legacy"].uses_sse


def test_no_file_declares_no_servers(tmp_path):
    assert read_mcp_json(tmp_path / "mcp.json") == {}


@pytest.mark.parametrize(("data", "words"), [
    ("not json", "Cannot read"),
    ({"servers": {}}, "'mcpServers'"),
    ({"mcpServers": {"x": {"args": []}}}, "needs a 'command'"),
    ({"mcpServers": {"x": {"command": "run", "args": "a b"}}}, "args must be a list"),
    ({"mcpServers": {"x": {"url": "ftp://host/mcp"}}}, "http:// or https://"),
    ({"mcpServers": {"x": {"url": "http://h/mcp", "headers": {"A": 1}}}}, "object of strings"),
])
def test_mistakes_name_the_server(tmp_path, data, words):
    path = tmp_path / "mcp.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(McpConfigError, match=words):
        read_mcp_json(path)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "localhost:8000/mcp", "http:///mcp"])
def test_remote_servers_are_http_urls(url):
    with pytest.raises(ValueError, match="server_url"):
        remote_server("x", url)
