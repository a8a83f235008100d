"""Every error leaves the server in OpenAI's envelope:
{"error": {"message", "type", "param", "code"}}, with a 4xx for the caller's mistakes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from lmserve.api.request_log import note_route
from lmserve.engine import ContextOverflowError, QueueFullError
from lmserve.engine.engine import EngineStoppedError
from lmserve.engine.llama import ModelLoadError
from lmserve.models import ModelNotFoundError
from lmserve.models.chat_template import ChatTemplateError
from lmserve.models.download import DownloadError, HubUnreachableError, NotOnHubError
from lmserve.models.file_check import ModelFileError
from lmserve.models.load_options import LoadOptionError
from lmserve.models.manager import (
    LoadRefusedError,
    ModelBusyError,
    ModelLoadedError,
    ModelTooLargeError,
)
from lmserve.models.paths import PathEscapeError
from lmserve.request_context import note_error

log = logging.getLogger("lmserve.api")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers


def error_body(message: str, type: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def as_api_error(exc: Exception) -> APIError:
    """Maps the lower layers' exceptions to their HTTP meaning, and notes the error code
    for the request's log line."""
    err = _map_error(exc)
    note_error(err.code or err.type)
    return err


def _map_error(exc: Exception) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return APIError(400, str(exc), param=exc.param, code="context_length_exceeded")
    if isinstance(exc, ModelNotFoundError):
        return APIError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, QueueFullError):
        return APIError(503, f"The server is overloaded: {exc} Retry shortly.",
                        type="server_error", code="server_overloaded",
                        headers={"Retry-After": "1"})
    if isinstance(exc, PathEscapeError):
        return APIError(400, str(exc), param="model", code="path_escape")
    if isinstance(exc, LoadRefusedError):
        return APIError(403, str(exc), param="model", code="model_load_forbidden")
    if isinstance(exc, ModelBusyError):
        return APIError(503, str(exc), type="server_error", code="models_busy",
                        headers={"Retry-After": "5"})
    if isinstance(exc, ModelLoadedError):
        return APIError(409, str(exc), param="model", code="model_loaded")
    if isinstance(exc, EngineStoppedError):
        return APIError(503, f"The model is unavailable: {exc}.", type="server_error",
                        code="model_unavailable", headers={"Retry-After": "1"})
    if isinstance(exc, ModelFileError | ModelLoadError):
        return APIError(400, str(exc), param="model", code="model_load_failed")
    if isinstance(exc, LoadOptionError):
        return APIError(400, str(exc), param=exc.param, code="invalid_load_option")
    if isinstance(exc, ModelTooLargeError):
        return APIError(400, str(exc), param="model", code="model_too_large")
    if isinstance(exc, ChatTemplateError):
        return APIError(400, str(exc), param="messages", code="invalid_messages")
    if isinstance(exc, UnicodeError):  # e.g. a lone surrogate escape in the JSON
        return APIError(400, f"The request holds text that is not valid Unicode ({exc.reason}).",
                        code="invalid_text")
    if isinstance(exc, ValueError):
        return APIError(400, str(exc))
    log.error("internal error", exc_info=exc)
    return APIError(500, f"Internal server error: {type(exc).__name__}: {exc}",
                    type="server_error")


def hub_error(exc: DownloadError, *, param: str, unreachable_hint: str) -> APIError:
    """A failed Hub call: 404 for what the Hub does not have, 502 when the Hub fails or
    cannot be reached (then with a hint of what to do without it)."""
    if isinstance(exc, NotOnHubError):
        return APIError(404, str(exc), param=param, code="model_not_found")
    message = f"{exc} {unreachable_hint}" if isinstance(exc, HubUnreachableError) else str(exc)
    return APIError(502, message, type="server_error", code="hub_unavailable")


def error_response(exc: Exception) -> JSONResponse:
    err = as_api_error(exc)
    return JSONResponse(
        error_body(err.message, err.type, err.param, err.code),
        status_code=err.status,
        headers=err.headers,
    )


def _is_union_member(part: str) -> bool:
    # Not a prefix test on "str": that would also drop `stream` and `strict`.
    return part in ("str", "int", "float", "bool") or part.startswith(
        ("function-", "list[", "dict[", "literal["))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return "We could not parse the JSON body of your request: it is not valid JSON.", None
    loc = [p for p in first.get("loc", ()) if p != "body"]
    # Union members show up as their type name in the location; they are noise here.
    path = [p for p in loc if isinstance(p, int) or not _is_union_member(p)]
    param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    param = param or None
    message = first.get("msg", "Invalid request.").removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    elif first.get("type") == "model_attributes_type" and not path:
        message = "The request body must be a JSON object."
    elif param:
        message = f"Invalid value for '{param}': {message.rstrip('.')}."
    return message, param


def _routes_at(routes: list[BaseRoute], path: str) -> list[Route]:
    """The routes whose path matches, through included routers (FastAPI keeps them whole)."""
    found: list[Route] = []
    for route in routes:
        if hasattr(route, "original_router"):
            found += _routes_at(route.original_router.routes, path)
        elif isinstance(route, Route) and route.methods and route.path_regex.match(path):
            found.append(route)
    return found


def _allowed_methods(routes: list[BaseRoute], path: str) -> set[str]:
    """Every method the resource at path answers. Starlette's own Allow header names only
    the first route that matched, though GET and DELETE may be two routes on one path. A
    catch-all `{key:path}` route counts only where no more specific route matches: DELETE
    /api/v1/models/unload would name a model called "unload", not act on this resource."""
    matched = _routes_at(routes, path)
    specific = [r for r in matched if ":path}" not in r.path] or matched
    return {method for route in specific for method in route.methods}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        note_route(request)  # a body that does not parse fails before the dependencies run
        note_error("invalid_request_error")
        return JSONResponse(error_body(message, "invalid_request_error", param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        note_error("unknown_url" if exc.status_code == 404 else "invalid_request_error")
        if exc.status_code == 404:
            message = f"Unknown route: {request.method} {request.url.path}."
            return JSONResponse(error_body(message, "invalid_request_error", None,
                                           "unknown_url"), 404)
        if exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
            allowed = ", ".join(sorted(_allowed_methods(request.app.routes, request.url.path)))
            return JSONResponse(error_body(message, "invalid_request_error"), 405,
                                headers={**(exc.headers or {}), "Allow": allowed})
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(error_body(str(exc.detail), kind), exc.status_code,
                            headers=exc.headers)

    async def _known(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    # Registered per class: a handler for bare Exception would run in Starlette's
    # outermost middleware, which re-raises after answering.
    for known in (APIError, ContextOverflowError, ModelNotFoundError, QueueFullError,
                  EngineStoppedError, ChatTemplateError, ModelBusyError, ModelLoadedError,
                  LoadRefusedError, ModelFileError, ModelLoadError, ModelTooLargeError,
                  ValueError):
        app.add_exception_handler(known, _known)
    app.add_exception_handler(Exception, _known)
