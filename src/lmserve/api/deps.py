"""What route handlers get from the application."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from lmserve.config import home_dir, load_config
from lmserve.mcp import McpPool, McpSettings
from lmserve.mcp.servers import FILE_NAME as MCP_FILE
from lmserve.models import ModelManager


def get_manager(request: Request) -> ModelManager:
    return request.app.state.manager


def get_mcp_pool(request: Request) -> McpPool:
    """The application's MCP servers, set up on first use from the config file."""
    pool = getattr(request.app.state, "mcp_pool", None)
    if pool is None:
        settings = load_config().mcp
        pool = request.app.state.mcp_pool = McpPool(
            McpSettings(allow_ephemeral=settings.allow_ephemeral,
                        max_tool_rounds=settings.max_tool_rounds,
                        tool_timeout_seconds=settings.tool_timeout_seconds),
            home_dir() / MCP_FILE)
    return pool


async def close_mcp_pool(state: Any) -> None:
    """Stops the MCP servers an application started (at its shutdown)."""
    pool = getattr(state, "mcp_pool", None)
    if pool is not None:
        state.mcp_pool = None
        await pool.close()
