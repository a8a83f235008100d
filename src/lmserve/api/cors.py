"""Open CORS for local web apps: every response allows any origin, preflights are answered.

A small ASGI middleware rather than Starlette's CORSMiddleware, which adds the header
only to requests that carry an Origin.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class OpenCORS:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(headers, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", [])
                       if k.lower() != b"access-control-allow-origin"]
                out.append((b"access-control-allow-origin", b"*"))
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, headers: dict[bytes, bytes], send: Send) -> None:
        out = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers",
             headers.get(b"access-control-request-headers", b"*")),
            (b"access-control-max-age", b"600"),
            (b"content-length", b"0"),
        ]
        # Chrome asks before a public page may call a server on the user's machine.
        if headers.get(b"access-control-request-private-network") == b"true":
            out.append((b"access-control-allow-private-network", b"true"))
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})
