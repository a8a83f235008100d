"""Who may call what: the Host check, API keys and the origin guard, before any route.

In order, for every HTTP request except CORS preflights (answered by api/cors.py):

1. A `Host` this server does not answer to (DNS rebinding) -> 403.
2. With keys on, every route but /health and the app's page and assets needs a key
   (`Authorization: Bearer`, or `x-api-key` on Anthropic's /v1/messages): none or a wrong
   one -> 401; an inference key on a route that changes the machine -> 403.
3. A route that changes the machine, called by a web page from a foreign origin -> 403.
   Such a page may still use the inference routes, but not to load a model just in time.
"""

from __future__ import annotations

import re

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from lmserve.api.anthropic.messages import error_response as anthropic_error
from lmserve.api.errors import APIError, error_response
from lmserve.api.host_names import HostPolicy, OriginPolicy
from lmserve.api_keys import KeyRing
from lmserve.models.manager import load_refusal

# Routes that change the machine or expose it: loading, downloading, importing, deleting
# models, the default model, settings, keys and the live log. They need an admin key and a
# local origin.
_ADMIN_PREFIXES = ("/api/v1/models/load", "/api/v1/models/unload", "/api/v1/models/download",
                   "/api/v1/models/import", "/api/v1/models/default", "/api/v1/config",
                   "/api/v1/keys", "/api/v1/logs", "/app/api")
_OPEN_PATHS = frozenset({"/health", "/"})  # "/" is the app's page (only the app serves it)
_OPEN_PREFIXES = ("/app/static/",)  # the page's assets: code, no data
_ANTHROPIC_PREFIX = "/v1/messages"


def normalized_path(path: str) -> str:
    """The path as routing will match it, made stricter: no doubled or trailing slashes."""
    return re.sub(r"/{2,}", "/", path).rstrip("/").lower() or "/"


def is_admin_route(method: str, path: str) -> bool:
    path = normalized_path(path)
    if path.startswith(_ADMIN_PREFIXES):
        return True
    return method == "DELETE" and path.startswith("/api/v1/models/")


def _presented_key(headers: dict[bytes, bytes], anthropic: bool) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if anthropic and headers.get(b"x-api-key"):
        return headers[b"x-api-key"].decode("latin-1").strip()
    return None


def refusal(path: str, status: int, message: str, code: str, *, param: str | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in the envelope of the route's API family."""
    err = APIError(status, message, code=code, param=param, headers=headers)
    if normalized_path(path).startswith(_ANTHROPIC_PREFIX):
        return anthropic_error(err)
    return error_response(err)


class AccessControl:
    def __init__(self, app: ASGIApp, *, hosts: HostPolicy, origins: OriginPolicy,
                 keys: KeyRing) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = origins
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self.app(scope, receive, send)  # a preflight carries no key
            return
        path, method = scope["path"], scope["method"]
        origin = headers.get(b"origin")
        foreign = not self.origins.is_local(origin.decode("latin-1") if origin else None)
        denied = self._check(method, path, headers, foreign)
        if denied is not None:
            await denied(scope, receive, send)
            return
        token = load_refusal.set(
            "A web page on another origin cannot load models; load the model first "
            "(lmserve load) or call from a local page." if foreign else None)
        try:
            await self.app(scope, receive, send)
        finally:
            load_refusal.reset(token)

    def _check(self, method: str, path: str, headers: dict[bytes, bytes],
               foreign: bool) -> JSONResponse | None:
        host = headers.get(b"host")
        if not self.hosts.allows(host.decode("latin-1") if host else None):
            return refusal(path, 403, "This server does not answer to that host name. "
                           "Use localhost, or add the name to security.allowed_hosts.",
                           "forbidden_host")
        admin = is_admin_route(method, path)
        route = normalized_path(path)
        open_route = route in _OPEN_PATHS or route.startswith(_OPEN_PREFIXES)
        if not open_route and self.keys.enabled:
            presented = _presented_key(headers, route.startswith(_ANTHROPIC_PREFIX))
            if presented is None:
                return refusal(path, 401, "This server needs an API key: send it as "
                               "'Authorization: Bearer <key>'.", "missing_api_key",
                               headers={"WWW-Authenticate": "Bearer"})
            key_scope = self.keys.scope_of(presented)
            if key_scope is None:
                return refusal(path, 401, "Incorrect API key.", "invalid_api_key",
                               headers={"WWW-Authenticate": "Bearer"})
            if admin and key_scope != "admin":
                return refusal(path, 403, "This route needs an admin key; the key given "
                               "may only call the inference routes.", "insufficient_scope")
        if admin and foreign:
            return refusal(path, 403, "Web pages on other origins cannot manage this "
                           "server's models, settings or logs. Add the origin to "
                           "security.allowed_origins to allow it.", "forbidden_origin")
        return None
