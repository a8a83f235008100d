"""Request bodies are JSON whatever their Content-Type says.

`curl -d '{...}'` labels its body as a form unless told otherwise, and llama-server and
Ollama answer such requests anyway. Every body lmserve accepts is JSON, so a missing or
form Content-Type is read as JSON rather than refused.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_FORM = b"application/x-www-form-urlencoded"


class JSONBodies:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            others = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            given = [v for k, v in scope["headers"] if k.lower() == b"content-type"]
            if not given or given[0].lower().startswith(_FORM):
                scope = {**scope, "headers": [*others, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
