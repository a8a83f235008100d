"""How the CLI reaches a running server: address, errors, JSON and SSE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import typer

from lmserve import config


class ServerUnreachableError(RuntimeError):
    pass


def server_origin(host: str | None, port: int | None) -> str:
    """Flags first, then the running server's state file, then the configured address."""
    if host is None or port is None:
        from lmserve.server import read_state

        state = read_state()
        if state:
            host = host or state["host"]
            port = port or int(state["port"])
        else:
            cfg = config.load_config()
            host = host or cfg.server.host
            port = port or cfg.server.port
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class ServerClient:
    def __init__(self, host: str | None = None, port: int | None = None,
                 timeout: float = 600) -> None:
        self.origin = server_origin(host, port)
        self._http = httpx.Client(base_url=self.origin, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ServerUnreachableError(
                f"No lmserve server at {self.origin}. Start one with `lmserve server start`."
            ) from exc
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text
            raise typer.BadParameter(message) if r.status_code < 500 else RuntimeError(message)
        return r.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def events(self, path: str, body: dict[str, Any] | None = None) -> Iterator[Any]:
        """The JSON payloads of a Server-Sent Events stream."""
        method = "POST" if body is not None else "GET"
        try:
            with self._http.stream(method, path, json=body, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    raise RuntimeError(r.json().get("error", {}).get("message", r.text))
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        yield json.loads(line[6:])
        except httpx.ConnectError as exc:
            raise ServerUnreachableError(
                f"No lmserve server at {self.origin}. Start one with `lmserve server start`."
            ) from exc
