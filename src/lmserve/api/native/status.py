"""GET /health, GET /api/v1/status and GET /api/v1/runtime: liveness, loaded models and
their slots, and the llama.cpp runtime (backend, version, CPU features, GPUs)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request

from lmserve import __version__
from lmserve.api.deps import get_manager
from lmserve.engine.runtime import runtime_info
from lmserve.models import ModelManager

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/v1/status")
async def status(request: Request, manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    models = []
    for model in manager.loaded():
        engine = model.engine.status()
        models.append({
            "id": model.id,
            "path": str(model.path),
            "context_length": engine.n_ctx_slot,
            "parallel": len(engine.slots),
            "threads": model.engine.n_threads,
            "threads_in_use": model.engine.threads_in_use,
            "share_cpu": model.engine.shares_cpu,
            "busy_slots": engine.busy,
            "queued": engine.queued,
            "slots": [asdict(s) for s in engine.slots],
        })
    return {
        "status": "ok",
        "version": __version__,
        "base_url": request.app.state.base_url,
        "models": models,
        "runtime": runtime_summary(runtime_info()),
    }


def runtime_summary(info: dict[str, Any]) -> dict[str, Any]:
    """The part of the runtime a status line shows."""
    return {"backend": info["backend"], "llama_cpp_version": info["llama_cpp_version"],
            "cpu_features": info["cpu_features"]["used"], "gpus": info["gpus"]}


@router.get("/api/v1/runtime")
async def runtime() -> dict[str, Any]:
    return runtime_info()
