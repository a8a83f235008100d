"""Size limits on requests, checked before any route parses them.

The body is read here up to `max_body_bytes` (413 past it, so a huge upload costs no
memory), then the list and count fields that every API family shares by name are
counted. A body that is not a JSON object passes unchanged: its route says what is wrong.
The queue limit is the engine's (`server.max_queue`, 503).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from lmserve.api.asgi_body import BodyTooLargeError, read_body, replaying
from lmserve.api.security import refusal


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 32 * 1024 * 1024
    max_messages: int = 4096
    max_n: int = 16
    max_tokens: int = 131072
    max_stop: int = 32
    max_tools: int = 256


# request field -> (limit attribute, what it counts)
_LIST_FIELDS = {
    "messages": ("max_messages", "messages"),
    "input": ("max_messages", "input items"),  # the Responses API's conversation
    "stop": ("max_stop", "stop strings"),
    "stop_sequences": ("max_stop", "stop sequences"),
    "tools": ("max_tools", "tools"),
}
_NUMBER_FIELDS = {
    "n": "max_n",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
}


def limit_problem(body: Any, limits: RequestLimits) -> tuple[str, str] | None:
    """(message, param) for the first field of a JSON body past its limit, else None."""
    if not isinstance(body, dict):
        return None
    for name, (attr, what) in _LIST_FIELDS.items():
        value = body.get(name)
        if name == "input" and not (isinstance(value, list) and value
                                    and isinstance(value[0], dict)):
            continue  # embedding inputs and token ids are not a conversation
        if isinstance(value, list) and len(value) > getattr(limits, attr):
            return (f"Too many {what}: {len(value)} given, this server accepts at most "
                    f"{getattr(limits, attr)} (limits.{attr}).", name)
    for name, attr in _NUMBER_FIELDS.items():
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) \
                and value > getattr(limits, attr):
            return (f"'{name}' is {value}; this server accepts at most "
                    f"{getattr(limits, attr)} (limits.{attr}).", name)
    return None


class LimitRequests:
    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            await self._too_large(path)(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.limits.max_body_bytes)
        except BodyTooLargeError:
            await self._too_large(path)(scope, receive, send)
            return
        if body is None:
            return  # the client left before sending its body
        problem = limit_problem(_json_or_none(body), self.limits)
        if problem is not None:
            message, param = problem
            await refusal(path, 400, message, "limit_exceeded", param=param)(
                scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)

    def _too_large(self, path: str) -> JSONResponse:
        return refusal(path, 413, "The request body is larger than this server accepts "
                       f"({self.limits.max_body_bytes / 2**20:g} MB, limits.max_body_mb).",
                       "request_too_large")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
