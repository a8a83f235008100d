"""MCP servers whose tools lmserve runs for the model: mcp.json servers and per-request
remote ones, through the official `mcp` SDK."""

from lmserve.mcp.connection import McpConnection, McpTool, McpUnavailableError, ToolOutcome
from lmserve.mcp.pool import McpNotAllowedError, McpPool, McpSettings
from lmserve.mcp.servers import McpConfigError, RemoteServer, StdioServer, remote_server

__all__ = ["McpConfigError", "McpConnection", "McpNotAllowedError", "McpPool",
           "McpSettings", "McpTool", "McpUnavailableError", "RemoteServer", "StdioServer",
           "ToolOutcome", "remote_server"]
