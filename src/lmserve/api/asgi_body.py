"""Reading a request's whole body in an ASGI layer, and handing it on to the app as if
it had not been read: what the layers that look inside a body (limits, remote routing)
share."""

from __future__ import annotations

from starlette.types import Message, Receive


class BodyTooLargeError(Exception):
    pass


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes | None:
    """The body, or None when the client leaves before sending all of it; raises
    BodyTooLargeError past max_bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the body already read once, then whatever comes after it
    (the client's disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
