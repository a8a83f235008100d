"""GET /v1/models and GET /v1/models/{id}"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from lmserve.api.deps import get_manager
from lmserve.models import Model, ModelManager, ModelNotFoundError

router = APIRouter()


def model_object(model: Model) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": model.created, "owned_by": "lmserve"}


@router.get("/v1/models")
async def list_models(manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in manager.loaded()]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(
    model_id: str, manager: ModelManager = Depends(get_manager)
) -> dict[str, Any]:
    model = manager.get(model_id)
    if model is None:
        raise ModelNotFoundError(model_id, [m.id for m in manager.loaded()])
    return model_object(model)
