"""The mixed-load benchmark: lmserve (and optionally llama.cpp's llama-server) under the
workloads where a server's scheduling shows, one table for all contenders.

Each server is started in turn with the bundled SmolLM2-135M, 8 slots of 4,096 tokens and
the same thread count, and gets the same requests:

- structured output: one stream's generation rate with `response_format: json_schema`
  against the same request unconstrained;
- a shared new system prompt (~2,200 tokens): the TTFT p50 of 8 concurrent requests with
  different user turns against the TTFT of one such request alone;
- a long prompt beside running streams: the longest gap between tokens of 3 running
  streams while a new ~2,000-token prompt is read, and that prompt's TTFT against alone;
- embeddings: 256 short inputs in one `/v1/embeddings` request, inputs/s, and the longest
  token gap of a stream running meanwhile;
- plain streams at concurrency 1 and 8 (`ignore_eos`, 128 tokens), for regressions.

    python bench/mixed_load.py [--llama-server PATH] [--threads N] [--skip-lmserve]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

# bench/ is on sys.path when this file runs as a script
from serve import (
    HOST,
    PREFIX_QUESTIONS,
    PROMPTS,
    TOPICS,
    RequestResult,
    cpu_busy_share,
    fmt,
    free_port,
    git_commit,
    percentile,
    running_server,
    stream_chat,
    system_prompt,
)

ROOT = Path(__file__).resolve().parents[1]
PARALLEL = 8
CONTEXT = 4096  # per slot
SHARED_RULES = 49  # handbook rules: about 2,200 tokens with the chat template
LONG_RULES = 44  # about 2,000 tokens
RUNNING_STREAMS = 3
EMBED_INPUTS = 256
THROUGHPUT_TOKENS = 128
STRUCTURED_TOKENS = 160
TIMEOUT = httpx.Timeout(connect=10.0, read=900.0, write=30.0, pool=900.0)

TARGETS = {  # name: (description, comparison, threshold)
    "structured_vs_free": ("generation rate, json_schema / unconstrained", ">=", 0.95),
    "shared_prompt_ttft": ("8 requests sharing a new system prompt, TTFT p50 / one alone",
                           "<=", 1.3),
    "itl_max_while_reading": ("longest token gap of 3 streams while a long prompt is read",
                              "<=", 0.3),
    "long_prompt_ttft": ("that long prompt's TTFT / alone", "<=", 1.25),
}

SCHEMA = {
    "type": "object",
    "properties": {
        "fruits": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "colour": {"type": "string"},
                               "taste": {"type": "string"}},
                "required": ["name", "colour", "taste"],
            },
            "minItems": 30,
        },
    },
    "required": ["fruits"],
}
STRUCTURED_ASK = "List thirty fruits as JSON, each with its name, colour and taste."

def handbook(n_rules: int) -> str:
    """A staff handbook led by a nonce, so that no cache has seen it."""
    return system_prompt(f"{time.time_ns():x}", n_rules)


def body(model: str, messages: list[dict[str, str]], max_tokens: int, *, seed: int = 1,
         **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": messages, "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": max_tokens,
            "temperature": 0.8, "seed": seed, **extra}


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def checked(res: RequestResult, what: str) -> RequestResult:
    if res.error or not res.chunk_times:
        raise RuntimeError(f"{what} failed: {res.error or 'no content'}")
    return res


class Contender:
    """One running server and its client."""

    def __init__(self, base: str, model: str, client: httpx.AsyncClient) -> None:
        self.base, self.model, self.client = base, model, client

    async def stream(self, payload: dict[str, Any], what: str) -> RequestResult:
        return checked(await stream_chat(self.client, self.base, payload), what)

    async def ttft_alone(self, n_rules: int, what: str) -> tuple[float, int | None]:
        """TTFT of one request with a handbook never seen before."""
        msgs = [{"role": "system", "content": handbook(n_rules)},
                {"role": "user", "content": PREFIX_QUESTIONS[0]}]
        res = await self.stream(body(self.model, msgs, 4), what)
        return res.ttft, (res.usage or {}).get("prompt_tokens")


async def structured(c: Contender, reps: int) -> dict[str, Any]:
    """Generation rate of one stream with and without a JSON schema, alternating."""
    free, constrained = [], []
    for r in range(reps):
        res = await c.stream(body(c.model, user(STRUCTURED_ASK), STRUCTURED_TOKENS, seed=r,
                                  ignore_eos=True), "unconstrained stream")
        free.append(res.decode_tok_s)
        fmt_ = {"type": "json_schema", "json_schema": {"name": "fruits", "schema": SCHEMA}}
        res = await c.stream(body(c.model, user(STRUCTURED_ASK), STRUCTURED_TOKENS, seed=r,
                                  response_format=fmt_), "json_schema stream")
        constrained.append(res.decode_tok_s)
    free_p50, constrained_p50 = statistics.median(free), statistics.median(constrained)
    return {"free_tok_s": free, "json_schema_tok_s": constrained,
            "free_tok_s_p50": free_p50, "json_schema_tok_s_p50": constrained_p50,
            "ratio": constrained_p50 / free_p50}


async def shared_prompt(c: Contender) -> dict[str, Any]:
    """8 concurrent requests sharing a new system prompt against one cold prefill alone."""
    alone, prompt_tokens = await c.ttft_alone(SHARED_RULES, "cold shared prompt")
    system = handbook(SHARED_RULES)
    results = await asyncio.gather(*(
        c.stream(body(c.model, [{"role": "system", "content": system},
                                {"role": "user", "content": turn}], 4, seed=i),
                 "shared-prompt request")
        for i, turn in enumerate(PREFIX_QUESTIONS[:PARALLEL])))
    ttfts = [r.ttft for r in results]
    p50 = statistics.median(ttfts)
    return {"prompt_tokens": prompt_tokens, "alone_ttft_s": alone, "ttfts_s": ttfts,
            "ttft_p50_s": p50, "ratio": p50 / alone}


def _has_content(line: str) -> bool:
    if not line.startswith("data:") or line == "data: [DONE]":
        return False
    return any((ch.get("delta") or {}).get("content")
               for ch in json.loads(line[5:]).get("choices") or [])


async def _run_streams(c: Contender, n: int, stop: asyncio.Event, started: asyncio.Event,
                       ) -> list[list[float]]:
    """n long streams; `started` is set once each has produced tokens; all end at `stop`.
    Returns each stream's chunk arrival times."""
    times: list[list[float]] = [[] for _ in range(n)]

    async def one(i: int) -> None:
        payload = body(c.model, user(PROMPTS[i]), 3000, seed=i, ignore_eos=True)
        async with c.client.stream("POST", f"{c.base}/v1/chat/completions",
                                   json=payload) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"running stream: HTTP {resp.status_code}")
            async for line in resp.aiter_lines():
                if _has_content(line):
                    times[i].append(time.perf_counter())
                    if all(len(t) >= 5 for t in times):
                        started.set()
                if stop.is_set():
                    return  # leaving the block closes the connection: the server cancels
        raise RuntimeError("a running stream ended before the measurement did")

    await asyncio.gather(*(one(i) for i in range(n)))
    return times


