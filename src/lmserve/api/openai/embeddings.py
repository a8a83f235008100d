"""POST /v1/embeddings"""

from __future__ import annotations

import base64
from array import array
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from lmserve.api.deps import get_manager
from lmserve.api.errors import APIError
from lmserve.api.openai.protocol import EmbeddingRequest
from lmserve.api.serving import respond_with
from lmserve.models import Model, ModelManager

router = APIRouter()


def _inputs(body: EmbeddingRequest, model: Model) -> list[list[int]]:
    """Input may be text, a list of texts, tokens, or a list of token lists."""
    x = body.input
    if isinstance(x, str):
        items: list = [x]
    elif x and all(isinstance(t, int) for t in x):
        items = [x]
    else:
        items = list(x)
    if not items:
        raise APIError(400, "'input' must not be empty.", param="input")
    out = []
    for item in items:
        tokens = model.text_prompt(item) if isinstance(item, str) else list(item)
        if not tokens:
            raise APIError(400, "'input' must not contain empty strings.", param="input")
        if any(not 0 <= t < model.llama.n_vocab for t in tokens):
            raise APIError(400, f"Token ids in 'input' must be in [0, {model.llama.n_vocab}).",
                           param="input")
        out.append(tokens)
    return out


def _encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # Little-endian float32, as the OpenAI SDKs decode it.
        return base64.b64encode(array("f", vector).tobytes()).decode()
    return vector


@router.post("/v1/embeddings")
async def create_embeddings(
    body: EmbeddingRequest,
    request: Request,
    manager: ModelManager = Depends(get_manager),
) -> Response:
    model = await manager.resolve(body.model, ttl=body.ttl)
    if body.dimensions is not None and body.dimensions != model.llama.n_embd:
        # Truncating is only meaningful for models trained for it (Matryoshka).
        raise APIError(400, f"This model gives {model.llama.n_embd}-dimensional embeddings "
                            "and does not support shortening them with 'dimensions'.",
                       param="dimensions")
    inputs = _inputs(body, model)

    async def embeddings() -> dict[str, Any]:
        vectors = await model.embed(inputs)
        n_tokens = sum(len(t) for t in inputs)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i,
                      "embedding": _encode(v, body.encoding_format)}
                     for i, v in enumerate(vectors)],
            "model": model.id,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }

    return await respond_with(request, embeddings())
