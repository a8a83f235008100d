"""Reading named Server-Sent Events (`event:` then `data:`) off a streamed httpx reply."""

from __future__ import annotations

import json

import httpx


def named_events(reply: httpx.Response) -> list[tuple[str | None, dict]]:
    """(event name, data JSON) pairs in order; comments and blank lines are skipped."""
    events: list[tuple[str | None, dict]] = []
    name = None
    for line in reply.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
            name = None
    return events
