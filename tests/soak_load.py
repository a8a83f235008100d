"""The soak's load: many concurrent clients doing what real ones do, for a fixed time.

Each client loops until the deadline, picking one of: a chat, a streamed chat, a streamed
chat it abandons after a random delay, an embedding, or an invalid request. Halfway, one
more task loads a second instance of the model, chats with it and unloads it. Every
outcome is classified; an `error` is anything the server must never do (a 5xx other than
a 503, a valid request refused, an invalid one accepted, a stream that breaks off, a lost
connection). Used by bench/soak.py (200 clients, minutes) and tests/test_soak.py (a slice).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.server_process import ServerProcess

# RSS may grow by this much over a soak: allocator arenas and the second instance's
# buffers are not all handed back to the system, but nothing should grow per request.
RSS_GROWTH_BOUND_MB = 160


# (path, body): bytes are sent as they are, None makes it a GET.
INVALID_REQUESTS: list[tuple[str, bytes | dict | None]] = [
    ("/v1/chat/completions", b"{not json"),
    ("/v1/chat/completions", {"model": "x"}),
    ("/v1/chat/completions", {"model": "x", "messages": "hello"}),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "wizard", "content": "hi"}]}),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}],
                              "max_tokens": -7}),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}],
                              "temperature": "hot"}),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}],
                              "stream": 1}),
    ("/v1/completions", {"model": "x", "prompt": [[-1]]}),
    ("/v1/embeddings", {"model": "x", "input": []}),
    ("/v1/embeddings", {"model": "x", "input": [[10**9]]}),
    ("/v1/no-such-route", {"model": "x"}),
    ("/v1/responses/resp_no_such_response", None),
    ("/v1/responses", {"model": "x", "input": 42}),
    ("/v1/messages", {"model": "x", "messages": [], "max_tokens": 0}),
]

_TOPICS = ["the sea", "a lighthouse", "bread", "rain in the city", "a small robot", "winter",
           "the moon", "a library", "trains", "a garden"]


def _chat(model: str, rng: random.Random, *, stream: bool) -> dict[str, Any]:
    return {"model": model, "stream": stream, "max_tokens": rng.randint(8, 32),
            "messages": [{"role": "user",
                          "content": f"Write two sentences about {rng.choice(_TOPICS)}."}]}


@dataclass
class SoakStats:
    outcomes: Counter = field(default_factory=Counter)  # kind -> count
    errors: list[str] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    load_unload: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.outcomes["error"] += 1
        if len(self.errors) < 50:
            self.errors.append(what)

    def summary(self) -> dict[str, Any]:
        ttft = sorted(self.ttft_s)

        def pct(p: float) -> float | None:
            return round(ttft[min(len(ttft) - 1, int(p * len(ttft)))], 3) if ttft else None

        return {
            "outcomes": dict(sorted(self.outcomes.items())),
            "completed": sum(n for k, n in self.outcomes.items() if k.startswith("ok_")),
            "rejected_503": self.outcomes["503"],
            "errors": self.outcomes["error"],
            "error_samples": self.errors[:10],
            "ttft_p50_s": pct(0.50),
            "ttft_p99_s": pct(0.99),
            "ttft_mean_s": round(statistics.fmean(ttft), 3) if ttft else None,
            "streams_timed": len(ttft),
            "load_unload": self.load_unload,
        }


class Soak:
    def __init__(self, origin: str, model: str, *, clients: int, duration_s: float,
                 seed: int = 0, grace_s: float = 60) -> None:
        self.origin = origin
        self.model = model
        self.clients = clients
        self.duration_s = duration_s
        self.seed = seed
        self.stats = SoakStats()
        # Requests still unanswered grace_s after the deadline are dropped (a disconnect,
        # as any client might do), so a soak on a slow machine still ends on time.
        self.grace_s = grace_s
        self.timeout = httpx.Timeout(duration_s + grace_s, connect=60)
        self.deadline = 0.0

    async def run(self) -> dict[str, Any]:
        limits = httpx.Limits(max_connections=self.clients + 8, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.origin, timeout=self.timeout,
                                     limits=limits) as http:
            self.deadline = asyncio.get_running_loop().time() + self.duration_s
            started = time.monotonic()
            tasks = [self._client(http, i) for i in range(self.clients)]
            await asyncio.gather(*tasks, self._load_unload_midway(http))
            wall = time.monotonic() - started
        return {**self.stats.summary(), "clients": self.clients,
                "duration_s": self.duration_s, "wall_s": round(wall, 1)}

    async def _client(self, http: httpx.AsyncClient, index: int) -> None:
        rng = random.Random(self.seed * 100_003 + index)
        await asyncio.sleep(rng.uniform(0, min(5.0, self.duration_s / 4)))  # no stampede
        for _ in range(100_000):  # bounded, though the deadline ends it long before
            if asyncio.get_running_loop().time() >= self.deadline:
                return
            kind = rng.choices(["chat", "stream", "abandon", "embed", "invalid"],
                               weights=[3, 3, 2, 2, 2])[0]
            try:
                async with asyncio.timeout_at(self.deadline + self.grace_s):
                    status = await getattr(self, f"_{kind}")(http, rng)
            except TimeoutError:
                self.stats.outcomes["cut_at_end"] += 1
                return
            except httpx.HTTPError as exc:
                self.stats.error(f"{kind}: {type(exc).__name__}: {exc}")
                status = None
            if status == 503:  # come back after Retry-After (1 s), as real clients do
                await asyncio.sleep(rng.uniform(0.5, 1.5))

    def _check(self, kind: str, response: httpx.Response) -> bool:
        """Counts a finished non-streamed answer; True when it is a success."""
        if response.status_code == 200:
            self.stats.outcomes[f"ok_{kind}"] += 1
            return True
        if response.status_code == 503:
            self.stats.outcomes["503"] += 1
        else:
            self.stats.error(f"{kind}: {response.status_code} {response.text[:200]}")
        return False

    async def _chat(self, http: httpx.AsyncClient, rng: random.Random) -> int:
        response = await http.post("/v1/chat/completions", json=_chat(self.model, rng,
                                                                       stream=False))
        if self._check("chat", response) and not response.json()["choices"]:
            self.stats.error("chat: no choices")
        return response.status_code

    async def _embed(self, http: httpx.AsyncClient, rng: random.Random) -> int:
        texts = [f"{rng.choice(_TOPICS)} {i}" for i in range(rng.randint(1, 4))]
        response = await http.post("/v1/embeddings", json={"model": self.model,
                                                           "input": texts})
        if self._check("embed", response) and len(response.json()["data"]) != len(texts):
            self.stats.error("embed: wrong number of vectors")
        return response.status_code

    async def _stream(self, http: httpx.AsyncClient, rng: random.Random) -> int:
        sent = time.monotonic()
        async with http.stream("POST", "/v1/chat/completions",
                               json=_chat(self.model, rng, stream=True)) as response:
            if response.status_code != 200:
                await response.aread()
                self._check("stream", response)
                return response.status_code
            first, done = None, False
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        self.stats.error(f"stream: in-band error {chunk['error']}")
                        return 200
                    delta = (chunk.get("choices") or [{}])[0].get("delta", {})
                    if first is None and delta.get("content"):
                        first = time.monotonic() - sent
            if not done:
                self.stats.error("stream: ended without [DONE]")
                return 200
            if first is not None:
                self.stats.ttft_s.append(first)
            self.stats.outcomes["ok_stream"] += 1
            return 200

    async def _abandon(self, http: httpx.AsyncClient, rng: random.Random) -> int | None:
        """Opens a stream and walks away after a random delay, mid-answer or in the queue."""
        body = _chat(self.model, rng, stream=True)
        body["max_tokens"] = 256
        try:
            async with asyncio.timeout(rng.uniform(0.05, 3.0)):
                async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        await response.aread()
                        self._check("abandon", response)
                        return response.status_code
                    async for _ in response.aiter_bytes():
                        pass
            self.stats.outcomes["abandon_finished_first"] += 1
        except TimeoutError:
            self.stats.outcomes["disconnected"] += 1
        return None

    async def _invalid(self, http: httpx.AsyncClient, rng: random.Random) -> int:
        path, body = rng.choice(INVALID_REQUESTS)
        if body is None:
            response = await http.get(path)
        elif isinstance(body, bytes):
            response = await http.post(path, content=body,
                                       headers={"Content-Type": "application/json"})
        else:
            response = await http.post(path, json=body)
        error = response.json().get("error") if response.headers.get(
            "content-type", "").startswith("application/json") else None
        if 400 <= response.status_code < 500 and error:
            self.stats.outcomes["invalid_refused"] += 1
        else:
            self.stats.error(f"invalid {path}: {response.status_code} {response.text[:200]}")
        return response.status_code

    async def _load_unload_midway(self, http: httpx.AsyncClient) -> None:
        # Not cut at the end like the clients: a load, 8 tokens and an unload always finish.
        await asyncio.sleep(self.duration_s / 2)
        log = self.stats.load_unload
        started = time.monotonic()
        response = await http.post("/api/v1/models/load", json={
            "model": self.model, "identifier": "soak-second", "context_length": 512,
            "parallel": 1})
        if response.status_code != 200:
            # 503: every slot busy and the memory budget says no; anything else is a fault.
            if response.status_code == 503:
                log.append("load refused with 503")
            else:
                self.stats.error(f"load: {response.status_code} {response.text[:200]}")
            return
        log.append(f"loaded in {time.monotonic() - started:.1f} s")
        reply = await http.post("/v1/chat/completions", json={
            "model": "soak-second", "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say hi."}]})
        if reply.status_code == 200:
            log.append("chatted with the second instance")
        elif reply.status_code != 503:
            self.stats.error(f"second instance chat: {reply.status_code} {reply.text[:200]}")
        response = await http.post("/api/v1/models/unload", json={"instance_id": "soak-second"})
        if response.status_code == 200:
            log.append(f"unloaded after {time.monotonic() - started:.1f} s")
        else:
            self.stats.error(f"unload: {response.status_code} {response.text[:200]}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def warm_up(origin: str, model: str) -> None:
    """One of each request kind, so both contexts exist before the first RSS reading."""
    async with httpx.AsyncClient(base_url=origin, timeout=600) as http:
        (await http.post("/v1/chat/completions", json={
            "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
         ).raise_for_status()
        (await http.post("/v1/embeddings", json={"model": model, "input": "warm"})
         ).raise_for_status()


async def wait_idle(origin: str, timeout_s: float = 120) -> dict[str, int]:
    """Busy slots and queued requests once the server settles (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=origin, timeout=30) as http:
        while True:
            models = (await http.get("/api/v1/status")).json()["models"]
            busy = sum(m["busy_slots"] for m in models)
            queued = sum(m["queued"] for m in models)
            if (busy == 0 and queued == 0) or time.monotonic() > deadline:
                return {"busy_slots": busy, "queued": queued, "loaded": len(models)}
            await asyncio.sleep(0.2)


