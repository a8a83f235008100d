"""Driving engine streams for the routes: merging them, naming their finish reasons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from lmserve.engine import Done
from lmserve.engine.request import Event
from lmserve.models import GenerationStream


class GenerationRun:
    """Several engine streams run as one request: their events merged, cancelled together."""

    def __init__(self, streams: list[GenerationStream]) -> None:
        self.streams = streams

    def events(self) -> AsyncIterator[tuple[int, Event]]:
        return merge(self.streams)

    def cancel(self) -> None:
        for s in self.streams:
            s.cancel()


def finish_reason(done: Done) -> str:
    return "length" if done.finish_reason == "length" else "stop"


async def merge(streams: list[GenerationStream]) -> AsyncIterator[tuple[int, Event]]:
    """Events of several streams as they come, tagged with the stream's index."""
    if len(streams) == 1:
        async for event in streams[0]:
            yield 0, event
        return
    queue: asyncio.Queue = asyncio.Queue()
    _END = object()

    async def pump(i: int, stream: GenerationStream) -> None:
        try:
            async for event in stream:
                await queue.put((i, event))
        except Exception as exc:
            await queue.put((i, exc))
        finally:
            await queue.put((i, _END))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is _END:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        for s in streams:
            s.cancel()
