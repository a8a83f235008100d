"""My Models' load panel: the memory a load would take, and each model's saved load
settings (models/load_defaults.py), used by every later load that names no value."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request

from lmserve.api.errors import APIError
from lmserve.models.load_options import OPTIONS, normalized
from lmserve.models.manager import ModelManager
from lmserve.models.memory import available_memory, estimate_file_memory
from lmserve.models.model import LoadConfig

router = APIRouter()


def _manager(request: Request) -> ModelManager:
    return request.app.state.switch.manager


def _entry(manager: ModelManager, model: str) -> Any:
    entry = manager.library.find(model) if manager.library else None
    if entry is None:
        raise APIError(404, f"No model '{model}' in the library.", param="model",
                       code="model_not_found")
    return entry


def _whole(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) < 1:
        raise APIError(400, f"{name} must be a positive integer.", param=name,
                       code="invalid_value")
    return int(value)


def _load_settings(manager: ModelManager, key: str) -> dict[str, Any]:
    general = {k: v for k, v in manager.defaults.to_dict().items() if k != "max_queue"}
    general["ttl"] = general["ttl"] or 0
    saved = manager.model_defaults.get(key)
    return {"model": key, "saved": saved, "effective": {**general, **saved}}


@router.get("/app/api/models/estimate")
async def estimate(request: Request, model: str, context_length: str | None = None,
                   parallel: str | None = None, kv_cache_type_k: str | None = None,
                   kv_cache_type_v: str | None = None, flash_attention: str | None = None,
                   gpu: str | None = None) -> dict[str, Any]:
    """Bytes a load would take (weights, KV cache, compute buffers), next to what the
    machine has free; values not given are the ones the load would use."""
    manager = _manager(request)
    entry = _entry(manager, model)
    effective = _load_settings(manager, entry.key)["effective"]
    n_ctx = _whole(context_length, "context_length") or effective["context_length"]
    n_par = _whole(parallel, "parallel") or effective["parallel"]
    chosen = normalized({"kv_cache_type_k": kv_cache_type_k or None,
                         "kv_cache_type_v": kv_cache_type_v or None,
                         "flash_attention": flash_attention or None, "gpu": gpu or None})
    options = {k: v for k, v in {**effective, **chosen}.items() if k in OPTIONS}
    config = replace(LoadConfig(), context_length=n_ctx, parallel=n_par, **options)
    need = estimate_file_memory(entry.path, config)
    return {"model": entry.key, "context_length": n_ctx, "parallel": n_par, **options,
            **need, "available": available_memory()}


@router.get("/app/api/models/load-settings")
async def get_load_settings(request: Request, model: str) -> dict[str, Any]:
    manager = _manager(request)
    return _load_settings(manager, _entry(manager, model).key)


@router.put("/app/api/models/load-settings")
async def put_load_settings(request: Request) -> dict[str, Any]:
    """Save a model's default load settings: {"model": key, "context_length",
    "parallel", "ttl", and the llama.cpp options of load_options.py} (a missing or null
    one is not saved)."""
    try:
        body = await request.json()
    except ValueError:
        raise APIError(400, "The body must be a JSON object.", code="invalid_json") from None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise APIError(400, "The body must be a JSON object naming a 'model'.",
                       param="model", code="invalid_value")
    manager = _manager(request)
    key = _entry(manager, body.pop("model")).key
    try:
        manager.model_defaults.set(key, body)
    except ValueError as exc:
        raise APIError(400, str(exc), param=getattr(exc, "param", None),
                       code="invalid_value") from None
    return _load_settings(manager, key)
