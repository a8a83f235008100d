"""The engine under mixed load, through the real server and raw SSE.

    python bench/engine_load.py rates [--src DIR ...] [--rounds N]
        tokens/s of 1 stream and of 8 concurrent streams (128 tokens each, ignore_eos);
        with several --src trees (e.g. two checkouts' src/), alternating A B A B so
        the shared machine's noise falls on both alike.
    python bench/engine_load.py prefill-curve [--budgets 32,64,...]
        3 running streams while a ~2,000-token prompt is read: their longest gap between
        tokens, and that prompt's TTFT against reading it alone, per prefill budget.

Prints a JSON line per measurement; the figures are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.server_process import ServerProcess  # noqa: E402

MAX_TOKENS = 128
LONG_PROMPT = " ".join(f"Item {i}: the {w} is on the table." for i, w in
                       enumerate(["cup", "book", "lamp", "pen", "key"] * 40))  # ~2,000 tokens


async def stream(http: httpx.AsyncClient, origin: str, body: dict) -> list[float]:
    """Timestamps of the content chunks of one streamed chat completion."""
    stamps = []
    async with http.stream("POST", origin + "/v1/chat/completions",
                           json={"model": "m", "stream": True, **body}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"content":"' in line:
                stamps.append(time.perf_counter())
    return stamps


def chat(text: str, seed: int, max_tokens: int = MAX_TOKENS) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
            "temperature": 0.8, "seed": seed, "ignore_eos": True}


async def rate(origin: str, n_streams: int) -> float:
    async with httpx.AsyncClient(timeout=600) as http:
        t0 = time.perf_counter()
        runs = await asyncio.gather(*(stream(http, origin, chat(f"Tell story {i}.", i))
                                      for i in range(n_streams)))
        return sum(len(r) for r in runs) / (time.perf_counter() - t0)


def server(src: str | None, *args: str) -> ServerProcess:
    env = {"PYTHONPATH": src} if src else None
    return ServerProcess("--parallel", "8", "--context-length", "4096", *args, env=env)


def rates(args: argparse.Namespace) -> None:
    trees = args.src or [None]
    results: dict[str, dict[int, list[float]]] = {t or "installed": {1: [], 8: []}
                                                  for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            proc = server(tree)
            try:
                asyncio.run(rate(proc.origin, 1))  # warm-up
                for n in (1, 8):
                    value = asyncio.run(rate(proc.origin, n))
                    results[tree or "installed"][n].append(value)
                    print(json.dumps({"src": tree, "streams": n, "tok_s": round(value, 1)}),
                          flush=True)
            finally:
                proc.stop()
    for tree, by_n in results.items():
        print(json.dumps({"src": tree, **{f"median_{n}": round(statistics.median(v), 1)
                                          for n, v in by_n.items()}}))


async def long_prompt_among_streams(origin: str) -> dict:
    async with httpx.AsyncClient(timeout=900) as http:
        t0 = time.perf_counter()
        alone = await stream(http, origin, chat(LONG_PROMPT, 1, max_tokens=1))
        ttft_alone = alone[0] - t0
        streams = [asyncio.create_task(stream(http, origin, chat(f"Story {i}.", i, 400)))
                   for i in range(3)]
        await asyncio.sleep(3)  # the streams are decoding
        t_long = time.perf_counter()
        # A different prompt of the same length: nothing of it is cached.
        read = await stream(http, origin, chat(LONG_PROMPT.replace("table", "shelf"), 2, 1))
        t_read = read[0]
        runs = await asyncio.gather(*streams)
    gaps = [b - a for run in runs for a, b in zip(run, run[1:], strict=False)
            if t_long <= b and a <= t_read]
    return {"ttft_alone_s": round(ttft_alone, 2), "ttft_among_s": round(t_read - t_long, 2),
            "ttft_ratio": round((t_read - t_long) / ttft_alone, 2),
            "max_gap_s": round(max(gaps), 3) if gaps else None,
            "p50_gap_s": round(statistics.median(gaps), 3) if gaps else None}


def prefill_curve(args: argparse.Namespace) -> None:
    for budget in args.budgets.split(","):
        proc = server(args.src[0] if args.src else None, "--prefill-budget", budget)
        try:
            result = asyncio.run(long_prompt_among_streams(proc.origin))
        finally:
            proc.stop()
        print(json.dumps({"prefill_budget": int(budget), **result}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["rates", "prefill-curve"])
    parser.add_argument("--src", action="append", help="a source tree to run the server from")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budgets", default="32,64,128,256,512")
    args = parser.parse_args()
    os.chdir(ROOT)
    rates(args) if args.what == "rates" else prefill_curve(args)


if __name__ == "__main__":
    main()
