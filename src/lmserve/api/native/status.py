"""GET /health and GET /api/v1/status: liveness, loaded models and their slots."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request

from lmserve import __version__
from lmserve.api.deps import get_manager
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
    }
