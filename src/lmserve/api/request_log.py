"""One log line and one metrics sample per HTTP request, and its X-Request-Id.

The id is the client's `X-Request-Id` when it is sane (1-128 letters, digits and
`._:-`), else a new one; it is sent back on the response and tagged on every log line
written while the request is served, the engine's included. When the request ends,
successful or not, one line says what happened: method, path, status, duration, the
model that served it, its tokens and the error code of a failure.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmserve.metrics import Metrics
from lmserve.request_board import RequestBoard
from lmserve.request_context import RequestRecord, current_record, current_request

log = logging.getLogger("lmserve.requests")

HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == HEADER and _SANE_ID.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


def note_route(request: Request) -> None:
    """An application-wide dependency: records the matched route's template
    (`/v1/responses/{response_id}`), a bounded label for the metrics."""
    route = request.scope.get("route")
    if (record := current_record()) is not None and route is not None:
        record.route = getattr(route, "path", None)


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: Metrics, board: RequestBoard) -> None:
        self.app = app
        self.metrics = metrics
        self.board = board

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(_request_id(scope), method=scope["method"], path=scope["path"])
        token = current_request.set(record)
        self.board.begin(record)
        status = 500  # what the client gets if the app fails before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (HEADER, record.request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            record.status = status
            self.board.end(record)
            # requests that matched no route share one label, whatever their path
            self.metrics.observe_request(record.route or "unmatched", scope["method"],
                                         status, seconds)
            _log_line(scope, status, seconds, record)
            current_request.reset(token)


def _log_line(scope: Scope, status: int, seconds: float, record: RequestRecord) -> None:
    fields: dict[str, object] = {"method": scope["method"], "path": scope["path"],
                                 "status": status, "duration_s": round(seconds, 4)}
    if record.model:
        fields["model"] = record.model
    if record.counted_tokens:
        fields.update(prompt_tokens=record.prompt_tokens,
                      completion_tokens=record.completion_tokens,
                      cached_tokens=record.cached_tokens)
    if status >= 400:
        fields["error"] = record.error_code or "-"
    text = f"{scope['method']} {scope['path']} {status} {seconds:.3f} s" + "".join(
        f" {name}={value}" for name, value in fields.items()
        if name not in ("method", "path", "status", "duration_s"))
    log.log(logging.ERROR if status >= 500 else logging.INFO, text,
            extra={"fields": fields, "request_id": record.request_id})
