"""How the CLI reaches a running server: address, errors, JSON and SSE.

Every failure a user can expect (no server, wrong port, timeout, an error answer) is
raised as a `CommandError`, which the command line prints as one line. Requests go
through the standard library's http.client: a command starts in a fraction of the time
an HTTP client package takes to import, and one request per connection needs no pool."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from lmserve import config
from lmserve.api_keys import API_KEY_ENV
from lmserve.server_state import read_state


class CommandError(Exception):
    """An expected failure of a command: shown as its message alone, exit status 1."""


class ServerUnreachableError(CommandError):
    pass


class ServerRequestError(CommandError):
    """The server answered with an error; the message is the server's own."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def server_origin(host: str | None, port: int | None) -> str:
    """Flags first, then the running server's state file, then the configured address."""
    if host is None or port is None:
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
        self._headers = auth_headers(api_key)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        conn, r = self._send(method, path, body, self.timeout)
        try:
            data = r.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._transport_error(exc) from None
        finally:
            conn.close()
        if r.status >= 400:
            raise self._answer_error(method, path, r.status, data)
        try:
            return json.loads(data)
        except ValueError:
            raise self._not_lmserve(method, path, r.status) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def events(self, path: str, body: dict[str, Any] | None = None) -> Iterator[Any]:
        """The JSON payloads of a Server-Sent Events stream; an error event raises."""
        method = "POST" if body is not None else "GET"
        conn, r = self._send(method, path, body, None)  # a stream may idle for long
        try:
            if r.status >= 400:
                raise self._answer_error(method, path, r.status, r.read())
            for raw in r:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line.startswith("data: ") and line != "data: [DONE]":
                    event = json.loads(line[6:])
                    if isinstance(event, dict) and isinstance(event.get("error"), dict):
                        raise ServerRequestError(str(event["error"].get("message")))
                    yield event
        except (OSError, http.client.HTTPException) as exc:
            raise self._transport_error(exc) from None
        finally:
            conn.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None,
              timeout: float | None
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        url = urlsplit(self.origin)
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.connect()
        except (socket.gaierror, ConnectionError):  # refused, or no such host
            conn.close()
            raise ServerUnreachableError(self._no_server()) from None
        except OSError as exc:  # a timeout
            conn.close()
            raise self._transport_error(exc) from None
        try:
            conn.request(method, path, body=data, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._transport_error(exc) from None

    # -- what went wrong, in one line -----------------------------------------------------

    def _no_server(self) -> str:
        return f"No lmserve server at {self.origin}. Start one with `lmserve server start`."

    def _transport_error(self, exc: Exception) -> CommandError:
        if isinstance(exc, TimeoutError):
            return ServerUnreachableError(
                f"The server at {self.origin} did not answer within {self.timeout:.0f} s.")
        reason = str(exc) or type(exc).__name__
        return ServerUnreachableError(f"Lost the connection to {self.origin}: {reason}.")

    def _answer_error(self, method: str, path: str, status: int, data: bytes
                      ) -> CommandError:
        try:
            message = json.loads(data)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return self._not_lmserve(method, path, status)
        return ServerRequestError(str(message), status)

    def _not_lmserve(self, method: str, path: str, status: int) -> CommandError:
        return ServerRequestError(
            f"The server at {self.origin} answered {method} {urlsplit(path).path} "
            f"with HTTP {status} but not as lmserve does: is it an lmserve server?", status)
