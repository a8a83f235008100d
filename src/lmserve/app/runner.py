"""`lmserve app`: one process, two listeners on one event loop, one ModelManager.

The app's page and the routes it needs are served on 127.0.0.1 at `app.port`, never on
the network bind; the OpenAI-compatible listener is the ServerSwitch beside it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import webbrowser

import uvicorn

from lmserve import config
from lmserve.api import create_app
from lmserve.api.host_names import HostPolicy, OriginPolicy
from lmserve.api_keys import KeyRing, keys_file
from lmserve.app import chat_routes, routes
from lmserve.app.conversations import ConversationStore, database_file
from lmserve.app.switch import ServerSwitch
from lmserve.config import Config
from lmserve.log_format import configure_logging
from lmserve.server import (
    ListenError,
    _Server,
    bind,
    build_manager,
    read_state,
    request_limits,
)

log = logging.getLogger("lmserve")
APP_HOST = "127.0.0.1"


class _SameMachineKeys(KeyRing):
    """The app origin takes no API key: it answers loopback only, and pages of other
    origins cannot use its management routes (api/security.py)."""

    def __init__(self) -> None:
        super().__init__(keys_file())  # never read: no key is asked for

    @property
    def enabled(self) -> bool:
        return False


class _QuietPolling(logging.Filter):
    """Keeps the page's once-a-second status poll out of the log: it would bury the
    lines of real requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None) or {}
        return not (fields.get("method") == "GET" and fields.get("path") == "/app/api/server"
                    and fields.get("status", 500) < 400)


def run_app(cfg: Config, *, open_browser: bool, api_key: str | None = None) -> None:
    settings = config.settings_from_config(cfg)
    configure_logging(settings.log_format)
    running = read_state()
    if running:
        if not running.get("app_url"):
            raise SystemExit(
                f"A server without the app is running at {running['base_url']} "
                f"(pid {running['pid']}); stop it with `lmserve server stop` to run the app.")
        print(f"The lmserve app is already running at {running['app_url']}")
        if open_browser:
            webbrowser.open(running["app_url"])
        return
    try:
        sock = bind(APP_HOST, cfg.app.port)
    except ListenError as exc:
        raise SystemExit(f"{exc} (the app's own port, app.port)") from exc
    app_url = f"http://{APP_HOST}:{sock.getsockname()[1]}/"
    try:
        manager, _ = build_manager(settings, cfg.models)
    except SystemExit:
        sock.close()
        raise
    switch = ServerSwitch(manager, app_url, api_key)
    logging.getLogger("lmserve.requests").addFilter(_QuietPolling())

    async def launch() -> None:
        if cfg.app.start_server:
            try:
                await switch.start()
            except ListenError:
                pass  # logged and shown in the page; the app keeps running
        switch.write_state()
        log.info("The lmserve app is ready: %s", app_url)
        if open_browser:
            await asyncio.to_thread(webbrowser.open, app_url)

    def ready() -> None:
        page_app.state.launch = asyncio.get_running_loop().create_task(launch())

    page_app = create_app(manager, cors=False, on_ready=ready,
                          hosts=HostPolicy(APP_HOST), keys=_SameMachineKeys(),
                          origins=OriginPolicy(cfg.security.origins()),
                          limits=request_limits(cfg.limits))
    page_app.state.switch = switch
    page_app.state.conversations = ConversationStore(database_file())
    page_app.include_router(routes.router)
    page_app.include_router(chat_routes.router)

    server = _Server(uvicorn.Config(page_app, log_level="warning", log_config=None,
                                    timeout_graceful_shutdown=5))
    try:
        asyncio.run(_serve_both(server, sock, switch))
    finally:
        switch.remove_state()
        page_app.state.conversations.close()
        manager.unload_all()
        log.info("lmserve stopped")


async def _serve_both(server: uvicorn.Server, sock: socket.socket,
                      switch: ServerSwitch) -> None:
    async def close_listener_on_exit() -> None:
        # the API listener closes as soon as the app is asked to stop, before the app's
        # shutdown unloads the models it serves
        while not server.should_exit:
            await asyncio.sleep(0.1)
        await switch.stop()

    follower = asyncio.create_task(close_listener_on_exit())
    try:
        await server.serve(sockets=[sock])
    finally:
        server.should_exit = True
        await follower
