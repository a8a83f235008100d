"""A streaming route whose start is slow (a model loading just in time) opens its stream
with keep-alive comments; a quick start answers as it always did, 4xx included.

asyncio runs timers in deadline order, so a start that sleeps 20 keep-alive intervals
is slower than the first interval on any machine."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from fastapi.responses import Response, StreamingResponse

from lmserve.api.errors import APIError
from lmserve.api.serving import KEEPALIVE, stream_once_started

INTERVAL = 0.01


def _request(interval: float = INTERVAL):
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(
        keepalive_seconds=interval)))


def _in_band(exc: Exception) -> list[bytes]:
    return [f"error: {exc}\n\n".encode()]


async def _chunks(*chunks: bytes):
    for chunk in chunks:
        yield chunk


async def _read(response: Response) -> list[bytes]:
    assert isinstance(response, StreamingResponse)
    return [chunk async for chunk in response.body_iterator]


def test_a_quick_start_is_answered_as_it_is():
    async def start() -> Response:
        return StreamingResponse(_chunks(b"a", b"b"))

    async def main():
        return await _read(await stream_once_started(_request(), start(), _in_band))

    assert asyncio.run(main()) == [b"a", b"b"]


def test_a_quick_failure_stays_an_http_error():
    async def start() -> Response:
        raise APIError(404, "no such model", param="model")

    async def main():
        await stream_once_started(_request(), start(), _in_band)

    with pytest.raises(APIError):
        asyncio.run(main())


def test_a_slow_start_opens_the_stream_with_keep_alive_comments():
    async def start() -> Response:
        await asyncio.sleep(20 * INTERVAL)
        return StreamingResponse(_chunks(b"a", b"b"))

    async def main():
        return await _read(await stream_once_started(_request(), start(), _in_band))

    chunks = asyncio.run(main())
    assert chunks[-2:] == [b"a", b"b"]
    assert len(chunks) > 3 and set(chunks[:-2]) == {KEEPALIVE}


def test_a_slow_start_that_fails_reports_it_in_the_stream():
    async def start() -> Response:
        await asyncio.sleep(20 * INTERVAL)
        raise APIError(400, "the model could not be loaded")

    async def main():
        return await _read(await stream_once_started(_request(), start(), _in_band))

    chunks = asyncio.run(main())
    assert chunks[0] == KEEPALIVE
    assert chunks[-1] == b"error: the model could not be loaded\n\n"


def test_a_client_leaving_during_a_slow_start_cancels_it():
    async def main():
        gone = asyncio.Event()

        async def start() -> Response:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                gone.set()
                raise
            return Response()

        response = await stream_once_started(_request(), start(), _in_band)
        body = response.body_iterator
        assert await anext(body) == KEEPALIVE
        await body.aclose()  # what the server does when the client hangs up
        await asyncio.wait_for(gone.wait(), 5)
        return gone.is_set()

    assert asyncio.run(main())


def test_no_keep_alive_interval_waits_for_the_start():
    async def start() -> Response:
        await asyncio.sleep(5 * INTERVAL)
        return StreamingResponse(_chunks(b"a"))

    async def main():
        return await _read(await stream_once_started(_request(0), start(), _in_band))

    assert asyncio.run(main()) == [b"a"]
