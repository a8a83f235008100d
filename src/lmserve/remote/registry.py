"""The remote models a server routes to: their entries, shared upstreams, one HTTP
client, and the health checks that mark upstreams up and down."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import httpx

from lmserve.remote.entries import RemoteModel
from lmserve.remote.pool import Upstream, UpstreamPool

log = logging.getLogger("lmserve.remote")
# httpx notes every upstream call at INFO; the request log already has one line each.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Seconds between two health checks of an upstream ($LMSERVE_REMOTE_HEALTH_INTERVAL).
HEALTH_INTERVAL = 5.0
HEALTH_TIMEOUT = 3.0


def health_interval() -> float:
    try:
        return max(0.2, float(os.environ.get("LMSERVE_REMOTE_HEALTH_INTERVAL", "")))
    except ValueError:
        return HEALTH_INTERVAL


class RemoteModels:
    def __init__(self, entries: list[RemoteModel] | tuple[RemoteModel, ...] = ()) -> None:
        self.entries = {e.id: e for e in entries}
        self.upstreams: dict[str, Upstream] = {}
        self.pools: dict[str, UpstreamPool] = {}
        for entry in entries:
            shared = [self.upstreams.setdefault(url, Upstream(url, entry.api_key_env))
                      for url in entry.upstreams]
            self.pools[entry.id] = UpstreamPool(shared)
        self._client: httpx.AsyncClient | None = None

    def __bool__(self) -> bool:
        return bool(self.entries)

    def find(self, model_id: Any) -> RemoteModel | None:
        return self.entries.get(model_id) if isinstance(model_id, str) else None

    def client(self) -> httpx.AsyncClient:
        """One connection pool for every upstream, made in the serving event loop."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                headers={"Accept-Encoding": "identity"}, trust_env=False)
        return self._client

    def describe(self, model_id: str) -> dict[str, Any]:
        """What the model lists show of a remote model."""
        entry = self.entries[model_id]
        return {"type": "remote", "upstream_model": entry.served_name,
                "health": "up" if self.pools[model_id].healthy else "down",
                "upstreams": [u.describe() for u in self.pools[model_id].upstreams]}

    async def check(self, upstream: Upstream) -> None:
        key = os.environ.get(upstream.api_key_env) if upstream.api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            answer = await self.client().get(f"{upstream.url}/models", headers=headers,
                                             timeout=HEALTH_TIMEOUT)
            problem = None if answer.status_code == 200 else f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        if problem is None:
            if upstream.mark_up():
                log.info("upstream %s is up again", upstream.url)
        elif upstream.mark_down(f"health check: {problem}"):
            log.warning("upstream %s is down (health check: %s)", upstream.url, problem)

    async def watch(self) -> None:
        """Checks every upstream now and then, until cancelled."""
        interval = health_interval()
        while True:
            await asyncio.gather(*(self.check(u) for u in self.upstreams.values()))
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
