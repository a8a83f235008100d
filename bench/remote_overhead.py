"""What a gateway adds: latency per streamed chunk and to the first token, p50 and p99,
through an lmserve gateway versus straight to the upstream, on loopback.

Two upstreams:
- `stamped`: an SSE source in this script that writes chat.completion.chunk events,
  each carrying the wall-clock nanosecond at which it was written. The client subtracts
  that from the arrival time, so the figure is the delivery delay of every chunk, directly
  and through the gateway; their difference is the gateway's share, free of generation
  noise.
- `node`: a real lmserve node on the bundled model. Time to first token and the gap
  between chunks, direct and through the gateway, requests alternating.

    python bench/remote_overhead.py [--streams N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lmserve.remote.entries import RemoteModel, save_remotes  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

SERVED = "huggingfacetb/smollm2-135m-instruct"
CHUNKS = 200
CHUNK_GAP_S = 0.002
NODE_TOKENS = 32


async def _chunks(request: Request) -> StreamingResponse:
    async def events():
        for i in range(CHUNKS):
            chunk = {"id": "stamped", "object": "chat.completion.chunk", "created": 0,
                     "model": "stamped", "choices": [{"index": 0, "delta":
                                                      {"content": f"t{i}"},
                                                      "finish_reason": None}],
                     "sent_ns": time.time_ns()}
            yield f"data: {json.dumps(chunk)}\n\n"
            await asyncio.sleep(CHUNK_GAP_S)
        yield "data: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


async def _models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "stamped", "object": "model"}]})


def start_stamped_source() -> str:
    app = Starlette(routes=[Route("/v1/chat/completions", _chunks, methods=["POST"]),
                            Route("/v1/models", _models)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def stream_once(base_url: str, model: str, max_tokens: int) -> dict:
    """Times of one stream: to the first content chunk, between chunks, and each
    stamped chunk's delivery delay."""
    body = {"model": model, "stream": True, "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me a story."}]}
    delays, arrivals = [], []
    started = time.perf_counter()
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body,
                      timeout=120) as answer:
        for line in answer.iter_lines():
            if not line.startswith("data: {"):
                continue
            now_ns, now = time.time_ns(), time.perf_counter()
            chunk = json.loads(line[6:])
            if "sent_ns" in chunk:
                delays.append((now_ns - chunk["sent_ns"]) / 1e6)
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                arrivals.append(now)
    gaps = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False)]
    return {"ttft_ms": (arrivals[0] - started) * 1000 if arrivals else None,
            "gaps_ms": gaps, "delays_ms": delays}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(runs: list[dict], key: str) -> dict:
    values = [v for r in runs for v in (r[key] if isinstance(r[key], list) else [r[key]])
              if v is not None]
    return {"n": len(values), "p50": round(pct(values, 0.5), 3),
            "p99": round(pct(values, 0.99), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=20)
    args = parser.parse_args()
    stamped = start_stamped_source()
    node = ServerProcess("--parallel", "2", "--context-length", "1024")
    home = Path(node.home).parent / f"gateway-{os.getpid()}"
    home.mkdir()
    save_remotes([RemoteModel("stamped", (stamped,)),
                  RemoteModel("node", (node.base_url,), upstream_model=SERVED)],
                 home / "config.toml")
    gateway = ServerProcess("--model", "none", home=home)
    results: dict[str, dict] = {}
    try:
        for name, model, direct_model, direct_url, tokens in (
                ("stamped", "stamped", "stamped", stamped, CHUNKS),
                ("node", "node", SERVED, node.base_url, NODE_TOKENS)):
            stream_once(gateway.base_url, model, tokens)  # warm both paths
            stream_once(direct_url, direct_model, tokens)
            direct, via = [], []
            for _ in range(args.streams):
                direct.append(stream_once(direct_url, direct_model, tokens))
                via.append(stream_once(gateway.base_url, model, tokens))
            keys = ("delays_ms", "ttft_ms") if name == "stamped" else ("ttft_ms", "gaps_ms")
            results[name] = {k: {"direct": summary(direct, k), "gateway": summary(via, k)}
                             for k in keys}
    finally:
        gateway.stop()
        node.stop()
    report(results, args.streams)


def report(results: dict, streams: int) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    out = ROOT / "bench" / "results" / "remote_overhead.json"
    out.write_text(json.dumps({"date": stamp, "machine": platform.platform(),
                               "cpus": os.cpu_count(), "streams": streams,
                               "results": results}, indent=2))
    labels = {"delays_ms": "delivery delay per chunk", "ttft_ms": "time to first token",
              "gaps_ms": "gap between chunks"}
    print(f"{streams} streams per path, alternating; {stamp}; {os.cpu_count()} CPUs")
    print("| upstream | measure | direct p50 | gateway p50 | added p50 | direct p99 "
          "| gateway p99 | added p99 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, measures in results.items():
        for key, pair in measures.items():
            d, g = pair["direct"], pair["gateway"]
            print(f"| {name} | {labels[key]} (ms, n={g['n']}) | {d['p50']:.2f} | "
                  f"{g['p50']:.2f} | {g['p50'] - d['p50']:+.2f} | {d['p99']:.2f} | "
                  f"{g['p99']:.2f} | {g['p99'] - d['p99']:+.2f} |")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
