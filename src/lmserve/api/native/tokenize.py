"""POST /api/v1/tokenize and /api/v1/detokenize: the loaded model's tokenizer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from lmserve.api.deps import get_manager
from lmserve.api.errors import APIError
from lmserve.models import ModelManager

router = APIRouter()


class TokenizeRequest(BaseModel):
    model: str = Field(min_length=1)
    text: str
    add_special: bool = False
    with_pieces: bool = False


class DetokenizeRequest(BaseModel):
    model: str = Field(min_length=1)
    tokens: list[int]


@router.post("/api/v1/tokenize")
async def tokenize(body: TokenizeRequest,
                   manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    model = await manager.resolve(body.model)
    tokens = model.llama.tokenize(body.text, add_special=body.add_special, parse_special=True)
    out: dict[str, Any] = {"model": model.id, "tokens": tokens}
    if body.with_pieces:
        out["pieces"] = [model.llama.token_bytes(t, special=True).decode(errors="replace")
                         for t in tokens]
    return out


@router.post("/api/v1/detokenize")
async def detokenize(body: DetokenizeRequest,
                     manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    model = await manager.resolve(body.model)
    if any(t < 0 or t >= model.llama.n_vocab for t in body.tokens):
        raise APIError(400, f"Token ids must be in [0, {model.llama.n_vocab}).",
                       param="tokens")
    return {"model": model.id, "text": model.llama.detokenize(body.tokens)}
