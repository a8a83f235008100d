"""The engine under mixed load, through the real server and raw SSE.

    python bench/engine_load.py rates [--src DIR ...] [--rounds N]
        tokens/s of 1 stream and of 8 concurrent streams (128 tokens each, ignore_eos);
        with several --src trees (e.g. two checkouts' src/), alternating A B A B so
        the shared machine's noise falls on both alike.
    python bench/engine_load.py prefill-curve [--budgets 32,64,...]
        3 running streams while a ~2,000-token prompt is read: their longest gap between
        tokens, and that prompt's TTFT against reading it alone, per prefill budget.
    python bench/engine_load.py shared-prompt
        8 concurrent requests with one new ~2,200-token system prompt and their own user
        turns: TTFT p50 against one such request alone (its prompt new too).
    python bench/engine_load.py copy-cost
        what copying a 2,000-token prefix from one slot's KV stream to another adds to a
        decode (8 slots of 4,096 tokens, one KV stream each, as the server loads them).

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
            if line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):  # not the role chunk
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


async def shared_prompt_ttft(origin: str) -> dict:
    def ask(nonce: str, question: str) -> dict:
        system = f"Handbook {nonce}. " + LONG_PROMPT[:9000]
        return {"messages": [{"role": "system", "content": system},
                             {"role": "user", "content": question}],
                "max_tokens": 2, "temperature": 0}

    async with httpx.AsyncClient(timeout=1800) as http:
        t0 = time.perf_counter()
        alone = (await stream(http, origin, ask("A1", "Where is the cup?")))[0] - t0
        t0 = time.perf_counter()
        runs = await asyncio.gather(*(stream(http, origin, ask("B2", f"Where is item {i}?"))
                                      for i in range(8)))
    ttfts = sorted(run[0] - t0 for run in runs)
    return {"ttft_alone_s": round(alone, 2), "ttft_p50_of_8_s": round(statistics.median(ttfts), 2),
            "ratio": round(statistics.median(ttfts) / alone, 2),
            "ttfts_s": [round(t, 1) for t in ttfts]}


def shared_prompt(args: argparse.Namespace) -> None:
    proc = server(args.src[0] if args.src else None)
    try:
        print(json.dumps(asyncio.run(shared_prompt_ttft(proc.origin))), flush=True)
    finally:
        proc.stop()


def copy_cost(args: argparse.Namespace) -> None:
    import llama_cpp as L
    import numpy as np

    from lmserve.engine.llama import LlamaModel
    from lmserve.models.bundled import bundled_model_path

    model = LlamaModel(bundled_model_path())
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 8 * 4096, 512, 512, 8
    cp.kv_unified = False
    cp.n_threads = cp.n_threads_batch = os.cpu_count() or 1
    ctx = L.llama_init_from_model(model.ptr, cp)
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(512, 0, 1)

    def decode(tokens: list[int], pos: int, seq: int) -> float:
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos + i, 1
            batch.seq_id[i][0], batch.logits[i] = seq, i == len(tokens) - 1
        batch.n_tokens = len(tokens)
        t0 = time.perf_counter()
        assert L.llama_decode(ctx, batch) == 0
        return time.perf_counter() - t0

    prefix = model.tokenize(LONG_PROMPT, add_special=True, parse_special=False)[:2000]
    for start in range(0, len(prefix), 500):
        decode(prefix[start:start + 500], start, 0)
    plain, copied = [], []
    for _ in range(args.rounds * 5):
        L.llama_memory_seq_rm(mem, 1, -1, -1)
        plain.append(decode(prefix[:1], 0, 1))
        L.llama_memory_seq_rm(mem, 1, -1, -1)
        L.llama_memory_seq_cp(mem, 0, 1, -1, -1)
        L.llama_memory_seq_rm(mem, 1, len(prefix), -1)
        copied.append(decode(prefix[:1], len(prefix), 1))
    print(json.dumps({"prefix_tokens": len(prefix),
                      "decode_ms": round(1000 * float(np.median(plain)), 1),
                      "decode_after_copy_ms": round(1000 * float(np.median(copied)), 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["rates", "prefill-curve", "shared-prompt",
                                         "copy-cost"])
    parser.add_argument("--src", action="append", help="a source tree to run the server from")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budgets", default="32,64,128,256,512")
    args = parser.parse_args()
    os.chdir(ROOT)
    {"rates": rates, "prefill-curve": prefill_curve, "shared-prompt": shared_prompt,
     "copy-cost": copy_cost}[args.what](args)


if __name__ == "__main__":
    main()
