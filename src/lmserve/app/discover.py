"""The Discover tab's Hub lookups: GGUF repositories matching a search, and one repo's
quantizations with their size and whether they fit this machine's memory. Downloads go
through the native download jobs (/api/v1/models/download)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from lmserve.api.errors import APIError, hub_error
from lmserve.models.download import (
    DownloadError,
    Source,
    group_shards,
    hf_token,
    list_repo,
    offline_error,
    resolve_endpoint,
    transport_errors,
)
from lmserve.models.memory import available_memory

router = APIRouter(prefix="/app/api/discover")

SEARCH_LIMIT = 30
# Weights are most of a load; the rest (KV cache, buffers) is taken as a fifth on top.
LOAD_OVERHEAD = 1.2


def _search(query: str) -> list[dict[str, Any]]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    base = resolve_endpoint()
    api = HfApi(endpoint=base, token=hf_token())
    try:
        found = list(api.list_models(search=query or None, filter="gguf", sort="downloads",
                                     limit=SEARCH_LIMIT))
    except HfHubHTTPError as e:
        raise DownloadError(f"The hub at {base} answered with an error: {e}") from e
    except transport_errors() as e:
        raise offline_error(base, e) from e
    return [{"id": m.id, "downloads": m.downloads, "likes": m.likes} for m in found]


def _quantizations(repo_id: str) -> list[dict[str, Any]]:
    publisher, _, repo = repo_id.partition("/")
    real_id, revision, files = list_repo(Source(publisher, repo), resolve_endpoint())
    ggufs = [f for f in files if f.path.lower().endswith(".gguf")]
    free = available_memory()
    out = []
    for name, parts in group_shards(ggufs).items():
        size = sum(f.size for f in parts)
        out.append({
            "name": name.rsplit("/", 1)[-1], "size_bytes": size, "parts": len(parts),
            "fits": None if free is None else size * LOAD_OVERHEAD <= free,
            # what the download route takes: the first part's Hub URL names the file
            "source": f"https://huggingface.co/{real_id}/blob/{revision or 'main'}/"
                      f"{parts[0].path}",
        })
    return sorted(out, key=lambda q: q["size_bytes"])


async def _from_hub(work: Any, *args: str) -> Any:
    try:
        return await asyncio.to_thread(work, *args)
    except DownloadError as exc:
        raise hub_error(exc, param="repo", unreachable_hint=(
            "Discover needs network access to the Hub (or HF_ENDPOINT set to a mirror).")) \
            from exc


@router.get("/search")
async def search(q: str = "") -> dict[str, Any]:
    return {"data": await _from_hub(_search, q.strip())}


@router.get("/repo")
async def repo(id: str) -> dict[str, Any]:
    parts = id.split("/")
    if len(parts) != 2 or not all(parts):
        raise APIError(400, "id must be publisher/repo.", param="id", code="invalid_value")
    return {"id": id, "available": available_memory(),
            "quantizations": await _from_hub(_quantizations, id)}
