"""The OpenAI-compatible listener as a switch inside the process that owns the models.

Stop closes the API port and leaves the models loaded (the app's own origin keeps
serving them to the page); Start opens it again with the settings now in the config file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from lmserve import config
from lmserve.api import create_app
from lmserve.api.deps import close_mcp_pool
from lmserve.api.host_names import HostPolicy, OriginPolicy
from lmserve.api_keys import KeyRing, keys_file
from lmserve.models import ModelManager
from lmserve.server import ListenError, base_url, bind, request_limits
from lmserve.server_state import network_warning, remove_state, write_state

log = logging.getLogger("lmserve")


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signals to the app's own server: Ctrl-C stops the
    whole process, never just this listener."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServerSwitch:
    """Starts and stops the API listener over one ModelManager, and keeps the state file
    (read by `lmserve server status`) saying whether it is up."""

    def __init__(self, manager: ModelManager, app_url: str, api_key: str | None,
                 app_token: str) -> None:
        self.manager = manager
        self.app_url = app_url
        self.app_token = app_token
        self.api_key = api_key
        self.keys = KeyRing(keys_file(), api_key)
        self.host = ""
        self.port = 0
        self.started_at: float | None = None
        self.last_error: str | None = None
        self._server: _Listener | None = None
        self._task: asyncio.Task[None] | None = None
        self._api: FastAPI | None = None
        self._lock = asyncio.Lock()

    @property
    def serving(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def url(self) -> str | None:
        return base_url(self.host, self.port) if self.serving else None

    def describe(self) -> dict[str, Any]:
        """The status strip's whole content, so the page polls one route."""
        warning = network_warning(self.host, self.keys.enabled) if self.serving else None
        loaded = [(model.id, model.engine.status()) for model in self.manager.loaded()]
        return {"serving": self.serving, "host": self.host or None,
                "port": self.port or None, "base_url": self.url,
                "started_at": self.started_at, "error": self.last_error,
                "app_url": self.app_url, "warning": warning,
                "models": [model_id for model_id, _ in loaded],
                "in_flight": sum(status.busy for _, status in loaded),
                "queued": sum(status.queued for _, status in loaded)}

    async def start(self) -> None:
        """Open the API port with the settings in the config file (ListenError if it
        cannot be opened: the app keeps running)."""
        async with self._lock:
            if self.serving:
                return
            cfg = config.load_config()
            settings = config.settings_from_config(cfg)
            try:
                sock = bind(settings.host, settings.port)
            except ListenError as exc:
                self.last_error = str(exc)
                log.error("%s The app keeps running; change the port and Start again.", exc)
                raise
            host, port = settings.host, sock.getsockname()[1]
            # rebuilt at every Start: the bind address decides the Host check, CORS may change
            self._api = create_app(self.manager, cors=settings.cors,
                                   base_url=base_url(host, port),
                                   hosts=HostPolicy(host, cfg.security.hosts()),
                                   origins=OriginPolicy(cfg.security.origins()),
                                   keys=self.keys, limits=request_limits(cfg.limits),
                                   keepalive_seconds=settings.keepalive_seconds)
            self._server = _Listener(uvicorn.Config(
                self._api, lifespan="off",  # the app's server owns the models' lifecycle
                log_level="warning", log_config=None, timeout_graceful_shutdown=5))
            self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started and not self._task.done():
                await asyncio.sleep(0.02)
            self.host, self.port = host, port
            self.started_at = time.time()
            self.last_error = None
            self.write_state()
            log.info("API server started: %s", self.url)
            warning = network_warning(host, self.keys.enabled)
            if warning:
                log.warning("\n%s\n%s\n%s", "!" * 78, warning, "!" * 78)

    async def stop(self) -> None:
        """Close the API port; requests in flight get a few seconds to finish."""
        async with self._lock:
            if self._server is None or self._task is None:
                return
            self._server.should_exit = True
            await self._task
            if self._api is not None:  # its log feed and MCP servers went with it
                logging.getLogger("lmserve").removeHandler(self._api.state.logs)
                await close_mcp_pool(self._api.state)
            self._server = self._task = self._api = None
            self.started_at = None
            self.write_state()
            log.info("API server stopped; the models stay loaded")

    def write_state(self) -> None:
        write_state({
            "pid": os.getpid(),
            "host": self.host,
            "port": self.port,
            "base_url": self.url or "",
            "serving": self.serving,
            "app_url": self.app_url,
            "app_token": self.app_token,  # the state file is private (server_state.write_state)
            "models": [m.id for m in self.manager.loaded()],
            "started_at": int(self.started_at or time.time()),
            "adhoc_key": bool(self.api_key),
        })

    def remove_state(self) -> None:
        remove_state()
