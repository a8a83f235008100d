"""The app's own routes: the page, its assets, the server switch and the settings panel.

They are served only on the app's loopback origin; api/security.py refuses them to
pages from other origins (they change the machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from lmserve import config
from lmserve.api.errors import APIError
from lmserve.app.switch import ServerSwitch
from lmserve.server import ListenError

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The settings the Server tab edits; server.* apply on the next Start.
PANEL_SETTINGS = ("server.port", "server.host", "server.cors", "models.jit",
                  "models.ttl_seconds", "models.max_loaded", "models.memory_budget_mb",
                  "models.dir", "app.start_server")
_LIVE_SETTINGS = {"models.jit", "models.ttl_seconds", "models.max_loaded",
                  "models.memory_budget_mb", "app.start_server"}

router = APIRouter()


def _switch(request: Request) -> ServerSwitch:
    return request.app.state.switch


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/app/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    path = STATIC_DIR / name
    # only the flat folder of shipped assets: no path may leave it
    if "/" in name or name.startswith(".") or not path.is_file():
        raise APIError(404, f"No app asset named {name!r}.", code="not_found")
    return FileResponse(path)


@router.get("/app/api/server")
async def server_state(request: Request) -> dict[str, Any]:
    return _switch(request).describe()


@router.get("/app/api/requests")
async def requests_table(request: Request) -> dict[str, Any]:
    """The Server tab's requests table: in flight, then the last 100 finished."""
    return {"object": "list", "data": _switch(request).manager.requests.rows()}


@router.post("/app/api/server/start")
async def server_start(request: Request) -> dict[str, Any]:
    switch = _switch(request)
    try:
        await switch.start()
    except ListenError as exc:
        raise APIError(409, str(exc), code="listen_failed", param="server.port") from None
    except ValueError as exc:  # a config file broken outside the app
        raise APIError(400, str(exc), code="invalid_config") from None
    return switch.describe()


@router.post("/app/api/server/stop")
async def server_stop(request: Request) -> dict[str, Any]:
    switch = _switch(request)
    await switch.stop()
    return switch.describe()


def _settings() -> dict[str, Any]:
    values = config.load_config().to_dict()
    return {"path": str(config.config_file()),
            "settings": {key: values[key.split(".")[0]][key.split(".")[1]]
                         for key in PANEL_SETTINGS}}


@router.get("/app/api/settings")
async def get_settings() -> dict[str, Any]:
    try:
        return _settings()
    except ValueError as exc:
        raise APIError(400, str(exc), code="invalid_config") from None


@router.put("/app/api/settings")
async def put_settings(request: Request) -> dict[str, Any]:
    """Save the given settings to the config file the CLI uses; each is checked first,
    so a bad value changes nothing."""
    try:
        body = await request.json()
    except ValueError:
        raise APIError(400, "The body must be a JSON object of settings.",
                       code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "The body must be a JSON object of settings.", code="invalid_json")
    for key, value in body.items():
        if key not in PANEL_SETTINGS:
            raise APIError(400, f"{key!r} is not a setting of this panel.", param=key,
                           code="unknown_setting")
        if not isinstance(value, str | int | bool) or isinstance(value, float):
            raise APIError(400, f"{key} must be a string, number or boolean.", param=key,
                           code="invalid_value")
    try:
        cfg = config.set_values({key: _text(value) for key, value in body.items()})
    except ValueError as exc:
        raise APIError(400, str(exc), code="invalid_value") from None
    if body:
        _apply_live(request, cfg)
    restart = sorted(k for k in body if k not in _LIVE_SETTINGS)
    return {**_settings(), "applies_on_next_start": restart}


def _text(value: str | int | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _apply_live(request: Request, cfg: config.Config) -> None:
    """The model settings the running manager can take at once."""
    manager = _switch(request).manager
    manager.jit = cfg.models.jit
    manager.jit_ttl = cfg.models.ttl_seconds or None
    manager.max_loaded = cfg.models.max_loaded
    manager.memory_budget = cfg.models.memory_budget_mb * 1024 * 1024
