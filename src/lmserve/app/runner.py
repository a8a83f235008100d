"""`lmserve app`: one process, two listeners on one event loop, one ModelManager.

The app's page and the routes it needs are served on 127.0.0.1 at `app.port`, never on
the network bind; the OpenAI-compatible listener is the ServerSwitch beside it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import socket
import webbrowser

import uvicorn

from lmserve import config
from lmserve.api import create_app
from lmserve.api.host_names import HostPolicy, OriginPolicy
from lmserve.api_keys import KeyRing, Scope, digest, keys_file
from lmserve.app import chat_routes, discover, load_routes, routes
from lmserve.app.conversations import ConversationStore, database_file
from lmserve.app.switch import ServerSwitch
from lmserve.config import Config
from lmserve.log_format import configure_logging
from lmserve.server import ListenError, _Server, bind, build_manager, request_limits
from lmserve.server_state import read_state

log = logging.getLogger("lmserve")
APP_HOST = "127.0.0.1"


class _AppKeys(KeyRing):
    """The app origin asks for a key when the API does: a stored key, the ad-hoc one, or
    the app's session token, which only this process and the owner of $LMSERVE_HOME know
    (it reaches the page in the URL `lmserve app` opens, after the #)."""

    def __init__(self, session_token: str, adhoc_key: str | None) -> None:
        super().__init__(keys_file(), adhoc_key)
        self._session = digest(session_token)

    def scope_of(self, presented: str) -> Scope | None:
        stored = super().scope_of(presented)
        return "admin" if hmac.compare_digest(digest(presented), self._session) else stored


def page_url(app_url: str, session_token: str) -> str:
    """The app's address with its credential; the fragment never reaches a server log."""
    return f"{app_url}#token={session_token}"


_POLLED = frozenset({"/app/api/server", "/app/api/requests"})


class _QuietPolling(logging.Filter):
    """Keeps the page's once-a-second polls out of the log: they would bury the
    lines of real requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None) or {}
        return not (fields.get("method") == "GET" and fields.get("path") in _POLLED
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
        url = page_url(running["app_url"], running.get("app_token", ""))
        print(f"The lmserve app is already running at {url}")
        if open_browser:
            webbrowser.open(url)
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
    session_token = secrets.token_urlsafe(32)
    switch = ServerSwitch(manager, app_url, api_key, session_token)
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
            await asyncio.to_thread(webbrowser.open, page_url(app_url, session_token))

    def ready() -> None:
        page_app.state.launch = asyncio.get_running_loop().create_task(launch())

    page_app = create_app(manager, cors=False, on_ready=ready,
                          hosts=HostPolicy(APP_HOST), keys=_AppKeys(session_token, api_key),
                          origins=OriginPolicy(cfg.security.origins()),
                          limits=request_limits(cfg.limits))
    page_app.state.switch = switch
    page_app.state.conversations = ConversationStore(database_file())
    page_app.include_router(routes.router)
    page_app.include_router(chat_routes.router)
    page_app.include_router(load_routes.router)
    page_app.include_router(discover.router)

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
