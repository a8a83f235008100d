"""How the CLI reaches a running server: address, errors, JSON and SSE.

Every failure a user can expect (no server, wrong port, timeout, an error answer) is
raised as a `CommandError`, which the command line prints as one line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lmserve import config
from lmserve.api_keys import API_KEY_ENV

if TYPE_CHECKING:
    import httpx


class CommandError(Exception):
    """An expected failure of a command: shown as its message alone, exit status 1."""


class ServerUnreachableError(CommandError):
    pass


class ServerRequestError(CommandError):
    """The server answered with an error; the message is the server's own."""


def server_origin(host: str | None, port: int | None) -> str:
    """Flags first, then the running server's state file, then the configured address."""
    if host is None or port is None:
        from lmserve.server_state import read_state

        state = read_state()
        if state:
            host = host or state["host"]
            port = port or int(state["port"])
        else:
            try:
                cfg = config.load_config()
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            host = host or cfg.server.host
            port = port or cfg.server.port
    host = local_address(host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def local_address(host: str) -> str:
    """Where this machine reaches a server bound to host (a wildcard means loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def auth_headers(api_key: str | None = None) -> dict[str, str]:
    """The Authorization header for the key given, else $LMSERVE_API_KEY, else none."""
    key = api_key or os.environ.get(API_KEY_ENV)
    return {"Authorization": f"Bearer {key}"} if key else {}


class ServerClient:
    def __init__(self, host: str | None = None, port: int | None = None,
                 timeout: float = 600, api_key: str | None = None) -> None:
        self.origin = server_origin(host, port)
        self.timeout = timeout
        import httpx  # here, not at the top: `lmserve --help` starts faster without it

        self._http = httpx.Client(base_url=self.origin, timeout=timeout,
                                  headers=auth_headers(api_key))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None
        if r.status_code >= 400:
            raise self._answer_error(r)
        try:
            return r.json()
        except ValueError:
            raise self._not_lmserve(r) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def events(self, path: str, body: dict[str, Any] | None = None) -> Iterator[Any]:
        """The JSON payloads of a Server-Sent Events stream; an error event raises."""
        import httpx

        method = "POST" if body is not None else "GET"
        try:
            with self._http.stream(method, path, json=body, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self._answer_error(r)
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        event = json.loads(line[6:])
                        if isinstance(event, dict) and isinstance(event.get("error"), dict):
                            raise ServerRequestError(str(event["error"].get("message")))
                        yield event
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None

    # -- what went wrong, in one line -----------------------------------------------------

    def _transport_error(self, exc: httpx.TransportError) -> CommandError:
        import httpx

        if isinstance(exc, httpx.ConnectError):
            return ServerUnreachableError(
                f"No lmserve server at {self.origin}. Start one with `lmserve server start`.")
        if isinstance(exc, httpx.TimeoutException):
            return ServerUnreachableError(
                f"The server at {self.origin} did not answer within {self.timeout:.0f} s.")
        reason = str(exc) or type(exc).__name__
        return ServerUnreachableError(f"Lost the connection to {self.origin}: {reason}.")

    def _answer_error(self, r: httpx.Response) -> CommandError:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return self._not_lmserve(r)
        return ServerRequestError(str(message))

    def _not_lmserve(self, r: httpx.Response) -> CommandError:
        return ServerRequestError(
            f"The server at {self.origin} answered {r.request.method} {r.request.url.path} "
            f"with HTTP {r.status_code} but not as lmserve does: is it an lmserve server?")
