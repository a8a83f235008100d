"""Runs the server in this process: bind, load the model, serve until a signal."""

from __future__ import annotations

import logging
import os
import socket
import time
from types import FrameType

import uvicorn

from lmserve.api import create_app
from lmserve.api.host_names import HostPolicy, OriginPolicy
from lmserve.api.limits import RequestLimits
from lmserve.api_keys import KeyRing, keys_file
from lmserve.config import LimitsConfig, ModelsConfig, SecurityConfig, ServerSettings
from lmserve.log_format import configure_logging
from lmserve.models import ModelManager
from lmserve.models.bundled import bundled_model_path
from lmserve.models.library import ModelLibrary
from lmserve.models.model import LoadConfig
from lmserve.remote.entries import load_remotes
from lmserve.remote.registry import RemoteModels
from lmserve.server_state import network_warning, read_state, remove_state, write_state

log = logging.getLogger("lmserve")


def base_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "localhost") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/v1"


class ListenError(Exception):
    """The API listener cannot open its port (in use, not permitted, no such address)."""


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:  # `::` serves IPv4 clients too, whatever the OS default
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after its graceful shutdown, which would kill the
        # process before our own cleanup; a stop request is a clean exit instead.
        self._captured_signals.clear()


def request_limits(limits: LimitsConfig) -> RequestLimits:
    return RequestLimits(max_body_bytes=limits.max_body_mb * 1024 * 1024,
                         max_messages=limits.max_messages, max_n=limits.max_n,
                         max_tokens=limits.max_tokens, max_stop=limits.max_stop,
                         max_tools=limits.max_tools)


def remote_models() -> RemoteModels:
    try:
        return RemoteModels(load_remotes())
    except ValueError as exc:  # a [[remote]] entry that makes no sense
        raise SystemExit(str(exc)) from exc


def build_manager(settings: ServerSettings,
                  models: ModelsConfig) -> tuple[ModelManager, list[str]]:
    """The model manager with the start-up model loaded, and the ids loaded."""
    defaults = LoadConfig(context_length=settings.context_length, parallel=settings.parallel,
                          max_queue=settings.max_queue,
                          prefill_budget=settings.prefill_budget, threads=settings.threads,
                          share_cpu=settings.share_cpu)
    manager = ModelManager(
        ModelLibrary(models.dir),
        defaults=defaults,
        jit=models.jit,
        jit_ttl=models.ttl_seconds or None,
        max_loaded=models.max_loaded,
        memory_budget=models.memory_budget_mb * 1024 * 1024,
        log_prompts=settings.log_prompts,
        remotes=remote_models(),
    )
    default = models.default or None
    if default and manager.library.find(default) is None:
        log.warning("models.default is '%s', which is not in the library: ignoring it", default)
        default = None
    try:
        startup = [] if (settings.model or "").lower() == "none" else \
            [manager.load_now(settings.model or default or str(bundled_model_path()),
                               allow_paths=True)[0].id]
    except (LookupError, OSError, RuntimeError) as exc:  # unknown, missing or unloadable
        raise SystemExit(f"Cannot load the model: {exc}") from exc
    if default or startup:
        manager.set_default(default or startup[0])
    return manager, startup


def serve(settings: ServerSettings, models: ModelsConfig | None = None,
          security: SecurityConfig | None = None, limits: LimitsConfig | None = None) -> None:
    configure_logging(settings.log_format)
    models = models or ModelsConfig()
    security = security or SecurityConfig()
    running = read_state()
    if running:
        raise SystemExit(f"A server is already running at {running['base_url']} "
                         f"(pid {running['pid']}); stop it with `lmserve server stop`.")
    try:
        sock = bind(settings.host, settings.port)
    except ListenError as exc:
        raise SystemExit(str(exc)) from exc
    port = sock.getsockname()[1]
    url = base_url(settings.host, port)
    try:
        manager, startup = build_manager(settings, models)
    except SystemExit:
        sock.close()
        raise

    state = {
        "pid": os.getpid(),
        "host": settings.host,
        "port": port,
        "base_url": url,
        "models": startup,
        "started_at": int(time.time()),
        "adhoc_key": bool(settings.api_key),  # whether one was given, never the key
    }
    keys = KeyRing(keys_file(), settings.api_key)

    def ready() -> None:
        write_state(state)
        log.info("lmserve is ready: %s (models: %s; default: %s; JIT %s; CORS %s; API keys %s)",
                 url, ", ".join(startup) or "none loaded", manager.default or "none",
                 "on" if models.jit else "off", "on" if settings.cors else "off",
                 "on" if keys.enabled else "off")
        warning = network_warning(settings.host, keys.enabled)
        if warning:
            log.warning("\n%s\n%s\n%s", "!" * 78, warning, "!" * 78)

    app = create_app(manager, cors=settings.cors, base_url=url, on_ready=ready,
                     hosts=HostPolicy(settings.host, security.hosts()),
                     origins=OriginPolicy(security.origins()), keys=keys,
                     limits=request_limits(limits or LimitsConfig()),
                     keepalive_seconds=settings.keepalive_seconds)

    server = _Server(uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # uvicorn's own lines go through lmserve's log format
        timeout_graceful_shutdown=5,  # let streams finish, then cancel them
    ))
    try:
        server.run(sockets=[sock])
    finally:
        remove_state()
        manager.unload_all()
        log.info("lmserve stopped")