async def soak(clients: int, duration_s: float, seed: int, server_args: list[str]) -> dict:
    """A server of its own, warmed up, soaked, settled and stopped: the figures."""
    server = ServerProcess(*server_args)
    try:
        model = (await asyncio.to_thread(server.status))["models"][0]["id"]
        await warm_up(server.origin, model)
        rss_before = rss_mb(server.proc.pid)
        result = await Soak(server.origin, model, clients=clients, duration_s=duration_s,
                            seed=seed).run()
        settled = await wait_idle(server.origin)
        rss_after = rss_mb(server.proc.pid)
        log = server.log()
    finally:
        exit_code = server.stop()
    return {
        **result,
        "settled": settled,
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "rss_growth_bound_mb": RSS_GROWTH_BOUND_MB,
        "tracebacks_in_log": log.count("Traceback"),
        "server_exit_code": exit_code,
        "server_args": server_args,
    }


def broken_promises(result: dict) -> list[str]:
    """The promises the soak checks; empty when all hold."""
    broken = []
    if result["errors"]:
        broken.append(f"{result['errors']} errors")
    if result["settled"]["busy_slots"] or result["settled"]["queued"]:
        broken.append(f"not idle afterwards: {result['settled']}")
    if result["rss_growth_mb"] > RSS_GROWTH_BOUND_MB:
        broken.append(f"RSS grew {result['rss_growth_mb']} MB")
    if result["tracebacks_in_log"]:
        broken.append(f"{result['tracebacks_in_log']} tracebacks in the server log")
    if result["server_exit_code"] != 0:
        broken.append(f"server exit code {result['server_exit_code']}")
    return broken
