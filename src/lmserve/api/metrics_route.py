"""GET /metrics: the server's Prometheus metrics (see lmserve/metrics.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from lmserve.api.deps import get_manager
from lmserve.metrics import CONTENT_TYPE
from lmserve.models import ModelManager

router = APIRouter()


@router.get("/metrics", response_class=Response)
async def metrics(manager: ModelManager = Depends(get_manager)) -> Response:
    return Response(manager.metrics.render(), media_type=CONTENT_TYPE)
