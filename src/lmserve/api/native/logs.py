"""GET /api/v1/logs/stream: the server's log, live, as Server-Sent Events."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from lmserve.api.sse import sse_data, sse_response
from lmserve.log_format import log_entry
from lmserve.request_context import RequestIdFilter

router = APIRouter()


class LogBroadcaster(logging.Handler):
    """Copies every record to the queues of connected log streams (any thread)."""

    def __init__(self, max_pending: int = 1000) -> None:
        super().__init__(logging.INFO)
        self.addFilter(RequestIdFilter())
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()
        self._max_pending = max_pending

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self._max_pending)
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = {s for s in self._subscribers if s[1] is not queue}

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        if not subscribers:
            return
        entry = log_entry(record, record.created)
        for loop, queue in subscribers:
            loop.call_soon_threadsafe(_offer, queue, entry)


def _offer(queue: asyncio.Queue, entry: dict[str, Any]) -> None:
    if not queue.full():  # a reader that stopped reading loses lines, never the server
        queue.put_nowait(entry)


@router.get("/api/v1/logs/stream")
async def stream_logs(request: Request) -> Any:
    broadcaster: LogBroadcaster = request.app.state.logs
    queue = broadcaster.subscribe()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                yield sse_data(await queue.get())
        finally:
            broadcaster.unsubscribe(queue)

    return sse_response(events())
