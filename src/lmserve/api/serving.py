"""The one serving path every API family shares.

A family is a translator: `start`, `feed` and `end` turn a run's events into the
family's stream events (and build its whole response on the way), `fail` reports a
run that broke after the headers were sent. `stream` sends those events as
Server-Sent Events; `respond` drops them and answers with the whole response, or with
499 when the client left first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import Request

from lmserve.api.disconnect import ClientDisconnectedError, unless_disconnected
from lmserve.api.sse import sse_response


class Run(Protocol):
    def events(self) -> AsyncIterator[tuple[int, Any]]:
        """(choice index, event) pairs, until the run ends."""
        ...

    def cancel(self) -> None: ...


class Translator(Protocol):
    # Sent after the last event, even after a failure (OpenAI's `data: [DONE]`).
    closing: bytes

    def start(self) -> list[Any]: ...

    def feed(self, index: int, event: Any) -> list[Any]: ...

    def end(self) -> list[Any]:
        """After the run's last event; raises when the run ended without a result."""
        ...

    def fail(self, exc: Exception) -> list[Any]: ...

    def result(self) -> dict[str, Any]:
        """The whole response, once `end` has returned."""
        ...

    def frame(self, event: Any) -> bytes:
        """One stream event on the wire."""
        ...


# An SSE comment: clients ignore it, but it resets their idle timeouts.
KEEPALIVE = b": keep-alive\n\n"
_QUIET = object()  # nothing came from the run for one keep-alive interval


def stream_response(request: Request, run: Run, translator: Translator
                    ) -> StreamingResponse:
    """The run as an SSE response, with keep-alive comments at the server's interval."""
    interval = request.app.state.keepalive_seconds
    return sse_response(stream(run, translator, keepalive=interval))


async def stream_once_started(request: Request, start: Awaitable[Response],
                             in_band: Callable[[Exception], list[bytes]]) -> Response:
    """A streaming route's response, started by `start` (which resolves the model and
    submits the run). A start that answers within one keep-alive interval is returned as
    it is, so every 4xx decided there stays a 4xx. A slower start (a model loading just
    in time) opens the stream at once with keep-alive comments, so clients with read
    timeouts keep the connection; if it then fails, `in_band` reports the failure as the
    family's stream events."""
    interval = request.app.state.keepalive_seconds
    task = asyncio.ensure_future(start)
    if interval:
        await asyncio.wait({task}, timeout=interval)
    if not interval or task.done():
        return await task
    return sse_response(_after_start(task, interval, in_band))


async def _after_start(task: asyncio.Future, interval: float,
                       in_band: Callable[[Exception], list[bytes]]) -> AsyncIterator[bytes]:
    try:
        yield KEEPALIVE
        while not (await asyncio.wait({task}, timeout=interval))[0]:
            yield KEEPALIVE
        try:
            response = task.result()
        except Exception as exc:
            for frame in in_band(exc):
                yield frame
            return
        body = response.body_iterator
        try:
            async for chunk in body:
                yield chunk
        finally:
            await body.aclose()  # the client left: the run is cancelled as `stream` ends
    finally:
        task.cancel()  # the client left while the model was loading


async def stream(run: Run, translator: Translator, *, keepalive: float | None = None
                 ) -> AsyncIterator[bytes]:
    try:
        for event in translator.start():
            yield translator.frame(event)
        async for pair in _with_quiet_marks(run.events(), keepalive):
            if pair is _QUIET:
                yield KEEPALIVE
                continue
            index, item = pair
            for event in translator.feed(index, item):
                yield translator.frame(event)
        for event in translator.end():
            yield translator.frame(event)
    except Exception as exc:  # headers are gone: the failure is reported in-band
        for event in translator.fail(exc):
            yield translator.frame(event)
    finally:
        run.cancel()
    if translator.closing:
        yield translator.closing


async def _with_quiet_marks(events: AsyncIterator[Any], interval: float | None
                            ) -> AsyncIterator[Any]:
    """The events, with _QUIET after each interval in which none came (while a prompt is
    read, or the run waits for a slot)."""
    if not interval:
        async for item in events:
            yield item
        return
    iterator = aiter(events)
    # The pending read is a task of its own: a timeout must not cancel the run.
    pending: asyncio.Future = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield _QUIET
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            yield item
            pending = asyncio.ensure_future(anext(iterator))
    finally:
        pending.cancel()


async def collect(run: Run, translator: Translator) -> dict[str, Any]:
    try:
        translator.start()
        async for index, item in run.events():
            translator.feed(index, item)
        translator.end()
    finally:
        run.cancel()
    return translator.result()


async def respond(request: Request, run: Run, translator: Translator) -> Response:
    return await respond_with(request, collect(run, translator))


async def respond_with(request: Request, work: Awaitable[dict[str, Any]]) -> Response:
    """The work's result as JSON; 499 when the client goes away first (the work is
    cancelled, and with it its engine requests)."""
    try:
        body = await unless_disconnected(request, work)
    except ClientDisconnectedError:
        return Response(status_code=499)
    return JSONResponse(body)
