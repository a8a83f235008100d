"""GET /v1/models and GET /v1/models/{id}"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends

from lmserve.api.deps import get_manager
from lmserve.models import Model, ModelManager, ModelNotFoundError

router = APIRouter()


def model_object(model: Model) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": model.created, "owned_by": "lmserve"}


def _marked(obj: dict[str, Any], manager: ModelManager) -> dict[str, Any]:
    # An extra field that OpenAI's model schema allows: which model serves unknown names.
    return {**obj, "default": manager.is_default(obj["id"])}


@router.get("/v1/models")
async def list_models(manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    local = [_listed(i, manager) for i in manager.listed_ids()]
    remote = [_remote(i, manager) for i in manager.remotes.entries]
    return {"object": "list", "data": local + remote}


def _remote(model_id: str, manager: ModelManager) -> dict[str, Any]:
    # Extra fields OpenAI's schema allows: served upstream, by which URLs, in what health.
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "remote",
            "default": False, **manager.remotes.describe(model_id)}


def _listed(model_id: str, manager: ModelManager) -> dict[str, Any]:
    model = manager.get(model_id)
    if model is not None:
        return _marked(model_object(model), manager)
    # Downloaded but not loaded: created is when the file arrived.
    entry = manager.library.find(model_id) if manager.library else None
    created = int(Path(entry.path).stat().st_mtime) if entry else 0
    return _marked({"id": model_id, "object": "model", "created": created,
                    "owned_by": "lmserve"}, manager)


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(
    model_id: str, manager: ModelManager = Depends(get_manager)
) -> dict[str, Any]:
    # Answers as inference would: a name that matches no model gives the default's object.
    if manager.remotes.find(model_id) is not None:
        return _remote(model_id, manager)
    serving = manager.serving_id(model_id)
    if serving is None:
        raise ModelNotFoundError(model_id, manager.listed_ids())
    return _listed(serving, manager)
