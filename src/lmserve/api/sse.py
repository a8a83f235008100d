"""Server-Sent Events framing: `data: <json>` events (OpenAI's chat and completions,
ending with `data: [DONE]`) or named ones (`event: <type>` before the data)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

DONE = b"data: [DONE]\n\n"


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def sse_data(payload: dict[str, Any]) -> bytes:
    return b"data: " + _json(payload) + b"\n\n"


def sse_named(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _json(payload) + b"\n\n"


def sse_typed(payload: dict[str, Any]) -> bytes:
    """A named event whose name is its payload's `type`."""
    return sse_named(payload["type"], payload)


def sse_response(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
