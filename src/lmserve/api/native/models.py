"""lmserve's model management API: the library, loading and unloading.

GET  /api/v1/models          every model in the library, with its loaded instances
POST /api/v1/models/load     load (idempotent unless a new identifier or configuration is given)
POST /api/v1/models/unload   unload an instance, or every instance of a model
POST /api/v1/models/default  choose the model that serves names matching no model
DELETE /api/v1/models/{key}  delete a model's files from the library (not while loaded)
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from lmserve.api.deps import get_manager
from lmserve.models import Model, ModelManager

router = APIRouter()


def instance_object(model: Model) -> dict[str, Any]:
    status = model.engine.status()
    state = "failed" if model.failure else "generating" if status.busy else "idle"
    return {
        "id": model.id,
        "model": model.key,
        "path": str(model.path),
        "status": state,
        "busy_slots": status.busy,
        "queued": status.queued,
        "loaded_at": model.created,
        "load_time_seconds": round(model.load_time_s, 3),
        "idle_seconds": round(time.monotonic() - model.last_used, 1),
        "config": model.config.to_dict(),
        "gpu_layers": model.gpu_layers,  # of n_layers + 1 (the output layer)
        "n_layers": model.llama.n_layer,
    }


def model_info(model: Model) -> dict[str, Any]:
    """What a native chat response says about the model that answered."""
    entry = model.entry
    return {
        "arch": model.llama.architecture,
        "quant": entry.quantization if entry else None,
        "format": "gguf",
        "context_length": model.context_length,
    }


@router.get("/api/v1/models")
async def list_models(manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    loaded = manager.loaded()
    out = []
    seen = set()
    for entry in manager.library.entries() if manager.library else []:
        seen.add(entry.key)
        item = entry.to_dict()
        item["default"] = manager.is_default(entry.key)
        item["loaded_instances"] = [instance_object(m) for m in loaded if m.key == entry.key]
        out.append(item)
    for model in loaded:  # loaded from a path outside the library
        if model.key not in seen:
            out.append({"key": model.key, "path": str(model.path), "type": "llm",
                        "architecture": model.llama.architecture,
                        "default": manager.is_default(model.id),
                        "loaded_instances": [instance_object(model)]})
    for model_id in manager.remotes.entries:  # served upstream, never loaded here
        out.append({"key": model_id, **manager.remotes.describe(model_id),
                    "default": False, "loaded_instances": []})
    return {"object": "list", "data": out}


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str = Field(min_length=1)
    context_length: int | None = Field(default=None, ge=64)
    parallel: int | None = Field(default=None, ge=1, le=64)
    ttl: float | None = Field(default=None, description="idle seconds; 0 or less: never")
    identifier: str | None = Field(default=None, min_length=1)
    gpu: str | float | None = Field(default=None, description="'off', 'max' or the "
                                    "fraction of the layers to offload (0 to 1)")
    flash_attention: str | None = Field(default=None, description="auto, on or off")
    kv_cache_type_k: str | None = Field(default=None, description="f16, q8_0, q4_0, ...")
    kv_cache_type_v: str | None = Field(default=None, description="f16, q8_0, q4_0, ...; "
                                        "a quantized V cache needs flash attention")
    eval_batch_size: int | None = Field(default=None, ge=1)
    prefill_budget: int | None = Field(default=None, ge=1, description="prompt tokens read "
                                       "per step while other requests generate")
    use_mmap: bool | None = None
    keep_in_memory: bool | None = Field(default=None, description="lock the weights in RAM")
    rope_freq_base: float | None = Field(default=None, gt=0)
    rope_freq_scale: float | None = Field(default=None, gt=0)
    echo_load_config: bool = False


@router.post("/api/v1/models/load")
async def load_model(body: LoadRequest,
                     manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    options = body.model_dump(exclude={"model", "identifier", "echo_load_config"})
    model, outcome = await manager.load(body.model, identifier=body.identifier, **options)
    out: dict[str, Any] = {
        "instance_id": model.id,
        "model": model.key,
        "status": outcome,  # loaded | already_loaded | reloaded (a new configuration)
        "load_time_seconds": 0.0 if outcome == "already_loaded"
        else round(model.load_time_s, 3),
    }
    if body.echo_load_config:
        out["load_config"] = model.config.to_dict()
    return out


class UnloadRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    instance_id: str | None = None
    model: str | None = None
    all: bool = False


@router.post("/api/v1/models/unload")
async def unload_model(body: UnloadRequest,
                       manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    if body.all:
        return {"unloaded": await manager.unload_everything()}
    name = body.instance_id or body.model
    if not name:
        raise ValueError("Give 'instance_id' (or 'model', or 'all': true).")
    return {"unloaded": await manager.unload(name)}


class DefaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)


@router.post("/api/v1/models/default")
async def set_default_model(body: DefaultRequest,
                            manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    return {"default": manager.set_default(body.model)}


@router.delete("/api/v1/models/{key:path}")
async def delete_model(key: str, manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    entry, files = manager.remove(key)
    return {"deleted": entry.key, "files": [str(f) for f in files]}