async def beside_streams(c: Contender, n_streams: int,
                         action: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """Runs `action` while n streams decode. Returns its result, the longest and median
    token gap of the streams over the gaps that end while it runs, and its duration."""
    stop, started = asyncio.Event(), asyncio.Event()
    streams = asyncio.create_task(_run_streams(c, n_streams, stop, started))
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({streams, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if streams.done():
        streams.result()  # raises what ended the streams
    t0 = time.perf_counter()
    result = await action()
    t1 = time.perf_counter()
    await asyncio.sleep(0.5)  # the gap that spans the end of the action is counted too
    stop.set()
    times = await streams
    gaps = [b - a for t in times for a, b in zip(t, t[1:], strict=False) if t0 < b <= t1 + 0.5]
    return result, max(gaps, default=float("nan")), percentile(gaps, 50) or float("nan"), t1 - t0


async def long_prompt(c: Contender) -> dict[str, Any]:
    """A new ~2,000-token prompt read while 3 streams run, against the same read alone."""
    alone, prompt_tokens = await c.ttft_alone(LONG_RULES, "long prompt alone")

    async def read_long() -> float:
        msgs = [{"role": "system", "content": handbook(LONG_RULES)},
                {"role": "user", "content": PREFIX_QUESTIONS[1]}]
        return (await c.stream(body(c.model, msgs, 4), "long prompt beside streams")).ttft

    ttft, gap_max, gap_p50, _ = await beside_streams(c, RUNNING_STREAMS, read_long)
    return {"prompt_tokens": prompt_tokens, "alone_ttft_s": alone, "beside_ttft_s": ttft,
            "ttft_ratio": ttft / alone, "itl_max_s": gap_max, "itl_p50_s": gap_p50}


async def embeddings(c: Contender) -> dict[str, Any]:
    """256 short inputs in one request, alone and beside one running stream."""
    inputs = [f"Customer note {i}: the {TOPICS[i % len(TOPICS)]} question was answered."
              for i in range(EMBED_INPUTS)]

    async def embed() -> float:
        t0 = time.perf_counter()
        r = await c.client.post(f"{c.base}/v1/embeddings",
                                json={"model": c.model, "input": inputs})
        if r.status_code != 200 or len(r.json().get("data", [])) != EMBED_INPUTS:
            raise RuntimeError(f"embeddings: HTTP {r.status_code}: {r.text[:200]}")
        return EMBED_INPUTS / (time.perf_counter() - t0)

    # the first embeddings request creates the model's embedding context: not timed
    await c.client.post(f"{c.base}/v1/embeddings", json={"model": c.model, "input": "warm"})
    alone = await embed()
    beside, gap_max, gap_p50, duration = await beside_streams(c, 1, embed)
    return {"inputs": EMBED_INPUTS, "alone_inputs_s": alone, "beside_inputs_s": beside,
            "stream_itl_max_s": gap_max, "stream_itl_p50_s": gap_p50,
            "duration_beside_s": duration}


async def throughput(c: Contender, concurrency: int) -> dict[str, Any]:
    """`concurrency` streams at once, each exactly THROUGHPUT_TOKENS tokens."""
    t0 = time.perf_counter()
    results = await asyncio.gather(*(
        c.stream(body(c.model, user(PROMPTS[i]), THROUGHPUT_TOKENS, seed=i, ignore_eos=True),
                 "throughput stream") for i in range(concurrency)))
    wall = time.perf_counter() - t0
    tokens = sum(r.tokens for r in results)
    return {"concurrency": concurrency, "aggregate_tok_s": tokens / wall,
            "stream_tok_s_p50": statistics.median(r.decode_tok_s for r in results),
            "all_full_length": all(r.tokens == THROUGHPUT_TOKENS for r in results)}


async def bench_contender(base: str, model: str, has_embeddings: bool, reps: int
                          ) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=4 * PARALLEL)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        c = Contender(base, model, client)
        await c.stream(body(model, user("Say hello."), 8), "warm-up")
        out: dict[str, Any] = {}
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("throughput_1", lambda: throughput(c, 1)),
            ("throughput_8", lambda: throughput(c, PARALLEL)),
            ("structured", lambda: structured(c, reps)),
            ("shared_prompt", lambda: shared_prompt(c)),
            ("long_prompt", lambda: long_prompt(c)),
        ]
        if has_embeddings:
            steps.append(("embeddings", lambda: embeddings(c)))
        for name, step in steps:
            busy = cpu_busy_share()
            print(f"  {name} (CPU busy before: {fmt(busy and 100 * busy, 0)}%)", flush=True)
            out[name] = await step()
            out[name]["cpu_busy_before"] = busy
            print("    " + json.dumps(_rounded(out[name])), flush=True)
        return out


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def lmserve_cmd(port: int, threads: int) -> list[str]:
    # lmserve's default thread policy: on a machine others keep busy it decodes with the
    # cores they leave free, where a fixed count of spinning threads can stall for minutes
    return [sys.executable, "-m", "lmserve", "server", "start", "--host", HOST,
            "--port", str(port), "--parallel", str(PARALLEL), "--context-length",
            str(CONTEXT), "--threads", str(threads)]


def llama_server_cmd(binary: str, port: int, threads: int, model_path: Path) -> list[str]:
    # -c is the total context, shared out among the -np slots
    return [binary, "-m", str(model_path), "--host", HOST, "--port", str(port),
            "-np", str(PARALLEL), "-c", str(PARALLEL * CONTEXT), "-t", str(threads),
            "-tb", str(threads), "--jinja"]


def ratios(r: dict[str, Any]) -> dict[str, float | None]:
    def get(*path: str) -> float | None:
        x: Any = r
        for p in path:
            x = (x or {}).get(p)
        return x

    return {"structured_vs_free": get("structured", "ratio"),
            "shared_prompt_ttft": get("shared_prompt", "ratio"),
            "itl_max_while_reading": get("long_prompt", "itl_max_s"),
            "long_prompt_ttft": get("long_prompt", "ttft_ratio")}


def met(name: str, value: float | None) -> bool | None:
    if value is None:
        return None
    _, op, threshold = TARGETS[name]
    return value >= threshold if op == ">=" else value <= threshold


def table(result: dict[str, Any]) -> str:
    """One Markdown table: a row per workload, a column per contender."""
    names = list(result["servers"])
    rows = [("workload", *names, "target"), ("---", *["---:"] * len(names), "---:")]

    def cell(server: str, f: Callable[[dict[str, Any]], str]) -> str:
        data = result["servers"][server]
        try:
            return f(data)
        except (KeyError, TypeError):
            return "—"

    def add(label: str, f: Callable[[dict[str, Any]], str], target: str = "") -> None:
        rows.append((label, *(cell(s, f) for s in names), target))

    add("tok/s, 1 stream (aggregate)", lambda d: fmt(d["throughput_1"]["aggregate_tok_s"]))
    add("tok/s, 8 streams (aggregate)", lambda d: fmt(d["throughput_8"]["aggregate_tok_s"]))
    add("json_schema / unconstrained generation rate",
        lambda d: f"**{fmt(d['structured']['ratio'], 2)}** "
                  f"({fmt(d['structured']['json_schema_tok_s_p50'])} / "
                  f"{fmt(d['structured']['free_tok_s_p50'])} tok/s)", "≥ 0.95")
    add("8 requests sharing a new system prompt: TTFT p50 / one alone",
        lambda d: f"**{fmt(d['shared_prompt']['ratio'], 2)}×** "
                  f"({fmt(d['shared_prompt']['ttft_p50_s'])} s vs "
                  f"{fmt(d['shared_prompt']['alone_ttft_s'])} s, "
                  f"{d['shared_prompt']['prompt_tokens'] or '?'} tokens)", "≤ 1.3×")
    add("longest token gap of 3 streams while a long prompt is read (p50)",
        lambda d: f"**{fmt(d['long_prompt']['itl_max_s'], 2)} s** "
                  f"({fmt(d['long_prompt']['itl_p50_s'], 3)} s)", "≤ 0.3 s")
    add("that prompt's TTFT beside the streams / alone",
        lambda d: f"**{fmt(d['long_prompt']['ttft_ratio'], 2)}×** "
                  f"({fmt(d['long_prompt']['beside_ttft_s'])} s vs "
                  f"{fmt(d['long_prompt']['alone_ttft_s'])} s, "
                  f"{d['long_prompt']['prompt_tokens'] or '?'} tokens)", "≤ 1.25×")
    add("/v1/embeddings, 256 short inputs: inputs/s alone (beside a stream)",
        lambda d: f"**{fmt(d['embeddings']['alone_inputs_s'])}** "
                  f"({fmt(d['embeddings']['beside_inputs_s'])})", "≥ 2× before")
    add("longest token gap of a stream during that request",
        lambda d: f"{fmt(d['embeddings']['stream_itl_max_s'], 2)} s "
                  f"(p50 {fmt(d['embeddings']['stream_itl_p50_s'], 3)} s, request "
                  f"{fmt(d['embeddings']['duration_beside_s'])} s)")
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lmserve.models.bundled import bundled_model_path

    model_path = bundled_model_path()
    result: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(), "model": model_path.name, "threads": args.threads,
        "load_average": os.getloadavg(), "servers": {},
    }
    contenders = [] if args.skip_lmserve else [("lmserve", lmserve_cmd, True)]
    if args.llama_server:
        contenders.append(("llama-server", lambda port, threads: llama_server_cmd(
            args.llama_server, port, threads, model_path), False))
    with tempfile.TemporaryDirectory(prefix="lmserve-bench-") as tmp:
        env = {**os.environ, "LMSERVE_HOME": str(Path(tmp) / "home")}
        for name, cmd, has_embeddings in contenders:
            port = free_port()
            print(f"{name} on port {port}", flush=True)
            with running_server(name, cmd(port, args.threads), env, port,
                                Path(tmp)) as (base, model):
                data = asyncio.run(bench_contender(base, model, has_embeddings, args.reps))
            data["ratios"] = {k: {"value": v, "met": met(k, v)}
                              for k, v in ratios(data).items()}
            result["servers"][name] = data
    result["load_average_after"] = os.getloadavg()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-server", metavar="PATH",
                    help="also run these workloads against this llama-server binary")
    ap.add_argument("--skip-lmserve", action="store_true", help="only the llama-server")
    ap.add_argument("--threads", type=int, default=2, help="threads per server [2]")
    ap.add_argument("--reps", type=int, default=3,
                    help="alternating structured / unconstrained pairs [3]")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results",
                    help="where the JSON result goes [bench/results]")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stops the servers
    result = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"mixed-load-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['date']}, commit {result['commit']}, load average "
          f"{' '.join(f'{x:.1f}' for x in result['load_average'])} before, "
          f"{' '.join(f'{x:.1f}' for x in result['load_average_after'])} after\n")
    print(table(result))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
