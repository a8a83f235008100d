"""The ASGI application: routes, error envelope and CORS around a ModelManager."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from lmserve import __version__
from lmserve.api.anthropic import messages
from lmserve.api.cors import OpenCORS
from lmserve.api.deps import close_mcp_pool
from lmserve.api.errors import install_error_handlers
from lmserve.api.host_names import HostPolicy, OriginPolicy
from lmserve.api.json_body import JSONBodies
from lmserve.api.limits import LimitRequests, RequestLimits
from lmserve.api.metrics_route import router as metrics_router
from lmserve.api.native import chat as native_chat
from lmserve.api.native import downloads, imports, logs, status, tokenize
from lmserve.api.native import models as native_models
from lmserve.api.native.logs import LogBroadcaster
from lmserve.api.openai import chat, completions, embeddings, models, responses
from lmserve.api.openapi import install_openapi
from lmserve.api.request_log import RequestLog, note_route
from lmserve.api.security import AccessControl
from lmserve.api_keys import KeyRing, keys_file
from lmserve.models import ModelManager
from lmserve.remote.proxy import RemoteRoutes


def create_app(
    manager: ModelManager,
    *,
    cors: bool = True,
    base_url: str = "",
    on_ready: Callable[[], None] | None = None,
    hosts: HostPolicy | None = None,
    origins: OriginPolicy | None = None,
    keys: KeyRing | None = None,
    limits: RequestLimits | None = None,
    keepalive_seconds: float = 0,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        reaper = asyncio.create_task(manager.reap_idle())
        health = asyncio.create_task(manager.remotes.watch()) if manager.remotes else None
        if on_ready:
            on_ready()
        yield
        reaper.cancel()
        await close_mcp_pool(app.state)
        if health:
            health.cancel()
        await manager.remotes.aclose()
        logging.getLogger("lmserve").removeHandler(app.state.logs)
        manager.unload_all()

    app = FastAPI(title="lmserve", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, dependencies=[Depends(note_route)])
    app.state.manager = manager
    app.state.base_url = base_url
    app.state.keepalive_seconds = keepalive_seconds  # for SSE routes (api/serving.py)
    install_error_handlers(app)
    app.state.logs = LogBroadcaster()
    logging.getLogger("lmserve").addHandler(app.state.logs)
    for module in (chat, completions, embeddings, models, status, tokenize, messages,
                   responses, native_models, native_chat, downloads, imports, logs):
        app.include_router(module.router)
    app.include_router(metrics_router)
    install_openapi(app)
    # Innermost: requests for remote models pass the same checks, limits and log.
    app.add_middleware(RemoteRoutes, remotes=manager.remotes, metrics=manager.metrics)
    # Outermost last: CORS headers go on every answer, refusals included, so a local page
    # can read why it was refused; access is decided before a body is read.
    app.add_middleware(JSONBodies)
    app.add_middleware(LimitRequests, limits=limits or RequestLimits())
    app.add_middleware(AccessControl, hosts=hosts or HostPolicy("127.0.0.1"),
                       origins=origins or OriginPolicy(), keys=keys or KeyRing(keys_file()))
    if cors:
        app.add_middleware(OpenCORS)
    # outermost, so that requests refused by any other layer are logged and counted too
    app.add_middleware(RequestLog, metrics=manager.metrics, board=manager.requests)
    return app
