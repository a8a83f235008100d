"""Load options on the CPU: flash attention on vs off, q8_0 vs f16 KV cache.

Starts lmserve with nothing loaded (bundled SmolLM2, one thread by default: a single
thread has no barrier to spin on, so the ratios hold on a busy shared machine), then in
each round loads every configuration in turn (8 slots of 4,096 tokens) and measures: one
stream (decode tokens/s, TTFT of a short and of a ~1,200-token prompt), 8 concurrent
streams (aggregate tokens/s, median TTFT), the server's RSS after the runs, and whether
greedy output equals the first configuration's. Medians over the rounds; prints a
Markdown table and saves the numbers under bench/results/.

    python bench/load_options.py [--rounds N] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.server_process import ServerProcess  # noqa: E402

MODEL = "huggingfacetb/smollm2-135m-instruct"
MAX_TOKENS = 64
CONFIGS = {  # name: load options (8 slots of 4,096 tokens each)
    "flash on, f16 KV": {"flash_attention": "on", "kv_cache_type_k": "f16",
                         "kv_cache_type_v": "f16"},
    "flash off, f16 KV": {"flash_attention": "off", "kv_cache_type_k": "f16",
                          "kv_cache_type_v": "f16"},
    "flash on, q8_0 KV": {"flash_attention": "on", "kv_cache_type_k": "q8_0",
                          "kv_cache_type_v": "q8_0"},
    # a quantized V cache needs flash attention: without it only K can be q8_0
    "flash off, q8_0 K": {"flash_attention": "off", "kv_cache_type_k": "q8_0",
                          "kv_cache_type_v": "f16"},
}
SHORT = "Write a long story about a robot who learns to paint."
LONG = ("Summarize the following notes in one sentence.\n"  # after a unique first line
        + " ".join(f"Note {i}: the shipment of part {i * 7} arrived on day {i % 30}."
                   for i in range(60)))
GREEDY = "Name three colors of the rainbow and say why the sky is blue."


def rss_mb(proc: ServerProcess) -> float:
    with open(f"/proc/{proc.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def stream(client: httpx.AsyncClient, url: str, prompt: str,
                 max_tokens: int = MAX_TOKENS) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0.8, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif first is None and chunk["choices"] and chunk["choices"][0]["delta"].get(
                    "content"):
                first = time.perf_counter()
    end = time.perf_counter()
    return {"ttft": (first or end) - t0, "tokens": tokens, "decode_s": end - (first or end),
            "total_s": end - t0}


async def measure(proc: ServerProcess, round_no: int) -> dict:
    url = f"{proc.base_url}/chat/completions"
    async with httpx.AsyncClient(timeout=1200) as client:
        await stream(client, url, SHORT, 4)  # warm-up
        single = [await stream(client, url, SHORT) for _ in range(2)]
        # a new first line each time, so the prefix cache cannot serve the prompt
        long_ttft = (await stream(client, url, f"Round {round_no}.\n{LONG}", 4))["ttft"]
        t0 = time.perf_counter()
        eight = await asyncio.gather(*(stream(client, url, f"{i}. {SHORT}")
                                       for i in range(8)))
        wall = time.perf_counter() - t0
        greedy = (await client.post(url, json={
            "model": MODEL, "messages": [{"role": "user", "content": GREEDY}],
            "temperature": 0, "max_tokens": 48})).json()["choices"][0]["message"]["content"]
    return {
        "tok_s_1": statistics.median((r["tokens"] - 1) / r["decode_s"] for r in single),
        "ttft_1_s": statistics.median(r["ttft"] for r in single),
        "ttft_long_s": long_ttft,
        "tok_s_8": sum(r["tokens"] for r in eight) / wall,
        "ttft_8_s": statistics.median(r["ttft"] for r in eight),
        "rss_mb": rss_mb(proc),
        "greedy": greedy,
    }


def same_start(text: str, reference: str) -> str:
    """'yes', or how many words the two greedy texts share before they part."""
    if text == reference:
        return "yes"
    words, ref = text.split(), reference.split()
    shared = next((i for i, (a, b) in enumerate(zip(words, ref, strict=False)) if a != b),
                  min(len(words), len(ref)))
    return f"first {shared} of {len(ref)} words"


def load(proc: ServerProcess, options: dict) -> None:
    loaded = httpx.get(f"{proc.origin}/api/v1/models", timeout=30).json()["data"]
    if any(m["loaded_instances"] for m in loaded):
        freed = proc.log().count("unloaded ")
        httpx.post(f"{proc.origin}/api/v1/models/unload", json={"all": True}, timeout=30)
        while proc.log().count("unloaded ") == freed:
            time.sleep(0.1)
    response = httpx.post(f"{proc.origin}/api/v1/models/load", timeout=300, json={
        "model": MODEL, "parallel": 8, "context_length": 4096, **options})
    response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    proc = ServerProcess("--model", "none", "--threads", str(args.threads), "--no-share-cpu")
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    try:
        base = rss_mb(proc)
        for round_no in range(args.rounds):  # every configuration once per round
            for name, options in CONFIGS.items():
                load(proc, options)
                runs[name].append(asyncio.run(measure(proc, round_no)))
                print(round_no, name, {k: v for k, v in runs[name][-1].items()
                                       if k != "greedy"}, flush=True)
    finally:
        proc.stop()
    results = {name: {key: statistics.median(r[key] for r in rs) if key != "greedy"
                      else rs[0][key] for key in rs[0]} for name, rs in runs.items()}
    reference = next(iter(results.values()))["greedy"]
    lines = [
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}"
        f", {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {args.threads} "
        f"thread(s), medians of {args.rounds} rounds; server RSS with nothing loaded "
        f"{base:.0f} MB",
        "",
        "| load options | 1 stream tok/s | TTFT short | TTFT ~1,200-token prompt "
        "| 8 streams tok/s | TTFT at 8 (median) | RSS | greedy text as the first row's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['tok_s_1']:.1f} | {r['ttft_1_s'] * 1000:.0f} ms | "
                     f"{r['ttft_long_s'] * 1000:.0f} ms | {r['tok_s_8']:.1f} | "
                     f"{r['ttft_8_s'] * 1000:.0f} ms | {r['rss_mb']:.0f} MB | "
                     f"{same_start(r['greedy'], reference)} |")
    print("\n".join(lines))
    for name, r in results.items():
        print(f"{name}: {r['greedy']!r}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"load_options-{datetime.now(UTC):%Y%m%d-%H%M}.json"
    path.write_text(json.dumps({"base_rss_mb": base, "runs": runs}, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
